//! SEV-SNP verification against the simulated AMD PKI: a well-formed sim report verifies,
//! and each check is made to fail alone (a forged report, a key for another chip or TCB,
//! a VLEK where a VCEK belongs, a Genoa key under the Milan root, broken extensions, a
//! revoked ASK, expired certificates, non-canonical signatures), each with its typed error.

#![cfg(feature = "sim")]

use std::sync::Arc;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::snp::{
    sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, SimVek, VekExt, VekSpec, ASK_SERIAL,
};
use ratls_proxy::snp::chain::VerifiedChain;
use ratls_proxy::snp::collateral::{verify_with_collateral, SnpCollateral};
use ratls_proxy::snp::ids::ChipId;
use ratls_proxy::snp::report::{ReportVersion, SigningKey};
use ratls_proxy::snp::verify::{verify, VerifiedVek};
use ratls_proxy::snp::{
    CertRole, Product, Report, ReportError, SnpError, SnpTrust, TcbComponent, REPORT_LEN,
};

const NOW: UnixTime = UnixTime(1_790_000_000);

struct World {
    milan: SimSnpPki,
    genoa: SimSnpPki,
    turin: SimSnpPki,
    trust: SnpTrust,
}

fn world() -> World {
    let milan = SimSnpPki::new(Product::Milan, NOW).expect("milan");
    let genoa = SimSnpPki::new(Product::Genoa, NOW).expect("genoa");
    let turin = SimSnpPki::new(Product::Turin, NOW).expect("turin");
    let trust = SimSnpPki::trust(&[&milan, &genoa, &turin]).expect("trust");
    World {
        milan,
        genoa,
        turin,
        trust,
    }
}

fn vcek(pki: &SimSnpPki) -> SimVek {
    let p = pki.product();
    pki.vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
        .expect("vcek")
}

fn collateral(
    pki: &SimSnpPki,
    kind: SigningKey,
    vek: &SimVek,
    crl: Option<Vec<u8>>,
) -> SnpCollateral {
    SnpCollateral::from_pem(pki.cert_chain_pem(kind).as_bytes(), vek.pem.as_bytes(), crl)
        .expect("pems")
}

fn judge(bytes: &[u8], c: &SnpCollateral, trust: &SnpTrust, now: UnixTime) -> Result<(), SnpError> {
    let report = Report::parse(bytes)?;
    verify_with_collateral(&report, c, trust, now).map(|_| ())
}

#[test]
fn a_sim_report_verifies_on_every_product_with_a_vcek_and_with_a_vlek() {
    let w = world();
    for pki in [&w.milan, &w.genoa, &w.turin] {
        let p = pki.product();
        let key = vcek(pki);
        let report = ReportSpec::new(p).sign(&key).expect("sign");
        let c = collateral(
            pki,
            SigningKey::Vcek,
            &key,
            Some(pki.empty_crl().expect("crl")),
        );
        let parsed = Report::parse(&report).expect("parses");
        let v = verify_with_collateral(&parsed, &c, &w.trust, NOW).expect("verifies");
        assert_eq!(v.identity.product, p);
        assert_eq!(v.identity.tcb.reported, sim_tcb(p));
        assert!(v.collateral.chain.crl.is_some());

        let vlek = pki.vek(&VekSpec::vlek(sim_tcb(p))).expect("vlek");
        let spec = ReportSpec {
            key_info: 1 << 2,
            ..ReportSpec::new(p)
        };
        let report = spec.sign(&vlek).expect("sign");
        let c = collateral(pki, SigningKey::Vlek, &vlek, None);
        let v = judge(&report, &c, &w.trust, NOW);
        assert_eq!(v, Ok(()), "{p} VLEK");
    }
}

