//! Issue 29 on real Intel bytes: the `sgx_v3_automata` quote, accepted under its standard
//! collateral (evaluation data number 17, August 2025), judged under the evaluation 19 data
//! Intel published in June 2025 as early data, dated by the evaluation data numbers lists
//! Intel's PCS served on 2025-05-27 (`tests/data/intel/`, checked by their signatures here).

use std::path::Path;

use ratls_proxy::appraise::early::{judge, EarlyOutcome, Unavailable};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::dcap::collateral::early::{EarlyCollateral, SignedNumbers};
use ratls_proxy::dcap::collateral::pcs::evaluation_numbers_body;
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::early::VerifiedEarly;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::quote::Quote;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::dcap::verify::{verify, VerifiedQuote};

use super::{expected, strings};

/// When the standard collateral (17) is valid; and the early one (19).
const STANDARD_AT: i64 = 1_756_530_000;
const EARLY_AT: i64 = 1_751_065_200;

fn bundle(dir: &Path, name: &str) -> Collateral {
    Collateral::from_json(&crate::common::read(dir, &format!("dcap/{name}"))).expect("bundle")
}

/// The numbers list Intel's PCS served for `tee` on 2025-05-27, with the TCB Signing chain
/// of the real collateral.
fn numbers(tee: &str, chain: &str) -> SignedNumbers {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/data/intel/pcs_{tee}_tcbevaluationdatanumbers_2025-05-27.json"
    ));
    let body = std::fs::read(&path).expect("read");
    let (text, signature) = evaluation_numbers_body(&body).expect("PCS shape");
    SignedNumbers {
        issuer_chain: chain.to_owned(),
        text,
        signature,
    }
}

/// SWHardeningNeeded is the automata platform's standard status: the policy accepts it.
fn policy() -> EnclavePolicy {
    EnclavePolicy {
        tcb_statuses: vec![TcbStatus::UpToDate, TcbStatus::SwHardeningNeeded],
        ..EnclavePolicy::default()
    }
}

/// The automata quote verified under its standard (17) collateral, and that collateral.
fn standard(dir: &Path) -> (VerifiedQuote, VerifiedCollateral) {
    let c = VerifiedCollateral::verify(
        &bundle(dir, "sgx_v3_automata.collateral.json"),
        &TrustAnchor::intel(),
    )
    .expect("standard collateral verifies");
    let q = crate::common::read(dir, "dcap/sgx_v3_automata.quote.bin");
    let quote = Quote::parse(&q).expect("parses");
    let v = verify(&quote, &c, UnixTime(STANDARD_AT)).expect("verifies");
    (v, c)
}

