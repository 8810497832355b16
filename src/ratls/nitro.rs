//! PURE. Judging AWS Nitro Enclaves evidence in an RA-TLS certificate for a `tee = "nitro"`
//! entry, whichever carrier brought it (dstack's `.1.8` attestation of platform
//! `nitro-enclave`, or Evervault's document in the subjectAltName), in this order: the NSM
//! document parses; the checks that need no signature (the key binding, by the carrier's
//! rule: dstack's report_data for the certificate key equal to `user_data`, or Evervault's
//! `user_data` = the certificate's SPKI DER; a debug enclave; the certificate's window; the
//! document's age); the chain from the pinned root and the COSE signature, through the
//! generation's [`NitroCollateral`] (intermediates cache); the policy; revocation over the
//! CRLs it holds, as `nitro_revocation` requires. Every refusal has its own code; the
//! acceptance ([`NitroAccepted`]) exists only for a verified document the policy passed.
//! Only the document's source and the binding rule differ between carriers.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::binding::{Binding, BindingMode, CertKey};
use super::evidence::NitroCarrier;
use crate::appraise::nitro_policy::{
    self, accept, refusal_code, NitroAccepted, NitroIdentity, NitroPolicy, NitroViolation,
};
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::time::UnixTime;
use crate::dstack::Platform;
use crate::nitro::binding::{user_data_is_dstack_report_data, user_data_is_spki};
use crate::nitro::{self, NitroCollateral};

/// What a Nitro entry judges with.
#[derive(Clone, Copy)]
pub struct NitroJudge<'a> {
    /// The entry's policy.
    pub policy: &'a NitroPolicy,
    /// The generation's Nitro collateral: root, intermediates cache, CRLs held.
    pub collateral: &'a dyn NitroCollateral,
}

impl std::fmt::Debug for NitroJudge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NitroJudge")
            .field("policy", self.policy)
            .finish_non_exhaustive()
    }
}

/// The judgement of Nitro evidence, with what the document shows.
#[derive(Clone, Debug)]
pub struct NitroAppraisal {
    /// The document's fields, once its chain and signature verified (a refusal before that
    /// shows none: unverified bytes are no identity).
    pub identity: Option<NitroIdentity>,
    /// Accepted, or refused with a code and reasons.
    pub outcome: Result<NitroAccepted, Refusal>,
    /// The carrier's binding rule, once it held and the document verified.
    pub binding: Option<Binding>,
    /// SHA-256 of the NSM document, once a carrier gave one.
    pub document_sha256: Option<[u8; 32]>,
}

impl NitroAppraisal {
    /// Refused before the document verified.
    pub fn refused(refusal: Refusal) -> Self {
        Self {
            identity: None,
            outcome: Err(refusal),
            binding: None,
            document_sha256: None,
        }
    }
}

fn violation(v: &NitroViolation) -> Refusal {
    Refusal::new(refusal_code(v.code()), v.to_string())
}

fn error(e: &nitro::NitroError) -> Refusal {
    Refusal::new(refusal_code(nitro_policy::error_code(e)), e.to_string())
}

