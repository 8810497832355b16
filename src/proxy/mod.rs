//! The forward proxy: accept loop, request classification, CONNECT intercept /
//! passthrough / deny, `http://` origination, sidecar routes, and the access log.
//!
//! Enclave hosts are never tunnelled blindly: a CONNECT is answered only after an attested
//! upstream connection exists, and every request goes over such a connection.

mod idle;
pub mod refusal;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use self::idle::{Idle, Phase};
use self::refusal::ProxyRefusal;
use self::upstream::{strip_hop_by_hop, Pool, Target, UpstreamError, Version};
use crate::ca::LocalCa;
use crate::config::{split_host_port, Config, Limits, Unmatched};
use crate::metrics::{Counting, Metrics, Sample};
use crate::ratls::{CacheStats, RaTlsVerifier, VerdictCache};
use crate::setup::trust_and_collateral;
use crate::setup::CollateralSetup;
use crate::trust::TrustAnchor;
use crate::unix_time::UnixTime;

/// The body type everywhere in the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often fetched collateral is checked for refresh.
pub const REFRESH_TICK: Duration = Duration::from_secs(10);

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// One configuration's worth of state. A reload builds a new one and swaps it in; open
/// tunnels keep the generation they started with.
pub struct Generation {
    /// The configuration.
    pub config: Config,
    pool: Pool,
    collateral: CollateralSetup,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if let Ok(mut r) = self.refresher.lock() {
            if let Some(t) = r.take() {
                t.abort();
            }
        }
    }
}

impl Generation {
    fn new(
        config: Config,
        anchor: &TrustAnchor,
        collateral: CollateralSetup,
        cache: &Arc<VerdictCache>,
    ) -> Self {
        let verifiers = config
            .enclaves
            .iter()
            .map(|e| {
                Arc::new(RaTlsVerifier::new(
                    e.policy.clone(),
                    e.binding,
                    anchor.sha256(),
                    Arc::clone(&collateral.source),
                    Arc::clone(cache),
                ))
            })
            .collect();
        Self {
            pool: Pool::new(
                verifiers,
                collateral.cache.clone(),
                config.limits.connect_timeout,
                config.limits.idle_timeout,
            ),
            config,
            collateral,
            refresher: Mutex::new(None),
        }
    }

    /// Starts prefetching and background refresh of fetched collateral (needs a runtime).
    fn start_refresher(&self) {
        let Some(cache) = self.collateral.cache.clone() else {
            return;
        };
        let prefetch = self.config.prefetch.clone();
        let task = tokio::spawn(async move {
            cache.prefetch(&prefetch).await;
            cache.refresh_loop(REFRESH_TICK).await;
        });
        if let Ok(mut r) = self.refresher.lock() {
            *r = Some(task);
        }
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

/// Counts in-flight requests and tunnels so shutdown can wait for them.
#[derive(Debug, Default)]
struct Drain {
    active: AtomicUsize,
    idle: Notify,
}

struct DrainGuard<'a>(&'a Drain);

impl Drain {
    fn enter(&self) -> DrainGuard<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        DrainGuard(self)
    }
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Shared proxy state.
pub struct Proxy {
    current: RwLock<Arc<Generation>>,
    config_path: Option<PathBuf>,
    ca: LocalCa,
    cache: Arc<VerdictCache>,
    metrics: Arc<Metrics>,
    drain: Drain,
    listening: AtomicBool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

/// A started proxy: its addresses and tasks (stopped on drop).
pub struct Running {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// Each sidecar route's address, in config order.
    pub route_addrs: Vec<SocketAddr>,
    /// The admin listener's address, if on.
    pub admin_addr: Option<SocketAddr>,
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
    pub async fn wait(&mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }

