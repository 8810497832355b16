//! `ratls-proxy verify --quote FILE` for AMD SEV-SNP evidence: a raw ATTESTATION_REPORT or a
//! dstack attestation carrying one (recognised by content). Collateral from AMD's KDS (the
//! default, or a KDS-compatible `--collateral URL`), a `--collateral DIR`, or the chain a
//! dstack attestation carries; the policy from the flags. Same exit codes and JSON shape as
//! for SGX/TDX (`quote.tee` is `SNP`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::appraise::snp_policy::{snp_error_code, MinTcb, SnpPolicy};
use crate::dcap::ids::ReportData;
use crate::dcap::time::UnixTime;
use crate::dstack::{Attestation, Platform};
use crate::snp::collateral::SnpCollateral;
use crate::snp::ids::{ChipId, HostData, Measurement};
use crate::snp::verify::VerifiedVek;
use crate::snp::{Report, SnpTrust, REPORT_LEN};
use crate::source::fetch::RefreshPolicy;
use crate::source::kds::{KdsCache, KdsEndpoint, KdsError, SnpCollateralSource};
use crate::source::snp_files::SnpFiles;
use crate::source::CollateralSpec;

/// The longest `verify` waits for KDS.
pub(super) const KDS_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// SEV-SNP evidence found in a `--quote` file.
pub(super) enum SnpEvidence<'a> {
    /// A raw ATTESTATION_REPORT.
    Raw(&'a [u8]),
    /// A dstack attestation whose platform is SEV-SNP.
    Dstack(Attestation<'a>),
}

/// The report's VERSION field when `bytes` are a report's size: a DCAP quote's first four
/// bytes (version, key type) never read as 2–5.
fn looks_like_report(bytes: &[u8]) -> bool {
    bytes.len() == REPORT_LEN
        && bytes
            .first_chunk::<4>()
            .is_some_and(|v| (2..=5).contains(&u32::from_le_bytes(*v)))
}

/// Recognises SEV-SNP evidence by content; `None` for anything else (a DCAP quote, or bytes
/// that are neither).
pub(super) fn recognise(bytes: &[u8]) -> Option<Result<SnpEvidence<'_>, String>> {
    if looks_like_report(bytes) {
        return Some(Ok(SnpEvidence::Raw(bytes)));
    }
    // dstack's versioned attestation: SCALE V0 starts with 0x00, V1 with a MessagePack map.
    if matches!(bytes.first(), Some(0x00 | 0x80..=0x8f | 0xde | 0xdf)) {
        // One that does not parse is left to the quote parser, which names it malformed.
        return match Attestation::parse(bytes) {
            Ok(a) if matches!(a.platform, Platform::SevSnp { .. }) => {
                Some(Ok(SnpEvidence::Dstack(a)))
            }
            Ok(a) => Some(Err(format!(
                "a dstack attestation from a `{}` platform: give it through its RA-TLS certificate (--cert or a URL)",
                a.platform.name()
            ))),
            Err(_) => None,
        };
    }
    None
}

/// The JSON report (the fields of SGX/TDX's `verify --json`; `quote` holds SNP's fields).
#[derive(Serialize)]
struct SnpJson {
    verdict: &'static str,
    code: Option<&'static str>,
    reasons: Vec<String>,
    quote: Option<SnpQuoteJson>,
    tcb: Option<()>,
    binding: Option<&'static str>,
    cert_sha256: Option<crate::dcap::ids::CertSha256>,
    verified_at: String,
}

#[derive(Serialize)]
pub(super) struct SnpQuoteJson {
    version: u32,
    tee: &'static str,
    debug: bool,
    report_data: ReportData,
    product: &'static str,
    signing_key: String,
    measurement: Measurement,
    host_data: HostData,
    chip_id: ChipId,
    reported_tcb: String,
    launch_tcb: String,
    guest_policy: String,
    guest_svn: u32,
    vmpl: u32,
    platform_info: String,
    family_id: String,
    image_id: String,
    id_key_digest: String,
    author_key_digest: String,
}

impl SnpQuoteJson {
    /// The fields of a verified report.
    pub(super) fn of(id: &crate::snp::verified::SnpIdentity) -> Self {
        Self {
            version: id.version.number(),
            tee: "SNP",
            debug: id.policy.debug(),
            report_data: id.report_data,
            product: id.product.name(),
            signing_key: format!("{:?}", id.signing_key).to_uppercase(),
            measurement: id.measurement,
            host_data: id.host_data,
            chip_id: id.chip_id,
            reported_tcb: id.tcb.reported.to_string(),
            launch_tcb: id.tcb.launch.to_string(),
            guest_policy: format!("{:#x}", id.policy.0),
            guest_svn: id.guest_svn,
            vmpl: id.vmpl,
            platform_info: format!("{:#x}", id.platform_info.0),
            family_id: id.family_id.to_string(),
            image_id: id.image_id.to_string(),
            id_key_digest: id.id_key_digest.to_string(),
            author_key_digest: id.author_key_digest.to_string(),
        }
    }
}

