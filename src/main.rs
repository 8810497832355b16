//! `ratls-proxy`: parse the command line, run it, choose the exit code.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use ratls_proxy::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
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
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ratls-proxy: {e:#}");
            ExitCode::from(cli::EXIT_CANNOT_CHECK)
        }
    }
}
