//! Metrics in Prometheus text format, without a metrics framework: a few counters, gauges
//! and one histogram, rendered by the admin listener. Label values that come from the
//! network (hosts) are capped so a client cannot grow the registry without bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Distinct host label values kept; further hosts are counted as `other`.
pub(crate) const MAX_HOST_LABELS: usize = 1000;

/// Upper bounds (seconds) of the verification duration histogram.
pub(crate) const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {n}");
    }
}

/// The proxy's own counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    /// Tells this registry's handles from another's (a test process runs several proxies).
    id: u64,
    requests: Mutex<Requests>,
    /// Open client connections.
    pub client_connections: AtomicI64,
    /// Open attested upstream connections.
    pub upstream_connections: AtomicI64,
    /// Body and tunnel bytes sent to clients.
    pub bytes_to_clients: Arc<AtomicU64>,
    /// Body and tunnel bytes sent upstream.
    pub bytes_to_upstreams: Arc<AtomicU64>,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Rejected reloads.
    pub reload_failures: AtomicU64,
    /// Audit records that could not be written.
    pub audit_write_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            requests: Mutex::default(),
            client_connections: AtomicI64::default(),
            upstream_connections: AtomicI64::default(),
            bytes_to_clients: Arc::default(),
            bytes_to_upstreams: Arc::default(),
            reloads: AtomicU64::default(),
            reload_failures: AtomicU64::default(),
            audit_write_failures: AtomicU64::default(),
        }
    }
}

/// The host labels in use, each with its counters: looked up once per `Target` (and for
/// each request to a destination without one), never on a `Target`'s later requests.
#[derive(Debug, Default)]
struct Requests {
    /// foldhash with a per-process random seed: client-named hosts cannot aim collisions.
    hosts: HashMap<String, Arc<HostCounts>, foldhash::fast::RandomState>,
}

/// A request's `verdict` label when the proxy answered it itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// The enclave's attestation was refused.
    Refused,
    /// The destination or the request was denied by configuration.
    Denied,
    /// Anything else that failed.
    Error,
}

/// What one request is counted as: its `verdict` and `code` labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Relayed over an attested connection (code `-`).
    Accepted,
    /// Tunnelled or forwarded to a non-enclave destination (code `-`).
    Passthrough,
    /// Answered by the proxy, with the refusal's code.
    Answered(Answered, &'static str),
}

impl Counted {
    /// The `verdict` label.
    pub(crate) fn verdict(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Passthrough => "passthrough",
            Self::Answered(Answered::Refused, _) => "refused",
            Self::Answered(Answered::Denied, _) => "denied",
            Self::Answered(Answered::Error, _) => "error",
        }
    }

    /// The `code` label: the refusal code, else `-`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Accepted | Self::Passthrough => "-",
            Self::Answered(_, code) => code,
        }
    }
}

/// One host label's request counters. The two verdicts of relayed traffic are atomics, so
/// a request counts without a lock (cores counting the same host share only the counter's
/// cache line); the proxy's own answers, each of which already renders a refusal, count
/// under this host's own lock.
#[derive(Debug)]
pub(crate) struct HostCounts {
    /// The registry this handle counts into.
    registry: u64,
    accepted: AtomicU64,
    passthrough: AtomicU64,
    /// (verdict, code) → count: a handful of entries at most (the codes are a closed set).
    answered: Mutex<Vec<(Answered, &'static str, u64)>>,
}

impl HostCounts {
    fn new(registry: u64) -> Self {
        Self {
            registry,
            accepted: AtomicU64::new(0),
            passthrough: AtomicU64::new(0),
            answered: Mutex::default(),
        }
    }

    fn count(&self, counted: Counted) {
        match counted {
            Counted::Accepted => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Counted::Passthrough => {
                self.passthrough.fetch_add(1, Ordering::Relaxed);
            }
            Counted::Answered(verdict, code) => {
                let Ok(mut answered) = self.answered.lock() else {
                    return;
                };
                match answered
                    .iter_mut()
                    .find(|(v, c, _)| *v == verdict && *c == code)
                {
                    Some((_, _, n)) => *n = n.saturating_add(1),
                    None => answered.push((verdict, code, 1)),
                }
            }
        }
    }

