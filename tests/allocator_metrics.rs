//! jemalloc's own figures on `/metrics`, through the real binary: present as gauges, and
//! following the connections the proxy holds (up when they open, down when they close).
#![cfg(all(feature = "sim", feature = "jemalloc"))]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::http::Http;
use common::{env, free_port, metrics, start_sim_with, Harness, Mode};

const HELD: usize = 200;

fn get(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name)
        .copied()
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// `/metrics` once `ratls_client_connections` reads `clients` (the proxy counts a closed
/// connection when it notices the close), within 10 s.
async fn metrics_at(admin: u16, clients: f64) -> HashMap<String, f64> {
    for _ in 0..100 {
        let m = metrics(admin).await;
        if m.get("ratls_client_connections") == Some(&clients) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ratls_client_connections never reached {clients}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocator_gauges_rise_with_held_connections_and_fall_when_they_close() {
    let env = env();
    let good = start_sim_with(&env, |_| {}).await;
    let (proxy, admin) = (free_port(), free_port());
    let _p = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .enclave("good.enclave.test", good.addr())
        .start_binary("alloc.toml")
        .await;
    // One tunnel first, so the CA, the verdict and the pooled upstream exist before "before".
    let mut warm = Http::open(&env.via(proxy), "good.enclave.test", Mode::Intercepted).await;
    assert_eq!(warm.status("/").await, 200);
    drop(warm);
    let before = metrics_at(admin, 0.0).await;
    let names = [
        "ratls_allocator_allocated_bytes",
        "ratls_allocator_active_bytes",
        "ratls_allocator_metadata_bytes",
        "ratls_allocator_resident_bytes",
    ];
    let text = common::metrics_text(admin).await;
    for name in names {
        assert!(
            text.contains(&format!("# TYPE {name} gauge\n{name} ")),
            "{text}"
        );
    }
    let (allocated, active, resident) = (names[0], names[1], names[3]);
    assert!(get(&before, allocated) > 0.0);
    assert!(get(&before, resident) >= get(&before, active));
    assert!(get(&before, active) >= get(&before, allocated));

    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut c = Http::open(&env.via(proxy), "good.enclave.test", Mode::Intercepted).await;
        assert_eq!(c.status("/").await, 200);
        held.push(c);
    }
    #[allow(clippy::cast_precision_loss, clippy::as_conversions)]
    let n = HELD as f64;
    let during = metrics_at(admin, n).await;
    let rise = get(&during, allocated) - get(&before, allocated);
    // An idle intercepted connection keeps its TLS session and hyper's buffers: well over
    // 8 KiB each (about 20 KiB measured, docs/benchmarks.md).
    assert!(
        rise >= n * 8192.0,
        "allocated rose by {rise} bytes for {HELD} connections"
    );
    assert!(get(&during, resident) >= get(&during, allocated));

    drop(held);
    let after = metrics_at(admin, 0.0).await;
    let fall = get(&during, allocated) - get(&after, allocated);
    assert!(
        fall >= rise / 2.0,
        "allocated fell by {fall} bytes after closing; it rose by {rise}"
    );
}
