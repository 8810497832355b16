//! EDGE. Shell completions and man pages, generated from the clap definitions in mod.rs at
//! run time, so they describe exactly the commands and flags this binary accepts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueHint};
use clap_complete::Shell;

use super::Cli;

/// `ratls-proxy completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// `ratls-proxy man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (ratls-proxy.1, ratls-proxy-run.1, ...) into this directory
    /// (created if missing) instead of printing ratls-proxy.1 on stdout.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// The binary's name as completions register it (what users type).
const BIN: &str = "ratls-proxy";

/// Prints the completion script for `args.shell` on stdout.
pub(super) fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    // Into memory first: clap_complete panics on a write error (`... | head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut script);
    if args.shell == Shell::Bash {
        script = fix_bash_states(&script);
    }
    emit(&script)
}

/// clap_complete's bash script tracks the command path as a state (`ratls__proxy__subcmd__ca`)
/// but spells its case arms with the bin name's hyphen escaped once more
/// (`ratls__subcmd__proxy__subcmd__ca`), so nothing after a subcommand completed for a
/// hyphenated binary (clap-rs/clap#6421). Spell the arms the way the state is built; once
/// upstream is fixed the pattern no longer occurs and this changes nothing.
fn fix_bash_states(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("ratls__subcmd__proxy__subcmd__", "ratls__proxy__subcmd__")
        .into_bytes()
}

/// Prints ratls-proxy(1), or writes every command's page into `args.dir`.
pub(super) fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        // The top page gets the extra sections too (generate_to wrote the bare one).
        let mut file = std::fs::File::create(dir.join(format!("{BIN}.1")))?;
        render_top(&mut file)?;
        println!("{}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = Vec::new();
    render_top(&mut page)?;
    emit(&page)
}

/// Writes `bytes` on stdout; a reader that stopped early (`| head`) is not an error.
fn emit(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// ratls-proxy(1): what clap knows, then what a man page reader looks for and clap does not
/// know (exit codes, files, environment).
fn render_top(w: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command().disable_help_subcommand(true)).render(w)?;
    w.write_all(EXTRA_SECTIONS.as_bytes())
}

/// Roff for the sections clap cannot derive; keep it in step with docs/operating.md.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success; for \fBverify\fR, the enclave was verified and accepted.
.TP
\fB1\fR
\fBverify\fR: verified and refused; \fBconfig check\fR: the configuration is invalid.
.TP
\fB2\fR
Could not check or could not run (unreadable input, bad arguments, a listener that cannot be bound).
.SH FILES
.TP
\fIratls\-proxy.toml\fR
The configuration, given with \fB\-\-config\fR; every key is optional.
.TP
\fI$XDG_DATA_HOME/ratls\-proxy/ca.pem\fR, \fIca\-key.pem\fR
The local CA (default directory, else \fI~/.local/share/ratls\-proxy\fR; \fB[ca] dir\fR moves it).
Clients trust \fIca.pem\fR for intercepted hosts; \fIca\-key.pem\fR must stay mode 0600.
.TP
\fIcollateral\-marks.json\fR
In the state directory (\fBstate_dir\fR, by default the CA directory): the newest collateral ever admitted, so older collateral replayed after a reload or a restart is refused. Written atomically; a corrupt file stops the start.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Log levels (default \fIinfo\fR for \fBrun\fR and \fBdemo\fR, \fIwarn\fR otherwise), e.g. \fIinfo,ratls_proxy::access=warn\fR.
.TP
\fBXDG_DATA_HOME\fR
Where the default CA directory lives.
.TP
\fBRATLS_PCS_API_KEY\fR
The Intel PCS subscription key for \fBverify\fR.
.SH SIGNALS
\fBSIGHUP\fR re-reads the configuration file; \fBSIGUSR1\fR reopens the audit trail (log rotation); \fBSIGTERM\fR and \fBSIGINT\fR stop accepting and let in\-flight requests finish for up to \fBshutdown_grace_secs\fR.
"#;
