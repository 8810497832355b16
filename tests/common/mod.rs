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
        TdRelaunchAdvised,
        TdRelaunchAdvisedConfigurationNeeded,
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

/// The records of `host` in the audit trail at `path`.
pub fn audited(path: &std::path::Path, host: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["host"] == host)
        .collect()
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
    tls_through_as(proxy, host, ca_pem, "", &[]).await
}

/// [`tls_through`] with extra CONNECT header lines (each ending in `\r\n`, such as a
/// browser's `User-Agent`) and the ALPN protocols to offer.
pub async fn tls_through_as(
    proxy: std::net::SocketAddr,
    host: &str,
    ca_pem: &std::path::Path,
    headers: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    tcp.write_all(
        format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{headers}\r\n").as_bytes(),
    )
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
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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

/// The MRENCLAVE the harness's policies trust by default (the sim's default identity).
pub const TRUSTED: &str = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";

/// One `[[enclave]]` of a [`Harness`] config.
#[cfg(feature = "sim")]
pub struct Entry {
    hosts: Vec<String>,
    connect_to: std::net::SocketAddr,
    mrenclave: String,
    extra: String,
}

/// The one builder of "config + proxy" for every test file: a config text over an [`Env`]
/// (its CA directory, sim root and collateral), then a proxy started from it, in-process
/// (the library, to read counters) or as the real binary.
#[cfg(feature = "sim")]
pub struct Harness<'e> {
    env: &'e Env,
    listen: u16,
    admin: Option<u16>,
    top: String,
    limits: String,
    collateral: String,
    entries: Vec<Entry>,
    tail: String,
}

#[cfg(feature = "sim")]
impl<'e> Harness<'e> {
    /// Listen on a free port, admin off, the sim PKI's root and collateral, no enclaves.
    pub fn new(env: &'e Env) -> Self {
        Self {
            env,
            listen: 0,
            admin: None,
            top: String::new(),
            limits: String::new(),
            collateral: env.dir.join("pki/collateral.json").display().to_string(),
            entries: Vec::new(),
            tail: String::new(),
        }
    }

    /// The proxy listener's port (0: any free port; in-process only).
    pub fn listen(mut self, port: u16) -> Self {
        self.listen = port;
        self
    }

    /// Turns the admin listener on at `port` (the real binary only: in-process, whoever
    /// starts the proxy starts the admin listener, and `start` does not).
    pub fn admin(mut self, port: u16) -> Self {
        self.admin = Some(port);
        self
    }

    /// Top-level keys (`unmatched = "deny"`, ...).
    pub fn top(mut self, text: &str) -> Self {
        self.top.push_str(text);
        self.top.push('\n');
        self
    }

    /// Keys under `[limits]`.
    pub fn limits(mut self, text: &str) -> Self {
        self.limits.push_str(text);
        self.limits.push('\n');
        self
    }

    /// The collateral source: a bundle file or directory.
    pub fn collateral(self, path: &std::path::Path) -> Self {
        self.collateral_source(&path.display().to_string())
    }

    /// The collateral source as written (`pcs`, a PCCS URL, a path).
    pub fn collateral_source(mut self, source: &str) -> Self {
        self.collateral = source.to_owned();
        self
    }

    /// An `[[enclave]]` for `host` dialled at `addr`, trusting [`TRUSTED`].
    pub fn enclave(self, host: &str, addr: std::net::SocketAddr) -> Self {
        self.enclave_with(&[host], addr, TRUSTED, "")
    }

    /// An `[[enclave]]` with its hosts, MRENCLAVE allow-list and extra keys.
    pub fn enclave_with(
        mut self,
        hosts: &[&str],
        addr: std::net::SocketAddr,
        mrenclave: &str,
        extra: &str,
    ) -> Self {
        self.entries.push(Entry {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            connect_to: addr,
            mrenclave: mrenclave.to_owned(),
            extra: extra.to_owned(),
        });
        self
    }

    /// Text appended after the enclaves (`[[route]]` tables, ...).
    pub fn tail(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }

    /// The config text.
    pub fn text(&self) -> String {
        let admin = self
            .admin
            .map_or_else(String::new, |p| format!("127.0.0.1:{p}"));
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\nadmin_listen = \"{admin}\"\nshutdown_grace_secs = 10\n{}\n[limits]\n{}\n[ca]\ndir = \"{}\"\n[trust]\nroot_ca = \"{}\"\n[collateral]\nsource = \"{}\"\n",
            self.listen,
            self.top,
            self.limits,
            self.env.dir.join("ca").display(),
            self.env.dir.join("pki/root.pem").display(),
            self.collateral,
        );
        for e in &self.entries {
            let hosts: Vec<String> = e.hosts.iter().map(|h| format!("\"{h}\"")).collect();
            text.push_str(&format!(
                "\n[[enclave]]\nhosts = [{}]\nmrenclave = [\"{}\"]\nconnect_to = \"{}\"\n{}\n",
                hosts.join(", "),
                e.mrenclave,
                e.connect_to,
                e.extra
            ));
        }
        text.push_str(&self.tail);
        text
    }

    /// Writes the config as `name` in the env's directory.
    pub fn write(&self, name: &str) -> PathBuf {
        let path = self.env.dir.join(name);
        std::fs::write(&path, self.text()).expect("write config");
        path
    }

    /// The validated config.
    pub fn config(&self) -> ratls_proxy::Config {
        ratls_proxy::Config::from_toml(&self.text(), "harness", std::path::Path::new("/"))
            .expect("config")
    }

    /// The proxy, in-process.
    pub async fn start(&self) -> ratls_proxy::Running {
        let config = self.config();
        let (anchor, setup) =
            ratls_proxy::trust_and_collateral(&config.source, !config.enclaves.is_empty())
                .expect("trust and collateral");
        let ca = ratls_proxy::LocalCa::load_or_create(&config.ca_dir, self.env.now).expect("ca");
        std::sync::Arc::new(ratls_proxy::Proxy::new(config, &anchor, setup, ca))
            .start()
            .await
            .expect("start")
    }

    /// The real binary with this config written as `name`, once it accepts connections on
    /// its admin port (if on) or proxy port.
    pub async fn start_binary(&self, name: &str) -> Binary {
        Binary::start(
            &self.write(name),
            self.admin.unwrap_or(self.listen),
            &[],
            false,
        )
        .await
    }
}

/// The real `ratls-proxy run --config` process, killed on drop.
pub struct Binary {
    pub child: std::process::Child,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Starts the binary with `config` (after `args`) and waits until `port` accepts.
    /// With `json_logs`, logs are JSON on a piped stderr; otherwise discarded.
    pub async fn start(
        config: &std::path::Path,
        port: u16,
        args: &[&str],
        json_logs: bool,
    ) -> Self {
        use std::process::{Command, Stdio};
        // RATLS_PROXY_BIN runs the same test against another build (an older commit, to
        // show a test fails on the code it guards against).
        let bin = std::env::var_os("RATLS_PROXY_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ratls-proxy").into());
        let mut cmd = Command::new(bin);
        if json_logs {
            cmd.args(["--log-format", "json"]);
        }
        let child = cmd
            .args(args)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", if json_logs { "info" } else { "warn" })
            .stdout(Stdio::null())
            .stderr(if json_logs {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("the binary starts");
        let b = Self { child };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return b;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the proxy did not start listening on {port}");
    }

    /// Sends `sig` (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }
}
