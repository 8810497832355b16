//! The binary as a command line: the one runner of `ratls-proxy ARGS`, and of `verify
//! https://` against a sim with the sim's trust root.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test: `RATLS_PROXY_BIN` runs the same tests against another build (an
/// older commit, to show a test fails on the code it guards against).
pub fn bin() -> OsString {
    std::env::var_os("RATLS_PROXY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ratls-proxy").into())
}

/// A command running the binary under test.
pub fn command() -> Command {
    Command::new(bin())
}

/// `ratls-proxy ARGS`, run to its end.
pub fn output<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command().args(args).output().expect("the binary runs")
}

/// `ratls-proxy ARGS`: its exit code and everything it printed (stdout, then stderr).
pub fn run<I, S>(args: I) -> (i32, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = output(args);
    (out.status.code().unwrap_or(-1), printed(&out))
}

/// `ratls-proxy audit verify <trail> ARGS`: its exit code and everything it printed.
pub fn audit_verify(trail: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec![OsStr::new("audit"), OsStr::new("verify"), trail.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run(all)
}

/// Everything a run printed: stdout, then stderr.
pub fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A run's stdout as JSON; panics with both streams when it is not.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `ratls-proxy verify https://<addr> --trust-root <the sim root> --collateral <collateral>
/// --json <extra>` (off the async runtime): the exit code and the JSON report.
#[cfg(feature = "sim")]
pub async fn verify_https(
    env: &super::Env,
    addr: std::net::SocketAddr,
    collateral: impl AsRef<OsStr>,
    extra: &[&str],
) -> (i32, Value) {
    let mut cmd = command();
    cmd.arg("verify")
        .arg(format!("https://{addr}"))
        .arg("--trust-root")
        .arg(env.dir.join("pki/root.pem"))
        .arg("--collateral")
        .arg(collateral.as_ref())
        .arg("--json")
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("the binary runs");
    (out.status.code().unwrap_or(-1), json(&out))
}
