//! Clients of the proxy, each built here once: raw HTTP/1.1 bytes (what a hostile or
//! minimal client writes), CONNECT, rustls trusting only the proxy's local CA, and the real
//! curl; and the four ways a client reaches an enclave host ([`Mode`], [`Via`]) that the
//! hyper (`http.rs`) and WebSocket (`ws.rs`) clients take.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where a client connects: a loopback port or a socket address.
pub trait Addr: Copy {
    /// The socket address.
    fn socket(self) -> SocketAddr;
}

impl Addr for u16 {
    fn socket(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self))
    }
}

impl Addr for SocketAddr {
    fn socket(self) -> SocketAddr {
        self
    }
}

/// How a client reaches an enclave host through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// CONNECT, TLS with the minted leaf, HTTP/1.1 inside.
    Intercepted,
    /// CONNECT, TLS with ALPN h2, HTTP/2 inside.
    InterceptedH2,
    /// `http://` in absolute form to the proxy listener (the proxy originates the TLS).
    Originated,
    /// A plain-HTTP sidecar route.
    Route,
}

/// Every [`Mode`].
pub const MODES: [Mode; 4] = [
    Mode::Intercepted,
    Mode::InterceptedH2,
    Mode::Originated,
    Mode::Route,
];

impl Mode {
    /// The request target for `path` on `host` as this mode writes it: absolute where the
    /// proxy (or HTTP/2's `:authority`) needs the host, origin form inside a tunnel and on a
    /// route.
    pub fn target(self, host: &str, path: &str) -> String {
        match self {
            Self::InterceptedH2 => format!("https://{host}{path}"),
            Self::Originated => format!("http://{host}{path}"),
            Self::Intercepted | Self::Route => path.to_owned(),
        }
    }
}

/// A proxy as its clients see it: its listener, a sidecar route's listener (the listener
/// itself when there is none) and the local CA certificate that minted leaves chain to.
#[derive(Clone, Debug)]
pub struct Via {
    pub proxy: SocketAddr,
    pub route: SocketAddr,
    pub ca: PathBuf,
}

impl Via {
    /// The proxy listening at `proxy` whose CA certificate is `ca`.
    pub fn new(proxy: impl Addr, ca: &Path) -> Self {
        Self {
            proxy: proxy.socket(),
            route: proxy.socket(),
            ca: ca.to_owned(),
        }
    }

    /// With a sidecar route listening at `route`.
    pub fn route(mut self, route: impl Addr) -> Self {
        self.route = route.socket();
        self
    }

    /// The in-process proxy `running` (its first route, if it has one).
    pub fn running(running: &ratls_proxy::Running, ca: &Path) -> Self {
        let via = Self::new(running.addr, ca);
        match running.route_addrs.first() {
            Some(route) => via.route(*route),
            None => via,
        }
    }
}

/// How long a client waits for an answer before it reports "timed out".
const WAIT: Duration = Duration::from_secs(15);

/// Writes `request` to `addr` and reads one response; "timed out" after 15 s.
pub async fn ask(addr: impl Addr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr.socket()).await.expect("connect");
    ask_on(&mut tcp, request).await
}

/// Writes `request` on `io` (a kept-alive connection, a TLS session inside a tunnel) and
/// reads one response; "timed out" after 15 s.
pub async fn ask_on<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, request: &str) -> String {
    io.write_all(request.as_bytes()).await.expect("write");
    answer(io).await
}

/// `GET http://{host}{path}` through the proxy at `proxy` (with `extra` header lines, each
/// ending in `\r\n`), one response.
pub async fn get(proxy: impl Addr, host: &str, path: &str, extra: &str) -> String {
    ask(
        proxy,
        &format!(
            "GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        ),
    )
    .await
}

/// Writes `request` to `addr` and reads whatever comes until the server closes (or 5 s
/// pass): for answers that are not one well-formed response.
pub async fn exchange(addr: impl Addr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr.socket()).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One response read from `io` ([`read_response`]), or "timed out" after 15 s.
pub async fn answer<R: AsyncRead + Unpin>(io: &mut R) -> String {
    tokio::time::timeout(WAIT, read_response(io))
        .await
        .unwrap_or_else(|_| "timed out".into())
}

/// Reads one HTTP/1.1 response with a `content-length` body from `io`; the head and body as
/// text.
pub async fn read_response<R: AsyncRead + Unpin>(io: &mut R) -> String {
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

/// `CONNECT authority` to the proxy at `proxy`: the answer and the socket, for what comes
/// next.
pub async fn connect(proxy: impl Addr, authority: &str) -> (String, TcpStream) {
    connect_as(proxy, authority, "").await
}

/// [`connect`] with extra header lines (each ending in `\r\n`, such as a browser's
/// `User-Agent`).
pub async fn connect_as(proxy: impl Addr, authority: &str, headers: &str) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(proxy.socket()).await.expect("connect");
    tcp.write_all(
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{headers}\r\n").as_bytes(),
    )
    .await
    .expect("write");
    (answer(&mut tcp).await, tcp)
}

/// A rustls client configuration trusting only the CA certificate at `ca_pem` (the proxy's
/// local CA: only what the proxy minted validates), offering `alpn`.
pub fn trusting(ca_pem: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).expect("the proxy's CA certificate");
    let der = ratls_proxy::dcap::pki::pem_chain(&pem, "ca").expect("pem");
    roots.add(der[0].clone().into()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS for `name` over `tcp` (an answered CONNECT), trusting only `ca_pem`, offering `alpn`.
pub async fn tls_over(
    tcp: TcpStream,
    name: &str,
    ca_pem: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
    tokio_rustls::TlsConnector::from(trusting(ca_pem, alpn))
        .connect(name, tcp)
        .await
}

/// A TLS session with `host` through the proxy at `proxy`: CONNECT `host:443`, then TLS
/// trusting only the proxy's local CA (`ca_pem`), as an intercepted client sees it.
pub async fn tls_through(proxy: impl Addr, host: &str, ca_pem: &Path) -> TlsStream<TcpStream> {
    tls_through_as(proxy, host, ca_pem, "", &[]).await
}

/// [`tls_through`] with extra CONNECT header lines (each ending in `\r\n`) and the ALPN
/// protocols to offer.
pub async fn tls_through_as(
    proxy: impl Addr,
    host: &str,
    ca_pem: &Path,
    headers: &str,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let (head, tcp) = connect_as(proxy, &format!("{host}:443"), headers).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls_over(tcp, host, ca_pem, alpn)
        .await
        .expect("the minted leaf validates against the ratls-proxy CA")
}

/// The real curl with `args` and extra environment; the caller's proxy variables are removed.
pub async fn curl(args: Vec<String>, envs: Vec<(&'static str, String)>) -> Output {
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

/// What curl with `args` printed on stdout.
pub async fn curl_text(args: &[&str]) -> String {
    let out = curl(super::s(args), vec![]).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole answer (head and body, `curl -i`) to `GET url` through the proxy at `proxy`.
pub async fn curl_via(proxy: impl Addr, url: &str) -> String {
    curl_text(&["-i", "-x", &format!("http://{}", proxy.socket()), url]).await
}

/// The status code and body curl with `args` got (status 0 when it got none).
pub async fn curl_status(args: &[&str]) -> (u16, String) {
    let mut all = vec!["-o", "-", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let text = curl_text(&all).await;
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