/// The binding rule of `carrier`, which says how `doc` must name the certificate `key`:
/// dstack's (`user_data` == report_data == dstack's for the key) or Evervault's (`user_data`
/// == the SPKI DER). `binding` on the entry cannot choose Evervault's: it is the carrier's.
fn bound(
    carrier: &NitroCarrier<'_>,
    doc: &nitro::AttestationDoc<'_>,
    (key, mode): (CertKey<'_>, BindingMode),
) -> Result<Binding, Refusal> {
    let binding = |reason: String| Refusal::new(RefusalCode::BindingMismatch, reason);
    match carrier {
        NitroCarrier::Dstack(_) if !matches!(mode, BindingMode::Auto | BindingMode::Dstack) => {
            Err(binding(
                "the certificate carries a dstack attestation, the policy requires another binding"
                    .into(),
            ))
        }
        NitroCarrier::Dstack(att) => {
            user_data_is_dstack_report_data(doc, &att.stack.report_data)
                .map_err(|e| binding(e.to_string()))?;
            crate::dstack::binding::check(att, key.spki_der, &att.stack.report_data)
                .map_err(|e| binding(e.to_string()))?;
            Ok(Binding::Dstack)
        }
        NitroCarrier::Evervault(_) if mode != BindingMode::Auto => Err(binding(
            "the certificate carries Evervault's subjectAltName document, the policy requires another binding"
                .into(),
        )),
        NitroCarrier::Evervault(_) => user_data_is_spki(doc, key.spki_der)
            .map(|_| Binding::Evervault)
            .map_err(|e| binding(e.to_string())),
    }
}

/// The checks that need no signature, in order: the carrier's binding, debug, the
/// certificate's window, the document's age. A forged document fails them as surely as a
/// real one, and cheaper.
fn cheap_checks(
    (carrier, doc): (&NitroCarrier<'_>, &nitro::AttestationDoc<'_>),
    policy: &NitroPolicy,
    key: (CertKey<'_>, BindingMode),
    (window, now): ((i64, i64), UnixTime),
) -> Result<Binding, Refusal> {
    let binding = bound(carrier, doc, key)?;
    if doc.is_debug() && !policy.allow_debug {
        return Err(violation(&NitroViolation::Debug));
    }
    // `max_cert_age_secs` is the document's age for Nitro (docs/configuration.md).
    super::validity::check_cert_window(window, None, now)?;
    match nitro_policy::age(doc.timestamp_ms, policy.max_age_secs, now) {
        Some(v) => Err(violation(&v)),
        None => Ok(binding),
    }
}

/// The cheap re-check on a verdict-cache hit: the carrier's document still names `key` by
/// the carrier's rule (no signature checked: the cached verdict did that for these bytes).
pub fn binding_holds(carrier: &NitroCarrier<'_>, key: (CertKey<'_>, BindingMode)) -> bool {
    document(carrier)
        .is_ok_and(|bytes| nitro::parse(&bytes).is_ok_and(|p| bound(carrier, &p.doc, key).is_ok()))
}

/// The NSM document `carrier` holds: dstack's of the Nitro platform (another platform is a
/// `tee_mismatch`), or Evervault's decoded.
fn document<'c>(carrier: &'c NitroCarrier<'_>) -> Result<Cow<'c, [u8]>, Refusal> {
    match carrier {
        NitroCarrier::Evervault(san) => Ok(Cow::Owned(san.decode())),
        NitroCarrier::Dstack(att) => match &att.platform {
            Platform::NitroEnclave { nsm_quote } => Ok(Cow::Borrowed(nsm_quote.as_ref())),
            other => Err(Refusal::new(
                RefusalCode::TeeMismatch,
                format!(
                    "the entry expects AWS Nitro Enclaves (tee = \"nitro\") and the dstack attestation carries {} evidence",
                    other.name()
                ),
            )),
        },
    }
}

/// Judges the Nitro evidence `carrier` brought in a certificate with `key`, valid `window`
/// (notBefore, notAfter), under `judge` at `now`.
pub fn appraise(
    carrier: &NitroCarrier<'_>,
    key: (CertKey<'_>, BindingMode),
    judge: &NitroJudge<'_>,
    window: (i64, i64),
    now: UnixTime,
) -> NitroAppraisal {
    let bytes = match document(carrier) {
        Ok(b) => b,
        Err(r) => return NitroAppraisal::refused(r),
    };
    let document_sha256 = Some(Sha256::digest(&bytes).into());
    let refused = |refusal| NitroAppraisal {
        document_sha256,
        ..NitroAppraisal::refused(refusal)
    };
    let parsed = match nitro::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return refused(Refusal::new(RefusalCode::QuoteMalformed, e.to_string())),
    };
    let binding = match cheap_checks((carrier, &parsed.doc), judge.policy, key, (window, now)) {
        Ok(b) => b,
        Err(r) => return refused(r),
    };
    let verified = match judge.collateral.verify(&parsed, now) {
        Ok(v) => v,
        Err(e) => return refused(error(&e)),
    };
    let identity = Some(NitroIdentity::of(verified.doc()));
    // The policy needs no collateral: judged first, a PCR outside the allow-list is refused
    // as such and never makes the proxy fetch CRLs for it.
    let outcome = match nitro_policy::refusal(judge.policy, &verified, now) {
        Some(refused) => Err(refused),
        None => judge
            .collateral
            .revocation(&verified, now)
            .map_err(|e| error(&e))
            .and_then(|status| {
                accept(
                    judge.policy,
                    (&verified, judge.collateral.root()),
                    status,
                    now,
                )
            }),
    };
    NitroAppraisal {
        identity,
        outcome,
        binding: Some(binding),
        document_sha256,
    }
}
