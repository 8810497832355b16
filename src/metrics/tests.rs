//! The registry's rendering, its host-label cap and its counting from several threads.

use super::*;

#[test]
fn renders_parseable_text_and_caps_host_labels() {
    let m = Metrics::default();
    for i in 0..(MAX_HOST_LABELS + 5) {
        m.request(&format!("h{i}.example"), Counted::Passthrough);
    }
    m.request("h0.example", Counted::Passthrough);
    let h = Histogram::default();
    h.observe(Duration::from_micros(300));
    let text = m.render(&h, &[]);
    assert!(
        text.contains("ratls_requests_total{host=\"other\",verdict=\"passthrough\",code=\"-\"} 5")
    );
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
            let counted = if i % 2 == 0 {
                Counted::Accepted
            } else {
                Counted::Answered(Answered::Refused, "mrenclave_mismatch")
            };
            m.request(&format!("app{i}.apps.example"), counted);
            if round == 0 {
                m.request(&format!("app{i}.apps.example"), Counted::Accepted);
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

fn requests_lines(m: &Metrics) -> Vec<String> {
    m.render(&Histogram::default(), &[])
        .lines()
        .filter(|l| l.starts_with("ratls_requests_total{"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_cores_counting_through_handles_and_lookups_lose_no_increment() {
    let m = Arc::new(Metrics::default());
    let refused = Counted::Answered(Answered::Refused, "debug_enclave");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                // Each thread its own `Target`'s handle, as two generations would have.
                let handle = OnceLock::new();
                for i in 0..50_000 {
                    m.request_through(&handle, "a.test", Counted::Accepted);
                    if i % 10 == 0 {
                        m.request("a.test", Counted::Passthrough);
                        m.request_through(&handle, "a.test", refused);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
    assert_eq!(
        requests_lines(&m),
        [
            "ratls_requests_total{host=\"a.test\",verdict=\"accepted\",code=\"-\"} 100000",
            "ratls_requests_total{host=\"a.test\",verdict=\"passthrough\",code=\"-\"} 10000",
            "ratls_requests_total{host=\"a.test\",verdict=\"refused\",code=\"debug_enclave\"} 10000",
        ]
    );
}

#[test]
fn a_handle_found_past_the_cap_stays_other_and_another_registrys_is_not_used() {
    let m = Metrics::default();
    for i in 0..MAX_HOST_LABELS {
        m.request(&format!("h{i}.test"), Counted::Accepted);
    }
    let late = OnceLock::new();
    m.request_through(&late, "late.test", Counted::Accepted);
    // An earlier host's handle made now still names it.
    let early = OnceLock::new();
    m.request_through(&early, "h0.test", Counted::Accepted);
    let lines = requests_lines(&m);
    assert!(lines.contains(
        &"ratls_requests_total{host=\"other\",verdict=\"accepted\",code=\"-\"} 1".to_owned()
    ));
    assert!(lines.contains(
        &"ratls_requests_total{host=\"h0.test\",verdict=\"accepted\",code=\"-\"} 2".to_owned()
    ));
    assert!(!lines.iter().any(|l| l.contains("late.test")));

    // A handle filled by one registry counts nothing into another's counters.
    let other = Metrics::default();
    other.request_through(&late, "late.test", Counted::Accepted);
    assert_eq!(
        requests_lines(&other),
        ["ratls_requests_total{host=\"late.test\",verdict=\"accepted\",code=\"-\"} 1"]
    );
    assert!(requests_lines(&m).contains(
        &"ratls_requests_total{host=\"other\",verdict=\"accepted\",code=\"-\"} 1".to_owned()
    ));
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
    assert!(text
        .contains("# TYPE ratls_allocator_resident_bytes gauge\nratls_allocator_resident_bytes "));
}
