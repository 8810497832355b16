//! A real browser through the real binary: headless Chromium (Debian's package) trusting
//! the proxy's local CA through an NSS database, loading an accepted enclave (its content,
//! over HTTP/2) and a refused one (the refusal page names the code; the sim gets nothing).
//!
//! Skipped with a notice where `/usr/bin/chromium` is absent, unless
//! `RATLS_REQUIRE_BROWSER` is set (CI sets it, after installing Chromium). With
//! `RATLS_SCREENSHOT=FILE` it also saves the refusal page as a PNG (the README's picture).
#![cfg(feature = "sim")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ratls_proxy::sim::SimConfig;

use common::{curl, env, free_port, s, start_sim, Harness, TRUSTED};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, or `None` (with a notice) where it is not installed and not required.
fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).is_file() {
        return Some(CHROMIUM);
    }
    assert!(
        std::env::var_os("RATLS_REQUIRE_BROWSER").is_none(),
        "RATLS_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium libnss3-tools)"
    );
    eprintln!("NOTICE: {CHROMIUM} not found; skipping the real-browser test (apt-get install chromium libnss3-tools)");
    None
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A HOME whose NSS database (`~/.pki/nssdb`, where Chromium on Linux looks) trusts the
/// proxy's CA to identify web sites, as a developer would set it up.
fn home_trusting(dir: &Path, ca: &Path) -> PathBuf {
    let home = dir.join("home");
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let db_arg = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-d", &db_arg, "-N", "--empty-password"]));
    run(Command::new("certutil")
        .args(["-d", &db_arg, "-A", "-t", "C,,", "-n", "ratls-proxy"])
        .arg("-i")
        .arg(ca));
    home
}

/// Headless Chromium through the proxy at `port`, bounded in time; `what` is the action
/// (`--dump-dom` or `--screenshot=FILE`).
async fn chromium_through(
    bin: &'static str,
    home: PathBuf,
    profile: PathBuf,
    port: u16,
    what: Vec<String>,
    url: &str,
) -> Output {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["90", bin])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--proxy-server=http://127.0.0.1:{port}"))
            .args(what)
            .arg(url)
            .env("HOME", &home)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .output()
            .expect("chromium runs")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_an_accepted_enclave_and_shows_why_one_is_refused() {
    let Some(bin) = chromium() else { return };
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let mut debug_config = SimConfig::default();
    debug_config.spec.debug = true;
    let debug = start_sim(&env, debug_config).await;
    let port = free_port();
    let _proxy = Harness::new(&env)
        .listen(port)
        .enclave("good.enclave.test", good.addr())
        .enclave("debug.enclave.test", debug.addr())
        .start_binary("p.toml")
        .await;
    let home = home_trusting(&env.dir, &env.ca_pem());
    let dump = vec!["--dump-dom".to_owned()];

    // Accepted: the sim's echo, relayed over HTTP/2 (Chromium takes h2 through interception).
    let out = chromium_through(
        bin,
        home.clone(),
        env.dir.join("profile-good"),
        port,
        dump.clone(),
        "https://good.enclave.test/hello",
    )
    .await;
    let dom = String::from_utf8_lossy(&out.stdout);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains(TRUSTED),
        "accepted enclave's echo: {dom}\n{why}"
    );
    assert!(dom.contains("HTTP/2.0"), "HTTP/2 end to end: {dom}\n{why}");
    assert!(good.request_count() >= 1);

    // Refused: the page inside the tunnel names the code and what to change.
    let out = chromium_through(
        bin,
        home.clone(),
        env.dir.join("profile-debug"),
        port,
        dump,
        "https://debug.enclave.test/",
    )
    .await;
    let dom = String::from_utf8_lossy(&out.stdout);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(dom.contains("debug_enclave"), "refusal page: {dom}\n{why}");
    assert!(dom.contains("ratls-proxy refused this connection"), "{dom}");
    assert!(dom.contains("DEBUG mode"), "{dom}");

    if let Some(file) = std::env::var_os("RATLS_SCREENSHOT") {
        let file = PathBuf::from(file);
        let out = chromium_through(
            bin,
            home,
            env.dir.join("profile-shot"),
            port,
            vec![
                format!("--screenshot={}", file.display()),
                "--window-size=900,660".to_owned(),
                "--hide-scrollbars".to_owned(),
            ],
            "https://debug.enclave.test/",
        )
        .await;
        assert!(
            file.is_file(),
            "screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        debug.request_count(),
        0,
        "nothing may reach a refused enclave"
    );

    // curl's CONNECT to the same refused host still gets the 502 itself.
    let proxy = format!("http://127.0.0.1:{port}");
    let out = curl(
        s(&["-v", "-x", &proxy, "https://debug.enclave.test/"]),
        vec![],
    )
    .await;
    let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(verbose.contains("< http/1.1 502 bad gateway"), "{verbose}");
}