#[test]
fn a_version_2_report_takes_its_product_from_the_vcek() {
    let w = world();
    let key = vcek(&w.genoa);
    let spec = ReportSpec {
        version: 2,
        ..ReportSpec::new(Product::Genoa)
    };
    let bytes = spec.sign(&key).expect("sign");
    let report = Report::parse(&bytes).expect("parses");
    assert_eq!(report.version, ReportVersion::V2);
    assert_eq!(report.cpuid, None);
    let c = collateral(&w.genoa, SigningKey::Vcek, &key, None);
    let v = verify_with_collateral(&report, &c, &w.trust, NOW).expect("verifies");
    assert_eq!(v.identity.product, Product::Genoa);
}

#[test]
fn every_signed_byte_of_a_sim_report_is_covered_by_the_signature() {
    let w = world();
    let key = vcek(&w.milan);
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    let report = ReportSpec::new(Product::Milan).sign(&key).expect("sign");
    let vek = c
        .verify(&Report::parse(&report).expect("parses"), &w.trust)
        .expect("vek");
    for i in 0..0x2A0 {
        let mut m = report;
        m[i] ^= 0x01;
        let Ok(parsed) = Report::parse(&m) else {
            continue; // a reserved field or bit: refused by the parser
        };
        let got = verify(&parsed, &vek, NOW).map(|_| ());
        assert!(got.is_err(), "byte {i:#x} changed, still accepted");
    }
}

#[test]
fn a_report_signed_by_another_chips_vcek_is_refused_as_another_chip() {
    // The attacker holds chip B's VCEK key and claims chip A's CHIP_ID.
    let w = world();
    let mut other = sim_chip_id(Product::Milan);
    other.0[0] ^= 0xff;
    let key_b = w
        .milan
        .vek(&VekSpec::vcek(other, sim_tcb(Product::Milan)))
        .expect("vcek");
    let report = ReportSpec::new(Product::Milan).sign(&key_b).expect("sign");
    let c = collateral(&w.milan, SigningKey::Vcek, &key_b, None);
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::ChipIdMismatch { .. })
    ));
}

#[test]
fn a_turin_vcek_matches_the_first_8_bytes_and_the_rest_must_be_zero() {
    let w = world();
    let key = vcek(&w.turin);
    let mut spec = ReportSpec::new(Product::Turin);
    spec.chip_id[40] = 1;
    let report = spec.sign(&key).expect("sign");
    let c = collateral(&w.turin, SigningKey::Vcek, &key, None);
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::ChipIdMismatch { .. })
    ));
}

#[test]
fn a_vcek_for_another_tcb_is_refused_per_component() {
    let w = world();
    let p = Product::Turin;
    type Change = fn(&mut ratls_proxy::snp::Tcb);
    let cases: [(TcbComponent, Change); 5] = [
        (TcbComponent::Bootloader, |t| t.bootloader += 1),
        (TcbComponent::Tee, |t| t.tee += 1),
        (TcbComponent::Snp, |t| t.snp -= 1),
        (TcbComponent::Microcode, |t| t.microcode -= 1),
        (TcbComponent::Fmc, |t| t.fmc = Some(2)),
    ];
    for (component, change) in cases {
        let mut tcb = sim_tcb(p);
        change(&mut tcb);
        let key = w
            .turin
            .vek(&VekSpec::vcek(sim_chip_id(p), tcb))
            .expect("vcek");
        let report = ReportSpec::new(p).sign(&key).expect("sign");
        let c = collateral(&w.turin, SigningKey::Vcek, &key, None);
        match judge(&report, &c, &w.trust, NOW) {
            Err(SnpError::TcbMismatch { component: got, .. }) => assert_eq!(got, component),
            other => panic!("{component}: {other:?}"),
        }
    }
}