    /// Stops accepting, then waits up to `grace` for in-flight requests and tunnels.
    /// Returns how many were still running when the grace period ended.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
        self.proxy.listening.store(false, Ordering::SeqCst);
        let drain = &self.proxy.drain;
        let wait = async {
            loop {
                let idle = drain.idle.notified();
                if drain.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        drain.active.load(Ordering::SeqCst)
    }
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    host: String,
    verdict: &'static str,
    code: Option<String>,
    /// The verdict that admitted the upstream connection; its MRENCLAVE is formatted only
    /// when the access log is on (per request, that formatting was measurable work).
    accepted: Option<Arc<crate::ratls::cache::CachedVerdict>>,
    upstream: Option<Duration>,
}

/// Readiness, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Why not (empty when ready).
    pub reasons: Vec<String>,
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
        let generation = Generation::new(config, anchor, collateral, &cache);
        Self {
            current: RwLock::new(Arc::new(generation)),
            config_path: None,
            ca,
            cache,
            metrics: Arc::new(Metrics::default()),
            drain: Drain::default(),
            listening: AtomicBool::new(false),
        }
    }

    /// Remembers the file to re-read on reload.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
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

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-reads the config file and swaps it in if valid; the old one stays otherwise.
    /// Listen addresses, routes and the CA directory need a restart to change.
    pub async fn reload(&self) -> Result<String, String> {
        let result = self.reload_inner();
        match &result {
            Ok(msg) => {
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("configuration reloaded: {msg}");
            }
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("configuration reload rejected, keeping the old one: {e}");
            }
        }
        result
    }

