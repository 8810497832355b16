//! `ratls-proxy verify --quote` run as a real process: exit codes 0/1/2, the text
//! report and the documented JSON object.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use common::{command, json};

fn verify(args: &[&str]) -> Output {
    common::output(std::iter::once("verify").chain(args.iter().copied()))
}

fn dcap(dir: &Path, file: &str) -> String {
    dir.join("dcap").join(file).display().to_string()
}

#[test]
fn accepted_quote_exits_zero_with_the_documented_json() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let out = verify(&[
        "--quote",
        &dcap(&dir, "sgx_v3_qvl.quote.bin"),
        "--collateral",
        &dcap(&dir, "sgx_v3_qvl.collateral.json"),
        "--at",
        "2025-07-04T10:00:00Z",
        "--tcb-status",
        "ConfigurationAndSWHardeningNeeded",
        "--mrenclave",
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["verdict"], "accepted");
    assert_eq!(j["code"], Value::Null);
    assert_eq!(j["reasons"], serde_json::json!([]));
    assert_eq!(j["quote"]["version"], 3);
    assert_eq!(j["quote"]["tee"], "SGX");
    assert_eq!(
        j["quote"]["mrsigner"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(j["quote"]["isv_prod_id"], 0);
    assert_eq!(j["quote"]["isv_svn"], 0);
    assert_eq!(j["quote"]["debug"], false);
    assert_eq!(j["quote"]["attributes"], "0500000000000000e700000000000000");
    assert!(j["quote"]["report_data"]
        .as_str()
        .expect("hex")
        .starts_with("48656c6c6f"));
    assert_eq!(j["tcb"]["status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        j["tcb"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(j["tcb"]["fmspc"], "00a067110000");
    assert_eq!(j["binding"], Value::Null);
    assert_eq!(j["cert_sha256"], Value::Null);
    assert_eq!(j["verified_at"], "2025-07-04T10:00:00Z");
}

#[test]
fn without_tcb_status_only_up_to_date_is_accepted() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let out = verify(&[
        "--quote",
        &dcap(&dir, "sgx_v3_qvl.quote.bin"),
        "--collateral",
        &dcap(&dir, "sgx_v3_qvl.collateral.json"),
        "--at",
        "1751623200",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("REFUSED  tcb_status_not_allowed"),
        "{text}"
    );
    assert!(
        text.contains("ConfigurationAndSWHardeningNeeded is not accepted (accepted: UpToDate)"),
        "{text}"
    );
    // The refused report still shows what was parsed.
    assert!(
        text.contains("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"),
        "{text}"
    );
}

#[test]
fn debug_quote_is_refused_unless_allowed() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let base = [
        "--quote",
        &dcap(&dir, "sgx_v3_debug_dcaprs.quote.bin"),
        "--collateral",
        &dcap(&dir, "sgx_v3_debug_dcaprs.collateral.json"),
        "--at",
        "2024-09-10T00:00:00Z",
        "--tcb-status",
        "ConfigurationAndSWHardeningNeeded",
        "--json",
    ]
    .map(String::from);
    let args: Vec<&str> = base.iter().map(String::as_str).collect();
    let out = verify(&args);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["code"], "debug_enclave");
    assert_eq!(j["quote"]["debug"], true);
    let mut allowed = args.clone();
    allowed.push("--allow-debug");
    let out = verify(&allowed);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn policy_mismatches_name_expected_and_actual_values() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let other = "00".repeat(32);
    let out = verify(&[
        "--quote",
        &dcap(&dir, "sgx_v3_automata.quote.bin"),
        "--collateral",
        &dcap(&dir, "sgx_v3_automata.collateral.json"),
        "--at",
        "1756530000",
        "--tcb-status",
        "SWHardeningNeeded",
        "--mrenclave",
        &other,
        "--mrsigner",
        &other,
        "--isv-prod-id",
        "7",
        "--min-isv-svn",
        "3",
        "--allow-advisory",
        "INTEL-SA-00000",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["code"], "mrenclave_mismatch");
    let reasons: Vec<&str> = j["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].contains("a4f45c39dac622cb1dd32ddb35a52ec92db41d0fa88a1c911c49e59c534f61cd")
            && reasons[0].contains(&other)
    );
    assert!(
        reasons[2].contains("ISVPRODID is 0, the policy requires 7"),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].contains("ISVSVN 0 is below the policy minimum 3"),
        "{}",
        reasons[3]
    );
    assert!(reasons[4].contains("INTEL-SA-00615"), "{}", reasons[4]);
}

#[test]
fn unreadable_files_and_bad_arguments_exit_two() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let coll = dcap(&dir, "sgx_v3_qvl.collateral.json");
    let out = verify(&["--quote", "/nonexistent/quote.bin", "--collateral", &coll]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read quote"));
    let q = dcap(&dir, "sgx_v3_qvl.quote.bin");
    for bad in [
        vec!["--quote", &q, "--collateral", &coll, "--at", "tomorrow"],
        vec!["--quote", &q, "--collateral", &coll, "--mrenclave", "abcd"],
        vec!["--quote", &q, "--collateral", &coll, "--tcb-status", "Fine"],
        vec![
            "--quote",
            &q,
            "--collateral",
            &coll,
            "--tcb-status",
            "Revoked",
        ],
        vec!["--quote", &q],
        vec!["--collateral", &coll],
    ] {
        let out = verify(&bad);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn garbage_quote_and_garbage_collateral_are_refusals_not_crashes() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("ratls-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let garbage = tmp.join("garbage.bin");
    std::fs::write(&garbage, b"\x03\x00\x02\x00garbage").expect("write");
    let out = verify(&[
        "--quote",
        &garbage.display().to_string(),
        "--collateral",
        &dcap(&dir, "sgx_v3_qvl.collateral.json"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "quote_malformed");
    assert_eq!(json(&out)["quote"], Value::Null);

    let out = verify(&[
        "--quote",
        &dcap(&dir, "sgx_v3_qvl.quote.bin"),
        "--collateral",
        &garbage.display().to_string(),
        "--at",
        "1751623200",
        "--json",
    ]);
    // Unusable collateral is "could not check" (exit 2), still with the JSON report.
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["code"], "collateral_unavailable");
    assert_eq!(
        json(&out)["quote"]["tee"],
        "SGX",
        "the parsed quote is reported"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn verify_cert_on_the_real_cosmian_debug_certificate_is_refused_as_debug() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let cert = dir
        .join("cosmian/sgx-ratls-cert_debug-enclave_tee-tools.pem")
        .display()
        .to_string();
    let out = verify(&[
        "--cert",
        &cert,
        "--collateral",
        &dcap(&dir, "sgx_v3_qvl.collateral.json"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["code"], "debug_enclave");
    assert_eq!(
        j["quote"]["mrenclave"],
        "72009e6e7ddebcb7a8cf6b000b40aa20fd15d2c4fd524e85e80df6e8e0841d10"
    );
    assert_eq!(j["cert_sha256"].as_str().map(str::len), Some(64));
    // A PEM file without a certificate (the signer's RSA key) cannot be checked.
    let key = dir
        .join("cosmian/sgx-enclave-signer-rsa3072-pubkey_mrsigner-c1c161d0_tee-tools.pem")
        .display()
        .to_string();
    let out = verify(&[
        "--cert",
        &key,
        "--collateral",
        &dcap(&dir, "sgx_v3_qvl.collateral.json"),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn collateral_may_come_from_a_pipe() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    use std::io::Write as _;
    let mut child = command()
        .args([
            "verify",
            "--quote",
            &dcap(&dir, "sgx_v3_qvl.quote.bin"),
            "--collateral",
            "/dev/stdin",
            "--at",
            "2025-07-04T10:00:00Z",
            "--tcb-status",
            "ConfigurationAndSWHardeningNeeded",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let bundle = common::read(&dir, "dcap/sgx_v3_qvl.collateral.json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bundle)
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_not_the_verdict() {
    // `verify --json | head -c0`: the pipe's read end is closed before the report is written.
    // Before the fix the write panicked (exit 101); the verdict's exit code must survive.
    let Some(dir) = common::fixtures() else {
        return;
    };
    for format in [&["--json"][..], &[][..]] {
        let mut child = command()
            .args([
                "verify",
                "--quote",
                &dcap(&dir, "sgx_v3_qvl.quote.bin"),
                "--collateral",
                &dcap(&dir, "sgx_v3_qvl.collateral.json"),
                "--at",
                "2025-07-04T10:00:00Z",
                "--tcb-status",
                "ConfigurationAndSWHardeningNeeded",
            ])
            .args(format)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{format:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{format:?}: {stderr}");
    }
}
