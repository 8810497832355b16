//! The forward proxy: accept loop, request classification, CONNECT intercept /
//! passthrough / deny, `http://` origination, sidecar routes, and the access log.
//!
//! Enclave hosts are never tunnelled blindly: a CONNECT is answered only after an attested
//! upstream connection exists, and every request goes over such a connection.

pub mod refusal;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use self::refusal::ProxyRefusal;
use self::upstream::{strip_hop_by_hop, Pool, Target, UpstreamError, CONNECT_TIMEOUT};
use crate::ca::LocalCa;
use crate::config::{split_host_port, Config, Unmatched};
use crate::ratls::{CacheStats, RaTlsVerifier, VerdictCache};
use crate::setup::CollateralSetup;
use crate::trust::TrustAnchor;
use crate::unix_time::UnixTime;

/// The body type everywhere in the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client's TLS handshake inside a CONNECT may take.
pub const CLIENT_TLS_TIMEOUT: Duration = Duration::from_secs(10);

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Shared proxy state.
pub struct Proxy {
    config: Config,
    ca: LocalCa,
    pool: Pool,
    cache: Arc<VerdictCache>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A started proxy: its addresses and tasks (stopped on drop).
pub struct Running {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// Each sidecar route's address, in config order.
    pub route_addrs: Vec<SocketAddr>,
    /// Shared state (cache counters).
    pub proxy: Arc<Proxy>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Running {
    /// Waits until the listeners stop (normally never).
    pub async fn wait(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    host: String,
    verdict: &'static str,
    code: Option<String>,
    mrenclave: Option<String>,
    upstream: Option<Duration>,
}

impl Proxy {
    /// Builds the proxy from a validated config, a trust anchor and a collateral source.
    pub fn new(
        config: Config,
        anchor: &TrustAnchor,
        collateral: CollateralSetup,
        ca: LocalCa,
    ) -> Self {
        let cache = Arc::new(VerdictCache::new(10_000, config.verdict_max_age));
        let verifiers = config
            .enclaves
            .iter()
            .map(|e| {
                Arc::new(RaTlsVerifier::new(
                    e.policy.clone(),
                    e.binding,
                    anchor.sha256(),
                    Arc::clone(&collateral.source),
                    Arc::clone(&cache),
                ))
            })
            .collect();
        Self {
            config,
            ca,
            pool: Pool::new(verifiers, collateral.cache),
            cache,
        }
    }

    /// Verdict cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The local CA.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// Binds the proxy listener and every sidecar route, and starts serving.
    pub async fn start(self: Arc<Self>) -> std::io::Result<Running> {
        let listener = TcpListener::bind(self.config.listen).await?;
        let addr = listener.local_addr()?;
        let mut tasks = vec![tokio::spawn(accept_loop(Arc::clone(&self), listener))];
        let mut route_addrs = Vec::new();
        for route in &self.config.routes {
            let l = TcpListener::bind(route.listen).await?;
            route_addrs.push(l.local_addr()?);
            let target = self.target(&route.host, route.port, route.enclave);
            tasks.push(tokio::spawn(route_loop(Arc::clone(&self), l, target)));
        }
        tracing::info!(%addr, routes = route_addrs.len(), enclaves = self.config.enclaves.len(), "ratls-proxy listening");
        Ok(Running {
            addr,
            route_addrs,
            proxy: self,
            tasks,
        })
    }

    fn target(&self, host: &str, port: u16, enclave: usize) -> Target {
        let dial = self
            .config
            .enclaves
            .get(enclave)
            .and_then(|e| e.connect_to.clone())
            .unwrap_or_else(|| dial_addr(host, port));
        Target {
            host: host.to_owned(),
            port,
            dial,
            enclave,
        }
    }
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(handle(proxy, client, req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%client, error = %e, "client connection ended with an error");
            }
        });
    }
}

