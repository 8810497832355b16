//! Differential tests against the `sev` crate (virtee, 8.x, pure-Rust crypto) as the oracle
//! for SEV-SNP reports: on the real Milan report and the public Genoa and Turin reports both
//! accept and read the same fields; on mutated reports we never accept what `sev` refuses.
//!
//! Where we are deliberately stricter (we refuse, `sev` accepts), the case is named:
//! 1. reserved bytes or bits that are not zero (reserved ranges, POLICY and KEY_INFO bits,
//!    the reserved bytes inside each TCB_VERSION): `sev` parses the report into a struct and
//!    checks the signature over its re-encoding, so bytes it skips are not checked at all;
//! 2. non-zero padding above r and s, and bytes after them in SIGNATURE (same reason);
//! 3. the VCEK's TCB and hwID extensions against REPORTED_TCB and CHIP_ID (`sev` does not
//!    compare them: a key for another chip or TCB that signed the report passes);
//! 4. certificate validity windows and the report's product against the chain's (`sev`
//!    has no time and verifies whatever chain it is given);
//! 5. report version 4 (undocumented; `sev` reads it as version 3) and version 6 and up.

use proptest::prelude::*;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::snp::collateral::{verify_with_collateral, SnpCollateral};
use ratls_proxy::snp::{Product, Report, SnpTrust, REPORT_LEN};
use sev::certs::snp::{builtin, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

mod common;

struct Case {
    name: &'static str,
    report: Vec<u8>,
    ask_pem: Vec<u8>,
    vek_pem: Vec<u8>,
    product: Product,
    now: UnixTime,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    if let Some(dir) = common::fixtures() {
        let json = common::read(&dir, "dstack/sev-snp-attestation.json");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let blob = hex::decode(value["attestation"].as_str().expect("hex")).expect("hex");
        assert_eq!(blob[..4], [0x00, 0x03, 0x81, 0x12]);
        out.push(Case {
            name: "milan (dstack)",
            report: blob[4..4 + REPORT_LEN].to_vec(),
            ask_pem: common::read(&dir, "dstack/sev_snp_ask.pem"),
            vek_pem: common::read(&dir, "dstack/sev_snp_vcek.pem"),
            product: Product::Milan,
            now: UnixTime::parse("2026-06-17T12:00:00Z").expect("t"),
        });
    }
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snp");
    let read = |n: &str| std::fs::read(data.join(n)).expect(n);
    for (name, product) in [("genoa", Product::Genoa), ("turin", Product::Turin)] {
        out.push(Case {
            name,
            report: read(&format!("{name}_report.bin")),
            ask_pem: read(&format!("{name}_ask.pem")),
            vek_pem: read(&format!("{name}_vcek.pem")),
            product,
            now: UnixTime::parse("2026-03-01T00:00:00Z").expect("t"),
        });
    }
    out
}

fn ours(case: &Case, report: &[u8]) -> bool {
    let Ok(c) = SnpCollateral::from_pem(&case.ask_pem, &case.vek_pem, None) else {
        return false;
    };
    Report::parse(report)
        .map_err(Into::into)
        .and_then(|r| verify_with_collateral(&r, &c, &SnpTrust::amd(), case.now))
        .is_ok()
}

fn sev_ark(product: Product) -> Certificate {
    match product {
        Product::Milan => builtin::milan::ark(),
        Product::Genoa => builtin::genoa::ark(),
        Product::Turin => builtin::turin::ark(),
    }
    .expect("sev's builtin ARK")
}

/// `sev`'s verdict: ARK self-signed, ARK → ASK → VCEK, VCEK signs the report.
fn theirs(case: &Case, report: &[u8]) -> bool {
    let (Ok(ask), Ok(vek)) = (
        Certificate::from_pem(&case.ask_pem),
        Certificate::from_pem(&case.vek_pem),
    ) else {
        return false;
    };
    let chain = Chain {
        ca: sev::certs::snp::ca::Chain {
            ark: sev_ark(case.product),
            ask,
        },
        vek,
    };
    let Ok(parsed) = AttestationReport::from_bytes(report) else {
        return false;
    };
    (&chain, &parsed).verify().is_ok()
}

#[test]
fn both_accept_the_real_reports_and_read_the_same_fields() {
    for case in cases() {
        assert!(ours(&case, &case.report), "{}: ours", case.name);
        assert!(theirs(&case, &case.report), "{}: sev", case.name);
        let a = Report::parse(&case.report).expect("ours parses");
        let b = AttestationReport::from_bytes(&case.report).expect("sev parses");
        assert_eq!(a.version.number(), b.version, "{}", case.name);
        assert_eq!(a.guest_svn, b.guest_svn);
        assert_eq!(a.policy.0, b.policy.0 | 1 << 17);
        assert_eq!(a.family_id.0, b.family_id);
        assert_eq!(a.image_id.0, b.image_id);
        assert_eq!(a.vmpl, b.vmpl);
        assert_eq!(a.platform_info.0, u64::from(b.plat_info));
        assert_eq!(a.report_data.0, b.report_data);
        assert_eq!(a.measurement.0, b.measurement);
        assert_eq!(a.host_data.0, b.host_data);
        assert_eq!(a.id_key_digest.0, b.id_key_digest);
        assert_eq!(a.author_key_digest.0, b.author_key_digest);
        assert_eq!(a.report_id.0, b.report_id);
        assert_eq!(a.report_id_ma.0, b.report_id_ma);
        assert_eq!(a.chip_id.0, b.chip_id);
        assert_eq!(a.cpuid.map(|c| c.family), b.cpuid_fam_id);
        assert_eq!(a.cpuid.map(|c| c.model), b.cpuid_mod_id);
        assert_eq!(a.cpuid.map(|c| c.stepping), b.cpuid_step);
        assert_eq!(a.launch_mit_vector, b.launch_mit_vector);
        assert_eq!(a.current_mit_vector, b.current_mit_vector);
        assert_eq!(
            (
                a.current_version.major,
                a.current_version.minor,
                a.current_version.build
            ),
            (b.current.major, b.current.minor, b.current.build)
        );
        let tcbs = a.tcbs(case.product).expect("tcbs");
        for (ours, theirs) in [
            (tcbs.reported, b.reported_tcb),
            (tcbs.current, b.current_tcb),
            (tcbs.committed, b.committed_tcb),
            (tcbs.launch, b.launch_tcb),
        ] {
            assert_eq!(
                (
                    ours.fmc,
                    ours.bootloader,
                    ours.tee,
                    ours.snp,
                    ours.microcode
                ),
                (
                    theirs.fmc,
                    theirs.bootloader,
                    theirs.tee,
                    theirs.snp,
                    theirs.microcode
                ),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn both_refuse_each_real_report_under_another_products_chain() {
    let all = cases();
    for case in &all {
        for other in all.iter().filter(|o| o.product != case.product) {
            let mixed = Case {
                name: other.name,
                report: case.report.clone(),
                ask_pem: other.ask_pem.clone(),
                vek_pem: other.vek_pem.clone(),
                product: other.product,
                now: other.now,
            };
            assert!(
                !ours(&mixed, &case.report),
                "{} under {}",
                case.name,
                other.name
            );
            assert!(
                !theirs(&mixed, &case.report),
                "{} under {} (sev)",
                case.name,
                other.name
            );
        }
    }
}

fn cases_count() -> u32 {
    std::env::var("RATLS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases_count(), failure_persistence: None, ..ProptestConfig::default() })]

    /// A real report with one byte XORed: we never accept what `sev` refuses; what we refuse
    /// and `sev` accepts is one of the listed deliberate differences.
    #[test]
    fn never_accepts_a_mutated_report_that_sev_refuses(which in 0usize..3, pos in 0usize..REPORT_LEN, x in 1u8..=255) {
        let all = cases();
        let case = &all[which % all.len()];
        let mut m = case.report.clone();
        m[pos] ^= x;
        let (a, b) = (ours(case, &m), theirs(case, &m));
        prop_assert!(!a || b, "{}: byte {pos:#x} ^ {x:#x}: we accept, sev refuses", case.name);
        if b && !a {
            // Deliberate difference 1, 2 or 5: a byte sev never reads, or the version.
            let version = pos < 4;
            let reserved = [0x4C..0x50, 0x188..0x1A0, 0x1EB..0x1EC, 0x1EF..0x1F0, 0x1F8..0x2A0, 0x2A0 + 48..0x2A0 + 72, 0x2A0 + 120..REPORT_LEN]
                .iter()
                .any(|r| r.contains(&pos));
            let policy_reserved = (0x08..0x10).contains(&pos);
            // Reserved bytes inside the four TCB_VERSIONs (Milan/Genoa 2..6, Turin 4..7).
            let tcb_reserved = [0x38, 0x180, 0x1E0, 0x1F0].iter().any(|base| {
                let r = if case.product == Product::Turin { base + 4..base + 7 } else { base + 2..base + 6 };
                r.contains(&pos)
            });
            let key_info_reserved = (0x48..0x4C).contains(&pos);
            prop_assert!(version || reserved || policy_reserved || key_info_reserved || tcb_reserved,
                "{}: byte {pos:#x} ^ {x:#x}: sev accepts, we refuse, not a listed difference", case.name);
        }
    }
}

/// Sim reports: both accept a well-formed one; a report signed by a VCEK for another chip
/// or another TCB passes `sev` (difference 3) and is refused by us; a forged signature is
/// refused by both.
#[cfg(feature = "sim")]
#[test]
fn sim_reports_agree_except_for_the_vcek_binding_sev_does_not_check() {
    use ratls_proxy::sim::snp::{sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, VekSpec};
    use ratls_proxy::snp::report::SigningKey;

    let now = UnixTime(1_790_000_000);
    for product in Product::ALL {
        let pki = SimSnpPki::new(product, now).expect("pki");
        let trust = SimSnpPki::trust(&[&pki]).expect("trust");
        let judge = |report: &[u8], vek_der: &[u8], vek_pem: &str| {
            let c = SnpCollateral::from_pem(
                pki.cert_chain_pem(SigningKey::Vcek).as_bytes(),
                vek_pem.as_bytes(),
                None,
            )
            .expect("pem");
            let a = Report::parse(report)
                .map_err(Into::into)
                .and_then(|r| verify_with_collateral(&r, &c, &trust, now))
                .is_ok();
            let chain = Chain::from_der(&pki.ark, &pki.ask, vek_der).expect("sev chain");
            let b = AttestationReport::from_bytes(report)
                .map(|r| (&chain, &r).verify().is_ok())
                .unwrap_or(false);
            (a, b)
        };
        let key = pki
            .vek(&VekSpec::vcek(sim_chip_id(product), sim_tcb(product)))
            .expect("vek");
        let good = ReportSpec::new(product).sign(&key).expect("sign");
        assert_eq!(judge(&good, &key.der, &key.pem), (true, true), "{product}");
        let mut forged = good;
        forged[0x90] ^= 1; // MEASUREMENT
        assert_eq!(
            judge(&forged, &key.der, &key.pem),
            (false, false),
            "{product}"
        );

        let mut chip = sim_chip_id(product);
        chip.0[1] ^= 0x10;
        let other_chip = pki
            .vek(&VekSpec::vcek(chip, sim_tcb(product)))
            .expect("vek");
        let report = ReportSpec::new(product).sign(&other_chip).expect("sign");
        assert_eq!(
            judge(&report, &other_chip.der, &other_chip.pem),
            (false, true),
            "{product}: another chip"
        );

        let mut tcb = sim_tcb(product);
        tcb.snp -= 1;
        let old_tcb = pki
            .vek(&VekSpec::vcek(sim_chip_id(product), tcb))
            .expect("vek");
        let report = ReportSpec::new(product).sign(&old_tcb).expect("sign");
        assert_eq!(
            judge(&report, &old_tcb.der, &old_tcb.pem),
            (false, true),
            "{product}: another TCB"
        );
    }
}
