//! `ratls-proxy verify --quote` on AMD SEV-SNP evidence, run as a real process: the real
//! Milan report (raw, and inside dstack's attestation) verifies offline to the pinned ARK at
//! its capture time (exit 0, the documented JSON shape); mutations are refused with their
//! code (exit 1); no VCEK for the chip is "could not check" (exit 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::json;

const CAPTURED: &str = "2026-06-17T12:00:00Z";
const REPORT_LEN: usize = 1184;
const MEASUREMENT: &str = "7f51e17f72a04d5422cb2c00998166536019a217376f3aa45a630e59c805a599847ff250dbffcd07e1ba639771d6f05d";
const HOST_DATA: &str = "783f0057820acb99249af56cc3b07b4e8d80f65183167cba9cf437bb680f742f";

fn verify(args: &[&str]) -> Output {
    common::output(std::iter::once("verify").chain(args.iter().copied()))
}

/// A scratch directory for one test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratls-cli-snp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The real evidence: the dstack attestation as the JSON fixture carries it (with the ASK and
/// VCEK in its chain), the same without a chain (`.bin`), and the raw report.
struct Real {
    carried: Vec<u8>,
    bare: Vec<u8>,
    report: Vec<u8>,
    /// A directory holding the ASK and VCEK PEMs as KDS served them.
    collateral: PathBuf,
    dir: PathBuf,
}

fn real(name: &str) -> Option<Real> {
    let fixtures = common::fixtures()?;
    let j: Value =
        serde_json::from_slice(&common::read(&fixtures, "dstack/sev-snp-attestation.json"))
            .expect("json");
    let carried = hex::decode(j["attestation"].as_str().expect("hex")).expect("hex");
    let report = carried[4..4 + REPORT_LEN].to_vec();
    let bare = common::read(&fixtures, "dstack/sev_snp_attestation.bin");
    let dir = scratch(name);
    let collateral = dir.join("collateral");
    std::fs::create_dir_all(&collateral).expect("dir");
    for f in ["sev_snp_ask.pem", "sev_snp_vcek.pem"] {
        std::fs::write(
            collateral.join(f),
            common::read(&fixtures, &format!("dstack/{f}")),
        )
        .expect("copy");
    }
    Some(Real {
        carried,
        bare,
        report,
        collateral,
        dir,
    })
}

