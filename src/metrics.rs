//! Metrics in Prometheus text format, without a metrics framework: a few counters, gauges
//! and one histogram, rendered by the admin listener. Label values that come from the
//! network (hosts) are capped so a client cannot grow the registry without bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
#[derive(Debug, Default)]
pub struct Metrics {
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

/// The maps counted into on every request: foldhash (per-process random seed), not SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Request counts by (host, verdict, code), and the host labels in use.
#[derive(Debug, Default)]
struct Requests {
    /// host → verdict → code → count: borrowed lookups, no allocation once seen.
    counts: Map<String, Map<&'static str, Map<String, u64>>>,
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
    /// Counts one request. On the per-request path: one lock, no allocation once the
    /// (host, verdict, code) combination has been seen.
    pub fn request(&self, host: &str, verdict: &'static str, code: &str) {
        let Ok(mut r) = self.requests.lock() else {
            return;
        };
        let host = if r.counts.contains_key(host) || r.counts.len() < MAX_HOST_LABELS {
            host
        } else {
            "other"
        };
        if let Some(n) = r
            .counts
            .get_mut(host)
            .and_then(|v| v.get_mut(verdict))
            .and_then(|c| c.get_mut(code))
        {
            *n = n.saturating_add(1);
            return;
        }
        r.counts
            .entry(host.to_owned())
            .or_default()
            .entry(verdict)
            .or_default()
            .insert(code.to_owned(), 1);
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
                .counts
                .iter()
                .flat_map(|(h, v)| {
                    v.iter().flat_map(move |(verdict, c)| {
                        c.iter()
                            .map(move |(code, n)| ((h.as_str(), *verdict, code.as_str()), *n))
                    })
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
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_text_and_caps_host_labels() {
        let m = Metrics::default();
        for i in 0..(MAX_HOST_LABELS + 5) {
            m.request(&format!("h{i}.example"), "passthrough", "-");
        }
        m.request("h0.example", "passthrough", "-");
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        let text = m.render(&h, &[]);
        assert!(text
            .contains("ratls_requests_total{host=\"other\",verdict=\"passthrough\",code=\"-\"} 5"));
        assert!(text.contains(
            "ratls_requests_total{host=\"h0.example\",verdict=\"passthrough\",code=\"-\"} 2"
        ));
        assert!(text.contains("ratls_verification_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("ratls_verification_duration_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("ratls_verification_duration_seconds_count 1"));
    }

    #[test]
    fn ten_thousand_hosts_keep_a_bounded_label_set() {
        let m = Metrics::default();
        for round in 0..2 {
            for i in 0..10_000 {
                let (verdict, code) = if i % 2 == 0 {
                    ("accepted", "-")
                } else {
                    ("refused", "mrenclave_mismatch")
                };
                m.request(&format!("app{i}.apps.example"), verdict, code);
                if round == 0 {
                    m.request(&format!("app{i}.apps.example"), "accepted", "-");
                }
            }
        }
        let text = m.render(&Histogram::default(), &[]);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ratls_requests_total{"))
            .collect();
        let hosts: std::collections::BTreeSet<&str> =
            series.iter().filter_map(|l| l.split('"').nth(1)).collect();
        assert_eq!(hosts.len(), MAX_HOST_LABELS + 1);
        assert!(hosts.contains("other"));
        // Two (verdict, code) pairs per host at most, whatever the traffic.
        assert!(
            series.len() <= 2 * (MAX_HOST_LABELS + 1),
            "{}",
            series.len()
        );
        let total: u64 = series
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 30_000);
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn allocator_figures_are_gauges_and_resident_covers_active() {
        let samples = allocator_samples();
        let names: Vec<&str> = samples.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "ratls_allocator_allocated_bytes",
                "ratls_allocator_active_bytes",
                "ratls_allocator_metadata_bytes",
                "ratls_allocator_resident_bytes"
            ]
        );
        let v = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.values.first())
                .map(|(_, v)| *v)
                .unwrap_or(-1.0)
        };
        assert!(samples.iter().all(|s| s.kind == "gauge"));
        // jemalloc is linked but not this test binary's global allocator: its own metadata at least.
        assert!(v("ratls_allocator_metadata_bytes") > 0.0);
        assert!(v("ratls_allocator_resident_bytes") >= v("ratls_allocator_active_bytes"));
        assert!(v("ratls_allocator_active_bytes") >= v("ratls_allocator_allocated_bytes"));
        let text = Metrics::default().render(&Histogram::default(), &samples);
        assert!(text.contains(
            "# TYPE ratls_allocator_resident_bytes gauge\nratls_allocator_resident_bytes "
        ));
    }
}
