//! Every real Intel-signed fixture of `fixtures/dcap/expected.json` gives the recorded
//! result at its recorded time: identity fields, TCB status and advisory IDs, the
//! freshness boundaries, every negative vector and every cross-collateral case.

mod common;
// Issue 29: the real Intel bytes judged under their own evaluation data numbers.
#[path = "dcap_fixtures/early.rs"]
mod early;

use std::path::Path;
use std::sync::Arc;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::{appraise, Appraisal, Unverified};
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::quote::{Body, Quote};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use serde_json::Value;

fn expected(dir: &Path) -> Value {
    serde_json::from_slice(&common::read(dir, "dcap/expected.json")).expect("expected.json parses")
}

fn run(dir: &Path, quote: &str, collateral: &str, at: i64, policy: &EnclavePolicy) -> Appraisal {
    let q = common::read(dir, &format!("dcap/{quote}"));
    let c = Collateral::from_json(&common::read(dir, &format!("dcap/{collateral}")))
        .expect("collateral parses");
    let anchor = TrustAnchor::intel();
    appraise(
        &q,
        &Unverified {
            collateral: &c,
            anchor: &anchor,
        },
        policy,
        UnixTime(at),
    )
}

fn code(a: &Appraisal) -> Option<RefusalCode> {
    a.outcome.as_ref().err().map(|r| r.code)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

#[test]
fn every_sgx_case_matches_the_ground_truth_identity_and_tcb() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    let mut checked = 0;
    for case in exp["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let q = &case["quote"];
        if q["tee_type"] != "0x0" {
            continue;
        }
        let at = case["verified_at"].as_i64().expect("time");
        let want = &case["expected"]["allow_debug"];
        let a = run(
            &dir,
            case["quote_file"].as_str().expect("file"),
            case["collateral_file"].as_str().expect("file"),
            at,
            &common::permissive(true),
        );
        assert!(a.is_accepted(), "{name}: {:?}", a.outcome);
        assert_eq!(want["ok"], true, "{name}");
        let tcb = a.tcb.as_ref().expect("tcb");
        assert_eq!(tcb.status.as_str(), want["status"], "{name} status");
        assert_eq!(
            tcb.advisory_ids,
            strings(&want["advisory_ids"]),
            "{name} advisories"
        );
        assert_eq!(
            tcb.platform_status.as_str(),
            want["platform_status"],
            "{name}"
        );
        assert_eq!(tcb.qe_status.as_str(), want["qe_status"], "{name}");
        assert_eq!(tcb.fmspc.to_string(), q["fmspc"], "{name} fmspc");
        let id = a
            .quote
            .as_ref()
            .expect("quote")
            .identity
            .sgx()
            .expect("an SGX identity");
        assert_eq!(id.mrenclave.to_string(), q["mrenclave"], "{name}");
        assert_eq!(id.mrsigner.to_string(), q["mrsigner"], "{name}");
        assert_eq!(
            Some(u64::from(id.isv_prod_id.0)),
            q["isv_prod_id"].as_u64(),
            "{name}"
        );
        assert_eq!(
            Some(u64::from(id.isv_svn.0)),
            q["isv_svn"].as_u64(),
            "{name}"
        );
        assert_eq!(id.attributes.to_string(), q["attributes"], "{name}");
        assert_eq!(id.report_data.to_string(), q["report_data"], "{name}");
        assert_eq!(id.attributes.is_debug(), q["debug"], "{name}");
        assert_eq!(id.cpu_svn.to_string(), q["cpusvn"], "{name}");
        checked += 1;
    }
    assert_eq!(checked, 5, "five SGX cases");
}

#[test]
fn debug_cases_are_refused_by_default_and_accepted_with_allow_debug() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    for case in exp["cases"].as_array().expect("cases") {
        if case["quote"]["tee_type"] != "0x0" {
            continue;
        }
        let name = case["name"].as_str().expect("name");
        let (qf, cf) = (
            case["quote_file"].as_str().expect("f"),
            case["collateral_file"].as_str().expect("f"),
        );
        let at = case["verified_at"].as_i64().expect("t");
        let a = run(&dir, qf, cf, at, &common::permissive(false));
        if case["quote"]["debug"] == true {
            assert_eq!(code(&a), Some(RefusalCode::DebugEnclave), "{name}");
            assert!(case["expected"]["default"]["error"]
                .as_str()
                .expect("err")
                .contains("Debug"));
        } else {
            assert!(a.is_accepted(), "{name}: {:?}", a.outcome);
        }
    }
}

