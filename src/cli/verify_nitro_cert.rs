//! `ratls-proxy verify --cert FILE` and `verify URL --tee nitro` for AWS Nitro: the RA-TLS
//! certificate judged exactly as the proxy judges it for a `tee = "nitro"` entry
//! (`ratls::appraise_certificate_judged`: the carrier's binding (dstack's `.1.8` or
//! Evervault's subjectAltName), debug, the certificate's window,
//! the document's age, chain and COSE signature, the PCR policy, revocation as the proxy's
//! default requires it), with AWS's CRLs from the URLs the verified chain names, a mirror
//! (`--collateral URL`) or a directory. A CRL miss is fetched once and judged again, as the
//! proxy does on a handshake's miss.

use std::process::ExitCode;
use std::sync::Arc;

use super::input::{judged_live, verifier_beside_intel, CertInput};
use crate::appraise::nitro_policy::{NitroPolicy, PcrValue};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::RefusalCode;
use crate::dcap::time::UnixTime;
use crate::dstack::Platform;
use crate::nitro::revocation::Revocation;
use crate::nitro::NitroRoot;
use crate::ratls::certificate::{appraise_certificate_judged, CertAppraisal, EntryJudges};
use crate::ratls::nitro::NitroJudge;
use crate::ratls::verifier::NitroVerifier;
use crate::ratls::BindingMode;
use crate::source::fetch::RefreshPolicy;
use crate::source::nitro::{NitroCrlCache, NitroCrlSpec};
use crate::source::CollateralSetup;

