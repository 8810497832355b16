//! What the proxy decided for each request ([`Verdict`], [`Outcome`]) and the access-log
//! calls that record it (and the request metric).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Response, StatusCode};

use super::body::ProxyBody;
use super::judge::judged::OnCut;
use super::refusal::{Format, ProxyRefusal};
use super::state::{Generation, Proxy};
use super::target::Target;
use crate::config::{MetricsHostLabels, RefusalDetails};
use crate::dcap::identity::Identity;
use crate::dcap::quote::TeeType;
use crate::ratls::cache::CachedVerdict;

/// What the proxy decided for one request.
pub(crate) enum Verdict {
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
pub(crate) struct Outcome {
    /// The destination host as the client named it.
    pub(crate) host: String,
    /// The decision.
    pub(crate) verdict: Verdict,
    /// Time to an upstream connection or response, when there was one.
    pub(crate) upstream: Option<Duration>,
    /// The destination is an enclave host (metrics name it; others only when asked).
    pub(crate) enclave: bool,
}

impl Outcome {
    /// This outcome, for an enclave destination.
    pub(crate) fn at_enclave(mut self) -> Self {
        self.enclave = true;
        self
    }

    /// What passthrough to `host` records: no verdict, the time to its upstream.
    pub(crate) fn passed(host: String, started: Instant) -> Self {
        Self {
            host,
            verdict: Verdict::Passthrough,
            upstream: Some(started.elapsed()),
            enclave: false,
        }
    }
}

/// A response and its outcome, for an enclave destination.
pub(crate) fn at_enclave<R>((resp, outcome): (R, Outcome)) -> (R, Outcome) {
    (resp, outcome.at_enclave())
}

/// The response as the configuration and the client allow it to be seen: with
/// `refusal_details = "code"` a refusal is rendered again without its reasons (they stay in
/// the log), and for a client that asked for HTML (`Accept`) as a page. A success is left
/// as it is: that is a refused CONNECT answered with the page inside its tunnel.
pub(crate) fn as_configured(
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
pub(crate) fn access_log(
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
pub(crate) fn refuse(refusal: ProxyRefusal, host: &str) -> (Response<ProxyBody>, Outcome) {
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

/// What the access log says about an exchange a cut ends after its response head went out.
pub(crate) struct Exchange {
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: StatusCode,
    pub(crate) start: Instant,
}

/// Writes the access line of `exchange` with `target` when a cut ends its response.
pub(crate) fn log_cut(proxy: &Arc<Proxy>, target: &Arc<Target>, exchange: Exchange) -> OnCut {
    let (proxy, target) = (Arc::clone(proxy), Arc::clone(target));
    Box::new(move |refusal| {
        access_log_cut(&proxy, target.dest.host.to_string(), &exchange, refusal);
    })
}

/// Who asked for one exchange: what its access-log line needs should a cut end it after
/// its response head went out.
pub(crate) struct Asked<'a> {
    pub(crate) client: SocketAddr,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) start: Instant,
}

/// How an upgraded connection ended, for its access-log line at close.
pub(crate) struct Closed<'a> {
    /// Bytes from the client to the upstream.
    pub(crate) up: u64,
    /// Bytes from the upstream to the client.
    pub(crate) down: u64,
    /// `closed`, `refused: <code>` or what failed.
    pub(crate) end: &'a str,
}

/// The access-log line (and request metric) of an upgraded connection, written when it
/// closes: the status the client got for the switch, the bytes each way, its whole life.
#[allow(clippy::too_many_arguments)]
pub(crate) fn access_log_closed(
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
