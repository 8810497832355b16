//! EDGE. The command line (clap) and its dispatch: `run` (the default), `config check`,
//! `ca export|path`; `verify` (verify.rs, its report in report.rs), `demo` (demo.rs) and
//! `completions`/`man` (completions.rs) own their arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod completions;
#[cfg(feature = "sim")]
mod demo;
mod input;
pub(crate) mod report;
mod verify;
mod verify_dstack;
mod verify_nitro;
mod verify_nitro_cert;
mod verify_snp;
mod verify_snp_cert;

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

/// Verify Intel SGX and TDX RA-TLS attestation for clients that cannot: a local forward
/// proxy that judges each enclave on the connection that carries the traffic.
#[derive(Parser, Debug)]
#[command(name = "ratls-proxy", version = VERSION, about)]
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

/// What `--version` prints (and `run` logs at start): the version and the features this
/// binary was built with, so anyone can tell a production build from one carrying the simulator.
#[cfg(all(feature = "sim", feature = "jemalloc"))]
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: sim, jemalloc; the simulator and demo are built in: a development build)"
);
#[cfg(all(feature = "sim", not(feature = "jemalloc")))]
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: sim; the simulator and demo are built in: a development build)"
);
#[cfg(all(not(feature = "sim"), feature = "jemalloc"))]
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: jemalloc; no simulator: a production build)"
);
#[cfg(not(any(feature = "sim", feature = "jemalloc")))]
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: none; no simulator: a production build)"
);

/// Why a build without the simulator has no demo, and how to get one (exit 2).
#[cfg(not(feature = "sim"))]
const NO_SIMULATOR: &str = "\
ratls-proxy: this build has no simulator, so it has no `demo`.
It was built without the `sim` feature, as production builds are (the Docker image, and
`cargo install --no-default-features --features jemalloc`): the simulator forges quotes and
collateral under a test PKI, which a production binary must not carry. The demo is one
command away in a clone of the repository, where the simulator is a default feature:
    cargo run --release -- demo";

/// What to say when clap refused the command line for naming a command this build leaves
/// out: `demo` without the `sim` feature gets why and how to get it (the caller exits 2),
/// rather than "unrecognized subcommand". Not a hidden subcommand, because the generated
/// completion scripts would still offer it.
pub fn not_in_this_build(error: &clap::Error) -> Option<&'static str> {
    #[cfg(not(feature = "sim"))]
    {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let demo = matches!(
            error.get(ContextKind::InvalidSubcommand),
            Some(ContextValue::String(name)) if name == "demo"
        );
        (error.kind() == ErrorKind::InvalidSubcommand && demo).then_some(NO_SIMULATOR)
    }
    #[cfg(feature = "sim")]
    {
        let _ = error;
        None
    }
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
    /// Check an audit trail: every record's schema and hash chain, where it starts, torn
    /// lines the proxy recovered, and with --key-file every line's HMAC. Exit 0 and the
    /// record count, 1 naming the first line that breaks it (or an empty trail, or a last
    /// record other than --expect-last), 2 if it cannot be checked.
    Verify {
        /// The file.
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
        /// The trail's key (`[audit] key_file`): every line's HMAC is checked.
        #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
        key_file: Option<PathBuf>,
        /// The SHA-256 the last record must have (anchored elsewhere: the proxy logs each
        /// record's hash), so records removed from the end are found too.
        #[arg(long, value_name = "SHA256")]
        expect_last: Option<String>,
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
        Some(Command::Audit(AuditCommand::Verify {
            file,
            key_file,
            expect_last,
        })) => audit_verify(&file, key_file.as_deref(), expect_last.as_deref()),
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

fn audit_verify(
    file: &Path,
    key_file: Option<&Path>,
    expect_last: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use crate::audit::{verify_file, AuditKey, Broken};
    let key = key_file
        .map(AuditKey::read)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--key-file {e}"))?;
    let expect_last = expect_last
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut out).map(|()| out)
        })
        .transpose()
        .map_err(|_| anyhow::anyhow!("--expect-last: expected 64 hex digits"))?;
    let started = std::time::Instant::now();
    match verify_file(file, key.as_ref(), expect_last) {
        Ok(c) => {
            let mut notes = Vec::new();
            if let Some(from) = c.rotated_from {
                notes.push(format!(
                    "continues the rotated file whose last record is {}",
                    hex::encode(from)
                ));
            }
            if c.recovered > 0 {
                notes.push(format!(
                    "{} torn line(s) recovered after a crash",
                    c.recovered
                ));
            }
            if c.keyed {
                notes.push("every HMAC verifies".to_owned());
            }
            let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
            println!(
                "{}: ok, {} records, the hash chain is intact{notes}; last record sha256 {}",
                file.display(),
                c.records,
                hex::encode(c.last)
            );
            // On stderr: stdout stays the one line scripts read.
            let secs = started.elapsed().as_secs_f64();
            let mib = f64::from(u32::try_from(c.bytes >> 10).unwrap_or(u32::MAX)) / 1024.0;
            eprintln!(
                "read {mib:.1} MiB in {secs:.2} s ({:.0} MiB/s)",
                mib / secs.max(1e-6)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Broken::At(line, why)) => {
            eprintln!("{}:{line}: the chain breaks here: {why}", file.display());
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(Broken::Trail(why)) => {
            eprintln!("{}: {why}", file.display());
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(Broken::CannotCheck(why)) => Err(anyhow::anyhow!("{}: {why}", file.display())),
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
    tracing::info!(version = VERSION, "ratls-proxy starting");
    let config = load_config(args)?;
    let (anchor, collateral) = trust_and_collateral(&config.source, !config.enclaves.is_empty())?;
    let ca = LocalCa::load_or_create(&config.ca_dir, UnixTime::now())
        .with_context(|| format!("local CA in {}", config.ca_dir.display()))?;
    // A trail whose key cannot be read would refuse (or leave unaudited) every connection:
    // say so now instead.
    if let Some(k) = config.audit.as_ref().and_then(|a| a.key_file.as_deref()) {
        crate::audit::AuditKey::read(k).map_err(|e| anyhow::anyhow!("[audit] key_file {e}"))?;
    }
    // Read at start only: what a running proxy admits raises them in memory and in the file.
    let marks = crate::source::marks::Books::load(&config.state_dir)?;
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
        let mut proxy = Proxy::new(config, &anchor, collateral, ca).with_marks(marks);
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

/// Waits for SIGTERM or Ctrl-C; meanwhile reloads the configuration on every SIGHUP and
/// reopens the audit file on every SIGUSR1 (log rotation: a reload does not reopen it, and
/// rotating does not reload).
async fn wait_for_shutdown(proxy: &Arc<Proxy>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut usr1), Ok(mut term)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
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
                _ = usr1.recv() => proxy.reopen_audit(),
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