#[test]
fn the_real_automata_quote_is_at_risk_under_intels_evaluation_19_data() {
    let Some(dir) = crate::common::fixtures() else {
        return;
    };
    let (quote, standard) = standard(&dir);
    assert_eq!(quote.tcb.status, TcbStatus::SwHardeningNeeded);
    assert_eq!(quote.tcb.tcb_evaluation_data_number, 17);
    assert!(policy().evaluate(quote.clone()).is_ok(), "accepted today");

    let eval19 = bundle(&dir, "sgx_v3_automata.eval19.collateral.json");
    let chain = eval19.tcb_info_issuer_chain.clone();
    let early = VerifiedEarly::verify(
        &EarlyCollateral::of(&eval19, Some(numbers("sgx", &chain))),
        &standard,
    )
    .expect("Intel's evaluation 19 data verifies as early data under the standard snapshot");
    assert_eq!(early.evaluation_number(), 19);
    assert_eq!(
        early.standard_from().map(UnixTime::to_rfc3339).as_deref(),
        Some("2026-05-13T00:00:00Z"),
        "19's TCB recovery event was 2025-05-13"
    );

    // At a time the early data is valid: OutOfDate with the ground truth's advisories.
    let EarlyOutcome::Judged(j) = judge(&quote, Some(&early), &policy(), UnixTime(EARLY_AT)) else {
        panic!("judged");
    };
    let exp = expected(&dir);
    let truth = exp["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "sgx_v3_automata_eval19")
        .expect("the eval19 case");
    let tcb = j.tcb.as_ref().expect("a TCB level");
    assert_eq!(tcb.status.as_str(), truth["expected"]["default"]["status"]);
    assert_eq!(
        tcb.advisory_ids,
        strings(&truth["expected"]["default"]["advisory_ids"])
    );
    assert_eq!(tcb.tcb_evaluation_data_number, 19);
    let refusal = j.refusal.as_ref().expect("at risk");
    assert_eq!(refusal.code, RefusalCode::TcbStatusNotAllowed);
    assert!(refusal.reasons[0].contains("OutOfDate"), "{refusal:?}");

    // The early judgement agrees with a full verification under the same data.
    let full = ratls_proxy::appraise::appraise(
        &crate::common::read(&dir, "dcap/sgx_v3_automata.quote.bin"),
        &ratls_proxy::appraise::Unverified {
            collateral: &eval19,
            anchor: &TrustAnchor::intel(),
        },
        &crate::common::permissive(false),
        UnixTime(EARLY_AT),
    );
    assert_eq!(
        full.tcb.as_ref(),
        Some(tcb),
        "the same TCB verdict as a full verification"
    );

    // Accepting OutOfDate too: not at risk. At the standard data's time the early data
    // has expired: not judged.
    let lenient = EnclavePolicy {
        tcb_statuses: vec![TcbStatus::SwHardeningNeeded, TcbStatus::OutOfDate],
        ..EnclavePolicy::default()
    };
    assert!(!judge(&quote, Some(&early), &lenient, UnixTime(EARLY_AT)).at_risk());
    assert!(matches!(
        judge(&quote, Some(&early), &policy(), UnixTime(STANDARD_AT)),
        EarlyOutcome::Unavailable(Unavailable::Stale(VerifyError::Expired { .. }))
    ));
}

#[test]
fn intels_evaluation_data_numbers_lists_verify_and_a_flipped_byte_does_not() {
    let Some(dir) = crate::common::fixtures() else {
        return;
    };
    let (_, standard) = standard(&dir);
    let eval19 = bundle(&dir, "sgx_v3_automata.eval19.collateral.json");
    let chain = eval19.tcb_info_issuer_chain.clone();
    // The TDX list dates SGX data no more than another platform's TCB info would.
    let tdx = VerifiedEarly::verify(
        &EarlyCollateral::of(&eval19, Some(numbers("tdx", &chain))),
        &standard,
    );
    assert!(
        matches!(&tdx, Err(e) if e.to_string().contains("TDX's")),
        "{tdx:?}"
    );
    let mut flipped = numbers("sgx", &chain);
    flipped.text = flipped
        .text
        .replace("2025-05-13T00:00:00Z", "2025-05-14T00:00:00Z");
    let forged = VerifiedEarly::verify(&EarlyCollateral::of(&eval19, Some(flipped)), &standard);
    assert!(
        matches!(
            forged,
            Err(VerifyError::Signature("TCB evaluation data numbers"))
        ),
        "{forged:?}"
    );
    // The TDX list's own signature verifies too (checked through an SGX-only reader).
    let t = numbers("tdx", &chain);
    let s = ratls_proxy::dcap::collateral::eval_numbers::EvaluationNumbers::parse(&t.text)
        .expect("parses");
    assert_eq!(s.highest(), Some(19));
}

#[test]
fn what_is_not_early_data_for_the_platform_is_refused() {
    let Some(dir) = crate::common::fixtures() else {
        return;
    };
    let (_, standard) = standard(&dir);
    // Another FMSPC's genuine evaluation 19 TCB info.
    let other = bundle(
        &dir,
        "negative/sgx_v3_automata_eval19.tcb_info_other_fmspc.collateral.json",
    );
    let e = VerifiedEarly::verify(&EarlyCollateral::of(&other, None), &standard);
    assert!(
        matches!(&e, Err(e) if e.to_string().contains("FMSPC")),
        "{e:?}"
    );
    // Edited after Intel signed it.
    let mut edited = bundle(&dir, "sgx_v3_automata.eval19.collateral.json");
    edited.tcb_info = edited.tcb_info.replacen("OutOfDate", "UpToDate", 1);
    let e = VerifiedEarly::verify(&EarlyCollateral::of(&edited, None), &standard);
    assert!(
        matches!(e, Err(VerifyError::Signature("early TCB info"))),
        "{e:?}"
    );
    // Older data served as early: 17 for a platform whose standard data is 19.
    let eval19 = VerifiedCollateral::verify(
        &bundle(&dir, "sgx_v3_automata.eval19.collateral.json"),
        &TrustAnchor::intel(),
    )
    .expect("verifies");
    let e = VerifiedEarly::verify(
        &EarlyCollateral::of(&bundle(&dir, "sgx_v3_automata.collateral.json"), None),
        &eval19,
    );
    assert!(
        matches!(&e, Err(e) if e.to_string().contains("not early data")),
        "{e:?}"
    );
    // TDX data as SGX early data.
    let tdx = bundle(&dir, "tdx_v4_qvl.collateral.json");
    let e = VerifiedEarly::verify(&EarlyCollateral::of(&tdx, None), &standard);
    assert!(
        matches!(&e, Err(e) if e.to_string().contains("is for TDX")),
        "{e:?}"
    );
}