#[test]
fn a_vlek_signed_report_is_never_judged_under_a_vcek_chain_nor_the_reverse() {
    let w = world();
    let p = Product::Milan;
    let vlek = w.milan.vek(&VekSpec::vlek(sim_tcb(p))).expect("vlek");
    let key = vcek(&w.milan);
    let vlek_report = ReportSpec {
        key_info: 1 << 2,
        ..ReportSpec::new(p)
    }
    .sign(&vlek)
    .expect("sign");
    let vcek_report = ReportSpec::new(p).sign(&key).expect("sign");

    // A VLEK-signed report with the ASK chain and the VLEK as if it were a VCEK.
    let c = SnpCollateral::from_pem(
        w.milan.cert_chain_pem(SigningKey::Vcek).as_bytes(),
        vlek.pem.as_bytes(),
        None,
    )
    .expect("pems");
    assert!(matches!(
        judge(&vlek_report, &c, &w.trust, NOW),
        Err(SnpError::KeyKind { .. })
    ));
    // A VCEK-signed report with the ASVK chain.
    let c = SnpCollateral::from_pem(
        w.milan.cert_chain_pem(SigningKey::Vlek).as_bytes(),
        key.pem.as_bytes(),
        None,
    )
    .expect("pems");
    assert!(matches!(
        judge(&vcek_report, &c, &w.trust, NOW),
        Err(SnpError::KeyKind { .. })
    ));
    // A VCEK-signed report relabelled VLEK (signature redone with the VCEK key).
    let relabelled = ReportSpec {
        key_info: 1 << 2,
        ..ReportSpec::new(p)
    }
    .sign(&key)
    .expect("sign");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    assert!(matches!(
        judge(&relabelled, &c, &w.trust, NOW),
        Err(SnpError::KeyKind { .. })
    ));
    // The verified VCEK handed a VLEK-signed report.
    let vek = c
        .verify(&Report::parse(&vcek_report).expect("parse"), &w.trust)
        .expect("vek");
    let parsed = Report::parse(&vlek_report).expect("parse");
    assert!(matches!(
        verify(&parsed, &vek, NOW),
        Err(SnpError::KeyKind { .. })
    ));
}

#[test]
fn a_genoa_key_under_the_milan_root_is_refused() {
    let w = world();
    // A Genoa chain presented for a Milan report: the ASK is not the Milan ARK's.
    let key = vcek(&w.genoa);
    let report = ReportSpec::new(Product::Milan).sign(&key).expect("sign");
    let c = collateral(&w.genoa, SigningKey::Vcek, &key, None);
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::NotPinned {
            product: Product::Milan,
            ..
        })
    ));
    // A Milan-issued key that names itself Genoa, for a Genoa report.
    let liar = w
        .milan
        .vek(&VekSpec {
            product_name: Some("Genoa-B0".into()),
            ..VekSpec::vcek(sim_chip_id(Product::Milan), sim_tcb(Product::Milan))
        })
        .expect("vek");
    let chain = Arc::new(
        VerifiedChain::verify(
            Product::Milan,
            SigningKey::Vcek,
            &w.milan.ask,
            None,
            &w.trust,
        )
        .expect("chain"),
    );
    assert!(matches!(
        VerifiedVek::verify(&liar.der, chain),
        Err(SnpError::ProductMismatch { .. })
    ));
    // A Milan report (CPUID) verified with a correct Genoa chain and key.
    let genoa_key = vcek(&w.genoa);
    let report = ReportSpec::new(Product::Milan)
        .sign(&genoa_key)
        .expect("sign");
    let chain = Arc::new(
        VerifiedChain::verify(
            Product::Genoa,
            SigningKey::Vcek,
            &w.genoa.ask,
            None,
            &w.trust,
        )
        .expect("chain"),
    );
    let vek = VerifiedVek::verify(&genoa_key.der, chain).expect("vek");
    let parsed = Report::parse(&report).expect("parse");
    assert!(matches!(
        verify(&parsed, &vek, NOW),
        Err(SnpError::ProductMismatch {
            report: Product::Milan,
            certificate: Product::Genoa,
            ..
        })
    ));
}

#[test]
fn the_sim_roots_are_not_amds_and_amds_do_not_accept_the_sim() {
    let w = world();
    let key = vcek(&w.milan);
    let report = ReportSpec::new(Product::Milan).sign(&key).expect("sign");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    assert!(!w.trust.is_amd());
    // The chain's copy of the ARK is compared with the pin, and the ASK is not AMD's.
    assert!(matches!(
        judge(&report, &c, &SnpTrust::amd(), NOW),
        Err(SnpError::NotPinned { .. })
    ));
}