    fn reload_inner(&self) -> Result<String, String> {
        let path = self
            .config_path
            .as_ref()
            .ok_or("no configuration file to reload (started without --config)")?;
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let (anchor, collateral) = trust_and_collateral(&config).map_err(|e| e.to_string())?;
        let old = self.current();
        let mut notes = Vec::new();
        if config.listen != old.config.listen || config.admin_listen != old.config.admin_listen {
            notes.push("listen addresses need a restart to change");
        }
        if config
            .routes
            .iter()
            .map(|r| r.listen)
            .ne(old.config.routes.iter().map(|r| r.listen))
        {
            notes.push("route listeners need a restart to change");
        }
        if config.ca_dir != old.config.ca_dir {
            notes.push("the CA directory needs a restart to change");
        }
        let generation = Generation::new(config, &anchor, collateral, &self.cache);
        generation.start_refresher();
        let summary = format!("{} enclave entries", generation.config.enclaves.len());
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(generation),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(generation),
        }
        // Verdicts were made under the old policies: drop them all.
        self.cache.clear();
        Ok(if notes.is_empty() {
            summary
        } else {
            format!("{summary}; {}", notes.join("; "))
        })
    }

    /// Whether the proxy can serve: listening, CA loaded (always, once built), and
    /// collateral for the configured enclaves present and unexpired.
    pub fn readiness(&self, now: UnixTime) -> Readiness {
        let mut reasons = Vec::new();
        if !self.listening.load(Ordering::SeqCst) {
            reasons.push("listeners are not bound".to_owned());
        }
        let g = self.current();
        if !g.config.enclaves.is_empty() {
            if let Some(files) = &g.collateral.files {
                for b in files.bundles() {
                    if let Err(e) = b.check_fresh(now) {
                        reasons.push(format!("collateral for FMSPC {}: {e}", b.tcb_info.fmspc));
                    }
                }
            }
            if let Some(cache) = &g.collateral.cache {
                let snapshots = cache.snapshots();
                for f in &g.config.prefetch {
                    if !snapshots
                        .iter()
                        .any(|s| s.key.0 == *f && now <= s.valid_until)
                    {
                        reasons.push(format!("no unexpired collateral for FMSPC {f} yet"));
                    }
                }
                for s in snapshots.iter().filter(|s| now > s.valid_until) {
                    reasons.push(format!(
                        "collateral for FMSPC {} expired at {}",
                        s.key.0, s.valid_until
                    ));
                }
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// Prometheus text of every metric.
    pub fn render_metrics(&self, now: UnixTime) -> String {
        let stats = self.cache.stats();
        let g = self.current();
        let mut extra = vec![
            Sample {
                name: "ratls_verdict_cache_hits_total",
                kind: "counter",
                help: "Verdict cache hits (no quote verification).",
                values: vec![(Vec::new(), count(stats.hits))],
            },
            Sample {
                name: "ratls_verdict_cache_misses_total",
                kind: "counter",
                help: "Verdict cache misses.",
                values: vec![(Vec::new(), count(stats.misses))],
            },
            Sample {
                name: "ratls_verifications_total",
                kind: "counter",
                help: "Full RA-TLS verifications.",
                values: vec![(Vec::new(), count(stats.verifications))],
            },
        ];
        let (hits, misses) = match (&g.collateral.cache, &g.collateral.files) {
            (Some(c), _) => (c.stats().hits, c.stats().misses),
            (None, Some(f)) => f.hits_and_misses(),
            (None, None) => (0, 0),
        };
        extra.push(Sample {
            name: "ratls_collateral_cache_hits_total",
            kind: "counter",
            help: "Collateral lookups answered from a verified snapshot.",
            values: vec![(Vec::new(), count(hits))],
        });
        extra.push(Sample {
            name: "ratls_collateral_cache_misses_total",
            kind: "counter",
            help: "Collateral lookups with no snapshot.",
            values: vec![(Vec::new(), count(misses))],
        });
        if let Some(cache) = &g.collateral.cache {
            let st = cache.stats();
            extra.push(Sample {
                name: "ratls_collateral_fetches_total",
                kind: "counter",
                help: "Collateral fetch attempts.",
                values: vec![(Vec::new(), count(st.fetches))],
            });
            extra.push(Sample {
                name: "ratls_collateral_fetch_failures_total",
                kind: "counter",
                help: "Failed collateral fetches.",
                values: vec![(Vec::new(), count(st.failures))],
            });
            let snaps = cache.snapshots();
            let labels = |s: &crate::collateral::fetch::SnapshotInfo| {
                vec![
                    ("fmspc", s.key.0.to_string()),
                    ("ca", s.key.1.as_str().to_owned()),
                ]
            };
            extra.push(Sample {
                name: "ratls_collateral_age_seconds",
                kind: "gauge",
                help: "Seconds since the collateral snapshot was fetched.",
                values: snaps
                    .iter()
                    .map(|s| (labels(s), secs(now.0.saturating_sub(s.fetched_at.0))))
                    .collect(),
            });
            extra.push(Sample {
                name: "ratls_collateral_valid_seconds",
                kind: "gauge",
                help: "Seconds until the collateral snapshot expires (negative: expired).",
                values: snaps
                    .iter()
                    .map(|s| (labels(s), secs(s.valid_until.0.saturating_sub(now.0))))
                    .collect(),
            });
        }
        if let Some(files) = &g.collateral.files {
            extra.push(Sample {
                name: "ratls_collateral_valid_seconds",
                kind: "gauge",
                help: "Seconds until the collateral bundle expires (negative: expired).",
                values: files
                    .bundles()
                    .map(|b| {
                        (
                            vec![("fmspc", b.tcb_info.fmspc.to_string())],
                            secs(b.valid_until().0.saturating_sub(now.0)),
                        )
                    })
                    .collect(),
            });
        }
        self.metrics.render(self.cache.durations(), &extra)
    }

    /// Binds the proxy listener, every sidecar route and the admin listener, and serves.
    pub async fn start(self: Arc<Self>) -> std::io::Result<Running> {
        let g = self.current();
        g.start_refresher();
        let listener = TcpListener::bind(g.config.listen).await?;
        let addr = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(g.config.limits.max_connections));
        let mut tasks = vec![
            tokio::spawn(accept_loop(Arc::clone(&self), listener, Arc::clone(&slots))),
            tokio::spawn(sweep_loop(Arc::clone(&self))),
        ];
        let mut route_addrs = Vec::new();
        for route in &g.config.routes {
            let l = TcpListener::bind(route.listen).await?;
            route_addrs.push(l.local_addr()?);
            tasks.push(tokio::spawn(route_loop(
                Arc::clone(&self),
                l,
                route.listen,
                Arc::clone(&slots),
            )));
        }
        let admin_addr = match g.config.admin_listen {
            Some(a) => {
                let l = TcpListener::bind(a).await?;
                let bound = l.local_addr()?;
                tasks.push(tokio::spawn(crate::admin::serve(Arc::clone(&self), l)));
                Some(bound)
            }
            None => None,
        };
        self.listening.store(true, Ordering::SeqCst);
        tracing::info!(%addr, admin = ?admin_addr, routes = route_addrs.len(), enclaves = g.config.enclaves.len(), "ratls-proxy listening");
        Ok(Running {
            addr,
            route_addrs,
            admin_addr,
            proxy: self,
            tasks,
        })
    }
}

fn count(v: u64) -> f64 {
    // Counters stay far below 2^53 in practice; precision loss beyond is acceptable for metrics.
    #[allow(clippy::cast_precision_loss, clippy::as_conversions)]
    let f = v as f64;
    f
}

fn secs(v: i64) -> f64 {
    #[allow(clippy::cast_precision_loss, clippy::as_conversions)]
    let f = v as f64;
    f
}

/// The answer to a connection beyond `max_connections`: immediate, then closed.
fn overloaded() -> Vec<u8> {
    let body = r#"{"error":"proxy_internal_error","code":"too_many_connections","reasons":["too many client connections"]}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nproxy-status: ratls-proxy; error=proxy_internal_error; details=\"too_many_connections\"\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A client connection's place under `max_connections`, shared by the connection's task and
/// the tunnel it may become: hyper ends the first when a CONNECT is upgraded, so the tunnel
/// must hold the slot (and the open-connections gauge) until it closes. It also carries
/// where the connection's HTTP/1 exchange stands, which its [`Idle`] wrapper times.
struct ClientSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    phase: Arc<Phase>,
}

impl ClientSlot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, metrics: &Arc<Metrics>) -> Self {
        metrics.client_connections.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            metrics: Arc::clone(metrics),
            phase: Arc::default(),
        }
    }

    /// The client's socket, timed by this connection's phase.
    fn io(&self, tcp: TcpStream, limits: &Limits) -> Idle<TcpStream> {
        let phase = Arc::clone(&self.phase);
        Idle::http1(tcp, limits.idle_timeout, limits.header_read_timeout, phase)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.metrics
            .client_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Closes idle pooled upstream connections, at half the idle timeout (at most every 30 s).
async fn sweep_loop(proxy: Arc<Proxy>) {
    loop {
        let g = proxy.current();
        let tick = (g.config.limits.idle_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        g.pool.sweep();
        drop(g);
        tokio::time::sleep(tick).await;
    }
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener, slots: Arc<Semaphore>) {
    loop {
        let (tcp, client, slot) = next_client(&listener, &slots).await;
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let slot = Arc::new(ClientSlot::new(slot, &proxy.metrics));
            let limits = proxy.current().config.limits;
            let io = slot.io(tcp, &limits);
            let p = Arc::clone(&proxy);
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&p);
                let slot = Arc::clone(&slot);
                let serving = slot.phase.serving();
                async move {
                    let _serving = serving;
                    Ok::<_, Infallible>(handle(proxy, slot, client, req).await)
                }
            });
            let served = http1_server(&limits)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%client, error = %e, "client connection ended with an error");
            }
        });
    }
}

