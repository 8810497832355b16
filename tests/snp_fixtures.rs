//! The real AMD SEV-SNP report (EPYC Milan, `fixtures/dstack/`, see its SOURCE.md) verified
//! offline to the pinned Milan ARK at its capture time with the ASK and VCEK AMD's KDS
//! served; its fields equal the capture notes'. Then mutations of the real bytes, each
//! refused with its typed error. (Forged reports and keys: `tests/snp_sim.rs`.)

mod common;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::snp::collateral::{verify_with_collateral, SnpCollateral};
use ratls_proxy::snp::report::{ReportVersion, SigningKey};
use ratls_proxy::snp::verify::VerifiedVek;
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
    assert_eq!(
        blob[..4],
        [0x00, 0x03, 0x81, 0x12],
        "the SCALE envelope this test knows"
    );
    let report = blob[4..4 + REPORT_LEN].to_vec();
    let same = common::read(&dir, "dstack/sev_snp_attestation.bin");
    assert_eq!(
        same[4..4 + REPORT_LEN],
        report[..],
        "the same report in both fixtures"
    );
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
    assert!(id
        .measurement
        .to_string()
        .starts_with("7f51e17f72a04d5422cb2c00998166536019a217376f3aa45a630e59c805a599"));
    assert_eq!(
        id.host_data.to_string(),
        "783f0057820acb99249af56cc3b07b4e8d80f65183167cba9cf437bb680f742f"
    );
    assert_eq!(id.policy.0, 0x30000);
    assert!(id.policy.smt() && !id.policy.debug() && !id.policy.migrate_ma());
    assert_eq!(id.vmpl, 0);
    assert_eq!(id.guest_svn, 0);
    let r = id.tcb.reported;
    assert_eq!(
        (r.fmc, r.bootloader, r.tee, r.snp, r.microcode),
        (None, 4, 0, 23, 213)
    );
    assert_eq!(
        id.tcb.current.snp, 24,
        "the host reports an older TCB than it runs"
    );
    assert_eq!(&id.report_data.0[..24], b"attest-test-fixture-2026");
    assert_eq!(id.current_version.to_string(), "1.55.29");
}

#[test]
fn the_real_report_is_judged_at_the_given_time() {
    let Some(m) = milan() else { return };
    // The VCEK was issued 2026-06-17T01:05:04Z for seven years.
    assert!(matches!(
        check(&m.report, &m.collateral, at("2026-06-17T01:05:03Z")),
        Err(SnpError::Expired {
            role: CertRole::Vcek,
            ..
        })
    ));
    assert_eq!(
        check(&m.report, &m.collateral, at("2026-06-17T01:05:04Z")),
        Ok(())
    );
    assert_eq!(
        check(&m.report, &m.collateral, at("2033-06-17T01:05:04Z")),
        Ok(())
    );
    assert!(matches!(
        check(&m.report, &m.collateral, at("2033-06-17T01:05:05Z")),
        Err(SnpError::Expired {
            role: CertRole::Vcek,
            ..
        })
    ));
}

#[test]
fn every_byte_of_the_real_report_is_either_refused_by_the_parser_or_by_the_signature() {
    let Some(m) = milan() else { return };
    let trust = SnpTrust::amd();
    let good = Report::parse(&m.report).expect("parses");
    // The chain and the key verified once, then each mutated report against them.
    let vek: VerifiedVek = m.collateral.verify(&good, &trust).expect("vek");
    let now = at(CAPTURED);
    for i in 0..REPORT_LEN {
        for flip in [0x01u8, 0x80] {
            let mut bytes = m.report.clone();
            bytes[i] ^= flip;
            let got = Report::parse(&bytes)
                .map_err(SnpError::from)
                .and_then(|r| ratls_proxy::snp::verify::verify(&r, &vek, now).map(|_| ()));
            let Err(e) = got else {
                panic!("byte {i:#x} ^ {flip:#x} accepted");
            };
            let signed = i < 0x2A0;
            let in_signature = (0x2A0..0x2A0 + 144).contains(&i);
            let expected = match &e {
                SnpError::Report(ReportError::Reserved { .. }) => true,
                SnpError::Report(ReportError::UnsupportedVersion(_)) => i < 4,
                SnpError::Report(ReportError::SignatureAlgorithm(_)) => (0x34..0x38).contains(&i),
                SnpError::Report(ReportError::SigningKey(_) | ReportError::Unsigned) => {
                    (0x48..0x4C).contains(&i)
                }
                SnpError::Report(ReportError::UnknownCpu { .. }) => (0x188..0x18A).contains(&i),
                SnpError::KeyKind { .. } => i == 0x48,
                SnpError::ReportSignature(_) => signed || in_signature,
                SnpError::SignatureEncoding(_) => in_signature,
                _ => false,
            };
            assert!(expected, "byte {i:#x} ^ {flip:#x}: unexpected {e:?}");
        }
    }
}