#[test]
fn broken_or_duplicated_vcek_extensions_are_refused() {
    let w = world();
    let p = Product::Milan;
    let base = || VekSpec::vcek(sim_chip_id(p), sim_tcb(p));
    let int = |v: u8| vec![0x02, 0x01, v];
    let cases: Vec<(&str, VekSpec)> = vec![
        (
            "hwID absent",
            VekSpec {
                omit: vec![vec![4]],
                ..base()
            },
        ),
        (
            "blSPL absent",
            VekSpec {
                omit: vec![vec![3, 1]],
                ..base()
            },
        ),
        (
            "productName absent",
            VekSpec {
                omit: vec![vec![2]],
                ..base()
            },
        ),
        (
            "structVersion absent",
            VekSpec {
                omit: vec![vec![1]],
                ..base()
            },
        ),
        (
            "snpSPL twice",
            VekSpec {
                extra: vec![VekExt {
                    arcs: vec![3, 3],
                    value: int(23),
                }],
                ..base()
            },
        ),
        (
            "hwID twice",
            VekSpec {
                extra: vec![VekExt {
                    arcs: vec![4],
                    value: sim_chip_id(p).0.to_vec(),
                }],
                ..base()
            },
        ),
        (
            "unknown AMD extension",
            VekSpec {
                extra: vec![VekExt {
                    arcs: vec![9],
                    value: int(0),
                }],
                ..base()
            },
        ),
        (
            "CSP ID in a VCEK",
            VekSpec {
                extra: vec![VekExt {
                    arcs: vec![5],
                    value: b"\x16\x01x".to_vec(),
                }],
                ..base()
            },
        ),
        (
            "fmcSPL in a Milan key",
            VekSpec {
                extra: vec![VekExt {
                    arcs: vec![3, 9],
                    value: int(1),
                }],
                ..base()
            },
        ),
        (
            "a reserved SPL not zero",
            VekSpec {
                extra: vec![],
                omit: vec![vec![3, 5]],
                ..base()
            },
        ),
        (
            "SPL not an INTEGER",
            VekSpec {
                omit: vec![vec![3, 2]],
                extra: vec![VekExt {
                    arcs: vec![3, 2],
                    value: vec![0x04, 0x01, 0x00],
                }],
                ..base()
            },
        ),
        (
            "SPL above 255",
            VekSpec {
                omit: vec![vec![3, 2]],
                extra: vec![VekExt {
                    arcs: vec![3, 2],
                    value: vec![0x02, 0x02, 0x01, 0x00],
                }],
                ..base()
            },
        ),
        (
            "hwID DER-wrapped",
            VekSpec {
                omit: vec![vec![4]],
                extra: vec![VekExt {
                    arcs: vec![4],
                    value: [&[0x04, 0x40][..], &sim_chip_id(p).0].concat(),
                }],
                ..base()
            },
        ),
    ];
    let chain = Arc::new(
        VerifiedChain::verify(p, SigningKey::Vcek, &w.milan.ask, None, &w.trust).expect("chain"),
    );
    for (name, spec) in cases {
        let mut spec = spec;
        if name == "a reserved SPL not zero" {
            spec.extra = vec![VekExt {
                arcs: vec![3, 5],
                value: int(1),
            }];
        }
        let key = w.milan.vek(&spec).expect("vek");
        let got = VerifiedVek::verify(&key.der, Arc::clone(&chain));
        assert!(
            matches!(
                got,
                Err(SnpError::Extension {
                    role: CertRole::Vcek,
                    ..
                })
            ),
            "{name}: {got:?}"
        );
    }
}