/// The next client connection admitted under `max_connections`. Accept errors (out of file
/// descriptors, say) are logged and retried after a pause; excess connections get 503.
async fn next_client(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit) {
    loop {
        match listener.accept().await {
            Ok((tcp, client)) => {
                if let Some((tcp, slot)) = admit(slots, tcp, client) {
                    return (tcp, client, slot);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The HTTP/1 server of every client-facing connection (proxy listener, routes, HTTP/1.1
/// inside intercepted tunnels), with the configured header size limit. The header read
/// timeout is [`Idle`]'s: hyper's would also close idle keep-alive connections.
fn http1_server(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    b
}

/// A place under `max_connections` for a new client connection, or `None` once the excess
/// connection was answered 503 and is being closed (in the background, within 1 s).
fn admit(
    slots: &Arc<Semaphore>,
    tcp: TcpStream,
    client: SocketAddr,
) -> Option<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut tcp = tcp;
            let _ =
                tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&overloaded())).await;
            let _ = tcp.shutdown().await;
        });
        tracing::warn!(%client, "connection refused: max_connections reached");
        return None;
    };
    let _ = tcp.set_nodelay(true);
    Some((tcp, slot))
}

/// A sidecar route's listener: plain HTTP in, attested TLS to one enclave out. Its
/// connections share `max_connections` with the proxy listener.
async fn route_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    listen: SocketAddr,
    slots: Arc<Semaphore>,
) {
    loop {
        let (tcp, client, slot) = next_client(&listener, &slots).await;
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let slot = ClientSlot::new(slot, &proxy.metrics);
            let p = Arc::clone(&proxy);
            let requests = Arc::clone(&slot.phase);
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&p);
                let serving = requests.serving();
                async move {
                    let _serving = serving;
                    // Routes follow reloads: look the route up in the generation in force.
                    let g = proxy.current();
                    let route = g
                        .config
                        .routes
                        .iter()
                        .find(|r| r.listen == listen)
                        .map(|r| g.target(&r.host, r.port, r.enclave));
                    match route {
                        Some(target) => relay_logged(proxy, g, &target, client, req).await,
                        None => Ok(refuse(
                            ProxyRefusal::Unreachable("this route was removed by a reload".into()),
                            "-",
                        )
                        .0),
                    }
                }
            });
            let limits = proxy.current().config.limits;
            let io = slot.io(tcp, &limits);
            let _ = http1_server(&limits)
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