    /// This host's series with a count: (verdict, code, count).
    fn series(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (counted, n) in [
            (Counted::Accepted, self.accepted.load(Ordering::Relaxed)),
            (
                Counted::Passthrough,
                self.passthrough.load(Ordering::Relaxed),
            ),
        ] {
            if n > 0 {
                out.push((counted.verdict(), counted.code(), n));
            }
        }
        if let Ok(answered) = self.answered.lock() {
            out.extend(answered.iter().map(|&(v, code, n)| {
                let counted = Counted::Answered(v, code);
                (counted.verdict(), counted.code(), n)
            }));
        }
        out
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One line of extra metrics rendered by the caller (cache and collateral state).
pub struct Sample {
    /// Metric name.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Label pairs and values.
    pub values: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Metrics {
    /// The counters of host label `host`: a new host past [`MAX_HOST_LABELS`] counts under
    /// `other`. One lock and one lookup; a host keeps its counters for the process's life,
    /// so a handle stays right across reloads.
    fn host(&self, host: &str) -> Option<Arc<HostCounts>> {
        let mut r = self.requests.lock().ok()?;
        if let Some(c) = r.hosts.get(host) {
            return Some(Arc::clone(c));
        }
        let host = if r.hosts.len() < MAX_HOST_LABELS {
            host
        } else {
            "other"
        };
        let counts = r
            .hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(HostCounts::new(self.id)));
        Some(Arc::clone(counts))
    }

    /// Counts one request to host label `host`.
    pub(crate) fn request(&self, host: &str, counted: Counted) {
        if let Some(c) = self.host(host) {
            c.count(counted);
        }
    }

    /// Counts one request to host label `host` through `handle`, the counters kept by
    /// what the request went to (its `Target`): looked up on its first request, then no
    /// lock and no lookup on the per-request path.
    pub(crate) fn request_through(
        &self,
        handle: &OnceLock<Arc<HostCounts>>,
        host: &str,
        counted: Counted,
    ) {
        let Some(c) = handle.get().or_else(|| {
            let c = self.host(host)?;
            Some(handle.get_or_init(|| c))
        }) else {
            return;
        };
        // A handle filled by another registry (never in the proxy: a `Target` lives in
        // one proxy's generations) is not this one's: count by lookup.
        if c.registry == self.id {
            c.count(counted);
        } else {
            self.request(host, counted);
        }
    }

    /// Prometheus text for these metrics, the verification histogram and `extra` samples.
    pub fn render(&self, verification: &Histogram, extra: &[Sample]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ratls_requests_total Requests by destination host, verdict and refusal code.\n# TYPE ratls_requests_total counter"
        );
        if let Ok(r) = self.requests.lock() {
            let sorted: BTreeMap<(&str, &str, &str), u64> = r
                .hosts
                .iter()
                .flat_map(|(h, c)| {
                    c.series()
                        .into_iter()
                        .map(move |(verdict, code, n)| ((h.as_str(), verdict, code), n))
                })
                .collect();
            for ((host, verdict, code), n) in sorted {
                let _ = writeln!(
                    out,
                    "ratls_requests_total{{host=\"{}\",verdict=\"{verdict}\",code=\"{}\"}} {n}",
                    label(host),
                    label(code)
                );
            }
        }
        let gauges: [(&str, &str, i64); 2] = [
            (
                "ratls_client_connections",
                "Open client connections.",
                self.client_connections.load(Ordering::Relaxed),
            ),
            (
                "ratls_upstream_connections",
                "Open attested upstream connections.",
                self.upstream_connections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ratls_bytes_relayed_total Bytes relayed.\n# TYPE ratls_bytes_relayed_total counter\nratls_bytes_relayed_total{{direction=\"to_client\"}} {}\nratls_bytes_relayed_total{{direction=\"to_upstream\"}} {}",
            self.bytes_to_clients.load(Ordering::Relaxed),
            self.bytes_to_upstreams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ratls_reloads_total Configuration reloads by result.\n# TYPE ratls_reloads_total counter\nratls_reloads_total{{result=\"ok\"}} {}\nratls_reloads_total{{result=\"rejected\"}} {}",
            self.reloads.load(Ordering::Relaxed),
            self.reload_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ratls_audit_write_failures_total Audit records that could not be written.\n# TYPE ratls_audit_write_failures_total counter\nratls_audit_write_failures_total {}",
            self.audit_write_failures.load(Ordering::Relaxed)
        );
        verification.render(
            "ratls_verification_duration_seconds",
            "Full RA-TLS verifications (verdict cache misses) by duration.",
            &mut out,
        );
        for s in extra {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {}",
                s.name, s.help, s.name, s.kind
            );
            for (labels, v) in &s.values {
                let l: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                    .collect();
                if l.is_empty() {
                    let _ = writeln!(out, "{} {v}", s.name);
                } else {
                    let _ = writeln!(out, "{}{{{}}} {v}", s.name, l.join(","));
                }
            }
        }
        out
    }
}

/// jemalloc's own figures, read fresh (its statistics are a snapshot refreshed by advancing the
/// epoch): what the heap holds live against what the allocator keeps resident. RSS alone moves
/// with how many requests are mid-flight when it is sampled; these say what is live.
#[cfg(feature = "jemalloc")]
pub(crate) fn allocator_samples() -> Vec<Sample> {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return Vec::new();
    }
    let figures: [(&'static str, &'static str, tikv_jemalloc_ctl::Result<usize>); 4] = [
        (
            "ratls_allocator_allocated_bytes",
            "Bytes the process has allocated and not freed (jemalloc stats.allocated): the live heap.",
            stats::allocated::read(),
        ),
        (
            "ratls_allocator_active_bytes",
            "Bytes in pages holding live allocations (jemalloc stats.active).",
            stats::active::read(),
        ),
        (
            "ratls_allocator_metadata_bytes",
            "Bytes of jemalloc's own metadata (stats.metadata).",
            stats::metadata::read(),
        ),
        (
            "ratls_allocator_resident_bytes",
            "Bytes in pages jemalloc holds resident (stats.resident, an upper bound: pages handed out but never touched count): minus allocated, what the allocator keeps that is not live.",
            stats::resident::read(),
        ),
    ];
    figures
        .into_iter()
        .filter_map(|(name, help, v)| {
            let v = u64::try_from(v.ok()?).ok()?;
            // Byte counts stay far below 2^53.
            #[allow(clippy::cast_precision_loss, clippy::as_conversions)]
            let v = v as f64;
            Some(Sample {
                name,
                kind: "gauge",
                help,
                values: vec![(Vec::new(), v)],
            })
        })
        .collect()
}

/// Without jemalloc the system allocator has no figures to give: no samples.
#[cfg(not(feature = "jemalloc"))]
pub(crate) fn allocator_samples() -> Vec<Sample> {
    Vec::new()
}

/// A body that adds the length of every data frame to a counter.
pub(crate) struct Counting<B> {
    inner: B,
    counter: Arc<AtomicU64>,
}

impl<B> Counting<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Self { inner, counter }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counting<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(
                    u64::try_from(data.len()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
