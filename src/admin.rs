//! EDGE. The admin listener: `/healthz`, `/readyz` (readiness is decided here), `/metrics`
//! (rendered here), `/tcb` (each enclave host under Intel's standard and early TCB data) and
//! `POST /reload`. Started by whoever starts the proxy; loopback by
//! default; it exposes no secrets (no keys, no API keys, no request bodies).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::dcap::collateral::tcb_info::CollateralTee;
use crate::dcap::quote::TeeType;
use crate::dcap::time::UnixTime;
use crate::metrics::Sample;
use crate::proxy::{next_client, Proxy};
use crate::source::fetch::SnapshotInfo;
use crate::source::{CollateralSetup, SnpSetup};

/// How long a client may take to send its request head.
mod snp;
mod tcb;

use tcb::tcb_page;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once; beyond, a connection is answered 503 and closed, so
/// local clients cannot spend the process's file descriptors on the admin port (probes,
/// a scraper and an operator need a handful).
const MAX_CONNECTIONS: usize = 16;

/// The longest an admin connection lives, whatever it does: one request each (no
/// keep-alive), its head within `HEADER_READ_TIMEOUT`, a reload included.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// Readiness, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Why not (empty when ready).
    pub reasons: Vec<String>,
    /// What an operator should know that does not make it unready (enclave hosts at risk
    /// under Intel's early TCB data).
    pub details: Vec<String>,
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{value}\n"))
}

/// Who may talk to the admin listener: requests naming it by its own address (no browser
/// page from elsewhere, no request relayed by a proxy under another name), with the bearer
/// token where one is configured.
struct Gate {
    /// `Host` values that name this listener.
    hosts: Vec<String>,
    /// The token `POST /reload`, `GET /metrics` and `/readyz`'s reasons need, if configured.
    token: Option<String>,
}

impl Gate {
    fn new(bound: SocketAddr, token: Option<String>) -> Self {
        let mut hosts = vec![bound.to_string()];
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{}", bound.port()));
        }
        Self { hosts, token }
    }

    /// The refusal for `req`, if it may not pass.
    fn check(&self, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let forbidden = |why: &str| {
            Some(json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "forbidden", "reason": why}),
            ))
        };
        if req.headers().contains_key(http::header::ORIGIN) {
            return forbidden("requests with an Origin header (browser pages) are refused");
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| self.hosts.iter().any(|own| own.eq_ignore_ascii_case(h))) {
            return forbidden("the Host header must name this admin listener's own address");
        }
        let guarded = matches!(
            (req.method(), req.uri().path()),
            (&Method::POST, "/reload") | (&Method::GET, "/metrics" | "/tcb")
        );
        if guarded && !self.authorized(req) {
            return Some(json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "unauthorized", "reason": "this endpoint needs Authorization: Bearer <admin token>"}),
            ));
        }
        None
    }

    /// True if no token is configured, or `req` carries it.
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(proxy: Arc<Proxy>, gate: &Gate, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(refused) = gate.check(&req) {
        return refused;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let r = readiness(&proxy, UnixTime::now());
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            // The reasons and details name platforms, hosts and collateral sources: with a
            // token, only for it (probes read the status alone).
            let body = if gate.authorized(&req) {
                serde_json::json!({"ready": r.ready, "reasons": r.reasons, "details": r.details})
            } else {
                serde_json::json!({"ready": r.ready})
            };
            json(status, &body)
        }
        (&Method::GET, "/tcb") => json(StatusCode::OK, &tcb_page(&proxy, UnixTime::now())),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(&proxy, UnixTime::now()),
        ),
        (&Method::POST, "/reload") => match proxy.reload().await {
            Ok(done) => json(
                StatusCode::OK,
                &serde_json::json!({"reloaded": true, "detail": done.to_string()}),
            ),
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"reloaded": false, "error": e.to_string()}),
            ),
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/tcb" | "/reload") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "method not allowed"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics", "/tcb", "POST /reload"]}),
        ),
    }
}