async fn route_loop(proxy: Arc<Proxy>, listener: TcpListener, target: Target) {
    loop {
        let Ok((tcp, client)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let target = target.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                relay_logged(Arc::clone(&proxy), target.clone(), client, req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn access_log(
    client: SocketAddr,
    o: &Outcome,
    method: &Method,
    path: &str,
    status: StatusCode,
    start: Instant,
) {
    tracing::info!(
        target: "ratls_proxy::access",
        %client,
        host = %o.host,
        %method,
        path,
        status = status.as_u16(),
        verdict = o.verdict,
        code = o.code.as_deref().unwrap_or("-"),
        mrenclave = o.mrenclave.as_deref().unwrap_or("-"),
        upstream_ms = o.upstream.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
        total_ms = start.elapsed().as_secs_f64() * 1000.0,
    );
}

/// Entry point for every request on the proxy listener.
async fn handle(
    proxy: Arc<Proxy>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = if method == Method::CONNECT {
        String::new()
    } else {
        req.uri().path().to_owned()
    };
    let (resp, outcome) = if method == Method::CONNECT {
        connect(proxy, client, req).await
    } else {
        forward(&proxy, req).await
    };
    access_log(client, &outcome, &method, &path, resp.status(), start);
    resp
}

fn refuse(refusal: ProxyRefusal, host: &str) -> (Response<ProxyBody>, Outcome) {
    if let ProxyRefusal::Attestation(r) = &refusal {
        tracing::warn!(host, code = %r.code, reasons = ?r.reasons, "attestation refused");
    }
    let outcome = Outcome {
        host: host.to_owned(),
        verdict: match refusal {
            ProxyRefusal::Attestation(_) => "refused",
            ProxyRefusal::DestinationDenied(_) | ProxyRefusal::RequestDenied(_) => "denied",
            _ => "error",
        },
        code: Some(refusal.code().to_owned()),
        ..Outcome::default()
    };
    (refusal.response(host), outcome)
}

fn from_upstream(e: UpstreamError) -> ProxyRefusal {
    match e {
        UpstreamError::Refused(r) => ProxyRefusal::Attestation(r),
        UpstreamError::Unreachable(s) | UpstreamError::Request(s) => ProxyRefusal::Unreachable(s),
        UpstreamError::Timeout(s) => ProxyRefusal::Timeout(s),
    }
}

/// CONNECT: intercept enclave hosts after attestation; pass through or deny the rest.
async fn connect(
    proxy: Arc<Proxy>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Outcome) {
    let Some(authority) = req.uri().authority().cloned() else {
        return refuse(
            ProxyRefusal::BadRequest("CONNECT needs host:port".into()),
            "-",
        );
    };
    if authority.port_u16().is_none() {
        return refuse(
            ProxyRefusal::BadRequest(format!("CONNECT {authority}: a port is required")),
            authority.as_str(),
        );
    }
    let (host, port) = match split_host_port(authority.as_str(), 443) {
        Ok(hp) => hp,
        Err(e) => return refuse(ProxyRefusal::BadRequest(e), authority.as_str()),
    };

    let Some((enclave, _)) = proxy.config.enclave_for(&host, port) else {
        return match proxy.config.unmatched {
            Unmatched::Deny => refuse(
                ProxyRefusal::DestinationDenied(format!(
                    "{host}:{port} is not a configured enclave host and unmatched = \"deny\""
                )),
                &host,
            ),
            Unmatched::Passthrough => tunnel(req, &host, port).await,
        };
    };

    let target = proxy.target(&host, port, enclave);
    let started = Instant::now();
    // The attested connection and its verdict come before any answer to the client.
    let conn = match proxy.pool.checkout(&target).await {
        Ok(c) => c,
        Err(e) => return refuse(from_upstream(e), &host),
    };
    // Mirror upstream's protocol, with HTTP/1.1 as a fallback: requests are relayed, not
    // bytes, so an HTTP/1.1-only client still works in front of an HTTP/2 enclave.
    let alpn: &[&[u8]] = if conn.is_h2() {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    };
    let outcome = Outcome {
        host: host.clone(),
        verdict: "accepted",
        code: None,
        mrenclave: mrenclave_of(conn.verdict()),
        upstream: Some(started.elapsed()),
    };
    proxy.pool.checkin(&target, conn);
    let tls = match proxy.ca.server_config(&host, alpn, UnixTime::now()) {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                ProxyRefusal::Internal(format!("cannot mint a certificate for {host}: {e}")),
                &host,
            )
        }
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%client, error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let accepted = tokio::time::timeout(
            CLIENT_TLS_TIMEOUT,
            TlsAcceptor::from(tls).accept(TokioIo::new(upgraded)),
        )
        .await;
        let stream = match accepted {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%client, host = %target.host, error = %e, "client TLS handshake failed (does the client trust the ratls-proxy CA?)");
                return;
            }
            Err(_) => {
                tracing::info!(%client, host = %target.host, "client TLS handshake timed out");
                return;
            }
        };
        let service = hyper::service::service_fn(move |req| {
            relay_logged(Arc::clone(&proxy), target.clone(), client, req)
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    (Response::new(empty()), outcome)
}

fn mrenclave_of(v: &crate::ratls::cache::CachedVerdict) -> Option<String> {
    v.appraisal
        .appraisal
        .quote
        .as_ref()
        .map(|q| q.identity.mrenclave.to_string())
}

/// Sends one request over an attested connection to `target` and returns its response.
async fn relay(
    proxy: &Proxy,
    target: &Target,
    req: Request<ProxyBody>,
) -> (Response<ProxyBody>, Outcome) {
    let started = Instant::now();
    match proxy.pool.send(target, req).await {
        Ok((mut resp, verdict)) => {
            strip_hop_by_hop(resp.headers_mut());
            let outcome = Outcome {
                host: target.host.clone(),
                verdict: "accepted",
                code: None,
                mrenclave: mrenclave_of(&verdict),
                upstream: Some(started.elapsed()),
            };
            (resp.map(BodyExt::boxed), outcome)
        }
        Err(e) => refuse(from_upstream(e), &target.host),
    }
}

/// One request inside an intercepted tunnel or on a sidecar route: relay and log it.
async fn relay_logged(
    proxy: Arc<Proxy>,
    target: Target,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let (resp, outcome) = relay(&proxy, &target, req.map(BodyExt::boxed)).await;
    access_log(client, &outcome, &method, &path, resp.status(), start);
    Ok(resp)
}

/// `host:port` to dial, with IPv6 literals in brackets.
fn dial_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A plain CONNECT tunnel to a non-enclave destination.
async fn tunnel(req: Request<Incoming>, host: &str, port: u16) -> (Response<ProxyBody>, Outcome) {
    let dial = dial_addr(host, port);
    let started = Instant::now();
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&dial)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return refuse(
                ProxyRefusal::Unreachable(format!("cannot connect to {dial}: {e}")),
                host,
            )
        }
        Err(_) => {
            return refuse(
                ProxyRefusal::Timeout(format!(
                    "no connection to {dial} within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )),
                host,
            )
        }
    };
    let _ = upstream.set_nodelay(true);
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
        }
    });
    let outcome = Outcome {
        host: host.to_owned(),
        verdict: "passthrough",
        upstream: Some(started.elapsed()),
        ..Outcome::default()
    };
    (Response::new(empty()), outcome)
}

