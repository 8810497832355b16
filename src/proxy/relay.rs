//! One request relayed over an attested upstream connection, what the proxy decided for
//! each request ([`Verdict`]), and the one access-log call that records it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::judge::{Checkpoint, Cut, Judge};
use super::judged::{Judged, OnCut};
use super::pool::Version;
use super::refusal::{from_upstream, Format, ProxyRefusal};
use super::rewrite::strip_hop_by_hop;
use super::state::{DrainGuard, Generation, Proxy};
use super::target::Target;
use super::{empty, ProxyBody};
use crate::config::{MetricsHostLabels, RefusalDetails};
use crate::dcap::identity::Identity;
use crate::dcap::quote::TeeType;
use crate::metrics::Counting;
use crate::ratls::cache::CachedVerdict;

/// What the proxy decided for one request.
pub(super) enum Verdict {
    /// Relayed over an attested connection admitted by this verdict.
    Accepted(Arc<CachedVerdict>),
    /// Tunnelled or forwarded to a non-enclave destination.
    Passthrough,
    /// Answered by the proxy: refused, denied, or failed.
    Refused(ProxyRefusal),
}

impl Verdict {
    /// The access log's and metrics' `verdict` label.
    fn label(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Passthrough => "passthrough",
            Self::Refused(ProxyRefusal::Attestation(_)) => "refused",
            Self::Refused(
                ProxyRefusal::DestinationDenied(_)
                | ProxyRefusal::RequestDenied(_)
                | ProxyRefusal::MethodNotAllowed(_)
                | ProxyRefusal::Misdirected(_),
            ) => "denied",
            Self::Refused(_) => "error",
        }
    }

    /// The access log's and metrics' `code` label: the refusal code, else `-`.
    fn code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.code(),
            Self::Accepted(_) | Self::Passthrough => "-",
        }
    }

    /// The measurement of an accepted connection (SGX MRENCLAVE or TD MRTD), formatted
    /// only when the access log is on (per request, that formatting was measurable work).
    fn measurement(&self, tee: TeeType) -> Option<String> {
        let Self::Accepted(v) = self else {
            return None;
        };
        let q = v.appraisal.appraisal.quote.as_ref()?;
        match (&q.identity, tee) {
            (Identity::Sgx(e), TeeType::Sgx) => Some(e.mrenclave.to_string()),
            (Identity::Td(t), TeeType::Tdx) => Some(t.mr_td.to_string()),
            _ => None,
        }
    }
}

/// What the access log records about one request.
pub(super) struct Outcome {
    /// The destination host as the client named it.
    pub(super) host: String,
    /// The decision.
    pub(super) verdict: Verdict,
    /// Time to an upstream connection or response, when there was one.
    pub(super) upstream: Option<Duration>,
    /// The destination is an enclave host (metrics name it; others only when asked).
    pub(super) enclave: bool,
}

impl Outcome {
    /// This outcome, for an enclave destination.
    pub(super) fn at_enclave(mut self) -> Self {
        self.enclave = true;
        self
    }
}

/// A response and its outcome, for an enclave destination.
pub(super) fn at_enclave<R>((resp, outcome): (R, Outcome)) -> (R, Outcome) {
    (resp, outcome.at_enclave())
}

/// The response as the configuration and the client allow it to be seen: with
/// `refusal_details = "code"` a refusal is rendered again without its reasons (they stay in
/// the log), and for a client that asked for HTML (`Accept`) as a page. A success is left
/// as it is: that is a refused CONNECT answered with the page inside its tunnel.
pub(super) fn as_configured(
    g: &Generation,
    resp: Response<ProxyBody>,
    o: &Outcome,
    format: Format,
) -> Response<ProxyBody> {
    match &o.verdict {
        Verdict::Refused(r)
            if !resp.status().is_success()
                && (g.config.refusal_details == RefusalDetails::Code || format == Format::Html) =>
        {
            r.rendered(&o.host, g.config.refusal_details, format)
        }
        _ => resp,
    }
}

/// Milliseconds rounded to the microsecond (the log showed `1.4232500000000001`).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The one access-log call (and request metric) for every request the proxy answers.
pub(super) fn access_log(
    proxy: &Proxy,
    client: SocketAddr,
    o: &Outcome,
    method: &Method,
    path: &str,
    status: StatusCode,
    start: Instant,
) {
    log_access(proxy, client, o, (method, path), status, start, None);
}

/// How a line's exchange ended, when it is written at the end: an upgraded connection's
/// close, or a cut.
enum Ended<'a> {
    Upgrade(&'a Closed<'a>),
    Cut(&'a str),
}