/// Binds `addr` and serves the admin endpoints for `proxy` until the task is aborted;
/// reads the admin token file first (a missing or empty one is an error).
pub(crate) async fn start(
    proxy: Arc<Proxy>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let token = match &proxy.current().config.admin_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("admin_token_file {}: {e}", path.display()),
                )
            })?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("admin_token_file {} is empty", path.display()),
                ));
            }
            Some(token)
        }
        None => None,
    };
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    proxy.add_own_addr(bound);
    let gate = Arc::new(Gate::new(bound, token));
    Ok((bound, tokio::spawn(serve(proxy, listener, gate))))
}

async fn serve(proxy: Arc<Proxy>, listener: TcpListener, gate: Arc<Gate>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, _, slot) = next_client(&listener, &slots).await;
        let proxy = Arc::clone(&proxy);
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                let gate = Arc::clone(&gate);
                async move { Ok::<_, Infallible>(route(proxy, &gate, req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, served).await;
        });
    }
}

/// Whether the proxy can serve: listening, CA loaded (always, once built), and
/// collateral for the configured enclaves present and unexpired.
fn readiness(proxy: &Proxy, now: UnixTime) -> Readiness {
    let mut reasons = Vec::new();
    if !proxy.is_listening() {
        reasons.push("listeners are not bound".to_owned());
    }
    let g = proxy.current();
    if !g.config.enclaves.is_empty() {
        if let CollateralSetup::Files(files) = g.collateral.as_ref() {
            for ((fmspc, ca, tee), b) in files.keyed() {
                if let Err(e) = b.check_fresh(now) {
                    reasons.push(format!(
                        "{} collateral for FMSPC {fmspc} ({} CA): {e}",
                        bundle_tee(*tee),
                        ca.as_str()
                    ));
                }
            }
        }
        if let CollateralSetup::Fetched(cache) = g.collateral.as_ref() {
            let snapshots = cache.snapshots();
            // Prefetch fetches SGX collateral (either PCK CA will do).
            for f in &g.config.source.prefetch {
                if !snapshots
                    .iter()
                    .any(|s| s.key.0 == *f && s.key.2 == TeeType::Sgx && now <= s.valid_until)
                {
                    reasons.push(format!("no unexpired sgx collateral for FMSPC {f} yet"));
                }
            }
            for s in snapshots.iter().filter(|s| now > s.valid_until) {
                reasons.push(format!(
                    "{} collateral for FMSPC {} ({} CA) expired at {}",
                    tee_label(s.key.2),
                    s.key.0,
                    s.key.1.as_str(),
                    s.valid_until
                ));
            }
        }
    }
    if let Some(why) = g.snp.as_ref().and_then(SnpSetup::failure) {
        reasons.push(format!("SEV-SNP collateral could not be set up: {why}"));
    }
    if let Some(why) = g.nitro.as_ref().and_then(|n| n.failure()) {
        reasons.push(format!("AWS Nitro collateral could not be set up: {why}"));
    }
    let at_risk: Vec<String> = proxy
        .tcb_watch()
        .hosts()
        .iter()
        .filter(|h| h.at_risk())
        .map(|h| match h.standard_from() {
            Some(t) => format!("{} (from {t})", h.host),
            None => h.host.clone(),
        })
        .collect();
    let details = if at_risk.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} enclave host(s) at risk: Intel's early TCB data refuses them, and it becomes the standard data on the date given: {} (GET /tcb)",
            at_risk.len(),
            at_risk.join(", ")
        )]
    };
    Readiness {
        ready: reasons.is_empty(),
        reasons,
        details,
    }
}