/// A refusal or acceptance, before printing.
pub(super) struct Outcome {
    /// The refusal code; `None` when accepted.
    pub code: Option<&'static str>,
    /// Why.
    pub reasons: Vec<String>,
    /// The report's fields, once its signature verified.
    pub quote: Option<SnpQuoteJson>,
    /// The binding rule that held.
    pub binding: Option<&'static str>,
}

impl Outcome {
    /// A refusal with one reason.
    pub(super) fn refused(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            reasons: vec![reason.into()],
            quote: None,
            binding: None,
        }
    }
}

/// What `verify` was asked, as far as SEV-SNP evidence needs it.
pub(super) struct SnpOptions<'a> {
    /// The policy the flags describe.
    pub policy: SnpPolicy,
    /// `--collateral`.
    pub collateral: Option<&'a str>,
    /// `--pccs-ca` (for a KDS-compatible cache's TLS).
    pub pccs_ca: Option<&'a std::path::Path>,
    /// `--at`.
    pub at: Option<&'a str>,
    /// `--max-cert-age-secs` (a certificate's age: `--cert` and URLs).
    pub max_cert_age_secs: Option<u64>,
    /// `--json`.
    pub json: bool,
}

/// SEV-SNP collateral as `--collateral` names it: a directory, or a KDS (AMD's by default).
pub(super) enum SnpSource {
    /// A directory of PEM/DER files, verified at load.
    Files(Arc<SnpFiles>),
    /// A KDS or a cache serving its paths; fetched on demand.
    Kds(Arc<KdsCache>),
}

impl SnpSource {
    /// Read as the proxy reads its source (no I/O).
    pub(super) fn as_source(&self) -> &dyn SnpCollateralSource {
        match self {
            Self::Files(f) => f.as_ref(),
            Self::Kds(k) => k.as_ref(),
        }
    }

    /// Shared, for a verifier that outlives this call.
    pub(super) fn shared(&self) -> Arc<dyn SnpCollateralSource + Send + Sync> {
        match self {
            Self::Files(f) => f.clone(),
            Self::Kds(k) => k.clone(),
        }
    }
}

/// The source `--collateral` names, or the refusal its directory earns.
pub(super) fn source(
    args: &SnpOptions<'_>,
    trust: &SnpTrust,
) -> anyhow::Result<Result<SnpSource, (&'static str, String)>> {
    let spec = match args.collateral {
        None | Some("kds") => CollateralSpec::Url(crate::source::kds::AMD_KDS.to_owned()),
        Some(text) => {
            CollateralSpec::parse(text, |s| PathBuf::from(s)).unwrap_or_else(CollateralSpec::File)
        }
    };
    Ok(match spec {
        // A one-shot check of KDS's chain and VCEK saved without the CRL still works; the
        // note says the revocation was not checked. The proxy refuses such a chain.
        CollateralSpec::Dir(dir) => match SnpFiles::load_without_crl(&dir, trust) {
            Ok((files, skipped)) => {
                for s in skipped {
                    tracing::warn!("SEV-SNP collateral skipped: {s}");
                }
                Ok(SnpSource::Files(Arc::new(files)))
            }
            Err(e) => Err(("collateral_unavailable", e)),
        },
        CollateralSpec::Url(url) => {
            let ca = args.pccs_ca.map(std::fs::read).transpose()?;
            let endpoint = KdsEndpoint::at(&url, ca.as_deref())?;
            Ok(SnpSource::Kds(Arc::new(KdsCache::new(
                endpoint,
                trust.clone(),
                RefreshPolicy::default(),
            ))))
        }
        CollateralSpec::Pcs | CollateralSpec::File(_) => bail!(
            "SEV-SNP evidence takes --collateral DIR (PEM/DER files: cert_chain or ask.pem, vcek, crl), a KDS base URL, or `kds` (AMD's KDS, the default)"
        ),
    })
}

/// `--min-tcb KIND=N` flags as a minimum TCB (`None` when none is given).
pub(super) fn min_tcb(specs: &[String]) -> anyhow::Result<Option<MinTcb>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut min = MinTcb::default();
    for spec in specs {
        let (kind, n) = spec
            .split_once('=')
            .context("--min-tcb takes KIND=N (bootloader, tee, snp, microcode, fmc)")?;
        let n: u8 = n
            .parse()
            .with_context(|| format!("--min-tcb {spec}: N is 0 to 255"))?;
        match kind {
            "bootloader" => min.bootloader = n,
            "tee" => min.tee = n,
            "snp" => min.snp = n,
            "microcode" => min.microcode = n,
            "fmc" => min.fmc = Some(n),
            other => bail!("--min-tcb {other}: one of bootloader, tee, snp, microcode, fmc"),
        }
    }
    Ok(Some(min))
}

