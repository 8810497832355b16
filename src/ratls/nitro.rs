//! PURE. Judging AWS Nitro Enclaves evidence in an RA-TLS certificate (dstack's `.1.8`
//! attestation of platform `nitro-enclave`) for a `tee = "nitro"` entry, in this order: the
//! NSM document parses; the checks that need no signature (the key binding: the envelope's
//! report_data is dstack's for the certificate key and the document's `user_data` equals
//! it; a debug enclave; the certificate's window; the document's age); the chain from the
//! pinned root and the COSE signature, through the generation's [`NitroCollateral`]
//! (intermediates cache); revocation over the CRLs it holds, as `nitro_revocation` requires;
//! the policy. Every refusal has its own code; the acceptance ([`NitroAccepted`]) exists
//! only for a verified document the policy passed.

use super::binding::{BindingMode, CertKey};
use crate::appraise::nitro_policy::{
    self, accept, refusal_code, NitroAccepted, NitroIdentity, NitroPolicy, NitroViolation,
};
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::time::UnixTime;
use crate::dstack::{Attestation, Platform};
use crate::nitro::binding::user_data_is_dstack_report_data;
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
}

impl NitroAppraisal {
    fn refused(refusal: Refusal) -> Self {
        Self {
            identity: None,
            outcome: Err(refusal),
        }
    }
}

fn violation(v: &NitroViolation) -> Refusal {
    Refusal::new(refusal_code(v.code()), v.to_string())
}

fn error(e: &nitro::NitroError) -> Refusal {
    Refusal::new(refusal_code(nitro_policy::error_code(e)), e.to_string())
}

/// The checks that need no signature, in order: the binding mode, `user_data` ==
/// report_data == dstack's for the certificate key, debug, the certificate's window, the
/// document's age. A forged document fails them as surely as a real one, and cheaper.
fn cheap_checks(
    (att, doc): (&Attestation<'_>, &nitro::AttestationDoc<'_>),
    policy: &NitroPolicy,
    (key, mode): (CertKey<'_>, BindingMode),
    (window, now): ((i64, i64), UnixTime),
) -> Result<(), Refusal> {
    if !matches!(mode, BindingMode::Auto | BindingMode::Dstack) {
        return Err(Refusal::new(
            RefusalCode::BindingMismatch,
            "the certificate carries a dstack attestation, the policy requires another binding",
        ));
    }
    let binding = |reason: String| Refusal::new(RefusalCode::BindingMismatch, reason);
    user_data_is_dstack_report_data(doc, &att.stack.report_data)
        .map_err(|e| binding(e.to_string()))?;
    crate::dstack::binding::check(att, key.spki_der, &att.stack.report_data)
        .map_err(|e| binding(e.to_string()))?;
    if doc.is_debug() && !policy.allow_debug {
        return Err(violation(&NitroViolation::Debug));
    }
    // `max_cert_age_secs` is the document's age for Nitro (docs/configuration.md).
    super::validity::check_cert_window(window, None, now)?;
    match nitro_policy::age(doc.timestamp_ms, policy.max_age_secs, now) {
        Some(v) => Err(violation(&v)),
        None => Ok(()),
    }
}

/// Judges dstack Nitro evidence `att` in a certificate with `key`, valid `window`
/// (notBefore, notAfter), under `judge` at `now`.
pub fn appraise(
    att: &Attestation<'_>,
    (key, mode): (CertKey<'_>, BindingMode),
    judge: &NitroJudge<'_>,
    window: (i64, i64),
    now: UnixTime,
) -> NitroAppraisal {
    let Platform::NitroEnclave { nsm_quote } = &att.platform else {
        return NitroAppraisal::refused(Refusal::new(
            RefusalCode::TeeMismatch,
            format!(
                "the entry expects AWS Nitro Enclaves (tee = \"nitro\") and the dstack attestation carries {} evidence",
                att.platform.name()
            ),
        ));
    };
    let parsed = match nitro::parse(nsm_quote) {
        Ok(p) => p,
        Err(e) => {
            return NitroAppraisal::refused(Refusal::new(
                RefusalCode::QuoteMalformed,
                e.to_string(),
            ))
        }
    };
    if let Err(r) = cheap_checks((att, &parsed.doc), judge.policy, (key, mode), (window, now)) {
        return NitroAppraisal::refused(r);
    }
    let verified = match judge.collateral.verify(&parsed, now) {
        Ok(v) => v,
        Err(e) => return NitroAppraisal::refused(error(&e)),
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
    NitroAppraisal { identity, outcome }
}
