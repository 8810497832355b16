//! `ratls-proxy verify --cert FILE` and `verify URL --tee snp` for AMD SEV-SNP: the RA-TLS
//! certificate judged exactly as the proxy judges it for a `tee = "snp"` entry
//! (`ratls::appraise_certificate_for`: dstack's binding of REPORT_DATA and HOST_DATA to the
//! certificate key, DEBUG, the certificate's window, the VCEK, the report signature, the
//! policy), with the collateral `--collateral` names. A KDS miss is fetched once and judged
//! again, as the proxy does on a handshake's miss.

use std::process::ExitCode;
use std::sync::Arc;

use super::input::{judged_live, verifier_beside_intel, CertInput};
use super::verify_snp::{self, Outcome, SnpOptions, SnpQuoteJson};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::RefusalCode;
use crate::dcap::time::UnixTime;
use crate::ratls::certificate::{appraise_certificate_for, CertAppraisal};
use crate::ratls::snp::SnpJudge;
use crate::ratls::verifier::SnpVerifier;
use crate::ratls::BindingMode;
use crate::snp::SnpTrust;
use crate::source::kds::KdsCache;
use crate::source::CollateralSetup;

/// Whether the leaf `der` carries dstack's `.1.8` attestation of an SEV-SNP platform, so
/// that `verify --cert` judges it as an SEV-SNP certificate without `--tee snp`.
pub(super) fn carries_snp(der: &[u8]) -> bool {
    super::input::dstack_platform(der, |p| {
        matches!(p, crate::dstack::Platform::SevSnp { .. }).then_some(())
    })
    .is_some()
}

/// Judges the SEV-SNP certificate `input` under `args` and prints the verdict; the exit code
/// as for every `verify`.
pub(super) fn run(
    args: &SnpOptions<'_>,
    input: CertInput<'_>,
    trust: &SnpTrust,
    mode: BindingMode,
) -> anyhow::Result<ExitCode> {
    let at = args.at.map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let source = match verify_snp::source(args, trust)? {
        Ok(s) => s,
        Err((code, reason)) => {
            return verify_snp::print(args, Outcome::refused(code, reason), None, now)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut judged = judge(&input, args, (&source, trust), mode, (now, at), &runtime)?;
    // A KDS learns which chip and TCB the report needs from the first judgement.
    if judged.refusal().map(|r| r.code) == Some(RefusalCode::CollateralUnavailable) {
        if let Some(kds) = source.kds() {
            let fetched = runtime.block_on(async {
                tokio::time::timeout(verify_snp::KDS_WAIT, kds.fetch_missing())
                    .await
                    .unwrap_or(0)
            });
            if fetched > 0 {
                judged = judge(&input, args, (&source, trust), mode, (now, at), &runtime)?;
            }
        }
    }
    verify_snp::print(args, outcome(&judged), Some(judged.cert_sha256), now)
}

/// One judgement of the certificate, as the proxy would make it.
fn judge(
    input: &CertInput<'_>,
    args: &SnpOptions<'_>,
    (source, trust): (&verify_snp::SnpSource, &SnpTrust),
    mode: BindingMode,
    (now, at): (UnixTime, Option<UnixTime>),
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<CertAppraisal> {
    // The entry is `tee = "snp"`: its Intel policy and collateral are never consulted (an
    // Intel quote is a `tee_mismatch`).
    let intel = EnclavePolicy {
        max_cert_age_secs: args.max_cert_age_secs,
        ..EnclavePolicy::default()
    };
    match input {
        CertInput::Der(der) => {
            let judge = SnpJudge {
                policy: &args.policy,
                source: source.as_source(),
                trust,
            };
            Ok(appraise_certificate_for(
                der,
                &CollateralSetup::Unconfigured,
                (&intel, Some(&judge)),
                mode,
                now,
            ))
        }
        CertInput::Url { addr, host } => {
            let verifier = verifier_beside_intel(intel, mode).with_snp(Some(SnpVerifier {
                policy: args.policy.clone(),
                source: source.shared(),
                trust: Arc::new(trust.clone()),
            }));
            judged_live((addr, host), Arc::new(verifier), at, runtime)
        }
    }
}

/// The report of a certificate appraisal: the SEV-SNP fields once the report verified.
fn outcome(c: &CertAppraisal) -> Outcome {
    let refusal = c.refusal();
    Outcome {
        code: refusal.map(|r| r.code.as_str()),
        reasons: refusal.map(|r| r.reasons.clone()).unwrap_or_default(),
        quote: c
            .snp
            .as_ref()
            .and_then(|s| s.identity.as_ref())
            .map(SnpQuoteJson::of),
        binding: c.binding.map(|b| b.as_str()),
    }
}

impl verify_snp::SnpSource {
    /// The KDS cache behind this source, if it is one (its misses can be fetched).
    fn kds(&self) -> Option<&Arc<KdsCache>> {
        match self {
            Self::Kds(k) => Some(k),
            Self::Files(_) => None,
        }
    }
}
