//! `ratls-proxy verify`: the one-shot check of a URL, a certificate or a quote
//! (exit 0 accepted, 1 refused, 2 could not check).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::report::Report;
use super::{input, verify_nitro_cert, verify_snp, verify_snp_cert};
use crate::snp::ids::{AuthorKeyDigest, FamilyId, HostData, IdKeyDigest, ImageId, Measurement};

/// The longest `verify` waits for collateral from PCS or a PCCS.
const COLLATERAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
use super::verify_dstack::{dstack_attestation, dstack_report, recognise, Recognised};
use super::verify_nitro;
use crate::appraise::app_identity::{AppIdentityPolicy, KeyProviderPin, OS_RULE};
use crate::appraise::early::EarlyMode;
use crate::appraise::nitro_policy::{NitroPolicy, PcrValue};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::RefusalCode;
use crate::appraise::snp_policy::SnpPolicy;
use crate::appraise::td_policy::TdPolicy;
use crate::appraise::{self, CollateralSource};
use crate::dcap::collateral::early::{BundleFile, Update};
use crate::dcap::error::VerifyError;
use crate::dcap::ids::{
    IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam, MrSigner, MrTd, Rtmr,
    TeeTcbSvn, Xfam,
};
use crate::dcap::quote::TeeType;
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::VerifiedCollateral;
use crate::dstack::Platform;
use crate::nitro::NitroRoot;
use crate::ratls::{appraise_certificate, BindingMode, RaTlsVerifier, VerdictCache};
use crate::source::fetch::RefreshPolicy;
use crate::source::{fetching, from_files, CollateralSetup, CollateralSpec};

