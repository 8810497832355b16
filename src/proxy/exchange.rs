//! One request's life, recorded in one place. An [`Exchange`] is opened where a request
//! arrives (the proxy listener, an intercepted tunnel, a sidecar route) and finished once
//! with the [`Reply`] its handler gave: the response as the configuration and the client
//! allow it to be seen, then its access line and request metric. A switched connection (a
//! WebSocket) is finished by its relay at close; a body cut after its head went out adds
//! its cut line from the same record. The access log and the request metric are written
//! here and nowhere else.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};

use super::body::ProxyBody;
use super::judge::judged::CutLine;
use super::refusal::{Format, ProxyRefusal};
use super::state::{Generation, Proxy};
use super::target::Target;
use crate::addr::{Authority, Host};
use crate::config::{MetricsHostLabels, RefusalDetails};
use crate::dcap::identity::Identity;
use crate::dcap::quote::TeeType;
use crate::metrics::{Answered, Counted};
use crate::ratls::cache::CachedVerdict;
use crate::ratls::AcceptedEvidence;

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
    /// What the request metric counts it as: the access log's `verdict` and `code` too.
    fn counted(&self) -> Counted {
        match self {
            Self::Accepted(_) => Counted::Accepted,
            Self::Passthrough => Counted::Passthrough,
            Self::Refused(r) => {
                let verdict = match r {
                    ProxyRefusal::Attestation(_) => Answered::Refused,
                    ProxyRefusal::DestinationDenied(_)
                    | ProxyRefusal::RequestDenied(_)
                    | ProxyRefusal::MethodNotAllowed(_)
                    | ProxyRefusal::Misdirected(_) => Answered::Denied,
                    _ => Answered::Error,
                };
                Counted::Answered(verdict, r.code())
            }
        }
    }

    /// The measurement of an accepted connection (SGX MRENCLAVE or TD MRTD), formatted
    /// only when the access log is on (per request, that formatting was measurable work).
    fn measurement(&self, tee: TeeType) -> Option<String> {
        let Self::Accepted(v) = self else {
            return None;
        };
        match (&v.accepted.quote()?.identity, tee) {
            (Identity::Sgx(e), TeeType::Sgx) => Some(e.mrenclave.to_string()),
            (Identity::Td(t), TeeType::Tdx) => Some(t.mr_td.to_string()),
            _ => None,
        }
    }

    /// The MEASUREMENT of an accepted SEV-SNP guest (hex).
    fn snp_measurement(&self) -> Option<String> {
        let Self::Accepted(v) = self else {
            return None;
        };
        match v.accepted.evidence() {
            AcceptedEvidence::Snp(s) => Some(s.report().identity.measurement.to_string()),
            AcceptedEvidence::Intel(_) | AcceptedEvidence::Nitro(_) => None,
        }
    }

    /// PCR0 (the enclave image) of an accepted AWS Nitro enclave (hex).
    fn nitro_pcr0(&self) -> Option<&str> {
        let Self::Accepted(v) = self else {
            return None;
        };
        match v.accepted.evidence() {
            AcceptedEvidence::Nitro(n) => n.identity().pcr(0),
            AcceptedEvidence::Intel(_) | AcceptedEvidence::Snp(_) => None,
        }
    }

    /// The dstack app id of an accepted verdict on dstack evidence (hex).
    fn app_id(&self) -> Option<&str> {
        let Self::Accepted(v) = self else {
            return None;
        };
        v.accepted
            .appraisal()
            .dstack
            .as_ref()?
            .app
            .app_id
            .as_deref()
    }
}

/// The destination a request named, as its access line, metric label and refusal show it
/// (its host; the port is not shown). Carried typed and printed only where it is shown.
#[derive(Clone)]
pub(crate) enum Named {
    /// An enclave destination, as its entry matched it (an `Arc`, no copy).
    Target(Arc<Target>),
    /// Any other destination, parsed.
    Host(Host),
    /// What the client sent when it did not parse.
    Raw(String),
    /// No destination at all (`-`).
    Nothing,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Target(t) => f.write_str(&t.host_label),
            Self::Host(h) => h.fmt(f),
            Self::Raw(s) => f.write_str(s),
            Self::Nothing => f.write_str("-"),
        }
    }
}

impl From<&Arc<Target>> for Named {
    fn from(t: &Arc<Target>) -> Self {
        Self::Target(Arc::clone(t))
    }
}

impl From<&Authority> for Named {
    fn from(a: &Authority) -> Self {
        Self::Host(a.host.clone())
    }
}

/// What the access log records about one request's decision.
pub(crate) struct Outcome {
    /// The destination as the client named it.
    pub(crate) host: Named,
    /// The decision.
    pub(crate) verdict: Verdict,
    /// Time to an upstream connection or response, when there was one.
    pub(crate) upstream: Option<Duration>,
    /// The destination is an enclave host (metrics name it; others only when asked).
    pub(crate) enclave: bool,
}

