//! AWS Nitro document verification with and without the verified-intermediates cache, on
//! the real dstack-wrapped document at its own timestamp, interleaved in one group:
//! - `no_cache`: parse, the whole chain (root → cabundle[1] → cabundle[2] → leaf: three
//!   ECDSA P-384 verifications), the COSE signature;
//! - `cache_hit`: the same with the bundle remembered: parse (the intermediates too, for
//!   the typed chain), their validity at the time, the leaf under cabundle[2] and the COSE
//!   signature (two ECDSA verifications);
//! - `parse_only`: the COSE_Sign1 and CBOR parse.
//!
//! Run: `cargo bench --bench nitro_cache`. Measures only; never asserts.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dstack::{Attestation, Platform};
use ratls_proxy::nitro::{parse, verify, verify_cached, IntermediatesCache, NitroRoot};

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    dir.join("dstack/nitro_attestation.bin")
        .is_file()
        .then_some(dir)
}

fn bench(c: &mut Criterion) {
    let Some(dir) = fixtures() else {
        eprintln!("NOTICE: fixtures not found (set RATLS_FIXTURES); nothing to benchmark");
        return;
    };
    let file = std::fs::read(dir.join("dstack/nitro_attestation.bin")).unwrap_or_default();
    let cose = match Attestation::parse(&file).map(|a| a.platform) {
        Ok(Platform::NitroEnclave { nsm_quote }) => nsm_quote.to_vec(),
        _ => {
            eprintln!("NOTICE: no Nitro document in the fixture; nothing to benchmark");
            return;
        }
    };
    let root = NitroRoot::aws();
    let now = UnixTime(1_766_678_659); // the document's timestamp
    let cache = IntermediatesCache::new(16);
    let warmed = parse(&cose)
        .ok()
        .is_some_and(|p| verify_cached(&p, &root, now, &cache).is_ok());
    if !warmed {
        eprintln!("NOTICE: the fixture does not verify; nothing to benchmark");
        return;
    }
    let mut g = c.benchmark_group("nitro_verify");
    g.bench_function("no_cache", |b| {
        b.iter(|| {
            let p = parse(black_box(&cose)).map_err(|_| ());
            black_box(p.and_then(|p| verify(&p, &root, now).map(|_| ()).map_err(|_| ())))
        })
    });
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            let p = parse(black_box(&cose)).map_err(|_| ());
            black_box(p.and_then(|p| {
                verify_cached(&p, &root, now, &cache)
                    .map(|_| ())
                    .map_err(|_| ())
            }))
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| black_box(parse(black_box(&cose)).is_ok()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Short: the machine is shared; these are A/B figures in one run, not headlines.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
