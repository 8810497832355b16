//! `ratls-proxy`: parse the command line, run it, choose the exit code.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use ratls_proxy::{self as cli, Cli};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(why) = cli::not_in_this_build(&e) {
                eprintln!("{why}");
                return ExitCode::from(cli::EXIT_CANNOT_CHECK);
            }
            // Help and version are not errors; everything else is "could not check".
            let code = if e.use_stderr() {
                cli::EXIT_CANNOT_CHECK
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ratls-proxy: {e:#}");
            ExitCode::from(cli::EXIT_CANNOT_CHECK)
        }
    }
}

/// Logs go to stderr (stdout carries `verify` output); `RUST_LOG` sets levels.
fn init_logging(cli: &Cli) {
    let default = match cli.command {
        None | Some(cli::Command::Run(_)) => "info",
        #[cfg(feature = "sim")]
        Some(cli::Command::Demo(_)) => "info",
        Some(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