#[test]
fn the_default_policy_accepts_only_up_to_date() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    // None of the real SGX samples is UpToDate, so all are refused by the default policy.
    let a = run(
        &dir,
        "sgx_v3_qvl.quote.bin",
        "sgx_v3_qvl.collateral.json",
        1_751_623_200,
        &EnclavePolicy::default(),
    );
    assert_eq!(code(&a), Some(RefusalCode::TcbStatusNotAllowed));
    assert!(a.outcome.as_ref().expect_err("refused").reasons[0]
        .contains("ConfigurationAndSWHardeningNeeded"));
}

/// The TDX cases: identity fields, status and advisories equal the ground truth at the
/// recorded time; where the reference finds no TCB level we refuse with the same meaning.
#[test]
fn every_tdx_case_matches_the_ground_truth() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    let mut checked = 0;
    for case in exp["cases"].as_array().expect("cases") {
        let q = &case["quote"];
        if q["tee_type"] != "0x81" {
            continue;
        }
        let name = case["name"].as_str().expect("name");
        let a = run(
            &dir,
            case["quote_file"].as_str().expect("f"),
            case["collateral_file"].as_str().expect("f"),
            case["verified_at"].as_i64().expect("t"),
            &common::permissive(false),
        );
        let quote = a.quote.as_ref().expect("parsed");
        assert_eq!(quote.tee.as_str(), "TDX", "{name}");
        let td = quote.identity.td().expect("a TD identity");
        assert_eq!(td.mr_td.to_string(), q["mr_td"], "{name} mr_td");
        assert_eq!(
            td.tee_tcb_svn.to_string(),
            q["tee_tcb_svn"],
            "{name} tee_tcb_svn"
        );
        assert_eq!(
            td.td_attributes.to_string(),
            q["td_attributes"],
            "{name} td_attributes"
        );
        assert_eq!(
            td.report_data.to_string(),
            q["report_data"],
            "{name} report_data"
        );
        let want = &case["expected"]["default"];
        if want["ok"] == true {
            assert!(a.is_accepted(), "{name}: {:?}", a.outcome);
            let tcb = a.tcb.as_ref().expect("tcb");
            assert_eq!(tcb.status.as_str(), want["status"], "{name} status");
            assert_eq!(
                tcb.advisory_ids,
                strings(&want["advisory_ids"]),
                "{name} advisories"
            );
            assert_eq!(
                tcb.platform_status.as_str(),
                want["platform_status"],
                "{name}"
            );
            assert_eq!(tcb.qe_status.as_str(), want["qe_status"], "{name}");
            assert_eq!(tcb.fmspc.to_string(), q["fmspc"], "{name} fmspc");
        } else {
            assert_eq!(
                want["error"], "No matching TCB level found",
                "{name}: a reference error we map"
            );
            assert_eq!(
                code(&a),
                Some(RefusalCode::TcbStatusNotAllowed),
                "{name}: {:?}",
                a.outcome
            );
            assert!(
                a.outcome.as_ref().expect_err("refused").reasons[0].contains("no TCB level"),
                "{name}: {:?}",
                a.outcome
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "four TDX cases");
}

/// An SGX quote is never judged with TDX collateral, nor the reverse.
#[test]
fn sgx_and_tdx_collateral_are_never_mixed() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let policy = common::permissive(true);
    let sgx_with_tdx = run(
        &dir,
        "sgx_v3_qvl.quote.bin",
        "tdx_v4_qvl.collateral.json",
        1_751_623_200,
        &policy,
    );
    assert!(!sgx_with_tdx.is_accepted());
    let tdx_with_sgx = run(
        &dir,
        "tdx_v4_qvl.quote.bin",
        "sgx_v3_qvl.collateral.json",
        1_751_623_200,
        &policy,
    );
    assert!(!tdx_with_sgx.is_accepted());
    for a in [&sgx_with_tdx, &tdx_with_sgx] {
        let reason = &a.outcome.as_ref().expect_err("refused").reasons[0];
        assert!(reason.contains("TDX") || reason.contains("SGX"), "{reason}");
    }
}

