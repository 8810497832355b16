//! EDGE. The command line (clap) and its dispatch: `run` (the default), `config check`,
//! `ca export|path`; `verify` (verify.rs, its report in report.rs), `demo` (demo.rs) and
//! `completions`/`man` (completions.rs) own their arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod completions;
#[cfg(feature = "sim")]
mod demo;
pub(crate) mod report;
mod verify;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueHint};

use crate::admin;
use crate::ca::LocalCa;
use crate::config::Config;
use crate::dcap::time::UnixTime;
use crate::proxy::Proxy;
use crate::source::trust_and_collateral;

/// Exit code: verified and accepted.
pub(crate) const EXIT_ACCEPTED: u8 = 0;
/// Exit code: verified and refused (or unverifiable content).
pub(crate) const EXIT_REFUSED: u8 = 1;
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
    Verify(Box<verify::VerifyArgs>),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The local CA that signs the certificates clients see on intercepted connections.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Start three simulated enclaves and the proxy in front of them, and print curl lines to try.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command with --dir.
    Man(completions::ManArgs),
}

/// `ratls-proxy run`.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); without it, every default applies.
    #[arg(long, short, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
}

/// `ratls-proxy config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors are printed as file:line:col and exit 1.
    Check {
        /// The file.
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
    },
}

/// `ratls-proxy audit …`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check an audit file's hash chain: exit 0 and the record count, or exit 1 naming the
    /// first line that breaks it.
    Verify {
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

/// Runs the parsed command line; `Err` means failure (exit 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run_proxy(&RunArgs::default()),
        Some(Command::Run(args)) => run_proxy(&args),
        Some(Command::Verify(args)) => verify::verify(&args),
        Some(Command::Config(ConfigCommand::Check { file })) => config_check(&file),
        Some(Command::Ca(CaCommand::Export(args))) => {
            let config = load_config(&args)?;
            let ca = LocalCa::load_or_create(&config.ca_dir, UnixTime::now())?;
            print!("{}", ca.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Audit(AuditCommand::Verify { file })) => {
            match crate::audit::verify_file(&file) {
                Ok((n, last)) => {
                    println!(
                        "{}: ok, {n} records, the hash chain is intact; last record sha256 {}",
                        file.display(),
                        hex::encode(last)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err((0, why)) => Err(anyhow::anyhow!("{}: {why}", file.display())),
                Err((line, why)) => {
                    eprintln!("{}:{line}: the chain breaks here: {why}", file.display());
                    Ok(ExitCode::from(EXIT_REFUSED))
                }
            }
        }
        Some(Command::Ca(CaCommand::Path(args))) => {
            let config = load_config(&args)?;
            println!("{}", config.ca_dir.join(crate::ca::CA_CERT_FILE).display());
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Completions(args)) => completions::completions(&args),
        Some(Command::Man(args)) => completions::man(&args),
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
    if let Err(e) = trust_and_collateral(&config.source, !config.enclaves.is_empty()) {
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
    let (anchor, collateral) = trust_and_collateral(&config.source, !config.enclaves.is_empty())?;
    let ca = LocalCa::load_or_create(&config.ca_dir, UnixTime::now())
        .with_context(|| format!("local CA in {}", config.ca_dir.display()))?;
    if config.enclaves.is_empty() {
        tracing::warn!("no [[enclave]] configured: every destination is treated as unmatched");
    }
    let grace = config.shutdown_grace;
    let admin_listen = config.admin_listen;
    // Connections are served on one runtime per core; this one accepts them and runs the
    // admin listener, reloads and collateral refresh.
    crate::proxy::start_cores(crate::proxy::resolve_threads(config.limits.threads))
        .context("cannot start the connection threads")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut proxy = Proxy::new(config, &anchor, collateral, ca);
        if let Some(path) = &args.config {
            proxy = proxy.with_config_path(path.clone());
        }
        let proxy = Arc::new(proxy);
        let running = Arc::clone(&proxy).start().await.context("cannot bind the listeners")?;
        let admin = match admin_listen {
            Some(addr) => {
                let (bound, task) = admin::start(proxy, addr)
                    .await
                    .context("cannot bind the admin listener")?;
                tracing::info!(admin = %bound, "admin listening");
                Some(AbortOnDrop(task))
            }
            None => None,
        };
        tracing::info!(ca = %running.proxy.ca().cert_path().display(), "clients must trust this CA for intercepted hosts");
        wait_for_shutdown(&running.proxy).await;
        drop(admin);
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
                    proxy.reopen_audit();
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

/// Stops a task when dropped (the admin listener, when shutdown begins).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
