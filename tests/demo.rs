//! The README's first command: `ratls-proxy demo` (the real binary) starts, prints curl lines,
//! and every line does what its comment says when pasted into a shell: accepted lines reach
//! the simulated enclave, refused lines get 502 with the code the comment names. The test
//! stops reading the demo's stdout once the lines are printed, as `demo | head` would: the
//! enclaves' request log must not take them down.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{command, free_port};

/// Kills the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_curl_line_the_demo_prints_does_what_its_comment_says() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("NOTICE: curl not installed; skipping the demo test");
        return;
    }
    let home = std::env::temp_dir().join(format!("ratls-demo-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    // An upgraded socket stays open: curl itself ends every line (and flushes what it got).
    std::fs::write(home.join(".curlrc"), "max-time = 5\n").expect(".curlrc");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = command()
        .args(["demo", "--listen", &listen])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let _demo = Demo(child);

    // (comment, command) pairs, up to the line that says it is serving.
    let mut lines = Vec::new();
    let mut comment = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8");
        if line.starts_with("Serving until") {
            break;
        }
        if let Some(c) = line.strip_prefix("# ") {
            comment = c.to_owned();
        } else if line.starts_with("curl ") || line.starts_with("HTTPS_PROXY=") {
            lines.push((comment.clone(), line));
        }
    }
    assert!(lines.len() >= 8, "curl lines printed: {lines:#?}");
    // The SEV-SNP VMs and Nitro enclaves beside the Intel enclaves: one accepted, one
    // refused each.
    for host in [
        "https://snp.enclave.test/",
        "http://snp-debug.enclave.test/",
        "https://nitro.enclave.test/",
        "http://nitro-debug.enclave.test/",
    ] {
        assert!(
            lines.iter().any(|(_, c)| c.contains(host)),
            "no line for {host}: {lines:#?}"
        );
    }
    for (comment, command) in &lines {
        assert!(
            command.contains(&listen) || command.contains("http://127.0.0.1:"),
            "{command}"
        );
        let out = Command::new("timeout")
            .args(["30", "bash", "-c", command])
            .env("HOME", &home)
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if comment.starts_with("refused") {
            assert!(text.contains("502"), "{comment}: {command}\n{text}");
            let code = comment
                .split_whitespace()
                .find(|w| w.contains('_'))
                .expect("the comment names the code");
            assert!(text.contains(code), "{comment}: {command}\n{text}");
        } else if comment.starts_with("at risk") {
            // The TCB page, after the at-risk host was reached on the line before.
            let page: serde_json::Value = serde_json::from_str(&text).expect("the /tcb JSON");
            let aging = page["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["host"] == "aging.enclave.test")
                .unwrap_or_else(|| panic!("{command}\n{text}"));
            assert_eq!(aging["at_risk"], true, "{text}");
            assert_eq!(aging["early"]["status"], "OutOfDate", "{text}");
            assert!(aging["early"]["standard_from"].is_string(), "{text}");
            let good = page["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["host"] == "good.enclave.test")
                .unwrap_or_else(|| panic!("{command}\n{text}"));
            assert_eq!(
                good["at_risk"], false,
                "only one enclave is at risk: {text}"
            );
        } else if comment.contains("WebSocket") && command.contains("Upgrade: websocket") {
            assert!(
                text.contains("101 Switching Protocols"),
                "{command}\n{text}"
            );
        } else if command.contains("/stream") {
            assert!(text.contains("chunk 5 of 5"), "{command}\n{text}");
        } else {
            assert!(
                out.status.success() && text.contains("\"enclave\":\"ratls-proxy sim\""),
                "{comment}: {command}\n{text}"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&home);
}