/// Maps the reference verifier's error on a boundary probe to our code.
fn probe_code(error: &str) -> RefusalCode {
    if error.contains("Debug") {
        RefusalCode::DebugEnclave
    } else if error.contains("No matching TCB level") {
        RefusalCode::TcbStatusNotAllowed
    } else if error.contains("expired") || error.contains("future") || error.contains("CrlExpired")
    {
        RefusalCode::CollateralExpired
    } else {
        panic!("unmapped probe error {error}")
    }
}

#[test]
fn freshness_boundaries_match_the_reference_except_future_crls() {
    // SGX and TDX cases alike: the four probes of each.
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    let mut stricter = 0;
    for case in exp["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (qf, cf) = (
            case["quote_file"].as_str().expect("f"),
            case["collateral_file"].as_str().expect("f"),
        );
        let window = &case["validity_window"];
        for (probe, result) in case["time_probes_default_policy"]
            .as_object()
            .expect("probes")
        {
            let now = result["now"].as_i64().expect("now");
            let a = run(&dir, qf, cf, now, &common::permissive(false));
            let want_ok = result["result"]["ok"] == true;
            if probe == "window_start_minus_1s" {
                // Outside the window we always refuse: where the window starts at a CRL's
                // thisUpdate, dcap-qvl still accepts (it ignores a CRL issued in the future).
                let want = if case["quote"]["debug"] == true {
                    RefusalCode::DebugEnclave
                } else {
                    RefusalCode::CollateralExpired
                };
                assert_eq!(code(&a), Some(want), "{name} {probe}");
                if want_ok {
                    assert!(strings(&window["start_limited_by"])
                        .iter()
                        .any(|s| s.contains("crl")));
                    stricter += 1;
                }
                continue;
            }
            if want_ok {
                assert!(a.is_accepted(), "{name} {probe}: {:?}", a.outcome);
                assert_eq!(
                    a.tcb.as_ref().expect("tcb").status.as_str(),
                    result["result"]["status"]
                );
            } else {
                let err = result["result"]["error"].as_str().expect("error");
                // Our DEBUG check runs before the expensive work, so a debug quote with
                // expired collateral is refused as debug (dcap-qvl checks DEBUG last).
                let want = if case["quote"]["debug"] == true {
                    RefusalCode::DebugEnclave
                } else {
                    probe_code(err)
                };
                assert_eq!(code(&a), Some(want), "{name} {probe}: reference says {err}");
            }
        }
        // Just past the window, even with DEBUG allowed, collateral expiry is the reason.
        let end = window["end"].as_i64().expect("end");
        let a = run(&dir, qf, cf, end + 1, &common::permissive(true));
        assert_eq!(
            code(&a),
            Some(RefusalCode::CollateralExpired),
            "{name} end+1"
        );
        let a = run(
            &dir,
            qf,
            cf,
            window["start"].as_i64().expect("start") - 1,
            &common::permissive(true),
        );
        assert_eq!(
            code(&a),
            Some(RefusalCode::CollateralExpired),
            "{name} start-1"
        );
    }
    assert_eq!(
        stricter, 3,
        "sgx_v3_automata, its eval19 twin and tdx_v5_td15ex_qvl start at a PCK CRL thisUpdate"
    );
}