fn access_log(
    proxy: &Proxy,
    client: SocketAddr,
    o: &Outcome,
    method: &Method,
    path: &str,
    status: StatusCode,
    start: Instant,
) {
    proxy
        .metrics
        .request(&o.host, o.verdict, o.code.as_deref().unwrap_or("-"));
    tracing::info!(
        target: "ratls_proxy::access",
        %client,
        host = %o.host,
        %method,
        path,
        status = status.as_u16(),
        verdict = o.verdict,
        code = o.code.as_deref().unwrap_or("-"),
        mrenclave = o
            .accepted
            .as_deref()
            .and_then(mrenclave_of)
            .as_deref()
            .unwrap_or("-"),
        upstream_ms = o.upstream.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
        total_ms = start.elapsed().as_secs_f64() * 1000.0,
    );
}

/// Entry point for every request on the proxy listener.
async fn handle(
    proxy: Arc<Proxy>,
    slot: Arc<ClientSlot>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let _inflight = proxy.drain.enter();
    let start = Instant::now();
    let method = req.method().clone();
    let path = if method == Method::CONNECT {
        String::new()
    } else {
        req.uri().path().to_owned()
    };
    let g = proxy.current();
    let (resp, outcome) = if method == Method::CONNECT {
        connect(Arc::clone(&proxy), g, slot, client, req).await
    } else {
        forward(&proxy, &g, req).await
    };
    access_log(
        &proxy,
        client,
        &outcome,
        &method,
        &path,
        resp.status(),
        start,
    );
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
    g: Arc<Generation>,
    slot: Arc<ClientSlot>,
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

    let Some((enclave, _)) = g.config.enclave_for(&host, port) else {
        return match g.config.unmatched {
            Unmatched::Deny => refuse(
                ProxyRefusal::DestinationDenied(format!(
                    "{host}:{port} is not a configured enclave host and unmatched = \"deny\""
                )),
                &host,
            ),
            Unmatched::Passthrough => tunnel(&proxy, slot, req, &host, port).await,
        };
    };

    let target = g.target(&host, port, enclave);
    let started = Instant::now();
    // The attested connection and its verdict come before any answer to the client.
    let conn = match g.pool.checkout(&target, &proxy.metrics).await {
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
        accepted: Some(Arc::clone(conn.verdict())),
        upstream: Some(started.elapsed()),
    };
    g.pool.checkin(&target, conn);
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
        // The tunnel holds the client's slot (and its phase) for its whole life.
        let slot = slot;
        let stream = {
            // The handshake holds shutdown open; the tunnel's idle traffic after it does not.
            let _tunnel = proxy.drain.enter();
            let timeout = g.config.limits.client_tls_timeout;
            // Boxed: the handshake's state is large and short-lived; inline it would stay
            // allocated in the task for the whole life of the tunnel.
            match Box::pin(accept_client_tls(req, tls, timeout, client, &target.host)).await {
                Some(s) => s,
                None => return,
            }
        };
        serve_tunnel(proxy, g, target, client, stream, &slot.phase).await;
    });
    (Response::new(empty()), outcome)
}