#[test]
fn a_vcek_not_issued_by_the_ask_or_misnamed_is_refused() {
    let w = world();
    let p = Product::Milan;
    let chain = Arc::new(
        VerifiedChain::verify(p, SigningKey::Vcek, &w.milan.ask, None, &w.trust).expect("chain"),
    );
    let base = || VekSpec::vcek(sim_chip_id(p), sim_tcb(p));
    // Signed by the ASK but claiming another issuer name.
    let key = w
        .milan
        .vek(&VekSpec {
            issuer: Some("SEV-Genoa".into()),
            ..base()
        })
        .expect("vek");
    assert!(matches!(
        VerifiedVek::verify(&key.der, Arc::clone(&chain)),
        Err(SnpError::NotPinned { .. })
    ));
    // Named like a VCEK, issued by Genoa's ASK.
    let key = vcek(&w.genoa);
    assert!(VerifiedVek::verify(&key.der, Arc::clone(&chain)).is_err());
    // Another subject.
    let key = w
        .milan
        .vek(&VekSpec {
            subject: Some("SEV-VCEK-evil".into()),
            ..base()
        })
        .expect("vek");
    assert!(matches!(
        VerifiedVek::verify(&key.der, Arc::clone(&chain)),
        Err(SnpError::Certificate { .. })
    ));
    // A signature byte changed.
    let mut der = vcek(&w.milan).der;
    let last = der.len() - 1;
    der[last] ^= 1;
    assert!(matches!(
        VerifiedVek::verify(&der, chain),
        Err(SnpError::CertificateSignature(CertRole::Vcek))
    ));
}

#[test]
fn a_revoked_ask_takes_its_vceks_down_and_a_crl_must_be_the_arks() {
    let w = world();
    let p = Product::Milan;
    let key = vcek(&w.milan);
    let report = ReportSpec::new(p).sign(&key).expect("sign");
    let from = UnixTime(NOW.0 - 86_400);
    let until = UnixTime(NOW.0 + 86_400);
    let revoking = w.milan.crl(from, until, &[ASK_SERIAL]).expect("crl");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, Some(revoking));
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::Revoked {
            role: CertRole::Ask,
            ..
        })
    ));
    // A CRL revoking something else: fine, until it expires.
    let other = w.milan.crl(from, until, &[0x4242]).expect("crl");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, Some(other));
    assert_eq!(judge(&report, &c, &w.trust, NOW), Ok(()));
    assert!(matches!(
        judge(&report, &c, &w.trust, until),
        Err(SnpError::Expired {
            role: CertRole::Crl,
            ..
        })
    ));
    // Genoa's CRL for a Milan chain.
    let genoa_crl = w.genoa.crl(from, until, &[]).expect("crl");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, Some(genoa_crl));
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::NotPinned {
            role: CertRole::Crl,
            ..
        })
    ));
    // A CRL with a byte of its signature changed.
    let mut bad = w.milan.crl(from, until, &[]).expect("crl");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let c = collateral(&w.milan, SigningKey::Vcek, &key, Some(bad));
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::CertificateSignature(CertRole::Crl))
    ));
}

#[test]
fn certificates_are_judged_at_the_given_time() {
    let w = world();
    let p = Product::Milan;
    let key = w
        .milan
        .vek(&VekSpec {
            not_before: Some(UnixTime(NOW.0 - 10)),
            not_after: Some(UnixTime(NOW.0 + 10)),
            ..VekSpec::vcek(sim_chip_id(p), sim_tcb(p))
        })
        .expect("vek");
    let report = ReportSpec::new(p).sign(&key).expect("sign");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    assert_eq!(judge(&report, &c, &w.trust, NOW), Ok(()));
    for t in [NOW.0 - 11, NOW.0 + 11] {
        assert!(matches!(
            judge(&report, &c, &w.trust, UnixTime(t)),
            Err(SnpError::Expired {
                role: CertRole::Vcek,
                ..
            })
        ));
    }
    assert!(matches!(
        judge(&report, &c, &w.trust, UnixTime(NOW.0 - 3 * 86_400)),
        Err(SnpError::Expired {
            role: CertRole::Ark,
            ..
        })
    ));
}