impl Outcome {
    /// What a refusal of a request for `host` records (and warns of, when it is the
    /// enclave's or the destination's).
    pub(crate) fn refused(refusal: ProxyRefusal, host: Named) -> Self {
        match &refusal {
            ProxyRefusal::Attestation(r) => {
                tracing::warn!(host = %host, code = %r.code, reasons = ?r.reasons, "attestation refused");
            }
            ProxyRefusal::Destination(code, reason) => {
                tracing::warn!(host = %host, %code, reason, "destination refused");
            }
            _ => {}
        }
        Self {
            host,
            verdict: Verdict::Refused(refusal),
            upstream: None,
            enclave: false,
        }
    }

    /// What passthrough to `dest` records: no verdict, the time to its upstream.
    pub(crate) fn passed(dest: &Authority, started: Instant) -> Self {
        Self {
            host: Named::from(dest),
            verdict: Verdict::Passthrough,
            upstream: Some(started.elapsed()),
            enclave: false,
        }
    }
}

/// The relay of a switched connection, started with the exchange it finishes at close.
pub(crate) type Relay = Box<dyn FnOnce(Exchange) + Send>;

/// What a handler gives back for one request.
pub(crate) enum Reply {
    /// The answer and the decision it carries: the exchange is finished with them now.
    Answered(Response<ProxyBody>, Outcome),
    /// The client's switch (`101`, or `200` on HTTP/2) and the relay of the switched
    /// connection, which finishes the exchange when it closes.
    Switched(Response<ProxyBody>, Relay),
}

impl Reply {
    /// The proxy's own answer to a request, `refusal`, for the destination `host`.
    pub(crate) fn refused(refusal: ProxyRefusal, host: impl Into<Named>) -> Self {
        let host = host.into();
        let response = refusal.response(&host.to_string(), RefusalDetails::Full);
        Self::Answered(response, Outcome::refused(refusal, host))
    }

    /// This reply, for an enclave destination (metrics name its host).
    pub(crate) fn at_enclave(self) -> Self {
        match self {
            Self::Answered(resp, mut outcome) => {
                outcome.enclave = true;
                Self::Answered(resp, outcome)
            }
            switched @ Self::Switched(..) => switched,
        }
    }
}

/// Who asked, and when: what every access line of one exchange names.
#[derive(Clone)]
struct Asked {
    client: SocketAddr,
    method: Method,
    path: String,
    /// `None` when access lines are not written: nothing else reads it, and the clock
    /// read was per-request work for nothing.
    start: Option<Instant>,
}

impl Asked {
    /// Who sent `req` from `client`, with its path when access lines are written (`path`
    /// false: a CONNECT, which has none).
    fn new<B>(client: SocketAddr, req: &Request<B>, path: bool) -> Self {
        let logged = tracing::enabled!(target: "ratls_proxy::access", tracing::Level::INFO);
        Self {
            client,
            method: req.method().clone(),
            // Copied only when logged: at any other level the copy (and a cut's clone of
            // it) was an allocation per request for nothing.
            path: if logged && path {
                req.uri().path().to_owned()
            } else {
                String::new()
            },
            start: logged.then(Instant::now),
        }
    }
}

/// One request's record, opened where it arrived and finished once.
pub(crate) struct Exchange {
    asked: Asked,
    /// How a refusal's body is written for this client.
    format: Format,
}

impl Exchange {
    /// A request on the proxy listener. A CONNECT has no path, and its refusal stays JSON
    /// (or becomes the page inside its tunnel): a browser never shows a failed CONNECT's
    /// body, and other clients keep the answer they read.
    pub(crate) fn on_listener<B>(client: SocketAddr, req: &Request<B>) -> Self {
        let connect = req.method() == Method::CONNECT;
        Self {
            asked: Asked::new(client, req, !connect),
            format: if connect {
                Format::Json
            } else {
                Format::of(req.headers())
            },
        }
    }

    /// A request inside a connection bound to one enclave (an intercepted tunnel, a route).
    pub(crate) fn inside<B>(client: SocketAddr, req: &Request<B>) -> Self {
        Self {
            asked: Asked::new(client, req, true),
            format: Format::of(req.headers()),
        }
    }