/// Prometheus text of every metric.
fn render_metrics(proxy: &Proxy, now: UnixTime) -> String {
    let stats = proxy.cache_stats();
    let g = proxy.current();
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
    let (hits, misses) = match g.collateral.as_ref() {
        CollateralSetup::Fetched(c) => (c.stats().hits, c.stats().misses),
        CollateralSetup::Files(f) => f.hits_and_misses(),
        CollateralSetup::Unconfigured | CollateralSetup::Bundle(_) => (0, 0),
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
    if let CollateralSetup::Fetched(cache) = g.collateral.as_ref() {
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
        extra.push(Sample {
            name: "ratls_collateral_rollbacks_total",
            kind: "counter",
            help: "Fetched collateral refused as older than the high-water marks.",
            values: vec![(Vec::new(), count(st.rollbacks))],
        });
        extra.push(Sample {
            name: "ratls_collateral_marks_write_failures_total",
            kind: "counter",
            help: "Failed writes of the collateral high-water marks file.",
            values: vec![(Vec::new(), count(proxy.marks().write_failures()))],
        });
        let snaps = cache.snapshots();
        let labels = |s: &SnapshotInfo| {
            vec![
                ("fmspc", s.key.0.to_string()),
                ("ca", s.key.1.as_str().to_owned()),
                ("tee", tee_label(s.key.2).to_owned()),
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
    if let CollateralSetup::Files(files) = g.collateral.as_ref() {
        extra.push(Sample {
            name: "ratls_collateral_valid_seconds",
            kind: "gauge",
            help: "Seconds until the collateral bundle expires (negative: expired).",
            values: files
                .keyed()
                .map(|((fmspc, ca, tee), b)| {
                    (
                        vec![
                            ("fmspc", fmspc.to_string()),
                            ("ca", ca.as_str().to_owned()),
                            ("tee", bundle_tee(*tee).to_owned()),
                        ],
                        secs(b.valid_until().0.saturating_sub(now.0)),
                    )
                })
                .collect(),
        });
    }
    if let CollateralSetup::Fetched(cache) = g.collateral.as_ref() {
        let st = cache.early_stats();
        extra.push(Sample {
            name: "ratls_collateral_early_failures_total",
            kind: "counter",
            help: "Early TCB data fetches that failed or were refused (the standard data unaffected).",
            values: vec![(Vec::new(), count(st.failures))],
        });
        extra.push(Sample {
            name: "ratls_collateral_early_rollbacks_total",
            kind: "counter",
            help: "Fetched early TCB data refused as older than its own high-water marks.",
            values: vec![(Vec::new(), count(st.rollbacks))],
        });
    }
    if let Some(kds) = g.snp.as_ref().and_then(SnpSetup::kds) {
        extra.extend(snp::kds_samples(kds));
    }
    if let Some(crls) = &g.nitro {
        extra.extend(snp::nitro_samples(crls));
    }
    let hosts = proxy.tcb_watch().hosts();
    let label = |h: &crate::tcb_watch::HostTcb| {
        vec![
            ("host", h.host.clone()),
            ("tee", h.tee.map(str::to_lowercase).unwrap_or_default()),
        ]
    };
    extra.push(Sample {
        name: "ratls_enclave_tcb_at_risk",
        kind: "gauge",
        help: "1 if Intel's early TCB data (the next TCB recovery) refuses the enclave host's latest verdict, else 0.",
        values: hosts
            .iter()
            .filter(|h| h.tee.is_some())
            .map(|h| (label(h), if h.at_risk() { 1.0 } else { 0.0 }))
            .collect(),
    });
    extra.push(Sample {
        name: "ratls_enclave_tcb_standard_from_seconds",
        kind: "gauge",
        help: "When the early TCB data the enclave host was judged under becomes Intel's standard data (Unix seconds).",
        values: hosts
            .iter()
            .filter(|h| h.tee.is_some())
            .filter_map(|h| Some((label(h), secs(h.standard_from()?.0))))
            .collect(),
    });
    let loads = crate::proxy::thread_loads();
    if !loads.is_empty() {
        extra.push(Sample {
            name: "ratls_thread_client_connections",
            kind: "gauge",
            help: "Client connections each connection thread serves (tunnels included).",
            values: loads
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (
                        vec![("thread", i.to_string())],
                        count(u64::try_from(*n).unwrap_or(u64::MAX)),
                    )
                })
                .collect(),
        });
    }
    extra.extend(crate::metrics::allocator_samples());
    proxy
        .metrics()
        .render(proxy.verdict_cache().durations(), &extra)
}

/// The `tee` label: the TEE as the configuration spells it.
fn tee_label(t: TeeType) -> &'static str {
    match t {
        TeeType::Sgx => "sgx",
        TeeType::Tdx => "tdx",
    }
}

fn bundle_tee(t: CollateralTee) -> &'static str {
    match t {
        CollateralTee::Sgx => "sgx",
        CollateralTee::Tdx => "tdx",
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