/// The client's TLS session inside an answered CONNECT, within `timeout`; `None` (logged)
/// if the upgrade, the handshake or the deadline fails.
async fn accept_client_tls(
    req: Request<Incoming>,
    tls: Arc<rustls::ServerConfig>,
    timeout: Duration,
    client: SocketAddr,
    host: &str,
) -> Option<Box<ClientTls>> {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%client, error = %e, "CONNECT upgrade failed");
            return None;
        }
    };
    match tokio::time::timeout(
        timeout,
        TlsAcceptor::from(tls).accept(TokioIo::new(upgraded)),
    )
    .await
    {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::info!(%client, host, error = %e, "client TLS handshake failed (does the client trust the ratls-proxy CA?)");
            None
        }
        Err(_) => {
            tracing::info!(%client, host, "client TLS handshake timed out");
            None
        }
    }
}

/// The proxy's TLS session with an intercepted client.
type ClientTls = tokio_rustls::server::TlsStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Serves the requests of one intercepted tunnel over the client's TLS session.
async fn serve_tunnel(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    target: Target,
    client: SocketAddr,
    stream: Box<ClientTls>,
    phase: &Arc<Phase>,
) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        // HTTP/2 multiplexes: there is no "next head" to time, only the idle timeout.
        phase.off();
    }
    let limits = g.config.limits;
    let p = Arc::clone(&proxy);
    let phase = Arc::clone(phase);
    // Shared, not cloned, by the tunnel's requests: a `Target` is two strings.
    let target = Arc::new(target);
    let service = hyper::service::service_fn(move |req| {
        let proxy = Arc::clone(&p);
        let (g, target) = (Arc::clone(&g), Arc::clone(&target));
        let serving = phase.serving();
        async move {
            let _serving = serving;
            let _inflight = proxy.drain.enter();
            relay_logged(Arc::clone(&proxy), g, &target, client, req).await
        }
    });
    let io = TokioIo::new(stream);
    // ALPN already chose the protocol, so no preface sniffing (hyper-util's auto builder):
    // its read-ahead doubled each connection's HTTP/1 read buffer to 16 KiB for its lifetime.
    // The listener's header limits apply inside the tunnel too.
    let served = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .serve_connection(io, service)
            .await
    } else {
        http1_server(&limits).serve_connection(io, service).await
    };
    if let Err(e) = served {
        tracing::debug!(%client, error = %e, "intercepted connection ended with an error");
    }
}

fn mrenclave_of(v: &crate::ratls::cache::CachedVerdict) -> Option<String> {
    v.appraisal
        .appraisal
        .quote
        .as_ref()
        .map(|q| q.identity.mrenclave.to_string())
}

/// The optional header that tells the client what was verified.
fn attestation_header(v: &crate::ratls::cache::CachedVerdict) -> Option<http::HeaderValue> {
    let a = &v.appraisal.appraisal;
    let q = a.quote.as_ref()?;
    let tcb = a.tcb.as_ref()?;
    let binding = v.appraisal.binding.map_or("-", |b| b.as_str());
    http::HeaderValue::from_str(&format!(
        "mrenclave={}; mrsigner={}; isv_prod_id={}; isv_svn={}; tcb={}; binding={binding}; verified_at={}",
        q.identity.mrenclave,
        q.identity.mrsigner,
        q.identity.isv_prod_id,
        q.identity.isv_svn,
        tcb.status,
        a.verified_at.to_rfc3339()
    ))
    .ok()
}

