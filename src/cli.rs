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
    /// A raw DCAP quote file.
    #[arg(long, value_name = "FILE.bin")]
    pub quote: PathBuf,
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
    let now = match &args.at {
        Some(t) => UnixTime::parse(t)?,
        None => wall_clock(),
    };
    let anchor = match &args.trust_root {
        Some(path) => TrustAnchor::from_pem(&read(path, "trust root")?)
            .with_context(|| format!("{} is not a usable root certificate", path.display()))?,
        None => TrustAnchor::intel(),
    };
    let Some(collateral_path) = &args.collateral else {
        bail!("--collateral FILE.json is required (fetching from Intel PCS is not built yet)");
    };
    let collateral_bytes = read(collateral_path, "collateral")?;
    let quote = read(&args.quote, "quote")?;

    // Well-formed JSON with bad content is a refusal (the collateral is unusable), not a usage error.
    let source: Box<dyn CollateralSource> = match Collateral::from_json(&collateral_bytes) {
        Ok(c) => match VerifiedCollateral::verify(&c, &anchor) {
            Ok(v) => Box::new(Arc::new(v)),
            Err(e) => Box::new(e),
        },
        Err(e) => Box::new(VerifyError::from(e)),
    };
    let appraisal = appraisal::appraise(&quote, source.as_ref(), &args.policy(), now);
    let report = Report::new(&appraisal, None, None);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(if appraisal.is_accepted() {
        EXIT_ACCEPTED
    } else {
        EXIT_REFUSED
    }))
}

/// The one place the `verify` command reads the clock.
fn wall_clock() -> UnixTime {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    UnixTime(secs)
}