/// `ratls-proxy verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// An RA-TLS server to connect to and verify: https://host[:port] (port 443 by default).
    #[arg(value_name = "URL", required_unless_present_any = ["cert", "quote"], conflicts_with_all = ["cert", "quote"])]
    pub url: Option<String>,
    /// An RA-TLS certificate (PEM; the first certificate is the leaf).
    #[arg(long, value_name = "FILE.pem", conflicts_with = "quote")]
    pub cert: Option<PathBuf>,
    /// A raw DCAP quote file.
    #[arg(long, value_name = "FILE.bin")]
    pub quote: Option<PathBuf>,
    /// How REPORTDATA must bind the certificate key: auto, cosmian or gramine.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub binding: BindingMode,
    /// Allowed MRENCLAVE (repeatable; any if none given).
    #[arg(long = "mrenclave", value_name = "HEX")]
    pub mrenclave: Vec<MrEnclave>,
    /// Allowed MRSIGNER (repeatable; any if none given).
    #[arg(long = "mrsigner", value_name = "HEX")]
    pub mrsigner: Vec<MrSigner>,
    /// Required ISVPRODID.
    #[arg(long, value_name = "N")]
    pub isv_prod_id: Option<u16>,
    /// Minimum ISVSVN.
    #[arg(long, value_name = "N")]
    pub min_isv_svn: Option<u16>,
    /// Accept DEBUG enclaves (insecure: the host can read their memory).
    #[arg(long)]
    pub allow_debug: bool,
    /// Accepted TCB status (repeatable; default UpToDate only).
    #[arg(long = "tcb-status", value_name = "STATUS")]
    pub tcb_status: Vec<TcbStatus>,
    /// Allowed advisory ID (repeatable; if any given, every advisory must be listed).
    #[arg(long = "allow-advisory", value_name = "ID")]
    pub allow_advisory: Vec<String>,
    /// Collateral: `pcs` (Intel PCS v4, the default), a PCCS base URL, a JSON bundle or a
    /// directory of them.
    #[arg(long, value_name = "FILE.json|DIR|pcs|URL")]
    pub collateral: Option<String>,
    /// A PEM CA for the PCCS's TLS (instead of the WebPKI roots).
    #[arg(long, value_name = "FILE.pem")]
    pub pccs_ca: Option<PathBuf>,
    /// Intel PCS subscription key (also read from RATLS_PCS_API_KEY).
    #[arg(
        long,
        value_name = "KEY",
        env = "RATLS_PCS_API_KEY",
        hide_env_values = true
    )]
    pub pcs_api_key: Option<String>,
    /// Trust this root instead of the Intel SGX Root CA (test PKI only).
    #[arg(long, value_name = "FILE.pem")]
    pub trust_root: Option<PathBuf>,
    /// The TEE the quote must be: sgx, tdx, snp or nitro (default: whichever the evidence
    /// and the policy flags imply).
    #[arg(long, value_name = "sgx|tdx|snp|nitro", value_parser = ["sgx", "tdx", "snp", "nitro"])]
    pub tee: Option<String>,
    /// Allowed PCR0, the enclave image (repeatable; AWS Nitro; any if none given).
    #[arg(long = "pcr0", value_name = "HEX")]
    pub pcr0: Vec<PcrValue>,
    /// Allowed PCR1, the kernel and bootstrap (repeatable; AWS Nitro).
    #[arg(long = "pcr1", value_name = "HEX")]
    pub pcr1: Vec<PcrValue>,
    /// Allowed PCR2, the application (repeatable; AWS Nitro).
    #[arg(long = "pcr2", value_name = "HEX")]
    pub pcr2: Vec<PcrValue>,
    /// Allowed PCR3, the parent instance's IAM role (repeatable; AWS Nitro).
    #[arg(long = "pcr3", value_name = "HEX")]
    pub pcr3: Vec<PcrValue>,
    /// Allowed PCR4, the parent instance's ID (repeatable; AWS Nitro).
    #[arg(long = "pcr4", value_name = "HEX")]
    pub pcr4: Vec<PcrValue>,
    /// Allowed PCR8, the enclave image's signing certificate (repeatable; AWS Nitro).
    #[arg(long = "pcr8", value_name = "HEX")]
    pub pcr8: Vec<PcrValue>,
    /// Allowed dstack app id, 40 hex digits (repeatable; needs --mrtd and --rtmr0..2).
    #[arg(long = "app-id", value_name = "HEX", value_parser = hex_of_len::<20>)]
    pub app_id: Vec<Vec<u8>>,
    /// Allowed dstack compose hash, 64 hex digits (repeatable; needs --mrtd and --rtmr0..2).
    #[arg(long = "compose-hash", value_name = "HEX", value_parser = hex_of_len::<32>)]
    pub compose_hash: Vec<Vec<u8>>,
    /// Allowed measured dstack OS image hash, 64 hex digits (repeatable; needs --mrtd and
    /// --rtmr0..2).
    #[arg(long = "os-image-hash", value_name = "HEX", value_parser = hex_of_len::<32>)]
    pub os_image_hash: Vec<Vec<u8>>,
    /// Allowed dstack instance id, 40 hex digits (repeatable; needs --mrtd and --rtmr0..2).
    #[arg(long = "instance-id", value_name = "HEX", value_parser = hex_of_len::<20>)]
    pub instance_id: Vec<Vec<u8>>,
    /// Allowed dstack key provider, NAME:ID or NAME (repeatable; needs --mrtd and
    /// --rtmr0..2).
    #[arg(long = "key-provider", value_name = "NAME[:ID]")]
    pub key_provider: Vec<KeyProviderPin>,
    /// Allowed MEASUREMENT (repeatable; SEV-SNP).
    #[arg(long = "measurement", value_name = "HEX")]
    pub measurement: Vec<Measurement>,
    /// Allowed HOST_DATA (repeatable; SEV-SNP).
    #[arg(long = "host-data", value_name = "HEX")]
    pub host_data: Vec<HostData>,
    /// Allowed ID_KEY_DIGEST (repeatable; SEV-SNP).
    #[arg(long = "id-key-digest", value_name = "HEX")]
    pub id_key_digest: Vec<IdKeyDigest>,
    /// Allowed AUTHOR_KEY_DIGEST (repeatable; SEV-SNP).
    #[arg(long = "author-key-digest", value_name = "HEX")]
    pub author_key_digest: Vec<AuthorKeyDigest>,
    /// Required FAMILY_ID (SEV-SNP).
    #[arg(long, value_name = "HEX")]
    pub family_id: Option<FamilyId>,
    /// Required IMAGE_ID (SEV-SNP).
    #[arg(long, value_name = "HEX")]
    pub image_id: Option<ImageId>,
    /// Minimum GUEST_SVN (SEV-SNP).
    #[arg(long, value_name = "N")]
    pub min_guest_svn: Option<u32>,
    /// Minimum TCB component, KIND=N with KIND bootloader, tee, snp, microcode or fmc
    /// (repeatable; SEV-SNP: REPORTED_TCB and LAUNCH_TCB).
    #[arg(long = "min-tcb", value_name = "KIND=N")]
    pub min_tcb: Vec<String>,
    /// Highest VMPL accepted (SEV-SNP; default 0).
    #[arg(long, value_name = "N")]
    pub max_vmpl: Option<u8>,
    /// Accept guests tied to a migration agent (SEV-SNP POLICY.MIGRATE_MA).
    #[arg(long)]
    pub allow_migration_agent: bool,
    /// Allowed MRTD (repeatable; TDX).
    #[arg(long = "mrtd", value_name = "HEX")]
    pub mrtd: Vec<MrTd>,
    /// Allowed RTMR0 (repeatable; TDX).
    #[arg(long = "rtmr0", value_name = "HEX")]
    pub rtmr0: Vec<Rtmr>,
    /// Allowed RTMR1 (repeatable; TDX).
    #[arg(long = "rtmr1", value_name = "HEX")]
    pub rtmr1: Vec<Rtmr>,
    /// Allowed RTMR2 (repeatable; TDX).
    #[arg(long = "rtmr2", value_name = "HEX")]
    pub rtmr2: Vec<Rtmr>,
    /// Allowed RTMR3 (repeatable; TDX).
    #[arg(long = "rtmr3", value_name = "HEX")]
    pub rtmr3: Vec<Rtmr>,
    /// Allowed MRCONFIGID (repeatable; TDX).
    #[arg(long = "mrconfigid", value_name = "HEX")]
    pub mrconfigid: Vec<MrConfigId>,
    /// Allowed MROWNER (repeatable; TDX).
    #[arg(long = "mrowner", value_name = "HEX")]
    pub mrowner: Vec<MrOwner>,
    /// Allowed MROWNERCONFIG (repeatable; TDX).
    #[arg(long = "mrownerconfig", value_name = "HEX")]
    pub mrownerconfig: Vec<MrOwnerConfig>,
    /// Allowed MRSEAM (repeatable; TDX).
    #[arg(long = "mrseam", value_name = "HEX")]
    pub mrseam: Vec<MrSeam>,
    /// Component-wise minimum TEE_TCB_SVN (32 hex digits; TDX).
    #[arg(long, value_name = "HEX")]
    pub min_tee_tcb_svn: Option<TeeTcbSvn>,
    /// Allowed XFAM, 16 hex digits as the quote holds it (repeatable; TDX).
    #[arg(long = "xfam", value_name = "HEX")]
    pub xfam: Vec<Xfam>,
    /// Refuse an RA-TLS certificate issued longer ago than this (certificate_too_old).
    #[arg(long, value_name = "SECS")]
    pub max_cert_age_secs: Option<u64>,
    /// Refuse collateral issued longer ago than this (collateral_too_old).
    #[arg(long, value_name = "SECS")]
    pub max_collateral_age_secs: Option<u64>,
    /// Refuse collateral of a lower TCB evaluation data number (collateral_too_old).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub min_tcb_evaluation_data_number: Option<u32>,
    /// Judge the enclave under Intel's early TCB data too (the next TCB recovery): fetched
    /// from PCS or the PCCS, or an early bundle in the --collateral directory. The exit code
    /// is the standard verdict's.
    #[arg(long)]
    pub early: bool,
    /// Like --early, and refuse (exit 1, tcb_at_risk) an enclave the early data refuses (exit
    /// 2 when there is no early data to judge it under).
    #[arg(long)]
    pub fail_at_risk: bool,
    /// Verification time: RFC 3339 or Unix seconds (default: now).
    #[arg(long, value_name = "RFC3339|UNIX")]
    pub at: Option<String>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    /// The policy the flags describe.
    pub fn policy(&self) -> EnclavePolicy {
        let defaults = EnclavePolicy::default();
        EnclavePolicy {
            tee: match self.tee.as_deref() {
                Some("tdx") => Some(TeeType::Tdx),
                Some(_) => Some(TeeType::Sgx),
                None => None,
            },
            td: TdPolicy {
                mrtd: self.mrtd.clone(),
                rtmr: [
                    self.rtmr0.clone(),
                    self.rtmr1.clone(),
                    self.rtmr2.clone(),
                    self.rtmr3.clone(),
                ],
                mrconfigid: self.mrconfigid.clone(),
                mrowner: self.mrowner.clone(),
                mrownerconfig: self.mrownerconfig.clone(),
                mrseam: self.mrseam.clone(),
                min_tee_tcb_svn: self.min_tee_tcb_svn,
                xfam: self.xfam.clone(),
            },
            mrenclave: self.mrenclave.clone(),
            mrsigner: self.mrsigner.clone(),
            isv_prod_id: self.isv_prod_id.map(IsvProdId),
            min_isv_svn: self.min_isv_svn.map(IsvSvn),
            allow_debug: self.allow_debug,
            tcb_statuses: if self.tcb_status.is_empty() {
                defaults.tcb_statuses
            } else {
                self.tcb_status.clone()
            },
            allowed_advisories: self.allow_advisory.clone(),
            max_cert_age_secs: self.max_cert_age_secs,
            max_collateral_age_secs: self.max_collateral_age_secs,
            min_tcb_evaluation_data_number: self.min_tcb_evaluation_data_number,
            early: match (self.early, self.fail_at_risk) {
                (_, true) => EarlyMode::Enforce,
                (true, false) => EarlyMode::Warn,
                (false, false) => EarlyMode::Off,
            },
            app: AppIdentityPolicy {
                app_id: self.app_id.clone(),
                compose_hash: self.compose_hash.clone(),
                os_image_hash: self.os_image_hash.clone(),
                instance_id: self.instance_id.clone(),
                key_provider: self.key_provider.clone(),
            },
        }
    }

    /// The Nitro policy the flags describe (`--max-cert-age-secs` is the document's age,
    /// as `max_cert_age_secs` is for a `tee = "nitro"` entry).
    pub(super) fn nitro_policy(&self) -> NitroPolicy {
        NitroPolicy {
            pcr0: self.pcr0.clone(),
            pcr1: self.pcr1.clone(),
            pcr2: self.pcr2.clone(),
            pcr3: self.pcr3.clone(),
            pcr4: self.pcr4.clone(),
            pcr8: self.pcr8.clone(),
            allow_debug: self.allow_debug,
            max_age_secs: self.max_cert_age_secs,
        }
    }
}

