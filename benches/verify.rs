//! Quote verification speed (SGX and TDX), side by side with dcap-qvl 0.7.1 (ring backend)
//! on the same real fixture in the same run:
//! - `ours_full`: collateral verification (signatures, chains, CRLs) + quote verification,
//!   cold: a new trust anchor each iteration (made outside the timing), so the root's
//!   signatures are verified too;
//! - `ours_refresh`: the same under a warm anchor (the hourly refresh, a new FMSPC, a second
//!   `verify` in one process): the root's three signatures remembered (`dcap::anchor_memo`);
//! - `ours_cached_collateral`: collateral verified once, a platform the snapshot has not
//!   seen (a cold `dcap::known` memo in every iteration, made outside the timing);
//! - `ours_known_platform`: collateral verified once, a new quote from a platform the
//!   snapshot has seen (PCK chain and QE report remembered: one ECDSA, the quote's; nothing
//!   keyed by the quote's body or signature is remembered, so the same quote measures it);
//! - `dcap_qvl_ring`: the reference, collateral already deserialised;
//! - `parse_only`: our zero-copy parser;
//! - `platform_lookup`: parse + the FMSPC and PCK CA a collateral source reads from the PCK
//!   leaf to choose the snapshot (per quote in the proxy, before `verify`).
//!
//! AWS Nitro (`verify/nitro_nsm`, the real NSM document at its own timestamp):
//! - `ours`: parse + chain (4 certificates) + ES384 (`nitro::parse`, `nitro::verify`);
//! - `oracle`: the differential tests' independent verifier (aws-nitro-enclaves-cose,
//!   ciborium, RustCrypto p384, rustls-webpki), the same work;
//! - `ours_parse_only`: COSE_Sign1 and document views.
//!
//! Run: `cargo bench --bench verify`. Measures only; never asserts.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

#[path = "../tests/nitro_common/mod.rs"]
mod nitro_common;
use dcap_qvl::configs::RingConfig;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::{appraise, Unverified};
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::pki::ecdsa_verifications_on_this_thread;
use ratls_proxy::dcap::quote::Quote;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::dcap::verify::pck_platform;

/// Every real fixture of `fixtures/dcap/expected.json` that verifies, with its own collateral,
/// at its recorded time (`sgx_v3_automata_eval19` re-uses the automata quote;
/// `tdx_v5_outdated_qvl` is refused by both sides, "no matching TCB level").
const CASES: [(&str, u64); 7] = [
    ("sgx_v3_qvl", 1_751_623_200),
    ("sgx_v3_automata", 1_756_530_000),
    ("sgx_v3_debug_dcaprs", 1_725_926_400),
    ("sgx_v3_debug_mobilecoin", 1_749_668_400),
    // TDX: v4 TD 1.0, v4 padded, and v5 TD 1.5ex.
    ("tdx_v4_qvl", 1_751_623_200),
    ("tdx_v4_padded_automata", 1_761_919_200),
    ("tdx_v5_td15ex_qvl", 1_792_713_600),
];

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    dir.join("dcap").is_dir().then_some(dir)
}