/// The longest `verify` waits for the CRLs a judgement found missing.
const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The NSM document carried by the leaf `der` (Evervault's subjectAltName, or dstack's `.1.8`
/// of a Nitro enclave), unverified: `None` when it carries none.
pub(super) fn document_in(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = crate::ratls::evervault::find(&cert) {
        return Some(san.decode());
    }
    super::input::dstack_platform(der, |p| match p {
        Platform::NitroEnclave { nsm_quote } => Some(nsm_quote.into_owned()),
        _ => None,
    })
}

/// Judges the Nitro certificate `input` under `policy` and prints the verdict; the exit code
/// as for every `verify`. With no `--pcr0` any image is read (as `verify` reads any MRENCLAVE
/// without `--mrenclave`): the document's own PCR0 is allowed, everything else still judged.
pub(super) fn run(
    options: &super::verify_nitro::NitroOptions<'_>,
    (input, crls, root): (CertInput<'_>, NitroCrlSpec, NitroRoot),
    (mode, max_cert_age_secs): (BindingMode, Option<u64>),
) -> anyhow::Result<ExitCode> {
    let at = options.at.map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let cache = Arc::new(NitroCrlCache::new(
        root,
        &crls,
        Revocation::Required,
        RefreshPolicy::default(),
    )?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let judge_once = |pcr0: Option<PcrValue>| {
        let mut policy = options.policy.clone();
        if policy.pcr0.is_empty() {
            policy.pcr0.extend(pcr0);
        }
        judge(
            &input,
            (&policy, &cache),
            (mode, max_cert_age_secs),
            (now, at),
            &runtime,
        )
    };
    // A URL's document is known only after one handshake: the first judgement reads it.
    let mut judged = judge_once(None)?;
    let pcr0 = document_pcr0(&judged);
    if options.policy.pcr0.is_empty() && pcr0.is_some() {
        judged = judge_once(pcr0.clone())?;
    }
    if judged.refusal().map(|r| r.code) == Some(RefusalCode::CollateralUnavailable) {
        let fetched = runtime.block_on(async {
            tokio::time::timeout(WAIT, cache.fetch_missing(UnixTime::now()))
                .await
                .unwrap_or(0)
        });
        if fetched > 0 {
            judged = judge_once(pcr0)?;
        }
    }
    super::verify_nitro::print_certificate(options, &judged, now)
}

/// PCR0 of the document the appraisal read, once verified.
fn document_pcr0(c: &CertAppraisal) -> Option<PcrValue> {
    let identity = c.nitro.as_ref()?.identity.as_ref()?;
    let (_, hex) = identity.pcrs.iter().find(|(i, _)| *i == 0)?;
    hex.parse().ok()
}

/// One judgement of the certificate, as the proxy would make it.
fn judge(
    input: &CertInput<'_>,
    (policy, cache): (&NitroPolicy, &Arc<NitroCrlCache>),
    (mode, max_cert_age_secs): (BindingMode, Option<u64>),
    (now, at): (UnixTime, Option<UnixTime>),
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<CertAppraisal> {
    // The entry is `tee = "nitro"`: its Intel policy and collateral are never consulted.
    let intel = EnclavePolicy {
        max_cert_age_secs,
        ..EnclavePolicy::default()
    };
    match input {
        CertInput::Der(der) => {
            let judge = NitroJudge {
                policy,
                collateral: cache.as_ref(),
            };
            Ok(appraise_certificate_judged(
                der,
                &CollateralSetup::Unconfigured,
                EntryJudges {
                    policy: &intel,
                    snp: None,
                    nitro: Some(&judge),
                },
                mode,
                now,
            ))
        }
        CertInput::Url { addr, host } => {
            let verifier = verifier_beside_intel(intel, mode).with_nitro(Some(NitroVerifier {
                policy: policy.clone(),
                collateral: cache.clone(),
            }));
            judged_live((addr, host), Arc::new(verifier), at, runtime)
        }
    }
}

/// The flags a certificate check reads (taken as values: this module never sees `VerifyArgs`).
pub(super) struct CertFlags<'a> {
    /// `--tee`.
    pub tee: Option<&'a str>,
    /// `--cert`.
    pub cert: Option<&'a std::path::Path>,
    /// The URL.
    pub url: Option<&'a str>,
    /// `--collateral`: a CRL mirror URL or a directory.
    pub collateral: Option<&'a str>,
    /// `--trust-root`: the Nitro root (test PKIs).
    pub trust_root: Option<&'a std::path::Path>,
    /// `--binding`.
    pub binding: BindingMode,
    /// `--max-cert-age-secs`.
    pub max_cert_age_secs: Option<u64>,
}

/// `--cert` or a URL judged as a Nitro certificate (by `--tee nitro`, or a `--cert` whose
/// dstack attestation is of a Nitro enclave or that carries Evervault's document); `None`
/// for the other paths.
pub(super) fn dispatch(
    flags: &CertFlags<'_>,
    policy: NitroPolicy,
    (at, json): (Option<&str>, bool),
) -> anyhow::Result<Option<ExitCode>> {
    let leaf = flags.cert.map(super::input::read_leaf).transpose()?;
    let nitro = match flags.tee {
        Some(t) => t == "nitro",
        None => leaf.as_deref().and_then(document_in).is_some(),
    };
    if !nitro {
        return Ok(None);
    }
    let target = flags.url.map(super::input::https_target).transpose()?;
    let input = match (&leaf, &target) {
        (Some(der), _) => CertInput::Der(der),
        (None, Some((addr, host))) => CertInput::Url { addr, host },
        (None, None) => anyhow::bail!("--tee nitro takes a URL, --cert FILE or --quote FILE"),
    };
    let crls = match flags.collateral {
        None | Some("aws") => NitroCrlSpec::Aws,
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            NitroCrlSpec::Mirror(url.to_owned())
        }
        Some(dir) if std::path::Path::new(dir).is_dir() => NitroCrlSpec::Dir(dir.into()),
        Some(other) => anyhow::bail!(
            "AWS Nitro certificates take --collateral aws (the default), a CRL mirror URL or a directory of CRLs; `{other}` is none"
        ),
    };
    let root = super::verify_nitro::root(flags.trust_root)?;
    let options = super::verify_nitro::options(policy, None, at, json)?;
    run(
        &options,
        (input, crls, root),
        (flags.binding, flags.max_cert_age_secs),
    )
    .map(Some)
}