#[test]
fn the_real_report_is_refused_with_a_chain_that_is_not_amds() {
    let Some(m) = milan() else { return };
    let report = Report::parse(&m.report).expect("parses");
    // The ASK where the VCEK belongs, the VCEK where the ASK belongs.
    let swapped = SnpCollateral {
        intermediate: m.collateral.vek.clone(),
        vek: m.collateral.intermediate.clone(),
        ..m.collateral.clone()
    };
    assert!(verify_with_collateral(&report, &swapped, &SnpTrust::amd(), at(CAPTURED)).is_err());
    // A byte of the VCEK's signed part (its P-384 key).
    let mut vek = m.collateral.vek.clone();
    let at_key = vek.len() - 600;
    vek[at_key] ^= 1;
    let bad = SnpCollateral {
        vek,
        ..m.collateral.clone()
    };
    assert!(verify_with_collateral(&report, &bad, &SnpTrust::amd(), at(CAPTURED)).is_err());
    // No roots at all.
    let none = SnpTrust::with_arks(Vec::new());
    assert!(matches!(
        verify_with_collateral(&report, &m.collateral, &none, at(CAPTURED)),
        Err(SnpError::NotPinned { .. })
    ));
}

/// The Genoa and Turin reports in `tests/data/snp/` (SOURCE.md there), verified to the
/// pinned ARKs at a time inside their VCEKs' windows.
#[test]
fn public_genoa_and_turin_reports_verify_to_their_pinned_arks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snp");
    let read = |name: &str| std::fs::read(dir.join(name)).expect(name);
    let trust = SnpTrust::amd();
    let now = at("2026-03-01T00:00:00Z");
    for (name, product, version, fmc) in [
        ("genoa", Product::Genoa, ReportVersion::V3, None),
        ("turin", Product::Turin, ReportVersion::V5, Some(1)),
    ] {
        let bytes = read(&format!("{name}_report.bin"));
        let c = SnpCollateral::from_pem(
            &read(&format!("{name}_ask.pem")),
            &read(&format!("{name}_vcek.pem")),
            None,
        )
        .expect("pems");
        let report = Report::parse(&bytes).expect("parses");
        let v = verify_with_collateral(&report, &c, &trust, now).expect(name);
        assert_eq!(v.identity.product, product);
        assert_eq!(v.identity.version, version);
        assert_eq!(v.identity.tcb.reported.fmc, fmc);
        // Each real report verifies only under its own product's chain.
        let other = if product == Product::Genoa {
            "turin"
        } else {
            "genoa"
        };
        let wrong = SnpCollateral::from_pem(
            &read(&format!("{other}_ask.pem")),
            &read(&format!("{other}_vcek.pem")),
            None,
        )
        .expect("pems");
        assert!(verify_with_collateral(&report, &wrong, &trust, now).is_err());
    }
    // Turin: PLATFORM_INFO bit 6, which ABI 1.58 leaves unnamed, is set on real hardware.
    let turin = read("turin_report.bin");
    let report = Report::parse(&turin).expect("parses");
    assert_eq!(report.platform_info.0, 0x65);
    assert_eq!(report.launch_mit_vector, Some(0x3f));
    assert_eq!(
        report.chip_id.0[8..],
        [0u8; 56],
        "Turin uses 8 bytes of CHIP_ID"
    );
}

#[test]
fn amds_published_asvks_verify_under_the_pinned_arks() {
    use ratls_proxy::snp::chain::VerifiedChain;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snp");
    let trust = SnpTrust::amd();
    for product in Product::ALL {
        let name = product.name().to_lowercase();
        let pem = std::fs::read(dir.join(format!("{name}_asvk_ark.pem"))).expect("pem");
        let certs = ratls_proxy::dcap::pki::pem_chain(&pem, "t").expect("pem");
        assert_eq!(
            certs[1],
            trust.ark(product).expect("ark").der(),
            "{product}: the ARK copy is the pin"
        );
        let chain = VerifiedChain::verify(product, SigningKey::Vlek, &certs[0], None, &trust)
            .expect("ASVK verifies");
        chain
            .check_fresh(at("2026-03-01T00:00:00Z"))
            .expect("fresh");
        // The ASVK is not an ASK: a VCEK chain refuses it.
        assert!(matches!(
            VerifiedChain::verify(product, SigningKey::Vcek, &certs[0], None, &trust),
            Err(SnpError::KeyKind { .. })
        ));
    }
}