/// The access line and request metric; an upgraded connection's line (at close) adds the
/// upgrade, its bytes each way and how it ended, a cut's line how it ended (`None` fields
/// are not written).
fn log_access(
    proxy: &Proxy,
    client: SocketAddr,
    o: &Outcome,
    (method, path): (&Method, &str),
    status: StatusCode,
    start: Instant,
    ended: Option<Ended<'_>>,
) {
    let code = o.verdict.code();
    // Other destinations say where a local user went: named only when the operator asks.
    let named = o.enclave || proxy.current().config.metrics_host_labels == MetricsHostLabels::All;
    let label = if named { o.host.as_str() } else { "-" };
    proxy.metrics.request(label, o.verdict.label(), code);
    let closed = match &ended {
        Some(Ended::Upgrade(c)) => Some(*c),
        _ => None,
    };
    let end = match &ended {
        Some(Ended::Upgrade(c)) => Some(c.end),
        Some(Ended::Cut(end)) => Some(*end),
        None => None,
    };
    tracing::info!(
        target: "ratls_proxy::access",
        %client,
        host = %o.host,
        %method,
        path,
        status = status.as_u16(),
        verdict = o.verdict.label(),
        code,
        mrenclave = o.verdict.measurement(TeeType::Sgx).as_deref().unwrap_or("-"),
        mrtd = o.verdict.measurement(TeeType::Tdx).as_deref().unwrap_or("-"),
        upstream_ms = o.upstream.map_or(-1.0, ms),
        total_ms = ms(start.elapsed()),
        upgrade = closed.map(|_| "websocket"),
        bytes_up = closed.map(|c| c.up),
        bytes_down = closed.map(|c| c.down),
        end,
    );
}

/// The proxy's own answer to a request, and its outcome.
pub(super) fn refuse(refusal: ProxyRefusal, host: &str) -> (Response<ProxyBody>, Outcome) {
    match &refusal {
        ProxyRefusal::Attestation(r) => {
            tracing::warn!(host, code = %r.code, reasons = ?r.reasons, "attestation refused");
        }
        ProxyRefusal::Destination(code, reason) => {
            tracing::warn!(host, %code, reason, "destination refused");
        }
        _ => {}
    }
    let response = refusal.response(host, RefusalDetails::Full);
    let outcome = Outcome {
        host: host.to_owned(),
        verdict: Verdict::Refused(refusal),
        upstream: None,
        enclave: false,
    };
    (response, outcome)
}

/// The header in which the proxy tells the client what it verified.
pub(super) const ATTESTATION_HEADER: &str = "ratls-attestation";

/// [`ATTESTATION_HEADER`] as a header name: removed from every response, and a `&str` name
/// is parsed again on each use.
static ATTESTATION: http::HeaderName = http::HeaderName::from_static(ATTESTATION_HEADER);

/// The optional header that tells the client what was verified.
fn attestation_header(v: &CachedVerdict) -> Option<http::HeaderValue> {
    let a = &v.appraisal.appraisal;
    let q = a.quote.as_ref()?;
    let tcb = a.tcb.as_ref()?;
    let binding = v.appraisal.binding.map_or("-", |b| b.as_str());
    let identity = match &q.identity {
        Identity::Sgx(e) => format!(
            "mrenclave={}; mrsigner={}; isv_prod_id={}; isv_svn={}",
            e.mrenclave, e.mrsigner, e.isv_prod_id, e.isv_svn
        ),
        Identity::Td(t) => format!(
            "mrtd={}; rtmr0={}; rtmr1={}; rtmr2={}; rtmr3={}; mrseam={}",
            t.mr_td, t.rtmr[0], t.rtmr[1], t.rtmr[2], t.rtmr[3], t.mr_seam
        ),
    };
    http::HeaderValue::from_str(&format!(
        "{identity}; tcb={}; binding={binding}; verified_at={}",
        tcb.status,
        a.verified_at.to_rfc3339()
    ))
    .ok()
}

/// What the access log says about an exchange a cut ends after its response head went out.
pub(super) struct Exchange {
    pub(super) client: SocketAddr,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) status: StatusCode,
    pub(super) start: Instant,
}

/// Writes the access line of `exchange` with `target` when a cut ends its response.
pub(super) fn log_cut(proxy: &Arc<Proxy>, target: &Arc<Target>, exchange: Exchange) -> OnCut {
    let (proxy, target) = (Arc::clone(proxy), Arc::clone(target));
    Box::new(move |refusal| {
        access_log_cut(&proxy, target.dest.host.to_string(), &exchange, refusal);
    })
}

/// Who asked for one exchange: what its access-log line needs should a cut end it after
/// its response head went out.
pub(super) struct Asked<'a> {
    pub(super) client: SocketAddr,
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) start: Instant,
}