/// Absolute-form requests: originate attested TLS to enclave hosts; forward or deny the rest.
async fn forward(proxy: &Proxy, req: Request<Incoming>) -> (Response<ProxyBody>, Outcome) {
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return refuse(
            ProxyRefusal::BadRequest("this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT".into()),
            "-",
        );
    };
    if scheme != "http" {
        return refuse(
            ProxyRefusal::BadRequest(format!(
                "scheme `{scheme}` is not supported: use CONNECT for https"
            )),
            authority.as_str(),
        );
    }
    let explicit_port = authority.port_u16();
    let (host, _) = match split_host_port(authority.as_str(), 80) {
        Ok(hp) => hp,
        Err(e) => return refuse(ProxyRefusal::BadRequest(e), authority.as_str()),
    };
    // An enclave host named over http:// gets attested TLS to the given port, 443 if none.
    let enclave_port = explicit_port.unwrap_or(443);
    if let Some((enclave, _)) = proxy.config.enclave_for(&host, enclave_port) {
        let target = proxy.target(&host, enclave_port, enclave);
        return relay(proxy, &target, req.map(BodyExt::boxed)).await;
    }
    match proxy.config.unmatched {
        Unmatched::Deny => refuse(
            ProxyRefusal::RequestDenied(format!(
                "{host} is not a configured enclave host and unmatched = \"deny\""
            )),
            &host,
        ),
        Unmatched::Passthrough => plain_http(req, &host, explicit_port.unwrap_or(80)).await,
    }
}

/// Forwards a plain HTTP request to a non-enclave destination.
async fn plain_http(
    mut req: Request<Incoming>,
    host: &str,
    port: u16,
) -> (Response<ProxyBody>, Outcome) {
    let dial = dial_addr(host, port);
    let started = Instant::now();
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&dial)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return refuse(
                ProxyRefusal::Unreachable(format!("cannot connect to {dial}: {e}")),
                host,
            )
        }
        Err(_) => {
            return refuse(
                ProxyRefusal::Timeout(format!("no connection to {dial}")),
                host,
            )
        }
    };
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => return refuse(ProxyRefusal::Unreachable(format!("{dial}: {e}")), host),
    };
    tokio::spawn(conn);
    strip_hop_by_hop(req.headers_mut());
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(p) = path.parse() {
        *req.uri_mut() = p;
    }
    *req.version_mut() = http::Version::HTTP_11;
    match send.send_request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            let outcome = Outcome {
                host: host.to_owned(),
                verdict: "passthrough",
                upstream: Some(started.elapsed()),
                ..Outcome::default()
            };
            (resp.map(BodyExt::boxed), outcome)
        }
        Err(e) => refuse(ProxyRefusal::Unreachable(format!("{dial}: {e}")), host),
    }
}
