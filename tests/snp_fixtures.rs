//! The real AMD SEV-SNP report (EPYC Milan, `fixtures/dstack/`, see its SOURCE.md) verified
//! offline to the pinned Milan ARK at its capture time with the ASK and VCEK AMD's KDS
//! served; its fields equal the capture notes'. Then mutations of the real bytes, each
//! refused with its typed error. (Forged reports and keys: `tests/snp_sim.rs`.)

mod common;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::snp::collateral::SnpCollateral;
use ratls_proxy::snp::report::{ReportVersion, SigningKey};
use ratls_proxy::snp::verify::{verify_with_collateral, VerifiedVek};
use ratls_proxy::snp::{CertRole, Product, Report, ReportError, SnpError, SnpTrust, REPORT_LEN};

/// The capture day (the VCEK was fetched from KDS on 2026-06-17 at 01:05:04).
const CAPTURED: &str = "2026-06-17T12:00:00Z";

struct Milan {
    report: Vec<u8>,
    collateral: SnpCollateral,
}

/// The 1184-byte report inside the verifier input `sev-snp-attestation.json`: dstack's
/// SCALE envelope starts with the V0 tag, the SEV-SNP quote variant (3) and the compact
/// length 1184 (`0x1281` little-endian), then the report.
fn milan() -> Option<Milan> {
    let dir = common::fixtures()?;
    let json = common::read(&dir, "dstack/sev-snp-attestation.json");
    let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let blob = hex::decode(value["attestation"].as_str().expect("attestation hex")).expect("hex");
    assert_eq!(blob[..4], [0x00, 0x03, 0x81, 0x12], "the SCALE envelope this test knows");
    let report = blob[4..4 + REPORT_LEN].to_vec();
    let same = common::read(&dir, "dstack/sev_snp_attestation.bin");
    assert_eq!(same[4..4 + REPORT_LEN], report[..], "the same report in both fixtures");
    let collateral = SnpCollateral::from_pem(
        &common::read(&dir, "dstack/sev_snp_ask.pem"),
        &common::read(&dir, "dstack/sev_snp_vcek.pem"),
        None,
    )
    .expect("PEMs");
    Some(Milan { report, collateral })
}

fn at(text: &str) -> UnixTime {
    UnixTime::parse(text).expect("time")
}

fn check(bytes: &[u8], c: &SnpCollateral, now: UnixTime) -> Result<(), SnpError> {
    let report = Report::parse(bytes)?;
    verify_with_collateral(&report, c, &SnpTrust::amd(), now).map(|_| ())
}

#[test]
fn the_real_milan_report_verifies_to_the_pinned_ark_and_says_what_the_capture_notes_say() {
    let Some(m) = milan() else { return };
    let report = Report::parse(&m.report).expect("parses");
    let v = verify_with_collateral(&report, &m.collateral, &SnpTrust::amd(), at(CAPTURED))
        .expect("verifies");
    let id = &v.identity;
    assert_eq!(id.version, ReportVersion::V3);
    assert_eq!(id.product, Product::Milan);
    assert_eq!(id.signing_key, SigningKey::Vcek);
    assert_eq!(
        id.chip_id.to_string(),
        "38d174589d2dff97a6d40cb9f9d90b9507c027491219083cef3ce73e\
         d18f7289142d941ad61eabecd27d25f268c1095d665f6001358e98a4769c82734a6bb877"
    );
    assert!(id.measurement.to_string().starts_with(
        "7f51e17f72a04d5422cb2c00998166536019a217376f3aa45a630e59c805a599"
    ));
    assert_eq!(
        id.host_data.to_string(),
        "783f0057820acb99249af56cc3b07b4e8d80f65183167cba9cf437bb680f742f"
    );
    assert_eq!(id.policy.0, 0x30000);
    assert!(id.policy.smt() && !id.policy.debug() && !id.policy.migrate_ma());
    assert_eq!(id.vmpl, 0);
    assert_eq!(id.guest_svn, 0);
    let r = id.tcb.reported;
    assert_eq!((r.fmc, r.bootloader, r.tee, r.snp, r.microcode), (None, 4, 0, 23, 213));
    assert_eq!(id.tcb.current.snp, 24, "the host reports an older TCB than it runs");
    assert_eq!(&id.report_data.0[..24], b"attest-test-fixture-2026");
    assert_eq!(id.current_version.to_string(), "1.55.29");
}
