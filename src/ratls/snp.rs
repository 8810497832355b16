//! PURE. Judging AMD SEV-SNP evidence in an RA-TLS certificate (dstack's `.1.8` attestation
//! of platform `sev-snp`) for a `tee = "snp"` entry, in this order: the report parses; the
//! checks that need no signature (DEBUG, the key binding: REPORT_DATA is dstack's report
//! data for the certificate key and HOST_DATA the hash of the carried `mr_config`, the
//! certificate's validity and age); the VCEK/VLEK from the source (or one carried in the
//! evidence, verified under the source's held chain and CRL, any ARK copy equal to the pin);
//! the report's signature and the key's chip and TCB; the policy. Every refusal has its own
//! code; the acceptance ([`SnpAccepted`]) exists only for a verified report the policy passes.

use std::sync::Arc;

use super::binding::{BindingMode, CertKey};
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::appraise::snp_policy::{snp_refusal_code, SnpAccepted, SnpPolicy};
use crate::appraise::snp_source::SnpCollateralSource;
use crate::dcap::time::UnixTime;
use crate::dstack::{Attestation, Platform};
use crate::snp::collateral::{classify, SnpCertKind};
use crate::snp::verified::{SnpDigests, SnpIdentity};
use crate::snp::verify::VerifiedVek;
use crate::snp::{Report, SnpTrust};

/// What an SEV-SNP entry judges with.
#[derive(Clone, Copy)]
pub struct SnpJudge<'a> {
    /// The entry's policy.
    pub policy: &'a SnpPolicy,
    /// Where the report's VCEK/VLEK and chain come from.
    pub source: &'a dyn SnpCollateralSource,
    /// The pinned ARKs (a copy carried in the evidence must equal one byte for byte).
    pub trust: &'a SnpTrust,
}

impl std::fmt::Debug for SnpJudge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpJudge")
            .field("policy", self.policy)
            .finish_non_exhaustive()
    }
}

/// The judgement of SEV-SNP evidence, with what the report shows.
#[derive(Clone, Debug)]
pub struct SnpAppraisal {
    /// The report's fields, once its signature verified (a refusal before that shows none:
    /// unverified bytes are no identity).
    pub identity: Option<SnpIdentity>,
    /// The collateral it was verified with.
    pub collateral: Option<SnpDigests>,
    /// Accepted, or refused with a code and reasons.
    pub outcome: Result<SnpAccepted, Refusal>,
}

impl SnpAppraisal {
    fn refused(refusal: Refusal) -> Self {
        Self {
            identity: None,
            collateral: None,
            outcome: Err(refusal),
        }
    }
}

/// The checks that need no signature, in order: DEBUG, the binding mode, REPORT_DATA and
/// HOST_DATA, the certificate's window.
fn cheap_checks(
    (att, report, mr_config): (&Attestation<'_>, &Report<'_>, &str),
    judge: &SnpJudge<'_>,
    (key, mode): (CertKey<'_>, BindingMode),
    (window, max_age, now): ((i64, i64), Option<u64>, UnixTime),
) -> Result<(), Refusal> {
    judge
        .policy
        .check_early(report)
        .map_err(|v| Refusal::new(v.code(), v.to_string()))?;
    if !matches!(mode, BindingMode::Auto | BindingMode::Dstack) {
        return Err(Refusal::new(
            RefusalCode::BindingMismatch,
            "the certificate carries a dstack attestation, the policy requires another binding",
        ));
    }
    let binding = |e: crate::dstack::binding::BindingError| {
        Refusal::new(RefusalCode::BindingMismatch, e.to_string())
    };
    crate::dstack::binding::check(att, key.spki_der, &report.report_data.0).map_err(binding)?;
    crate::dstack::binding::check_host_data(mr_config.as_bytes(), &report.host_data.0)
        .map_err(binding)?;
    super::validity::check_cert_window(window, max_age, now)
}

/// The key a VCEK/VLEK the evidence carries gives, verified under the chain (and CRL) the
/// source holds for the report's product; `None` when the evidence carries none or no
/// chain is held (the source's own refusal then stands).
fn carried_vek(
    certs: &[std::borrow::Cow<'_, [u8]>],
    report: &Report<'_>,
    judge: &SnpJudge<'_>,
) -> Option<Result<VerifiedVek, Refusal>> {
    let product = report.product().ok().flatten()?;
    let chain = judge.source.chain_for(product, report.signing_key)?;
    let mut vek = None;
    for der in certs {
        match classify(der) {
            Ok(SnpCertKind::Ark(p))
                if judge.trust.ark(p).map(|a| a.der()) != Some(der.as_ref()) =>
            {
                return Some(Err(Refusal::new(
                    RefusalCode::ChainInvalid,
                    format!("the evidence carries an ARK-{p} that is not the pinned one"),
                )));
            }
            Ok(SnpCertKind::Vcek | SnpCertKind::Vlek) => vek = Some(der),
            // The ASK/ASVK and a pinned ARK copy add nothing to the held chain.
            Ok(_) => {}
            Err(e) => return Some(Err(Refusal::new(snp_refusal_code(&e), e.to_string()))),
        }
    }
    Some(
        VerifiedVek::verify(vek?, chain)
            .map_err(|e| Refusal::new(snp_refusal_code(&e), format!("the carried key: {e}"))),
    )
}

/// Judges dstack SEV-SNP evidence `att` in a certificate with `key`, valid `window`
/// (notBefore, notAfter), under `judge` at `now`.
pub fn appraise(
    att: &Attestation<'_>,
    (key, mode): (CertKey<'_>, BindingMode),
    judge: &SnpJudge<'_>,
    (window, max_cert_age_secs): ((i64, i64), Option<u64>),
    now: UnixTime,
) -> SnpAppraisal {
    let Platform::SevSnp {
        report,
        cert_chain,
        mr_config,
    } = &att.platform
    else {
        return SnpAppraisal::refused(Refusal::new(
            RefusalCode::TeeMismatch,
            format!(
                "the entry expects AMD SEV-SNP and the dstack attestation carries {} evidence",
                att.platform.name()
            ),
        ));
    };
    let report = match Report::parse(report) {
        Ok(r) => r,
        Err(e) => {
            return SnpAppraisal::refused(Refusal::new(RefusalCode::QuoteMalformed, e.to_string()))
        }
    };
    if let Err(r) = cheap_checks(
        (att, &report, mr_config),
        judge,
        (key, mode),
        (window, max_cert_age_secs, now),
    ) {
        return SnpAppraisal::refused(r);
    }
    let vek = match judge.source.vek_for(&report) {
        Ok(v) => v,
        Err(e) => match carried_vek(cert_chain, &report, judge) {
            Some(Ok(v)) => Arc::new(v),
            Some(Err(r)) => return SnpAppraisal::refused(r),
            None => return SnpAppraisal::refused(Refusal::new(e.refusal_code(), e.to_string())),
        },
    };
    let verified = match crate::snp::verify::verify(&report, &vek, now) {
        Ok(v) => v,
        Err(e) => return SnpAppraisal::refused(Refusal::new(snp_refusal_code(&e), e.to_string())),
    };
    let (identity, collateral) = (Some(verified.identity.clone()), Some(verified.collateral));
    let outcome = judge.policy.evaluate(verified);
    SnpAppraisal {
        identity,
        collateral,
        outcome,
    }
}
