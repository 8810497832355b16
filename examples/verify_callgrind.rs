//! Callgrind driver for issue 30: runs one full verification (collateral + quote) N times on
//! one real fixture, ours or dcap-qvl 0.7.1 (ring), so instruction counts can be compared
//! whatever the load on the box. Measures only; never asserts.
//!
//! Run: `cargo build --release --example verify_callgrind` then
//! `valgrind --tool=callgrind target/release/examples/verify_callgrind ours sgx_v3_qvl 20`
//! (`ours`: cold, a new trust anchor for every verification, all made before the first;
//! `ours-refresh`: one anchor, warm after the first verification (the root's signatures
//! remembered); `anchors`: only making the N anchors, the part of `ours` to subtract; `qvl`;
//! or `none`: the setup alone). `RATLS_FIXTURES` names the fixtures directory.
//!
//! `ratio FIXTURE N` measures time instead, on the real CPU (SHA-NI and all): N rounds, each
//! timing a block of 20 cold verifications of ours (anchors made outside the timing) and a
//! block of 20 of dcap-qvl, the order alternating, and prints the per-round ratios' median
//! and quartiles: both sides see the same seconds of the box's load, so the ratio holds
//! where criterion's separate rows drift (`bench/verify_ratio.sh` runs every fixture).

use std::hint::black_box;
use std::path::PathBuf;

use dcap_qvl::configs::RingConfig;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::{appraise, Unverified};
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;

/// The fixtures of `benches/verify.rs` and the time each verifies at.
const CASES: [(&str, u64); 7] = [
    ("sgx_v3_qvl", 1_751_623_200),
    ("sgx_v3_automata", 1_756_530_000),
    ("sgx_v3_debug_dcaprs", 1_725_926_400),
    ("sgx_v3_debug_mobilecoin", 1_749_668_400),
    ("tdx_v4_qvl", 1_751_623_200),
    ("tdx_v4_padded_automata", 1_761_919_200),
    ("tdx_v5_td15ex_qvl", 1_792_713_600),
];

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(side), Some(name)) = (args.get(1), args.get(2)) else {
        return Err(
            "usage: verify_callgrind ours|ours-refresh|anchors|qvl|none FIXTURE [N]".into(),
        );
    };
    let n: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let at = CASES
        .iter()
        .find(|(c, _)| c == name)
        .map(|(_, at)| *at)
        .ok_or_else(|| format!("unknown fixture {name}"))?;
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let read = |ext: &str| {
        std::fs::read(dir.join(format!("dcap/{name}.{ext}"))).map_err(|e| format!("{ext}: {e}"))
    };
    let quote = read("quote.bin")?;
    let json = read("collateral.json")?;
    let ours = Collateral::from_json(&json).map_err(|e| e.to_string())?;
    let theirs: QuoteCollateralV3 = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    let anchor = TrustAnchor::intel();
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
    let now = UnixTime(i64::try_from(at).map_err(|e| e.to_string())?);
    let reference = QuoteVerifier::new_prod()
        .with_config::<RingConfig>()
        .allow_debug(true);
    // Cold: one new anchor per verification, all made here (measured alone by `anchors`).
    let cold: Vec<TrustAnchor> = match side.as_str() {
        "ours" | "anchors" => (0..n).map(|_| TrustAnchor::intel()).collect(),
        _ => Vec::new(),
    };
    let full = |anchor: &TrustAnchor| {
        let source = Unverified {
            collateral: &ours,
            anchor,
        };
        appraise(black_box(&quote), &source, &policy, now).is_accepted()
    };
    if side == "ratio" {
        return ratio(
            n,
            name,
            || {
                let anchors: Vec<TrustAnchor> = (0..BLOCK).map(|_| TrustAnchor::intel()).collect();
                let start = std::time::Instant::now();
                let ok = anchors.iter().filter(|a| full(a)).map(|_| 1).sum();
                (start.elapsed(), ok)
            },
            || {
                let start = std::time::Instant::now();
                let ok = (0..BLOCK)
                    .filter(|_| reference.verify(black_box(&quote), &theirs, at).is_ok())
                    .map(|_| 1)
                    .sum();
                (start.elapsed(), ok)
            },
        );
    }
    let mut accepted = 0u32;
    for i in 0..n {
        let ok = match side.as_str() {
            "ours" => cold
                .get(usize::try_from(i).unwrap_or(usize::MAX))
                .is_some_and(full),
            "ours-refresh" => full(&anchor),
            "anchors" => !cold.is_empty(),
            "qvl" => reference.verify(black_box(&quote), &theirs, at).is_ok(),
            "none" => true,
            other => return Err(format!("unknown side {other}")),
        };
        accepted += u32::from(black_box(ok));
    }
    println!("{side} {name}: {accepted}/{n} accepted");
    Ok(())
}

/// Verifications per timed block in `ratio`.
const BLOCK: u32 = 20;

/// `rounds` alternating blocks of `ours` and `theirs`; prints the per-round ratios.
fn ratio(
    rounds: u32,
    name: &str,
    mut ours: impl FnMut() -> (std::time::Duration, u32),
    mut theirs: impl FnMut() -> (std::time::Duration, u32),
) -> Result<(), String> {
    let mut ratios = Vec::new();
    let (mut ours_total, mut theirs_total) = (0.0, 0.0);
    for round in 0..rounds {
        let ((a, a_ok), (b, b_ok)) = if round % 2 == 0 {
            let a = ours();
            (a, theirs())
        } else {
            let b = theirs();
            (ours(), b)
        };
        if a_ok != BLOCK || b_ok != BLOCK {
            return Err(format!("{name}: accepted {a_ok} and {b_ok} of {BLOCK}"));
        }
        ours_total += a.as_secs_f64();
        theirs_total += b.as_secs_f64();
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    // The sorted ratio `percent` of the way from the least to the greatest.
    let at = |percent: usize| {
        let i = ratios.len().saturating_sub(1) * percent / 100;
        ratios.get(i).copied().unwrap_or(f64::NAN)
    };
    let per = |total: f64| total * 1e6 / (f64::from(rounds) * f64::from(BLOCK));
    println!(
        "{name}: ours / dcap-qvl median {:.3} (quartiles {:.3}-{:.3}, min {:.3}, max {:.3}) over {rounds} rounds; ours {:.0} us, dcap-qvl {:.0} us per verification",
        at(50),
        at(25),
        at(75),
        at(0),
        at(100),
        per(ours_total),
        per(theirs_total)
    );
    Ok(())
}
