//! The binary says which build it is, and a production build (no `sim` feature) is a whole
//! proxy without the simulator. `cargo test` runs this file against the default (development)
//! build; CI runs it once more against the production build,
//! `cargo test --no-default-features --features jemalloc --test production_build`, where the
//! `not(feature = "sim")` tests below prove: `demo` explains that the simulator is missing and
//! exits 2 (whatever follows it), help and completions do not offer it; and both builds prove
//! that `run --config` serves, refuses and shuts down as the deploy files expect, and that
//! `--version` and the start log say which build it is.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ratls-proxy");

fn ratls(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_names_the_features_the_binary_was_built_with() {
    let out = ratls(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let version = text(&out.stdout);
    assert!(
        version.starts_with(concat!("ratls-proxy ", env!("CARGO_PKG_VERSION"), " (")),
        "{version}"
    );
    let (sim, jemalloc) = (cfg!(feature = "sim"), cfg!(feature = "jemalloc"));
    assert_eq!(version.contains("features: sim"), sim, "{version}");
    assert_eq!(
        version.contains("the simulator and demo are built in: a development build"),
        sim,
        "{version}"
    );
    assert_eq!(
        version.contains("no simulator: a production build"),
        !sim,
        "{version}"
    );
    assert_eq!(version.contains("jemalloc"), jemalloc, "{version}");
}

#[cfg(feature = "sim")]
#[test]
fn a_development_build_offers_the_demo() {
    let help = ratls(&["--help"]);
    assert!(
        text(&help.stdout).contains("\n  demo "),
        "{}",
        text(&help.stdout)
    );
    let demo = ratls(&["demo", "--help"]);
    assert_eq!(demo.status.code(), Some(0));
    assert!(
        text(&demo.stdout).contains("--listen"),
        "{}",
        text(&demo.stdout)
    );
}

#[cfg(not(feature = "sim"))]
#[test]
fn demo_without_the_simulator_explains_and_exits_2() {
    for args in [
        &["demo"][..],
        &["demo", "--listen", "127.0.0.1:3128"],
        &["demo", "--help"],
        &["--log-format", "json", "demo", "anything", "-x"],
        &["help", "demo"],
    ] {
        let out = ratls(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        for needle in [
            "this build has no simulator, so it has no `demo`",
            "without the `sim` feature",
            "cargo run --release -- demo",
        ] {
            assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        }
        assert!(!err.contains("unrecognized subcommand"), "{err}");
    }
}

#[cfg(not(feature = "sim"))]
#[test]
fn help_and_completions_do_not_offer_what_the_build_lacks() {
    let help = text(&ratls(&["--help"]).stdout);
    assert!(help.contains("\n  verify "), "{help}");
    assert!(!help.contains("demo"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let out = ratls(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains("verify"), "{shell}: {script}");
        assert!(
            !script.contains("demo"),
            "the {shell} completion script offers demo"
        );
    }
}

/// The real binary running `run --config`, stopped on drop; stderr goes to a file.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Path, config: &Path, port: u16) -> Running {
    let log = dir.join("stderr.log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the binary starts");
    let running = Running { child, log };
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return running;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "the proxy did not listen on {port}: {}",
        std::fs::read_to_string(&running.log).unwrap_or_default()
    );
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .expect("curl runs (apt-get install curl)")
}

/// What the deploy files rely on, with the binary under test: `config check` passes, the
/// proxy starts with a minimal configuration, logs which build it is, answers the admin
/// probes, refuses what it must with the documented code, and shuts down on SIGTERM with 0.
#[test]
fn run_with_a_minimal_config_serves_refuses_and_stops() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("NOTICE: curl not installed; skipping the run test");
        return;
    }
    let dir = TempDir(
        std::env::temp_dir().join(format!("ratls-production-build-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let (port, admin) = (common::free_port(), common::free_port());
    let config = dir.0.join("ratls-proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             unmatched = \"deny\"\n\n[ca]\ndir = \"{}\"\n",
            dir.0.join("ca").display()
        ),
    )
    .expect("config");
    let check = ratls(&["config", "check", &config.display().to_string()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));

    let mut proxy = start(&dir.0, &config, port);
    let health = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{admin}/healthz"),
    ]);
    assert_eq!(text(&health.stdout), "200");
    let denied = curl(&[
        "-i",
        "-x",
        &format!("http://127.0.0.1:{port}"),
        "http://not-an-enclave.example/",
    ]);
    let denied = text(&denied.stdout);
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(
        denied.contains(r#""code":"http_request_denied""#),
        "{denied}"
    );
    assert!(dir.0.join("ca/ca.pem").is_file(), "the CA was created");

    let ok = Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    let mut status = None;
    for _ in 0..400 {
        status = proxy.child.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
    let log = std::fs::read_to_string(&proxy.log).expect("log");
    let starting = log
        .lines()
        .find(|l| l.contains("ratls-proxy starting"))
        .unwrap_or_else(|| panic!("no start line in {log}"));
    let build = if cfg!(feature = "sim") {
        "a development build"
    } else {
        "no simulator: a production build"
    };
    assert!(starting.contains(build), "{starting}");
}

/// The production build verifies real evidence as the development build does: the
/// verification stack does not depend on the simulator.
#[test]
fn verify_accepts_a_real_quote() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let dcap = |f: &str| dir.join("dcap").join(f).display().to_string();
    let out = ratls(&[
        "verify",
        "--quote",
        &dcap("sgx_v3_qvl.quote.bin"),
        "--collateral",
        &dcap("sgx_v3_qvl.collateral.json"),
        "--at",
        "2025-07-04T10:00:00Z",
        "--tcb-status",
        "ConfigurationAndSWHardeningNeeded",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ACCEPTED"),
        "{}",
        text(&out.stdout)
    );
}