#[test]
fn non_canonical_signatures_are_refused() {
    let w = world();
    let key = vcek(&w.milan);
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    let good = ReportSpec::new(Product::Milan).sign(&key).expect("sign");
    // Non-zero padding above the 48 bytes of r, or of s.
    for at in [0x2A0 + 48, 0x2A0 + 71, 0x2A0 + 72 + 48] {
        let mut m = good;
        m[at] = 1;
        assert!(
            matches!(
                judge(&m, &c, &w.trust, NOW),
                Err(SnpError::SignatureEncoding(_))
            ),
            "{at:#x}"
        );
    }
    // s replaced by n - s (the other valid-looking ECDSA signature) is not this one; r = 0 and
    // r = n are out of range; all-zero is not a signature.
    let mut zero = good;
    zero[0x2A0..0x2A0 + 144].fill(0);
    assert!(matches!(
        judge(&zero, &c, &w.trust, NOW),
        Err(SnpError::ReportSignature(_))
    ));
    let n_le: Vec<u8> = hex::decode(
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    )
    .expect("hex")
    .into_iter()
    .rev()
    .collect();
    let mut r_is_n = good;
    r_is_n[0x2A0..0x2A0 + 48].copy_from_slice(&n_le);
    assert!(matches!(
        judge(&r_is_n, &c, &w.trust, NOW),
        Err(SnpError::ReportSignature(_))
    ));
    // The reserved part of SIGNATURE must be zero.
    let mut tail = good;
    tail[REPORT_LEN - 1] = 1;
    assert!(matches!(
        judge(&tail, &c, &w.trust, NOW),
        Err(SnpError::Report(ReportError::Reserved { .. }))
    ));
}