/// Sends one request over an attested connection to `target` and returns its response.
/// Both bodies go under the exchange's [`Judge`]; while the response head is awaited, a
/// change that refuses the enclave answers the client with the refusal at once.
pub(super) async fn relay(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    target: &Arc<Target>,
    req: Request<Incoming>,
    asked: Asked<'_>,
) -> (Response<ProxyBody>, Outcome) {
    let started = Instant::now();
    let host = target.dest.host.to_string();
    // Mirror the client's HTTP version upstream where the pool can.
    let version = if req.version() == http::Version::HTTP_2 {
        Version::Http2
    } else {
        Version::Http1
    };
    let conn = match g.pool.checkout_for(target, &proxy.metrics, version).await {
        Ok(c) => c,
        Err(e) => return at_enclave(refuse(from_upstream(e), &host)),
    };
    let verdict = Arc::clone(conn.verdict());
    let judge = Arc::new(Judge::new(proxy, g, target, Arc::clone(&verdict)));
    let to_upstream = &proxy.metrics.bytes_to_upstreams;
    let req = req.map(|body| {
        if hyper::body::Body::is_end_stream(&body) {
            return empty();
        }
        let judged = Judged::new(
            body,
            Checkpoint::new(Arc::clone(&judge), Cut::Request),
            None,
        );
        Counting::new(judged, Arc::clone(to_upstream)).boxed()
    });
    let sent = tokio::select! {
        sent = g.pool.send_on(target, conn, req) => sent.map_err(from_upstream),
        refusal = judge.refused_by_change(Cut::Request) => Err(refusal),
    };
    // The head passes the checkpoint like a chunk; a failure an upload's cut caused is
    // that cut.
    let mut checkpoint = Checkpoint::new(Arc::clone(&judge), Cut::Request);
    let mut resp = match sent.and_then(|resp| checkpoint.pass().map(|_| resp)) {
        Ok(resp) => resp,
        Err(e) => return at_enclave(refuse(judge.refused().unwrap_or(e), &host)),
    };
    speak_for(g, resp.headers_mut(), &verdict);
    let exchange = Exchange {
        client: asked.client,
        method: asked.method.clone(),
        path: asked.path.to_owned(),
        status: resp.status(),
        start: asked.start,
    };
    let outcome = Outcome {
        host,
        verdict: Verdict::Accepted(verdict),
        upstream: Some(started.elapsed()),
        enclave: true,
    };
    let counter = Arc::clone(&proxy.metrics.bytes_to_clients);
    // In flight until its body is done, not only its head: shutdown waits for it.
    let inflight = proxy.drain.enter();
    let resp = resp.map(|b| {
        let body = InFlight {
            body: b,
            _inflight: inflight,
        };
        let checkpoint = checkpoint.cutting(Cut::Response);
        let on_cut = log_cut(proxy, target, exchange);
        Counting::new(Judged::new(body, checkpoint, Some(on_cut)), counter).boxed()
    });
    (resp, outcome)
}

/// A response body counted as in flight (for shutdown's drain) until it ends or is dropped.
struct InFlight<B> {
    body: B,
    _inflight: DrainGuard,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The head of a response from an attested connection, as the client gets it: hop-by-hop
/// headers out, and only the proxy speaks for the enclave (whatever upstream sent under the
/// attestation header's name goes; ours is added only when configured).
pub(super) fn speak_for(g: &Generation, headers: &mut http::HeaderMap, verdict: &CachedVerdict) {
    strip_hop_by_hop(headers);
    headers.remove(&ATTESTATION);
    if g.config.attestation_header {
        if let Some(v) = attestation_header(verdict) {
            headers.insert(ATTESTATION.clone(), v);
        }
    }
}

/// How an upgraded connection ended, for its access-log line at close.
pub(super) struct Closed<'a> {
    /// Bytes from the client to the upstream.
    pub(super) up: u64,
    /// Bytes from the upstream to the client.
    pub(super) down: u64,
    /// `closed`, `refused: <code>` or what failed.
    pub(super) end: &'a str,
}

/// The access-log line (and request metric) of an upgraded connection, written when it
/// closes: the status the client got for the switch, the bytes each way, its whole life.
#[allow(clippy::too_many_arguments)]
pub(super) fn access_log_closed(
    proxy: &Proxy,
    client: SocketAddr,
    o: &Outcome,
    method: &Method,
    path: &str,
    status: StatusCode,
    start: Instant,
    closed: &Closed<'_>,
) {
    log_access(
        proxy,
        client,
        o,
        (method, path),
        status,
        start,
        Some(Ended::Upgrade(closed)),
    );
}

/// The access-log line (and request metric) of an exchange cut after its response head
/// went out: the refusal's verdict and code, the status the client already had, and
/// `end = "cut: <code>"`. The exchange's own line, written with its head, stays as it was.
fn access_log_cut(proxy: &Proxy, host: String, e: &Exchange, refusal: &ProxyRefusal) {
    let end = format!("cut: {}", refusal.code());
    let outcome = Outcome {
        host,
        verdict: Verdict::Refused(refusal.clone()),
        upstream: None,
        enclave: true,
    };
    log_access(
        proxy,
        e.client,
        &outcome,
        (&e.method, &e.path),
        e.status,
        e.start,
        Some(Ended::Cut(&end)),
    );
}