impl Real {
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p.display().to_string()
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(out: &Output) -> (Option<i32>, Value) {
    (out.status.code(), json(out)["code"].clone())
}

fn dir_arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_real_milan_report_verifies_offline_to_the_pinned_ark_with_the_documented_json() {
    let Some(r) = real("accepted") else { return };
    let report = r.write("report.bin", &r.report);
    let out = verify(&[
        "--quote",
        &report,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--measurement",
        MEASUREMENT,
        "--host-data",
        HOST_DATA,
        "--min-tcb",
        "snp=23",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let j = json(&out);
    assert_eq!(j["verdict"], "accepted");
    assert_eq!(j["code"], Value::Null);
    assert_eq!(j["reasons"], serde_json::json!([]));
    assert_eq!(j["quote"]["tee"], "SNP");
    assert_eq!(j["quote"]["version"], 3);
    assert_eq!(j["quote"]["product"], "Milan");
    assert_eq!(j["quote"]["signing_key"], "VCEK");
    assert_eq!(j["quote"]["debug"], false);
    assert_eq!(j["quote"]["measurement"], MEASUREMENT);
    assert_eq!(j["quote"]["host_data"], HOST_DATA);
    assert!(j["quote"]["chip_id"]
        .as_str()
        .expect("hex")
        .starts_with("38d174589d2dff97"));
    assert_eq!(
        j["quote"]["reported_tcb"],
        "bootloader=4 tee=0 snp=23 microcode=213"
    );
    assert_eq!(j["quote"]["guest_policy"], "0x30000");
    assert_eq!(j["quote"]["vmpl"], 0);
    assert!(j["quote"]["report_data"]
        .as_str()
        .expect("hex")
        .starts_with(&hex::encode("attest-test-fixture-2026")));
    assert_eq!(j["tcb"], Value::Null);
    assert_eq!(j["binding"], Value::Null);
    assert_eq!(j["cert_sha256"], Value::Null);
    assert_eq!(j["verified_at"], CAPTURED);
    // The text report says the same.
    let text = verify(&[
        "--quote",
        &report,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
    ]);
    assert_eq!(text.status.code(), Some(0));
    let printed = common::printed(&text);
    assert!(printed.starts_with("ACCEPTED\n"), "{printed}");
    assert!(printed.contains(MEASUREMENT), "{printed}");
}

#[test]
fn the_dstack_attestation_verifies_with_the_chain_it_carries_and_binds_its_mr_config() {
    let Some(r) = real("dstack") else { return };
    let carried = r.write("carried.bin", &r.carried);
    let out = verify(&["--quote", &carried, "--at", CAPTURED, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let j = json(&out);
    assert_eq!(j["binding"], "dstack");
    assert_eq!(j["quote"]["host_data"], HOST_DATA);
    // Without a chain, from the directory.
    let bare = r.write("bare.bin", &r.bare);
    let out = verify(&[
        "--quote",
        &bare,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    // The mr_config edited (same length): the report still verifies, the binding does not.
    let at = r
        .bare
        .windows(5)
        .position(|w| w == b"\"kms\"")
        .expect("kms");
    let mut edited = r.bare.clone();
    edited[at + 3] = b'z';
    let edited = r.write("edited.bin", &edited);
    let out = verify(&[
        "--quote",
        &edited,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(1), "binding_mismatch".into()));
    // The report data edited: REPORT_DATA no longer matches.
    let rd = r.bare.len() - 64;
    let at_rd = r.bare[..rd]
        .windows(24)
        .rposition(|w| w == b"attest-test-fixture-2026")
        .expect("report data");
    let mut edited = r.bare.clone();
    edited[at_rd] ^= 1;
    let edited = r.write("edited_rd.bin", &edited);
    let out = verify(&[
        "--quote",
        &edited,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(1), "binding_mismatch".into()));
}

#[test]
fn mutated_reports_and_policy_mismatches_are_refused_with_their_code() {
    let Some(r) = real("mutated") else { return };
    let coll = dir_arg(&r.collateral);
    let flip = |offset: usize, bit: u8| {
        let mut m = r.report.clone();
        m[offset] ^= bit;
        m
    };
    let (other_m, other_h, other_f) = ("ab".repeat(48), "cd".repeat(32), "ef".repeat(16));
    type Case<'a> = (&'a str, Vec<u8>, Vec<&'a str>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "measurement byte",
            flip(0x90, 1),
            vec![],
            "signature_invalid",
        ),
        ("signature r", flip(0x2a0, 1), vec![], "signature_invalid"),
        (
            "signature padding",
            flip(0x2a0 + 70, 1),
            vec![],
            "signature_invalid",
        ),
        (
            "DEBUG set (judged before any signature)",
            flip(0x008 + 2, 0x08),
            vec![],
            "debug_enclave",
        ),
        ("reserved byte", flip(0x04c, 1), vec![], "quote_malformed"),
        (
            "truncated",
            r.report[..1000].to_vec(),
            vec!["--tee", "snp"],
            "tee_mismatch",
        ),
        (
            "another measurement allowed",
            r.report.clone(),
            vec!["--measurement", &other_m],
            "measurement_mismatch",
        ),
        (
            "another host data allowed",
            r.report.clone(),
            vec!["--host-data", &other_h],
            "host_data_mismatch",
        ),
        (
            "TCB below the minimum",
            r.report.clone(),
            vec!["--min-tcb", "snp=24"],
            "tcb_below_minimum",
        ),
        (
            "guest SVN below",
            r.report.clone(),
            vec!["--min-guest-svn", "1"],
            "guest_svn_too_low",
        ),
        (
            "another family",
            r.report.clone(),
            vec!["--family-id", &other_f],
            "id_block_mismatch",
        ),
        (
            "another ID key",
            r.report.clone(),
            vec!["--id-key-digest", &other_m],
            "id_key_mismatch",
        ),
        (
            "--tee sgx",
            r.report.clone(),
            vec!["--tee", "sgx"],
            "tee_mismatch",
        ),
    ];
    for (name, bytes, extra, want) in cases {
        let file = r.write("m.bin", &bytes);
        let mut args = vec![
            "--quote",
            file.as_str(),
            "--collateral",
            &coll,
            "--at",
            CAPTURED,
            "--json",
        ];
        args.extend(extra.iter().copied());
        let out = verify(&args);
        assert_eq!(
            code(&out),
            (Some(1), want.into()),
            "{name}: {}",
            common::printed(&out)
        );
        assert_eq!(json(&out)["verdict"], "refused", "{name}");
    }
    // Long after the VCEK's and ASK's validity: expired.
    let report = r.write("report.bin", &r.report);
    let out = verify(&[
        "--quote",
        &report,
        "--collateral",
        &coll,
        "--at",
        "2060-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(
        code(&out),
        (Some(1), "collateral_expired".into()),
        "{}",
        common::printed(&out)
    );
}

#[test]
fn without_the_chips_vcek_verify_could_not_check_and_exits_two() {
    let Some(r) = real("no-vcek") else { return };
    let report = r.write("report.bin", &r.report);
    // The ASK alone.
    std::fs::remove_file(r.collateral.join("sev_snp_vcek.pem")).expect("rm");
    let out = verify(&[
        "--quote",
        &report,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(
        code(&out),
        (Some(2), "collateral_unavailable".into()),
        "{}",
        common::printed(&out)
    );
    // Nothing usable at all.
    let empty = r.dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = verify(&[
        "--quote",
        &report,
        "--collateral",
        &dir_arg(&empty),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(2), "collateral_unavailable".into()));
    // A KDS that does not answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let out = verify(&[
        "--quote",
        &report,
        "--collateral",
        &url,
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(2), "collateral_unavailable".into()));
    // A report whose chip is not the VCEK's: still no VCEK for it (nothing accepted).
    std::fs::copy(
        common::fixtures()
            .expect("fixtures")
            .join("dstack/sev_snp_vcek.pem"),
        r.collateral.join("vcek.pem"),
    )
    .expect("copy");
    let mut other = r.report.clone();
    other[0x1a0] ^= 1;
    let other = r.write("other.bin", &other);
    let out = verify(&[
        "--quote",
        &other,
        "--collateral",
        &dir_arg(&r.collateral),
        "--at",
        CAPTURED,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(2), "collateral_unavailable".into()));
}

#[test]
fn a_dstack_attestation_of_another_platform_is_named_not_misread() {
    let Some(r) = real("other-platform") else {
        return;
    };
    let fixtures = common::fixtures().expect("fixtures");
    let j: Value =
        serde_json::from_slice(&common::read(&fixtures, "dstack/tdx-lite-attestation.json"))
            .expect("json");
    let tdx = hex::decode(j["attestation"].as_str().expect("hex")).expect("hex");
    let file = r.write("tdx.bin", &tdx);
    let other = r.dir.join("other-collateral");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::copy(
        fixtures.join("dcap/tdx_v4_qvl.collateral.json"),
        other.join("other.json"),
    )
    .expect("copy");
    // A dstack TDX attestation goes to the TDX path (tests/cli_verify_dstack.rs), never
    // read as SEV-SNP: with no collateral for its platform it could not be checked.
    let out = verify(&[
        "--quote",
        &file,
        "--at",
        CAPTURED,
        "--collateral",
        &dir_arg(&other),
        "--json",
    ]);
    assert_eq!(
        code(&out),
        (Some(2), "collateral_unavailable".into()),
        "{}",
        common::printed(&out)
    );
    assert_eq!(json(&out)["quote"]["tee"], "TDX");
    // And under --tee snp, a TEE mismatch.
    let out = verify(&["--quote", &file, "--tee", "snp", "--json"]);
    assert_eq!(code(&out), (Some(1), "tee_mismatch".into()));
    // And SEV-SNP evidence under `--tee tdx` is a TEE mismatch, never judged as a quote.
    let report = r.write("report.bin", &r.report);
    let out = verify(&["--quote", &report, "--tee", "tdx", "--json"]);
    assert_eq!(code(&out), (Some(1), "tee_mismatch".into()));
}
