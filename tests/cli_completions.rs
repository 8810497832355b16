//! `ratls-proxy completions SHELL` and `ratls-proxy man`, run as the real binary: each script
//! is loaded by its own shell and asked to complete (bash, fish) or at least parsed (zsh), and
//! the man page is rendered by groff with every warning on. A shell that is not installed is
//! skipped with a notice, except in CI (`CI` set), which installs them and must not skip.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{command, output};

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

/// A fresh scratch path, unique per process and call.
fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ratls-completions-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// The completion script for `shell`, written to a file.
fn script(shell: &str) -> PathBuf {
    let path = scratch(&format!("ratls-proxy.{shell}"));
    std::fs::write(&path, stdout(&output(["completions", shell]))).expect("write script");
    path
}

/// Whether `tool` can run here; outside CI a missing one skips the caller with a notice.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed; CI (.ci/run) installs it and must not skip this test"
        );
        eprintln!("NOTICE: {tool} not installed; skipping its completion checks");
    }
    found
}

/// What bash completes for `words` (the last one being completed), through the function the
/// script registered with `complete -F` for `ratls-proxy`.
fn bash_complete(script: &PathBuf, words: &[&str]) -> Vec<String> {
    const DRIVER: &str = r#"
source "$1"; shift
spec=$(complete -p ratls-proxy) || { echo "no completion registered" >&2; exit 3; }
fn=${spec#* -F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" ratls-proxy "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .args(["-c", DRIVER, "bash"])
        .arg(script)
        .args(words)
        .output()
        .expect("bash runs");
    stdout(&out).lines().map(str::to_owned).collect()
}

fn assert_has(got: &[String], want: &[&str], context: &str) {
    for w in want {
        assert!(
            got.iter().any(|g| g == w),
            "{context}: {w} missing from {got:?}"
        );
    }
}

#[test]
fn bash_completes_subcommands_their_subcommands_and_flags() {
    let script = script("bash");
    let top = bash_complete(&script, &["ratls-proxy", ""]);
    assert_has(
        &top,
        &[
            "run",
            "verify",
            "config",
            "ca",
            "completions",
            "man",
            "--log-format",
        ],
        "ratls-proxy <TAB>",
    );
    let ca = bash_complete(&script, &["ratls-proxy", "ca", ""]);
    assert_has(&ca, &["export", "path"], "ratls-proxy ca <TAB>");
    let shells = bash_complete(&script, &["ratls-proxy", "completions", ""]);
    assert_has(
        &shells,
        &["bash", "zsh", "fish"],
        "ratls-proxy completions <TAB>",
    );
    let verify = bash_complete(&script, &["ratls-proxy", "verify", "--c"]);
    assert_has(
        &verify,
        &["--cert", "--collateral"],
        "ratls-proxy verify --c<TAB>",
    );
    let log = bash_complete(&script, &["ratls-proxy", "--log-format", ""]);
    assert_has(&log, &["text", "json"], "ratls-proxy --log-format <TAB>");
}

#[test]
fn zsh_script_parses_and_describes_every_subcommand() {
    let script = script("zsh");
    let text = std::fs::read_to_string(&script).expect("read");
    assert!(
        text.starts_with("#compdef ratls-proxy\n"),
        "zsh finds completions by their #compdef line"
    );
    for sub in ["run", "verify", "config", "ca", "completions", "man"] {
        assert!(text.contains(&format!("'{sub}:")), "zsh script lists {sub}");
    }
    if !have("zsh") {
        return;
    }
    let out = Command::new("zsh")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("zsh runs");
    assert!(
        out.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fish_completes_subcommands_and_flags() {
    if !have("fish") {
        return;
    }
    let script = script("fish");
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new("fish")
            .arg("-c")
            .arg(format!(
                "source {}; complete --do-complete '{line}'",
                script.display()
            ))
            .output()
            .expect("fish runs");
        // Each candidate is printed as `word<TAB>description`.
        stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .collect()
    };
    assert_has(
        &complete("ratls-proxy "),
        &["run", "verify", "config", "ca", "completions", "man"],
        "ratls-proxy <TAB>",
    );
    assert_has(
        &complete("ratls-proxy ca "),
        &["export", "path"],
        "ratls-proxy ca <TAB>",
    );
    assert_has(
        &complete("ratls-proxy verify --c"),
        &["--cert", "--collateral"],
        "ratls-proxy verify --c<TAB>",
    );
}

#[test]
fn every_shell_clap_supports_gets_a_script_and_others_are_refused() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = stdout(&output(["completions", shell]));
        assert!(
            text.contains("ratls-proxy"),
            "{shell} script names the binary"
        );
    }
    let out = output(["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `ratls-proxy completions bash | head -1`: whether or not the write happens after the
    // reader is gone, the command ends quietly with 0 (no panic on EPIPE).
    let mut child = command()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn man_page_renders_cleanly_and_one_page_per_command_is_written() {
    let page = stdout(&output(["man"]));
    assert!(page.contains(".TH ratls-proxy 1"), "a section 1 page");
    for section in [
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
        "EXIT STATUS",
        ".SH FILES",
    ] {
        assert!(page.contains(section), "the page has {section}");
    }
    assert!(
        !page.contains("ratls\\-proxy\\-help(1)"),
        "no page is written for `help`, so none is referenced"
    );

    let dir = scratch("man");
    let out = output(["man", "--dir", dir.to_str().expect("UTF-8 path")]);
    stdout(&out);
    for name in [
        "ratls-proxy.1",
        "ratls-proxy-run.1",
        "ratls-proxy-verify.1",
        "ratls-proxy-config-check.1",
        "ratls-proxy-ca-export.1",
        "ratls-proxy-completions.1",
        "ratls-proxy-man.1",
    ] {
        assert!(dir.join(name).is_file(), "{name} written");
    }
    let top = std::fs::read_to_string(dir.join("ratls-proxy.1")).expect("read");
    assert_eq!(top, page, "--dir writes the same top page as stdout");

    if !have("groff") {
        return;
    }
    for name in ["ratls-proxy.1", "ratls-proxy-verify.1"] {
        // -ww: every warning; -z: no output, just the diagnostics.
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.join(name))
            .output()
            .expect("groff runs");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