#[test]
fn crl_issued_in_the_future_is_refused_unlike_dcap_qvl() {
    // Deliberately stricter than the reference: a CRL whose thisUpdate is after the
    // verification time cannot vouch for anything at that time.
    let Some(dir) = common::fixtures() else {
        return;
    };
    let start = 1_755_236_486; // 2025-08-15T05:41:26Z, the PCK CRL's thisUpdate
    let before = run(
        &dir,
        "sgx_v3_automata.quote.bin",
        "sgx_v3_automata.collateral.json",
        start - 1,
        &common::permissive(false),
    );
    let err = before.outcome.as_ref().expect_err("refused");
    assert_eq!(err.code, RefusalCode::CollateralExpired);
    assert!(err.reasons[0].contains("PCK CRL"), "{err}");
    let at = run(
        &dir,
        "sgx_v3_automata.quote.bin",
        "sgx_v3_automata.collateral.json",
        start,
        &common::permissive(false),
    );
    assert!(at.is_accepted());
}

/// Our code for each negative vector, with the reference's message beside it.
fn negative_code(name: &str) -> RefusalCode {
    use RefusalCode::*;
    match name.split_once('.').map(|(_, m)| m).unwrap_or(name) {
        "flip_mrenclave"
        | "flip_report_data"
        | "flip_isv_signature"
        | "set_debug_bit"
        | "flip_header_user_data" => SignatureInvalid,
        "flip_attestation_key" | "flip_qe_auth_data" => SignatureInvalid,
        "flip_qe_report" | "flip_qe_report_signature" => SignatureInvalid,
        "tcb_info_status_edited" | "qe_identity_edited" | "tcb_info_signature_flipped" => {
            SignatureInvalid
        }
        "flip_qe_vendor_id" | "att_key_type_3" | "truncated_1000" => QuoteMalformed,
        "corrupt_pck_leaf_signature_b64"
        | "platform_ca_crl_for_processor_pck"
        | "root_crl_replaced_by_pck_crl" => ChainInvalid,
        "tcb_info_other_fmspc" => FmspcMismatch,
        "with_tdx_collateral" => QeIdentityMismatch,
        "with_other_fmspc_collateral" => ChainInvalid,
        other => panic!("negative vector {other} has no expected code: add it to this table"),
    }
}

#[test]
fn every_negative_vector_is_refused_with_its_code() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    let mut n = 0;
    for v in exp["negative"].as_array().expect("negative") {
        let name = v["name"].as_str().expect("name");
        let at = v["verified_at"].as_i64().expect("t");
        let (qf, cf) = (
            v["quote_file"].as_str().expect("f"),
            v["collateral_file"].as_str().expect("f"),
        );
        assert_eq!(
            v["expected"]["allow_debug"]["ok"], false,
            "{name} is a negative"
        );
        // With DEBUG allowed every check runs; the reference rejects all of these too.
        let a = run(&dir, qf, cf, at, &common::permissive(true));
        assert_eq!(
            code(&a),
            Some(negative_code(name)),
            "{name}: {:?}",
            a.outcome
        );
        // With the default DEBUG policy a set DEBUG bit is refused before any signature work.
        let a = run(&dir, qf, cf, at, &common::permissive(false));
        let want = if name.ends_with("set_debug_bit") {
            RefusalCode::DebugEnclave
        } else {
            negative_code(name)
        };
        assert_eq!(code(&a), Some(want), "{name} default policy");
        n += 1;
    }
    assert_eq!(n, 23);
}

#[test]
fn cross_collateral_cases_match_the_reference() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    for v in exp["cross_collateral"].as_array().expect("cross") {
        let name = v["name"].as_str().expect("name");
        let a = run(
            &dir,
            v["quote_file"].as_str().expect("f"),
            v["collateral_file"].as_str().expect("f"),
            v["verified_at"].as_i64().expect("t"),
            &common::permissive(true),
        );
        let want = &v["expected"]["allow_debug"];
        if want["ok"] == true {
            assert!(a.is_accepted(), "{name}: {:?}", a.outcome);
            let tcb = a.tcb.as_ref().expect("tcb");
            assert_eq!(tcb.status.as_str(), want["status"], "{name}");
            assert_eq!(tcb.advisory_ids, strings(&want["advisory_ids"]), "{name}");
        } else {
            assert_eq!(
                code(&a),
                Some(negative_code(name)),
                "{name}: {:?}",
                a.outcome
            );
        }
    }
}