/// The key for `report` from where `--collateral` says (or the dstack attestation's own
/// chain when it carries one and no `--collateral` is given).
fn vek_for(
    args: &SnpOptions<'_>,
    report: &Report<'_>,
    carried: Option<SnpCollateral>,
    trust: &SnpTrust,
    now: UnixTime,
) -> anyhow::Result<Result<Arc<VerifiedVek>, (&'static str, String)>> {
    let unavailable = |e: KdsError| (e.code(), e.to_string());
    if let (None, Some(c)) = (args.collateral, carried) {
        return Ok(c.verify(report, trust).map(Arc::new).map_err(|e| {
            (
                snp_error_code(&e),
                format!("the chain the attestation carries: {e}"),
            )
        }));
    }
    match source(args, trust)? {
        Err(refused) => Ok(Err(refused)),
        Ok(SnpSource::Files(files)) => Ok(files.vek_for(report).map_err(unavailable)),
        Ok(SnpSource::Kds(cache)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let fetched = runtime.block_on(async {
                tokio::time::timeout(KDS_WAIT, cache.fetch_for(report, now)).await
            });
            Ok(match fetched {
                Ok(r) => r.map_err(unavailable),
                Err(_) => Err((
                    "collateral_unavailable",
                    format!(
                        "KDS at {}: no answer within {}s",
                        args.collateral.unwrap_or(crate::source::kds::AMD_KDS),
                        KDS_WAIT.as_secs()
                    ),
                )),
            })
        }
    }
}

/// The chain a dstack attestation carries (DER certificates: ASK, then VCEK, in any order;
/// an ARK copy is compared to the pin), or `None` when it carries none.
fn carried_chain(certs: &[std::borrow::Cow<'_, [u8]>]) -> Option<Result<SnpCollateral, String>> {
    use crate::snp::collateral::{classify, SnpCertKind};
    if certs.is_empty() {
        return None;
    }
    let (mut intermediate, mut ark, mut vek) = (None, None, None);
    for der in certs {
        // Carriers hold DER or PEM; dstack's carries PEM text.
        let ders = if der.starts_with(b"-----BEGIN") {
            match crate::dcap::pki::pem_chain(der, "carried certificate") {
                Ok(d) => d,
                Err(e) => return Some(Err(e.to_string())),
            }
        } else {
            vec![der.to_vec()]
        };
        for der in ders {
            match classify(&der) {
                Ok(SnpCertKind::Ask(_) | SnpCertKind::Asvk(_)) => intermediate = Some(der),
                Ok(SnpCertKind::Ark(_)) => ark = Some(der),
                Ok(SnpCertKind::Vcek | SnpCertKind::Vlek) => vek = Some(der),
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
    Some(match (intermediate, vek) {
        (Some(intermediate), Some(vek)) => Ok(SnpCollateral {
            intermediate,
            ark_copy: ark,
            vek,
            crl: None,
        }),
        _ => Err("the carried chain lacks the ASK/ASVK or the VCEK/VLEK".into()),
    })
}

fn judge(
    args: &SnpOptions<'_>,
    evidence: SnpEvidence<'_>,
    trust: &SnpTrust,
    now: UnixTime,
) -> anyhow::Result<Outcome> {
    let policy = &args.policy;
    let (bytes, dstack) = match &evidence {
        SnpEvidence::Raw(b) => (*b, None),
        SnpEvidence::Dstack(a) => match &a.platform {
            Platform::SevSnp {
                report,
                cert_chain,
                mr_config,
            } => (report.as_ref(), Some((a, cert_chain, mr_config))),
            _ => bail!("not SEV-SNP"),
        },
    };
    let report = match Report::parse(bytes) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::refused("quote_malformed", e.to_string())),
    };
    if let Err(v) = policy.check_early(&report) {
        return Ok(Outcome::refused(v.refusal_code(), v.to_string()));
    }
    let carried = match dstack.map(|(_, chain, _)| carried_chain(chain)) {
        Some(Some(Err(e))) => return Ok(Outcome::refused("chain_invalid", e)),
        Some(Some(Ok(c))) => Some(c),
        _ => None,
    };
    let vek = match vek_for(args, &report, carried, trust, now)? {
        Ok(v) => v,
        Err((code, reason)) => return Ok(Outcome::refused(code, reason)),
    };
    let verified = match crate::snp::verify::verify(&report, &vek, now) {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::refused(snp_error_code(&e), e.to_string())),
    };
    let id = &verified.identity;
    let mut out = Outcome {
        code: None,
        reasons: Vec::new(),
        quote: Some(SnpQuoteJson::of(id)),
        binding: None,
    };
    // dstack's binding: REPORT_DATA is the attestation's report data, HOST_DATA the hash of
    // the mr_config document it carries (dstack's MrConfigV3: SHA-256 of a domain tag, a
    // zero byte and the document's exact bytes).
    if let Some((a, _, mr_config)) = dstack {
        out.binding = Some("dstack");
        let config_hash = crate::dstack::binding::mr_config_host_data(mr_config.as_bytes());
        if id.report_data.0 != a.stack.report_data {
            out.code = Some("binding_mismatch");
            out.reasons
                .push("REPORT_DATA is not the dstack attestation's report data".into());
            return Ok(out);
        }
        if id.host_data.0 != config_hash {
            out.code = Some("binding_mismatch");
            out.reasons.push(format!(
                "HOST_DATA {} is not the hash of the carried mr_config ({})",
                id.host_data,
                hex::encode(config_hash)
            ));
            return Ok(out);
        }
    }
    let violations = policy.violations(id);
    if let Some(first) = violations.first() {
        out.code = Some(first.refusal_code());
        out.reasons = violations.iter().map(ToString::to_string).collect();
    }
    Ok(out)
}

/// Verifies SEV-SNP evidence and prints the verdict; the exit code as for SGX/TDX.
pub(super) fn run(
    args: &SnpOptions<'_>,
    evidence: Result<SnpEvidence<'_>, (&'static str, String)>,
    trust: &SnpTrust,
) -> anyhow::Result<ExitCode> {
    let at = args.at.map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let out = match evidence {
        Ok(e) => judge(args, e, trust, now)?,
        Err((code, e)) => Outcome::refused(code, e),
    };
    print(args, out, None, now)
}

