//! SEV-SNP report verification speed, side by side with the `sev` crate (virtee 8, pure-Rust
//! crypto) on the real Milan report in the same run, benchmarks interleaved per group:
//! - `ours_full`: parse, ASK under the pinned ARK, VCEK under the ASK, the report's signature
//!   (the pinned ARK's own signature was checked once, when the roots were loaded);
//! - `ours_chain_once`: the ASK verified once; the VCEK and the report per call;
//! - `ours_collateral_once`: ASK and VCEK verified once (the proxy's steady state): one
//!   ECDSA P-384 verification and the field comparisons;
//! - `sev_full`: `sev`'s report parse and `(&Chain, &AttestationReport).verify()` (ARK
//!   self-signature, ARK → ASK → VCEK, report), certificates already parsed;
//! - `parse_only`: our zero-copy parser.
//!
//! Run: `cargo bench --bench snp_verify`. Measures only; never asserts.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::snp::collateral::{verify_with_collateral, SnpCollateral};
use ratls_proxy::snp::verify::{verify, VerifiedVek};
use ratls_proxy::snp::{Report, SnpTrust, REPORT_LEN};
use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    dir.join("dstack").is_dir().then_some(dir)
}

fn bench(c: &mut Criterion) {
    let Some(dir) = fixtures() else {
        eprintln!("NOTICE: fixtures not found (set RATLS_FIXTURES); nothing to benchmark");
        return;
    };
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap_or_default();
    let blob = read("dstack/sev_snp_attestation.bin");
    let Some(report) = blob.get(4..4 + REPORT_LEN).map(<[u8]>::to_vec) else {
        eprintln!("NOTICE: no SNP report in the fixture; nothing to benchmark");
        return;
    };
    let (ask_pem, vcek_pem) = (
        read("dstack/sev_snp_ask.pem"),
        read("dstack/sev_snp_vcek.pem"),
    );
    let now = UnixTime(1_781_697_600); // 2026-06-17T12:00:00Z, the capture day
    let trust = SnpTrust::amd();
    let Ok(collateral) = SnpCollateral::from_pem(&ask_pem, &vcek_pem, None) else {
        eprintln!("NOTICE: the fixture's PEMs do not parse; skipped");
        return;
    };
    let parsed = Report::parse(&report).ok();
    let Some(vek) = parsed
        .as_ref()
        .and_then(|r| collateral.verify(r, &trust).ok())
    else {
        eprintln!("NOTICE: the fixture's chain does not verify; skipped");
        return;
    };
    let chain = Arc::new(vek.chain().clone());
    let (Ok(ark), Ok(ask), Ok(vcek)) = (
        builtin::milan::ark(),
        Certificate::from_pem(&ask_pem),
        Certificate::from_pem(&vcek_pem),
    ) else {
        eprintln!("NOTICE: sev cannot read the fixture's certificates; skipped");
        return;
    };
    let sev_chain = Chain {
        ca: ca::Chain { ark, ask },
        vek: vcek,
    };
    let theirs = |bytes: &[u8]| {
        AttestationReport::from_bytes(bytes)
            .map(|r| (&sev_chain, &r).verify().is_ok())
            .unwrap_or(false)
    };
    let ours = |bytes: &[u8]| {
        Report::parse(bytes)
            .map_err(Into::into)
            .and_then(|r| verify_with_collateral(&r, &collateral, &trust, now))
            .is_ok()
    };
    // What is measured must be the accepting path on both sides.
    eprintln!(
        "snp milan: ours accepted={}, sev accepted={}",
        ours(&report),
        theirs(&report)
    );

    let mut g = c.benchmark_group("snp_verify/milan");
    g.bench_function("ours_full", |b| {
        b.iter(|| black_box(ours(black_box(&report))))
    });
    g.bench_function("sev_full", |b| {
        b.iter(|| black_box(theirs(black_box(&report))))
    });
    g.bench_function("ours_chain_once", |b| {
        b.iter(|| {
            let r = Report::parse(black_box(&report));
            let v = VerifiedVek::verify(&collateral.vek, Arc::clone(&chain));
            black_box(r.ok().zip(v.ok()).map(|(r, v)| verify(&r, &v, now).is_ok()))
        })
    });
    g.bench_function("ours_collateral_once", |b| {
        b.iter(|| {
            let r = Report::parse(black_box(&report));
            black_box(r.map(|r| verify(&r, &vek, now).is_ok()))
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| black_box(Report::parse(black_box(&report)).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
