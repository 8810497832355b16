//! `ratls-proxy verify --cert FILE` and `verify URL --tee snp` for AMD SEV-SNP: the RA-TLS
//! certificate judged exactly as the proxy judges it for a `tee = "snp"` entry
//! (`ratls::appraise_certificate_for`: dstack's binding of REPORT_DATA and HOST_DATA to the
//! certificate key, DEBUG, the certificate's window, the VCEK, the report signature, the
//! policy), with the collateral `--collateral` names. A KDS miss is fetched once and judged
//! again, as the proxy does on a handshake's miss.

use std::process::ExitCode;
use std::sync::Arc;

use super::verify_snp::{self, Outcome, SnpOptions, SnpQuoteJson};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::RefusalCode;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::ratls::certificate::{appraise_certificate_for, CertAppraisal};
use crate::ratls::client::{self, ConnectError};
use crate::ratls::snp::SnpJudge;
use crate::ratls::verifier::SnpVerifier;
use crate::ratls::{BindingMode, RaTlsVerifier, VerdictCache};
use crate::snp::SnpTrust;
use crate::source::kds::KdsCache;
use crate::source::CollateralSetup;

/// The longest `verify` waits for a TLS handshake.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the certificate comes from.
pub(super) enum CertInput<'a> {
    /// A leaf certificate's DER, read from `--cert`.
    Der(&'a [u8]),
    /// `host:port` and the SNI name of a live service (`verify URL`).
    Url {
        /// `host:port` to dial.
        addr: &'a str,
        /// The name presented as SNI.
        host: &'a str,
    },
}

/// Whether the leaf `der` carries dstack's `.1.8` attestation of an SEV-SNP platform, so
/// that `verify --cert` judges it as an SEV-SNP certificate without `--tee snp`.
pub(super) fn carries_snp(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let Ok(oid) = x509_parser::der_parser::oid::Oid::from(crate::dstack::OID_ATTESTATION) else {
        return false;
    };
    let Ok(Some(ext)) = cert.get_extension_unique(&oid) else {
        return false;
    };
    crate::dstack::extension_value(ext.value)
        .and_then(crate::dstack::Attestation::parse)
        .is_ok_and(|a| matches!(a.platform, crate::dstack::Platform::SevSnp { .. }))
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
            let verifier = RaTlsVerifier::new(
                intel,
                mode,
                CertSha256([0; 32]),
                Arc::new(CollateralSetup::Unconfigured),
                Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60))),
            )
            .with_snp(Some(SnpVerifier {
                policy: args.policy.clone(),
                source: source.shared(),
                trust: Arc::new(trust.clone()),
            }));
            let connected = runtime.block_on(async {
                tokio::time::timeout(
                    CONNECT_WAIT,
                    client::connect(addr, host, Arc::new(verifier), &[b"h2", b"http/1.1"], at),
                )
                .await
            });
            match connected {
                Err(_) => anyhow::bail!("timed out connecting to {addr}"),
                Ok(Ok(attested)) => Ok(attested.verdict.accepted.appraisal().clone()),
                Ok(Err(ConnectError::Refused(refused))) => Ok(*refused.appraisal),
                Ok(Err(other)) => Err(other.into()),
            }
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