/// `--cert` or a URL judged as an SEV-SNP certificate (by `--tee snp`, or a `--cert` whose
/// dstack attestation is of an SEV-SNP platform); `None` for the Intel path.
fn snp_certificate<'a>(
    args: &'a VerifyArgs,
    tee: Option<&str>,
    options: impl FnOnce() -> anyhow::Result<verify_snp::SnpOptions<'a>>,
) -> anyhow::Result<Option<ExitCode>> {
    let leaf = args.cert.as_deref().map(input::read_leaf).transpose()?;
    // `--tee` insists; without it the certificate's own evidence decides.
    let snp = match tee {
        Some(t) => t == "snp",
        None => leaf.as_deref().is_some_and(verify_snp_cert::carries_snp),
    };
    if !snp {
        return Ok(None);
    }
    let target = args.url.as_deref().map(input::https_target).transpose()?;
    let input = match (&leaf, &target) {
        (Some(der), _) => input::CertInput::Der(der),
        (None, Some((addr, host))) => input::CertInput::Url { addr, host },
        (None, None) => bail!("--tee snp takes a URL, --cert FILE or --quote FILE"),
    };
    let trust = verify_snp::trust(args.trust_root.as_deref())?;
    verify_snp_cert::run(&options()?, input, &trust, args.binding).map(Some)
}