    /// Now, when this exchange's access line will show times (`upstream_ms`); `None`, and no
    /// clock read, when access lines are not written.
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.asked.start.map(|_| Instant::now())
    }

    /// Finishes the exchange with its handler's reply: an answer is written as configured
    /// and logged now, a switch hands the exchange to its relay.
    pub(crate) fn finish(self, proxy: &Proxy, g: &Generation, reply: Reply) -> Response<ProxyBody> {
        match reply {
            Reply::Answered(resp, outcome) => {
                let resp = as_configured(g, resp, &outcome, self.format);
                log(proxy, &self.asked, &outcome, resp.status(), None);
                resp
            }
            Reply::Switched(resp, relay) => {
                relay(self);
                resp
            }
        }
    }

    /// Finishes a switched connection's exchange when it closes: the status the client got
    /// for the switch, the bytes each way, its whole life.
    pub(crate) fn closed(
        self,
        proxy: &Proxy,
        outcome: &Outcome,
        status: StatusCode,
        closed: &Closed<'_>,
    ) {
        let ended = Ended::Upgrade(closed);
        log(proxy, &self.asked, outcome, status, Some(ended));
    }

    /// What writes this exchange's cut line should a cut end its response (status
    /// `status`, its head already out) on the way from `target`.
    pub(crate) fn on_cut(
        &self,
        proxy: &Arc<Proxy>,
        target: &Arc<Target>,
        status: StatusCode,
    ) -> OnCut {
        OnCut {
            proxy: Arc::clone(proxy),
            target: Arc::clone(target),
            asked: self.asked.clone(),
            status,
        }
    }
}

/// An exchange's cut line, written should a cut end its response after its head went out.
/// A struct held in the judged body rather than a boxed closure: that box was an
/// allocation per relayed request for a line almost never written.
pub(crate) struct OnCut {
    proxy: Arc<Proxy>,
    target: Arc<Target>,
    asked: Asked,
    status: StatusCode,
}

impl CutLine for OnCut {
    fn write(self, refusal: &ProxyRefusal) {
        // The exchange's own line, written with its head, stays as it was.
        let end = format!("cut: {}", refusal.code());
        let outcome = Outcome {
            host: Named::Target(self.target),
            verdict: Verdict::Refused(refusal.clone()),
            upstream: None,
            enclave: true,
        };
        log(
            &self.proxy,
            &self.asked,
            &outcome,
            self.status,
            Some(Ended::Cut(&end)),
        );
    }
}

/// The response as the configuration and the client allow it to be seen: with
/// `refusal_details = "code"` a refusal is rendered again without its reasons (they stay in
/// the log), and for a client that asked for HTML (`Accept`) as a page. A success is left
/// as it is: that is a refused CONNECT answered with the page inside its tunnel.
fn as_configured(
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
            r.rendered(&o.host.to_string(), g.config.refusal_details, format)
        }
        _ => resp,
    }
}

/// How a switched connection ended, for its access line at close.
pub(crate) struct Closed<'a> {
    /// Bytes from the client to the upstream.
    pub(crate) up: u64,
    /// Bytes from the upstream to the client.
    pub(crate) down: u64,
    /// `closed`, `refused: <code>` or what failed.
    pub(crate) end: &'a str,
}

/// How a line's exchange ended, when it is written at the end: a switched connection's
/// close, or a cut.
enum Ended<'a> {
    Upgrade(&'a Closed<'a>),
    Cut(&'a str),
}

/// Milliseconds rounded to the microsecond (the log showed `1.4232500000000001`).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The access line and request metric; a switched connection's line (at close) adds the
/// upgrade, its bytes each way and how it ended, a cut's line how it ended (`None` fields
/// are not written).
fn log(proxy: &Proxy, asked: &Asked, o: &Outcome, status: StatusCode, ended: Option<Ended<'_>>) {
    let counted = o.verdict.counted();
    let code = counted.code();
    // Other destinations say where a local user went: named only when the operator asks.
    let named = o.enclave || proxy.current().config.metrics_host_labels == MetricsHostLabels::All;
    match &o.host {
        _ if !named => proxy.metrics.request("-", counted),
        Named::Target(t) => proxy
            .metrics
            .request_through(&t.counts, &t.host_label, counted),
        other => proxy.metrics.request(&other.to_string(), counted),
    }
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
        client = %asked.client,
        host = %o.host,
        method = %asked.method,
        path = asked.path.as_str(),
        status = status.as_u16(),
        verdict = counted.verdict(),
        code,
        mrenclave = o.verdict.measurement(TeeType::Sgx).as_deref().unwrap_or("-"),
        mrtd = o.verdict.measurement(TeeType::Tdx).as_deref().unwrap_or("-"),
        snp_measurement = o.verdict.snp_measurement().as_deref().unwrap_or("-"),
        pcr0 = o.verdict.nitro_pcr0().unwrap_or("-"),
        app_id = o.verdict.app_id(),
        upstream_ms = o.upstream.map_or(-1.0, ms),
        total_ms = asked.start.map_or(-1.0, |s| ms(s.elapsed())),
        upgrade = closed.map(|_| "websocket"),
        bytes_up = closed.map(|c| c.up),
        bytes_down = closed.map(|c| c.down),
        end,
    );
}
