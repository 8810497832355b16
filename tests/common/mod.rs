//! Shared test helpers: where the real fixtures are, and permissive policies.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::tcb::TcbStatus;

/// The fixtures directory (`RATLS_FIXTURES`, default `../shared/fixtures`), or `None`
/// with a printed notice when a clone has no fixtures next to it.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("dcap/expected.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "NOTICE: fixtures not found at {} (set RATLS_FIXTURES); skipping fixture tests",
            dir.display()
        );
        None
    }
}

/// Reads a file under the fixtures directory.
pub fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every TCB status except Revoked.
pub fn all_statuses() -> Vec<TcbStatus> {
    use TcbStatus::*;
    vec![
        UpToDate,
        SwHardeningNeeded,
        ConfigurationNeeded,
        ConfigurationAndSwHardeningNeeded,
        OutOfDate,
        OutOfDateConfigurationNeeded,
    ]
}

/// Accepts any verified identity and TCB status; DEBUG as given.
pub fn permissive(allow_debug: bool) -> EnclavePolicy {
    EnclavePolicy {
        allow_debug,
        tcb_statuses: all_statuses(),
        ..EnclavePolicy::default()
    }
}

/// A temporary directory with a sim test PKI in `pki/` (root.pem, collateral.json), removed on drop.
#[cfg(feature = "sim")]
pub struct Env {
    pub dir: PathBuf,
    pub pki: ratls_proxy::sim::SimPki,
    pub now: ratls_proxy::dcap::time::UnixTime,
}

#[cfg(feature = "sim")]
impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "sim")]
impl Env {
    /// The local CA certificate a proxy using `dir/ca` creates.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca/ca.pem")
    }
}

/// A fresh [`Env`], unique per test binary, process and call.
#[cfg(feature = "sim")]
pub fn env() -> Env {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ratls-{}-{}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let now = ratls_proxy::dcap::time::UnixTime::now();
    let pki = ratls_proxy::sim::SimPki::load_or_create(&dir.join("pki"), now).expect("sim PKI");
    Env { dir, pki, now }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Owned arguments from string slices.
pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// The real curl with `args` and extra environment; the caller's proxy variables are removed.
pub async fn curl(args: Vec<String>, envs: Vec<(&'static str, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "15"])
            .args(&args)
            .envs(envs)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .output()
            .expect("curl runs (apt-get install curl)")
    })
    .await
    .expect("join")
}

/// A sim enclave on a free loopback port.
#[cfg(feature = "sim")]
pub async fn start_sim(
    env: &Env,
    config: ratls_proxy::sim::SimConfig,
) -> ratls_proxy::sim::SimEnclave {
    ratls_proxy::sim::SimEnclave::start(
        &env.pki,
        config,
        "127.0.0.1:0".parse().expect("addr"),
        env.now,
    )
    .await
    .expect("sim starts")
}

/// A TLS session with `host` through the proxy at `proxy`: CONNECT, then TLS trusting only
/// the proxy's local CA (`ca_pem`), as an intercepted client sees it.
pub async fn tls_through(
    proxy: std::net::SocketAddr,
    host: &str,
    ca_pem: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut roots = rustls::RootCertStore::empty();
    let ca_der =
        ratls_proxy::dcap::pki::pem_chain(std::fs::read(ca_pem).expect("ca").as_slice(), "ca")
            .expect("pem");
    roots.add(ca_der[0].clone().into()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(host.to_owned().try_into().expect("name"), tcp)
        .await
        .expect("the minted leaf validates against the ratls-proxy CA")
}

/// Reads one HTTP/1.1 response with a `content-length` body from `io`; the head and body as
/// text.
pub async fn read_response<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> String {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = io.read(&mut byte).await.expect("read head");
        assert!(
            n == 1,
            "closed mid-head: {}",
            String::from_utf8_lossy(&data)
        );
        data.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.expect("read body");
    data.extend(body);
    String::from_utf8_lossy(&data).into_owned()
}
