//! AWS Nitro document verification with and without the verified-intermediates cache, on
//! the real dstack-wrapped document at its own timestamp, interleaved in one group:
//! - `no_cache`: parse, the whole chain (root → cabundle[1..=3] → leaf: four ECDSA P-384
//!   verifications), the COSE signature;
//! - `cache_hit`: the same with the bundle remembered but no signing certificate
//!   (`IntermediatesCache::with_leaf_capacity(16, 0)`): parse (the intermediates too, for
//!   the typed chain), their validity at the time, the leaf under cabundle[3] and the COSE
//!   signature (two ECDSA verifications);
//! - `known_enclave`: the bundle and the signing certificate remembered (a new document
//!   from an enclave seen before; nothing keyed by the document's payload or signature is
//!   remembered, so the same document measures it): parse, validity at the time, the COSE
//!   signature (one ECDSA verification);
//! - `parse_only`: the COSE_Sign1 and CBOR parse.
//!
//! And, group `nitro_revocation` (the sim chain: AWS's shape, two CRLs): the CRL verdict for
//! a verified document with the CRLs' signatures checked every time (`every_time`:
//! `revocation::check` over the CRL bytes) and with CRLs checked once when kept
//! (`held`: `revocation::check_held`, what `NitroCollateral::revocation` does).
//!
//! Run: `cargo bench --bench nitro_cache`. Measures only; never asserts.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ratls_proxy::dcap::pki::ecdsa_verifications_on_this_thread;
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
    let cache = IntermediatesCache::with_leaf_capacity(16, 0);
    let known = IntermediatesCache::new(16);
    let warmed = [&cache, &known].iter().all(|c| {
        parse(&cose)
            .ok()
            .is_some_and(|p| verify_cached(&p, &root, now, c).is_ok())
    });
    if !warmed {
        eprintln!("NOTICE: the fixture does not verify; nothing to benchmark");
        return;
    }
    let ecdsa = |cache: Option<&IntermediatesCache>| {
        let before = ecdsa_verifications_on_this_thread();
        let ok = parse(&cose).ok().is_some_and(|p| match cache {
            Some(c) => verify_cached(&p, &root, now, c).is_ok(),
            None => verify(&p, &root, now).is_ok(),
        });
        (ok, ecdsa_verifications_on_this_thread() - before)
    };
    eprintln!(
        "nitro_verify: (accepted, ECDSA verifications): no_cache {:?}, cache_hit {:?}, known_enclave {:?}",
        ecdsa(None),
        ecdsa(Some(&cache)),
        ecdsa(Some(&known))
    );
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
    g.bench_function("known_enclave", |b| {
        b.iter(|| {
            let p = parse(black_box(&cose)).map_err(|_| ());
            black_box(p.and_then(|p| {
                verify_cached(&p, &root, now, &known)
                    .map(|_| ())
                    .map_err(|_| ())
            }))
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| black_box(parse(black_box(&cose)).is_ok()))
    });
    g.finish();
    revocation(c);
}

fn revocation(c: &mut Criterion) {
    use ratls_proxy::nitro::collateral::{check_crl_for, crl_points};
    use ratls_proxy::nitro::revocation::{self, CheckedCrl, Crl, Revocation};
    use ratls_proxy::sim::nitro::{DocSpec, SimNitro};
    let now = UnixTime(1_800_000_000);
    let Ok(sim) = SimNitro::generate(now) else {
        return;
    };
    let (Ok(root), Ok(doc)) = (
        sim.root(),
        sim.document(&DocSpec::new(1_800_000_000_000, [0xab; 48])),
    ) else {
        return;
    };
    let window = (UnixTime(now.0 - 86_400), UnixTime(now.0 + 86_400));
    let ders: Vec<Vec<u8>> = (0..2)
        .filter_map(|i| sim.crl(i, &[], window.0, window.1).ok())
        .collect();
    let Ok(parsed) = parse(&doc) else { return };
    let Ok(verified) = verify(&parsed, &root, now) else {
        return;
    };
    let points = crl_points(&verified, &root);
    let checked: Vec<CheckedCrl> = ders
        .iter()
        .zip(&points)
        .filter_map(|(d, p)| check_crl_for(d, p, now).ok())
        .collect();
    let held: Vec<&CheckedCrl> = checked.iter().collect();
    if held.len() != 2 {
        eprintln!("NOTICE: the sim CRLs do not check; nothing to benchmark");
        return;
    }
    let mut g = c.benchmark_group("nitro_revocation");
    g.bench_function("every_time", |b| {
        b.iter(|| {
            let crls: Vec<Crl<'_>> = ders.iter().filter_map(|d| Crl::parse(d).ok()).collect();
            black_box(revocation::check(&verified, &root, &crls, now, Revocation::Required).is_ok())
        })
    });
    g.bench_function("held", |b| {
        b.iter(|| {
            black_box(
                revocation::check_held(
                    &verified,
                    &root,
                    black_box(&held),
                    now,
                    Revocation::Required,
                )
                .is_ok(),
            )
        })
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