fn bench(c: &mut Criterion) {
    let Some(dir) = fixtures() else {
        eprintln!("NOTICE: fixtures not found (set RATLS_FIXTURES); nothing to benchmark");
        return;
    };
    // Any status and DEBUG on both sides, so every fixture takes the accepting path.
    let policy = EnclavePolicy {
        allow_debug: true,
        tcb_statuses: vec![
            TcbStatus::UpToDate,
            TcbStatus::SwHardeningNeeded,
            TcbStatus::ConfigurationNeeded,
            TcbStatus::ConfigurationAndSwHardeningNeeded,
            TcbStatus::OutOfDate,
            TcbStatus::OutOfDateConfigurationNeeded,
            TcbStatus::TdRelaunchAdvised,
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded,
        ],
        ..EnclavePolicy::default()
    };
    let anchor = TrustAnchor::intel();
    for (name, at) in CASES {
        let quote = std::fs::read(dir.join(format!("dcap/{name}.quote.bin"))).unwrap_or_default();
        let json =
            std::fs::read(dir.join(format!("dcap/{name}.collateral.json"))).unwrap_or_default();
        let (Ok(ours), Ok(theirs)) = (
            Collateral::from_json(&json),
            serde_json::from_slice::<QuoteCollateralV3>(&json),
        ) else {
            eprintln!("NOTICE: {name} collateral does not parse; skipped");
            continue;
        };
        let Ok(verified) = VerifiedCollateral::verify(&ours, &anchor).map(Arc::new) else {
            eprintln!("NOTICE: {name} collateral does not verify; skipped");
            continue;
        };
        let now = UnixTime(i64::try_from(at).unwrap_or_default());
        let reference = QuoteVerifier::new_prod()
            .with_config::<RingConfig>()
            .allow_debug(true);
        // What is measured must be the accepting path on both sides.
        let ok_ours = appraise(&quote, &verified, &policy, now).is_accepted();
        let ok_theirs = reference.verify(&quote, &theirs, at).is_ok();
        eprintln!("{name}: ours accepted={ok_ours}, dcap-qvl accepted={ok_theirs}");
        // The work of each row, in ECDSA verifications (`verified` is warm from here on).
        let ecdsa = |f: &dyn Fn()| {
            let before = ecdsa_verifications_on_this_thread();
            f();
            ecdsa_verifications_on_this_thread() - before
        };
        let cold = || Arc::new(VerifiedCollateral::clone(&verified));
        let unverified = Unverified {
            collateral: &ours,
            anchor: &anchor,
        };
        let full = |anchor: &TrustAnchor| {
            let source = Unverified {
                collateral: &ours,
                anchor,
            };
            appraise(black_box(&quote), &source, &policy, now)
        };
        eprintln!(
            "{name}: ECDSA verifications: full {}, refresh {}, collateral verified once {}, known platform {}",
            ecdsa(&|| drop(full(&TrustAnchor::intel()))),
            ecdsa(&|| drop(appraise(&quote, &unverified, &policy, now))),
            ecdsa(&|| drop(appraise(&quote, &cold(), &policy, now))),
            ecdsa(&|| drop(appraise(&quote, &verified, &policy, now))),
        );

        let mut g = c.benchmark_group(format!("verify/{name}"));
        g.bench_function("ours_full", |b| {
            b.iter_batched(
                TrustAnchor::intel,
                |anchor| black_box(full(&anchor)),
                BatchSize::SmallInput,
            )
        });
        // `anchor` verified this collateral above: warm.
        g.bench_function("ours_refresh", |b| b.iter(|| black_box(full(&anchor))));
        g.bench_function("ours_cached_collateral", |b| {
            b.iter_batched(
                cold,
                |snapshot| black_box(appraise(black_box(&quote), &snapshot, &policy, now)),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("ours_known_platform", |b| {
            b.iter(|| black_box(appraise(black_box(&quote), &verified, &policy, now)))
        });
        g.bench_function("dcap_qvl_ring", |b| {
            b.iter(|| black_box(reference.verify(black_box(&quote), &theirs, at)))
        });
        g.bench_function("parse_only", |b| {
            b.iter(|| black_box(Quote::parse(black_box(&quote)).is_ok()))
        });
        // What a collateral source does per quote to choose the snapshot (not memoised yet).
        g.bench_function("platform_lookup", |b| {
            b.iter(|| {
                black_box(
                    Quote::parse(black_box(&quote))
                        .ok()
                        .and_then(|q| pck_platform(&q)),
                )
            })
        });
        g.finish();
    }
}

fn bench_nitro(c: &mut Criterion) {
    let Some(cose) = nitro_common::cose(nitro_common::NSM) else {
        return;
    };
    let at = i64::try_from(nitro_common::timestamp_ms(nitro_common::NSM) / 1000).unwrap_or(0);
    let root = ratls_proxy::nitro::NitroRoot::aws();
    let ours = |bytes: &[u8]| {
        ratls_proxy::nitro::parse(bytes)
            .is_ok_and(|p| ratls_proxy::nitro::verify(&p, &root, UnixTime(at)).is_ok())
    };
    // What is measured must be the accepting path on both sides.
    let ok_theirs = nitro_common::oracle::oracle(&cose, root.der(), at).is_ok();
    eprintln!(
        "nitro_nsm: ours accepted={}, oracle accepted={ok_theirs}",
        ours(&cose)
    );
    let mut g = c.benchmark_group("verify/nitro_nsm");
    g.bench_function("ours", |b| b.iter(|| black_box(ours(black_box(&cose)))));
    g.bench_function("oracle", |b| {
        b.iter(|| black_box(nitro_common::oracle::oracle(black_box(&cose), root.der(), at).is_ok()))
    });
    g.bench_function("ours_parse_only", |b| {
        b.iter(|| black_box(ratls_proxy::nitro::parse(black_box(&cose)).is_ok()))
    });
    g.finish();
}

#[path = "dstack_cert/mod.rs"]
mod verify_dstack;

#[path = "snp_cert/mod.rs"]
mod verify_snp;

#[path = "nitro_cert/mod.rs"]
mod verify_nitro_cert;

criterion_group!(
    benches,
    bench,
    bench_nitro,
    verify_dstack::bench_dstack,
    verify_snp::bench_snp,
    verify_nitro_cert::bench_nitro_cert
);
criterion_main!(benches);