/// AMD's pinned ARKs, or the ARKs (PEM, each named `ARK-<Product>`) in `--trust-root`.
pub(super) fn trust(root: Option<&std::path::Path>) -> anyhow::Result<SnpTrust> {
    use crate::snp::collateral::{classify, SnpCertKind};
    let Some(path) = root else {
        return Ok(SnpTrust::amd());
    };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read trust root {}", path.display()))?;
    let mut arks = Vec::new();
    for der in crate::dcap::pki::pem_chain(&pem, "trust root PEM")? {
        let Ok(SnpCertKind::Ark(product)) = classify(&der) else {
            bail!("{}: a certificate that is no ARK-<Product>", path.display());
        };
        arks.push(crate::snp::Ark::from_der(product, der)?);
    }
    Ok(SnpTrust::with_arks(arks))
}

/// Prints `out` as text or JSON; the exit code as for SGX/TDX.
pub(super) fn print(
    args: &SnpOptions<'_>,
    out: Outcome,
    cert_sha256: Option<crate::dcap::ids::CertSha256>,
    now: UnixTime,
) -> anyhow::Result<ExitCode> {
    let json = SnpJson {
        verdict: super::report::verdict_word(out.code),
        code: out.code,
        reasons: out.reasons,
        quote: out.quote,
        tcb: None,
        binding: out.binding,
        cert_sha256,
        verified_at: now.to_rfc3339(),
    };
    super::report::finish(&json, args.json, text, json.code)
}

fn text(j: &SnpJson) -> String {
    let mut out = super::report::verdict_head(j.code, &j.reasons);
    if let Some(q) = &j.quote {
        let parsed = super::report::parsed_note(j.code.is_some());
        out.push_str(&format!(
            "  quote        SNP v{} {}{parsed}\n",
            q.version, q.product
        ));
        out.push_str(&format!("  measurement  {}\n", q.measurement));
        out.push_str(&format!("  host_data    {}\n", q.host_data));
        out.push_str(&format!("  chip_id      {}\n", q.chip_id));
        out.push_str(&format!("  reported tcb {}\n", q.reported_tcb));
        out.push_str(&format!(
            "  policy       {} (debug {})\n",
            q.guest_policy, q.debug
        ));
        out.push_str(&format!("  vmpl         {}\n", q.vmpl));
    }
    if let Some(b) = j.binding {
        out.push_str(&format!("  binding      {b}\n"));
    }
    if let Some(c) = &j.cert_sha256 {
        out.push_str(&format!("  cert sha256  {c}\n"));
    }
    out.push_str(&format!("  verified at  {}\n", j.verified_at));
    out
}