/// Sends one request over an attested connection to `target` and returns its response.
async fn relay(
    proxy: &Proxy,
    g: &Generation,
    target: &Target,
    req: Request<ProxyBody>,
) -> (Response<ProxyBody>, Outcome) {
    let started = Instant::now();
    let req = req.map(|b| Counting::new(b, Arc::clone(&proxy.metrics.bytes_to_upstreams)).boxed());
    // Mirror the client's HTTP version upstream where the pool can.
    let version = if req.version() == http::Version::HTTP_2 {
        Version::Http2
    } else {
        Version::Http1
    };
    match g.pool.send(target, req, &proxy.metrics, version).await {
        Ok((mut resp, verdict)) => {
            strip_hop_by_hop(resp.headers_mut());
            if g.config.attestation_header {
                if let Some(v) = attestation_header(&verdict) {
                    resp.headers_mut().insert("ratls-attestation", v);
                }
            }
            let outcome = Outcome {
                host: target.host.clone(),
                verdict: "accepted",
                code: None,
                accepted: Some(verdict),
                upstream: Some(started.elapsed()),
            };
            let counter = Arc::clone(&proxy.metrics.bytes_to_clients);
            (
                resp.map(|b| Counting::new(b.boxed(), counter).boxed()),
                outcome,
            )
        }
        Err(e) => refuse(from_upstream(e), &target.host),
    }
}

/// One request inside an intercepted tunnel or on a sidecar route: relay and log it.
async fn relay_logged(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    target: &Target,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let (resp, outcome) = relay(&proxy, &g, target, req.map(BodyExt::boxed)).await;
    access_log(
        &proxy,
        client,
        &outcome,
        &method,
        &path,
        resp.status(),
        start,
    );
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

/// A plain TCP connection to a non-enclave destination, within the connect timeout.
async fn dial_plain(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ProxyRefusal> {
    let dial = dial_addr(host, port);
    let timeout = proxy.current().config.limits.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect(&dial)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ProxyRefusal::Unreachable(format!(
            "cannot connect to {dial}: {e}"
        ))),
        Err(_) => Err(ProxyRefusal::Timeout(format!(
            "no connection to {dial} within {}s",
            timeout.as_secs()
        ))),
    }
}

/// A plain CONNECT tunnel to a non-enclave destination.
async fn tunnel(
    proxy: &Arc<Proxy>,
    slot: Arc<ClientSlot>,
    req: Request<Incoming>,
    host: &str,
    port: u16,
) -> (Response<ProxyBody>, Outcome) {
    let started = Instant::now();
    let mut upstream = match dial_plain(proxy, host, port).await {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal, host),
    };
    let _ = upstream.set_nodelay(true);
    // Bytes, not HTTP, from here on: no request head to time.
    slot.phase.off();
    let p = Arc::clone(proxy);
    tokio::spawn(async move {
        let _slot = slot;
        let _tunnel = p.drain.enter();
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            if let Ok((up, down)) =
                tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await
            {
                p.metrics
                    .bytes_to_upstreams
                    .fetch_add(up, Ordering::Relaxed);
                p.metrics
                    .bytes_to_clients
                    .fetch_add(down, Ordering::Relaxed);
            }
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
async fn forward(
    proxy: &Proxy,
    g: &Generation,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Outcome) {
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return refuse(ProxyRefusal::BadRequest("this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT".into()),
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
    if let Some((enclave, _)) = g.config.enclave_for(&host, enclave_port) {
        let target = g.target(&host, enclave_port, enclave);
        return relay(proxy, g, &target, req.map(BodyExt::boxed)).await;
    }
    match g.config.unmatched {
        Unmatched::Deny => refuse(
            ProxyRefusal::RequestDenied(format!(
                "{host} is not a configured enclave host and unmatched = \"deny\""
            )),
            &host,
        ),
        Unmatched::Passthrough => plain_http(proxy, req, &host, explicit_port.unwrap_or(80)).await,
    }
}

/// Forwards a plain HTTP request to a non-enclave destination.
async fn plain_http(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    host: &str,
    port: u16,
) -> (Response<ProxyBody>, Outcome) {
    let dial = dial_addr(host, port);
    let started = Instant::now();
    let tcp = match dial_plain(proxy, host, port).await {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal, host),
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