#[test]
fn report_layouts_this_verifier_does_not_know_are_refused_by_the_parser() {
    let p = Product::Milan;
    let base = ReportSpec::new(p);
    type Expect = fn(&ReportError) -> bool;
    let cases: Vec<(&str, ReportSpec, Expect)> = vec![
        (
            "version 1",
            ReportSpec {
                version: 1,
                ..base.clone()
            },
            |e| matches!(e, ReportError::UnsupportedVersion(1)),
        ),
        (
            "version 4",
            ReportSpec {
                version: 4,
                ..base.clone()
            },
            |e| matches!(e, ReportError::UnsupportedVersion(4)),
        ),
        (
            "version 6",
            ReportSpec {
                version: 6,
                ..base.clone()
            },
            |e| matches!(e, ReportError::UnsupportedVersion(6)),
        ),
        (
            "signature_algo 2",
            ReportSpec {
                signature_algo: 2,
                ..base.clone()
            },
            |e| matches!(e, ReportError::SignatureAlgorithm(2)),
        ),
        (
            "signature_algo 0",
            ReportSpec {
                signature_algo: 0,
                ..base.clone()
            },
            |e| matches!(e, ReportError::SignatureAlgorithm(0)),
        ),
        (
            "policy bit 17 clear",
            ReportSpec {
                policy: 0x1_0000,
                ..base.clone()
            },
            |e| matches!(e, ReportError::Reserved { .. }),
        ),
        (
            "policy bit 40 set",
            ReportSpec {
                policy: 0x3_0000 | 1 << 40,
                ..base.clone()
            },
            |e| matches!(e, ReportError::Reserved { .. }),
        ),
        (
            "key_info reserved bit",
            ReportSpec {
                key_info: 1 << 5,
                ..base.clone()
            },
            |e| matches!(e, ReportError::Reserved { .. }),
        ),
        (
            "signing key 2",
            ReportSpec {
                key_info: 2 << 2,
                ..base.clone()
            },
            |e| matches!(e, ReportError::SigningKey(2)),
        ),
        (
            "signing key none",
            ReportSpec {
                key_info: 7 << 2,
                ..base.clone()
            },
            |e| matches!(e, ReportError::Unsigned),
        ),
        (
            "mask chip key",
            ReportSpec {
                key_info: 2,
                ..base.clone()
            },
            |e| matches!(e, ReportError::Unsigned),
        ),
        (
            "unknown CPU",
            ReportSpec {
                cpuid: [0x17, 0x31, 0],
                ..base.clone()
            },
            |e| matches!(e, ReportError::UnknownCpu { .. }),
        ),
        (
            "a Turin TCB on a Milan",
            ReportSpec {
                reported_tcb: ratls_proxy::snp::TcbVersion([1, 4, 1, 23, 0, 0, 0, 213]),
                ..base.clone()
            },
            |e| matches!(e, ReportError::Reserved { .. }),
        ),
    ];
    for (name, spec, want) in cases {
        let bytes = spec.bytes();
        let got = Report::parse(&bytes);
        assert!(matches!(&got, Err(e) if want(e)), "{name}: {got:?}");
    }
    // Reserved ranges: each byte of each.
    let good = base.bytes();
    let v5 = ReportSpec::new(Product::Turin).bytes();
    for (bytes, ranges) in [
        (
            good,
            [
                0x4C..0x50,
                0x18B..0x1A0,
                0x1EB..0x1EC,
                0x1EF..0x1F0,
                0x1F8..0x2A0,
                0x330..REPORT_LEN,
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<usize>>(),
        ),
        (v5, (0x208..0x2A0).collect()),
    ] {
        for i in ranges {
            let mut m = bytes;
            m[i] = 0x80;
            assert!(
                matches!(Report::parse(&m), Err(ReportError::Reserved { .. })),
                "{i:#x}"
            );
        }
    }
    // Any other length.
    for len in [0, 1, REPORT_LEN - 1, REPORT_LEN + 1] {
        let mut v = good.to_vec();
        v.resize(len, 0);
        assert_eq!(Report::parse(&v), Err(ReportError::Length(len)));
    }
    // Unknown PLATFORM_INFO bits are kept, not refused (real Turin firmware sets bit 6).
    let spec = ReportSpec {
        platform_info: 0x65 | 1 << 40,
        ..base
    };
    assert!(Report::parse(&spec.bytes()).is_ok());
}

#[test]
fn a_chain_with_a_foreign_ark_copy_or_extra_certificates_is_refused() {
    let w = world();
    let key = vcek(&w.milan);
    let report = ReportSpec::new(Product::Milan).sign(&key).expect("sign");
    // ASK + Genoa's ARK.
    let chain = format!(
        "{}{}",
        w.milan
            .cert_chain_pem(SigningKey::Vcek)
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap_or_default(),
        w.genoa
            .cert_chain_pem(SigningKey::Vcek)
            .split_inclusive("-----END CERTIFICATE-----\n")
            .nth(1)
            .unwrap_or_default()
    );
    let c = SnpCollateral::from_pem(chain.as_bytes(), key.pem.as_bytes(), None).expect("pems");
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::NotPinned {
            role: CertRole::Ark,
            ..
        })
    ));
    // Three certificates.
    let three = format!("{}{}", w.milan.cert_chain_pem(SigningKey::Vcek), key.pem);
    assert!(SnpCollateral::from_pem(three.as_bytes(), key.pem.as_bytes(), None).is_err());
    // The ARK where the ASK belongs: not issued to sign VCEKs.
    let chain_pem = w.milan.cert_chain_pem(SigningKey::Vcek);
    let ark_first = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap_or_default();
    let c = SnpCollateral::from_pem(ark_first.as_bytes(), key.pem.as_bytes(), None).expect("pems");
    assert!(judge(&report, &c, &w.trust, NOW).is_err());
}

#[test]
fn a_chip_with_a_masked_chip_id_gets_no_vcek_match() {
    let w = world();
    let key = vcek(&w.milan);
    let spec = ReportSpec {
        chip_id: [0; 64],
        ..ReportSpec::new(Product::Milan)
    };
    let report = spec.sign(&key).expect("sign");
    let c = collateral(&w.milan, SigningKey::Vcek, &key, None);
    assert!(matches!(
        judge(&report, &c, &w.trust, NOW),
        Err(SnpError::ChipIdMismatch { .. })
    ));
    assert!(ChipId([0; 64]).is_masked());
}