#[test]
fn parsed_quote_fields_equal_the_ground_truth() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp = expected(&dir);
    let cases = exp["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .chain(exp["parse_only"].as_array().expect("parse_only"));
    let mut n = 0;
    for case in cases {
        let q = &case["quote"];
        if q["tee_type"] != "0x0" {
            continue;
        }
        let bytes = common::read(
            &dir,
            &format!("dcap/{}", case["quote_file"].as_str().expect("f")),
        );
        let quote = Quote::parse(&bytes).expect("parses");
        let name = case["name"].as_str().expect("name");
        assert_eq!(quote.header.version.number(), 3, "{name}");
        assert_eq!(
            u64::from(quote.header.qe_svn),
            q["qe_svn"].as_u64().expect("qe_svn"),
            "{name}"
        );
        assert_eq!(
            u64::from(quote.header.pce_svn),
            q["pce_svn"].as_u64().expect("pce_svn"),
            "{name}"
        );
        assert_eq!(
            hex::encode(quote.header.user_data),
            q["user_data"],
            "{name}"
        );
        assert_eq!(
            Some(quote.signed.len()),
            q["signed_len"]
                .as_u64()
                .and_then(|v| usize::try_from(v).ok()),
            "{name}"
        );
        assert_eq!(
            Some(quote.qe.auth_data.len()),
            q["qe_auth_data_len"]
                .as_u64()
                .and_then(|v| usize::try_from(v).ok()),
            "{name}"
        );
        assert_eq!(
            u64::from(quote.qe.report.isv_prod_id.0),
            q["qe_isv_prod_id"].as_u64().expect("id"),
            "{name}"
        );
        assert_eq!(
            u64::from(quote.qe.report.isv_svn.0),
            q["qe_isv_svn"].as_u64().expect("svn"),
            "{name}"
        );
        assert_eq!(
            quote.qe.report.mrsigner.to_string(),
            q["qe_mrsigner"],
            "{name}"
        );
        let Body::Sgx(report) = quote.body else {
            panic!("{name}: an SGX body");
        };
        assert_eq!(report.mrenclave.to_string(), q["mrenclave"], "{name}");
        assert_eq!(report.report_data.to_string(), q["report_data"], "{name}");
        assert!(
            quote
                .qe
                .pck_chain_pem
                .starts_with(b"-----BEGIN CERTIFICATE-----"),
            "{name}"
        );
        assert!(bytes.starts_with(quote.signed));
        n += 1;
    }
    assert_eq!(n, 6, "five SGX cases plus the Cosmian parse-only quote");
}

#[test]
fn every_prefix_of_a_real_quote_is_refused_without_panicking() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let bytes = common::read(&dir, "dcap/sgx_v3_qvl.quote.bin");
    for len in 0..bytes.len() {
        assert!(
            Quote::parse(&bytes[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    assert!(Quote::parse(&bytes).is_ok());
}

#[test]
fn zero_padding_is_tolerated_but_other_trailing_bytes_are_not() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let mut bytes = common::read(&dir, "dcap/sgx_v3_qvl.quote.bin");
    bytes.extend_from_slice(&[0; 70]);
    assert!(Quote::parse(&bytes).is_ok());
    bytes.push(1);
    assert!(Quote::parse(&bytes).is_err());
}

#[test]
fn collateral_verified_once_serves_many_quotes() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let c = Collateral::from_json(&common::read(&dir, "dcap/sgx_v3_qvl.collateral.json"))
        .expect("parses");
    let verified =
        Arc::new(VerifiedCollateral::verify(&c, &TrustAnchor::intel()).expect("verifies"));
    assert_eq!(verified.valid_from(), UnixTime(1_750_330_571));
    assert_eq!(verified.valid_until(), UnixTime(1_752_919_278));
    let q = common::read(&dir, "dcap/sgx_v3_qvl.quote.bin");
    for _ in 0..3 {
        let a = appraise(
            &q,
            &verified,
            &common::permissive(false),
            UnixTime(1_751_623_200),
        );
        assert!(a.is_accepted());
    }
    let late = appraise(
        &q,
        &verified,
        &common::permissive(false),
        UnixTime(1_752_919_279),
    );
    assert_eq!(code(&late), Some(RefusalCode::CollateralExpired));
}