/// Exactly `N` bytes of hex.
fn hex_of_len<const N: usize>(text: &str) -> Result<Vec<u8>, String> {
    match hex::decode(text.trim()) {
        Ok(b) if b.len() == N => Ok(b),
        _ => Err(format!(
            "expected {} hex digits ({N} bytes)",
            N.saturating_mul(2)
        )),
    }
}

/// The refusal for evidence of one TEE under `--tee` naming another.
fn tee_mismatch(found: &str, tee: &str) -> (&'static str, String) {
    ("tee_mismatch", format!("{found} evidence, and --tee {tee}"))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

pub(super) fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.tcb_status.contains(&TcbStatus::Revoked) {
        bail!("--tcb-status Revoked: a revoked TCB is never acceptable");
    }
    let td_only = args.tcb_status.iter().find(|s| !s.is_published());
    if let (Some(status), Some("sgx")) = (td_only, args.tee.as_deref()) {
        bail!("--tcb-status {status}: a TD relaunch status applies to --tee tdx only");
    }
    let policy = args.policy();
    let unpinned: Vec<String> = (policy.app.unpinned_os(&policy.td).into_iter())
        .map(|m| format!("--{}", m.key()))
        .collect();
    if !unpinned.is_empty() {
        bail!("{OS_RULE}: --app-id, --compose-hash, --os-image-hash, --instance-id or --key-provider need {} too (see docs/dstack.md)", unpinned.join(", "));
    }
    // SEV-SNP and Nitro evidence, recognised by content, have paths of their own.
    let tee = args.tee.as_deref();
    let quote_bytes = args
        .quote
        .as_deref()
        .map(|p| read(p, "quote"))
        .transpose()?;
    let recognised = quote_bytes.as_deref().map(recognise);
    let nitro_options = || {
        let (collateral, at) = (args.collateral.as_deref(), args.at.as_deref());
        verify_nitro::options(args.nitro_policy(), collateral, at, args.json)
    };
    let snp_options = || -> anyhow::Result<verify_snp::SnpOptions<'_>> {
        Ok(verify_snp::SnpOptions {
            policy: SnpPolicy {
                measurement: args.measurement.clone(),
                host_data: args.host_data.clone(),
                id_key_digest: args.id_key_digest.clone(),
                author_key_digest: args.author_key_digest.clone(),
                family_id: args.family_id,
                image_id: args.image_id,
                min_guest_svn: args.min_guest_svn,
                min_tcb: verify_snp::min_tcb(&args.min_tcb)?,
                max_vmpl: args.max_vmpl.unwrap_or(0),
                allow_debug: args.allow_debug,
                allow_migration_agent: args.allow_migration_agent,
                ..SnpPolicy::default()
            },
            collateral: args.collateral.as_deref(),
            pccs_ca: args.pccs_ca.as_deref(),
            at: args.at.as_deref(),
            max_cert_age_secs: args.max_cert_age_secs,
            json: args.json,
        })
    };
    if recognised.is_none() {
        let flags = verify_nitro_cert::CertFlags {
            tee,
            cert: args.cert.as_deref(),
            url: args.url.as_deref(),
            collateral: args.collateral.as_deref(),
            trust_root: args.trust_root.as_deref(),
            binding: args.binding,
            max_cert_age_secs: args.max_cert_age_secs,
        };
        let (at, json) = (args.at.as_deref(), args.json);
        if let Some(code) = verify_nitro_cert::dispatch(&flags, args.nitro_policy(), (at, json))? {
            return Ok(code);
        }
    }
    if tee == Some("nitro") && !matches!(recognised, Some(Recognised::Nitro(_))) {
        let evidence = Err((
            "tee_mismatch",
            "not AWS Nitro evidence, and --tee nitro".to_owned(),
        ));
        return verify_nitro::run(&nitro_options()?, evidence, &NitroRoot::aws());
    }
    if let Some(Recognised::Nitro(n)) = recognised {
        let evidence = match tee {
            None | Some("nitro") => Ok(n),
            Some(other) => Err(tee_mismatch("AWS Nitro", other)),
        };
        let root = verify_nitro::root(args.trust_root.as_deref())?;
        return verify_nitro::run(&nitro_options()?, evidence, &root);
    }
    if let Some(recognised) = recognised {
        let evidence = match (recognised, tee) {
            (Recognised::Snp(e), None | Some("snp")) => Some(e),
            (Recognised::Snp(_), Some(other)) => Some(Err(tee_mismatch("SEV-SNP", other))),
            (_, Some("snp")) => Some(Err((
                "tee_mismatch",
                "not SEV-SNP evidence, and --tee snp".to_owned(),
            ))),
            _ => None,
        };
        if let Some(evidence) = evidence {
            let options = snp_options()?;
            let trust = verify_snp::trust(args.trust_root.as_deref())?;
            return verify_snp::run(&options, evidence, &trust);
        }
    } else if let Some(code) = snp_certificate(args, tee, snp_options)? {
        return Ok(code);
    }
    let at = args.at.as_deref().map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let anchor = match &args.trust_root {
        Some(path) => TrustAnchor::from_pem(&read(path, "trust root")?)
            .with_context(|| format!("{} is not a usable root certificate", path.display()))?,
        None => TrustAnchor::intel(),
    };
    // Intel PCS, as the proxy defaults to; checks that need no collateral decide first.
    let spec = args.collateral.as_deref().unwrap_or("pcs");
    // Anything but `pcs`, a URL or a directory is read as one bundle (a pipe or `/dev/stdin`
    // too); reading it reports what is wrong with it.
    let spec =
        CollateralSpec::parse(spec, |s| PathBuf::from(s)).unwrap_or_else(CollateralSpec::File);
    let early = args.early || args.fail_at_risk;
    let setup = match spec {
        CollateralSpec::Pcs => fetching(
            None,
            None,
            args.pcs_api_key.clone(),
            &anchor,
            (RefreshPolicy::default(), early),
        )?,
        CollateralSpec::Url(url) => fetching(
            Some(&url),
            args.pccs_ca.as_deref(),
            args.pcs_api_key.clone(),
            &anchor,
            (RefreshPolicy::default(), early),
        )?,
        CollateralSpec::Dir(dir) => from_files(&dir, &anchor, UnixTime::now())?,
        CollateralSpec::File(file) => {
            // One bundle. Well-formed JSON with bad content is a refusal, not a usage error.
            let bytes = read(&file, "collateral")?;
            let bundle = BundleFile::from_json(&bytes);
            if bundle.as_ref().is_ok_and(|b| b.update == Update::Early) {
                bail!(
                    "{} holds Intel's early TCB data (\"update\": \"early\"): give a directory holding it beside the standard bundle (--collateral DIR --early)",
                    file.display()
                );
            }
            CollateralSetup::Bundle(
                bundle
                    .map_err(VerifyError::from)
                    .and_then(|b| VerifiedCollateral::verify(&b.collateral, &anchor))
                    .map(Arc::new),
            )
        }
    };
    let setup = Arc::new(setup);
    let source: Arc<dyn CollateralSource + Send + Sync> = setup.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache = Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60)));

    let mut attempt = 0;
    let report = loop {
        let report = if let Some(url) = &args.url {
            let (addr, host) = input::https_target(url)?;
            let verifier = Arc::new(RaTlsVerifier::new(
                policy.clone(),
                args.binding,
                anchor.sha256(),
                Arc::clone(&source),
                Arc::clone(&cache),
            ));
            Report::of_certificate(&input::judged_live((&addr, &host), verifier, at, &runtime)?)
        } else if let Some(path) = &args.cert {
            let leaf = input::read_leaf(path)?;
            Report::of_certificate(&appraise_certificate(
                &leaf,
                setup.as_ref(),
                &policy,
                args.binding,
                now,
            ))
        } else if let Some(quote) = &quote_bytes {
            match dstack_attestation(quote) {
                Some(Ok(att)) => match &att.platform {
                    Platform::Tdx(tdx) => dstack_report(&att, tdx, setup.as_ref(), &policy, now),
                    // `recognise` sent every other platform elsewhere.
                    other => bail!("a dstack attestation from a `{}` platform", other.name()),
                },
                _ => Report::new(
                    &appraise::appraise(quote, setup.as_ref(), &policy, now),
                    None,
                    None,
                ),
            }
        } else {
            bail!("give a URL, --cert or --quote");
        };
        // A fetching source learns which platform the quote needs from the first attempt.
        let missing = report.code == Some(RefusalCode::CollateralUnavailable);
        match setup.cache() {
            Some(c)
                if missing
                    && attempt == 0
                    && runtime.block_on(async {
                        // No hanging on a dead network: one bounded try.
                        tokio::time::timeout(COLLATERAL_WAIT, c.fetch_missing())
                            .await
                            .unwrap_or(0)
                    }) > 0 =>
            {
                attempt += 1
            }
            _ => break report,
        }
    };

    super::report::finish(
        &report,
        args.json,
        super::report::Report::to_text,
        report.code.map(RefusalCode::as_str),
    )
}
