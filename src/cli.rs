//! The command line (clap) and the commands' I/O: reading files, the clock, printing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::appraisal::{self, CollateralSource};
use crate::ca::LocalCa;
use crate::collateral::fetch::RefreshPolicy;
use crate::collateral::{Collateral, VerifiedCollateral};
use crate::config::Config;
use crate::error::VerifyError;
use crate::ids::{IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::policy::EnclavePolicy;
use crate::proxy::Proxy;
use crate::ratls::client::{self, ConnectError};
use crate::ratls::{appraise_certificate, BindingMode, RaTlsVerifier, VerdictCache};
use crate::refusal::RefusalCode;
use crate::report::Report;
use crate::setup::{fetching, from_files, trust_and_collateral, CollateralSetup};
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
    /// Log format on stderr: `text` (default) or `json` (one object per line).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy (the default when no command is given).
    Run(RunArgs),
    /// Verify one enclave, certificate or quote (exit 0 accepted, 1 refused, 2 could not check).
    Verify(Box<VerifyArgs>),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The local CA that signs the certificates clients see on intercepted connections.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Start three simulated enclaves and the proxy in front of them, and print curl lines to try.
    Demo(DemoArgs),
}

/// `ratls-proxy run`.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); without it, every default applies.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `ratls-proxy config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors are printed as file:line:col and exit 1.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// `ratls-proxy ca …`.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the CA certificate (PEM), creating the CA on first use.
    Export(RunArgs),
    /// Print where the CA certificate lives.
    Path(RunArgs),
}

/// `ratls-proxy demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo proxy listens.
    #[arg(long, default_value = "127.0.0.1:3128")]
    pub listen: std::net::SocketAddr,
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
    /// Collateral: a JSON bundle, a directory of them, `pcs` (Intel PCS v4) or a PCCS base URL.
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

/// Runs the parsed command line; `Err` means failure (exit 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run_proxy(&RunArgs::default()),
        Some(Command::Run(args)) => run_proxy(&args),
        Some(Command::Verify(args)) => verify(&args),
        Some(Command::Config(ConfigCommand::Check { file })) => config_check(&file),
        Some(Command::Ca(CaCommand::Export(args))) => {
            let config = load_config(&args)?;
            let ca = LocalCa::load_or_create(&config.ca_dir, UnixTime::now())?;
            print!("{}", ca.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Ca(CaCommand::Path(args))) => {
            let config = load_config(&args)?;
            println!("{}", config.ca_dir.join(crate::ca::CA_CERT_FILE).display());
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Some(Command::Demo(args)) => crate::demo::run(&args),
        #[cfg(not(feature = "sim"))]
        Some(Command::Demo(_)) => {
            bail!("this build has no simulated enclaves (cargo feature `sim`)")
        }
    }
}

fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    match &args.config {
        Some(path) => {
            Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
        }
        None => Ok(Config::defaults()),
    }
}

fn config_check(file: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    if let Err(e) = trust_and_collateral(&config) {
        eprintln!("{}: {e:#}", file.display());
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    println!(
        "{}: ok ({} enclave entries, {} routes, listen {})",
        file.display(),
        config.enclaves.len(),
        config.routes.len(),
        config.listen
    );
    Ok(ExitCode::SUCCESS)
}

fn run_proxy(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args)?;
    let (anchor, collateral) = trust_and_collateral(&config)?;
    let ca = LocalCa::load_or_create(&config.ca_dir, UnixTime::now())
        .with_context(|| format!("local CA in {}", config.ca_dir.display()))?;
    if config.enclaves.is_empty() {
        tracing::warn!("no [[enclave]] configured: every destination is treated as unmatched");
    }
    let grace = config.shutdown_grace;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut proxy = Proxy::new(config, &anchor, collateral, ca);
        if let Some(path) = &args.config {
            proxy = proxy.with_config_path(path.clone());
        }
        let proxy = Arc::new(proxy);
        let running = proxy.start().await.context("cannot bind the listeners")?;
        tracing::info!(ca = %running.proxy.ca().cert_path().display(), "clients must trust this CA for intercepted hosts");
        wait_for_shutdown(&running.proxy).await;
        tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; waiting for in-flight requests");
        let left = running.shutdown(grace).await;
        if left > 0 {
            tracing::warn!(left, "grace period over; closing what is still running");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGTERM or Ctrl-C; reloads the configuration on every SIGHUP meanwhile.
async fn wait_for_shutdown(proxy: &Arc<Proxy>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut term)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = proxy.reload().await;
                }
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
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
    let Some(spec) = &args.collateral else {
        bail!("--collateral is required: a collateral JSON file, a directory of them, `pcs` or a PCCS URL");
    };
    let setup = if spec == "pcs" || spec.starts_with("http://") || spec.starts_with("https://") {
        fetching(
            spec,
            args.pccs_ca.as_deref(),
            args.pcs_api_key.clone(),
            &anchor,
            RefreshPolicy::default(),
        )?
    } else if Path::new(spec).is_dir() {
        from_files(Path::new(spec), &anchor)?
    } else {
        // One bundle. Well-formed JSON with bad content is a refusal, not a usage error.
        let bytes = read(Path::new(spec), "collateral")?;
        let source: Arc<dyn CollateralSource + Send + Sync> = match Collateral::from_json(&bytes) {
            Ok(c) => match VerifiedCollateral::verify(&c, &anchor) {
                Ok(v) => Arc::new(Arc::new(v)),
                Err(e) => Arc::new(e),
            },
            Err(e) => Arc::new(VerifyError::from(e)),
        };
        CollateralSetup {
            source,
            cache: None,
            files: None,
        }
    };
    let policy = args.policy();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache = Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60)));

    let mut attempt = 0;
    let report = loop {
        let report = if let Some(url) = &args.url {
            let (addr, host) = https_target(url)?;
            let verifier = Arc::new(RaTlsVerifier::new(
                policy.clone(),
                args.binding,
                anchor.sha256(),
                Arc::clone(&setup.source),
                Arc::clone(&cache),
            ));
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
            appraise_certificate(&leaf, setup.source.as_ref(), &policy, args.binding, now).report()
        } else if let Some(path) = &args.quote {
            let quote = read(path, "quote")?;
            Report::new(
                &appraisal::appraise(&quote, setup.source.as_ref(), &policy, now),
                None,
                None,
            )
        } else {
            bail!("give a URL, --cert or --quote");
        };
        // A fetching source learns which platform the quote needs from the first attempt.
        let missing = report.code == Some(RefusalCode::CollateralUnavailable);
        match &setup.cache {
            Some(c) if missing && attempt == 0 && runtime.block_on(c.fetch_missing()) > 0 => {
                attempt += 1
            }
            _ => break report,
        }
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
