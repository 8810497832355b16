//! The command line (clap) and the commands' I/O: reading files, the clock, printing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::appraisal::{self, CollateralSource};
use crate::collateral::{Collateral, VerifiedCollateral};
use crate::error::VerifyError;
use crate::ids::{IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::policy::EnclavePolicy;
use crate::ratls::client::{self, ConnectError};
use crate::ratls::{appraise_certificate, BindingMode, RaTlsVerifier, VerdictCache};
use crate::report::Report;
use crate::tcb::TcbStatus;
use crate::trust::TrustAnchor;
use crate::unix_time::UnixTime;

/// Exit code: verified and accepted.
pub const EXIT_ACCEPTED: u8 = 0;
/// Exit code: verified and refused (or unverifiable content).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: could not check (unreadable input, bad arguments).
pub const EXIT_CANNOT_CHECK: u8 = 2;

/// Verify Intel SGX RA-TLS attestation for clients that cannot.
#[derive(Parser, Debug)]
#[command(name = "ratls-proxy", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify one quote against collateral and a policy (exit 0 accepted, 1 refused, 2 could not check).
    Verify(VerifyArgs),
}

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
    /// Collateral JSON bundle.
    #[arg(long, value_name = "FILE.json")]
    pub collateral: Option<PathBuf>,
    /// Trust this root instead of the Intel SGX Root CA (test PKI only).
    #[arg(long, value_name = "FILE.pem")]
    pub trust_root: Option<PathBuf>,
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
        }
    }
}

/// Runs the parsed command line; `Err` means "could not check" (exit 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Verify(args)) => verify(&args),
        None => bail!("no command given; try `ratls-proxy verify --help`"),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.tcb_status.contains(&TcbStatus::Revoked) {
        bail!("--tcb-status Revoked: a revoked TCB is never acceptable");
    }
    let at = args.at.as_deref().map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let anchor = match &args.trust_root {
        Some(path) => TrustAnchor::from_pem(&read(path, "trust root")?)
            .with_context(|| format!("{} is not a usable root certificate", path.display()))?,
        None => TrustAnchor::intel(),
    };
    let Some(collateral_path) = &args.collateral else {
        bail!("--collateral FILE.json is required (fetching from Intel PCS is not built yet)");
    };
    let collateral_bytes = read(collateral_path, "collateral")?;
    // Well-formed JSON with bad content is a refusal (the collateral is unusable), not a usage error.
    let source: Arc<dyn CollateralSource + Send + Sync> =
        match Collateral::from_json(&collateral_bytes) {
            Ok(c) => match VerifiedCollateral::verify(&c, &anchor) {
                Ok(v) => Arc::new(Arc::new(v)),
                Err(e) => Arc::new(e),
            },
            Err(e) => Arc::new(VerifyError::from(e)),
        };
    let policy = args.policy();

    let report = if let Some(url) = &args.url {
        let (addr, host) = https_target(url)?;
        let verifier = Arc::new(RaTlsVerifier::new(
            policy,
            args.binding,
            anchor.sha256(),
            source,
            Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60))),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let connected = runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client::connect(&addr, &host, verifier, &[b"h2", b"http/1.1"], at),
            )
            .await
        });
        match connected {
            Err(_) => bail!("timed out connecting to {addr}"),
            Ok(Ok(attested)) => attested.verdict.appraisal.report(),
            Ok(Err(ConnectError::Refused(refused))) => refused.0.report(),
            Ok(Err(other)) => return Err(other.into()),
        }
    } else if let Some(path) = &args.cert {
        let pem = read(path, "certificate")?;
        let leaf = crate::pki::pem_chain(&pem, "certificate PEM")
            .map_err(anyhow::Error::from)
            .and_then(|chain| chain.into_iter().next().context("no certificate"))
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        appraise_certificate(&leaf, source.as_ref(), &policy, args.binding, now).report()
    } else if let Some(path) = &args.quote {
        let quote = read(path, "quote")?;
        Report::new(
            &appraisal::appraise(&quote, source.as_ref(), &policy, now),
            None,
            None,
        )
    } else {
        bail!("give a URL, --cert or --quote");
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(if report.code.is_none() {
        EXIT_ACCEPTED
    } else {
        EXIT_REFUSED
    }))
}

/// `https://host[:port]` → (`host:port` to dial, host name for SNI).
fn https_target(url: &str) -> anyhow::Result<(String, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        bail!("`{url}`: only https:// URLs can be verified");
    }
    let host = uri.host().with_context(|| format!("`{url}` has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((format!("{host}:{port}"), bare))
}
