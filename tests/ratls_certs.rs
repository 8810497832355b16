//! RA-TLS certificates without a network: the real Cosmian certificates (extraction,
//! identity, binding, DEBUG refusal) and hand-built certificates for every carrier and
//! failure (no quote, garbage, ambiguous OIDs, DICE claims, binding modes).

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::CollateralSource;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::ratls::evidence::{
    OID_SGX_QUOTE, OID_SGX_QUOTE_GRAMINE_LEGACY, OID_TCG_DICE_TAGGED_EVIDENCE,
};
use ratls_proxy::ratls::{appraise_certificate, AcceptedCert, Binding, BindingMode, CertAppraisal};
use ratls_proxy::sim::{forge, EnclaveSpec, SimPki};
use rcgen::{CertificateParams, CustomExtension, KeyPair, PublicKeyData, PKCS_ECDSA_P384_SHA384};
use sha2::{Digest, Sha256};

fn no_collateral() -> VerifyError {
    VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ))
}

fn appraise(
    der: &[u8],
    source: &dyn CollateralSource,
    mode: BindingMode,
    at: i64,
) -> CertAppraisal {
    appraise_certificate(der, source, &common::permissive(false), mode, UnixTime(at))
}

fn leaf_of(pem: &[u8]) -> Vec<u8> {
    ratls_proxy::dcap::pki::pem_chain(pem, "fixture").expect("PEM")[0].clone()
}

struct CosmianCase {
    file: &'static str,
    at: &'static str,
    mrenclave: &'static str,
    debug: bool,
    report_data: &'static str,
}

/// Ground truth from `fixtures/cosmian/SOURCES.md`.
const COSMIAN: [CosmianCase; 3] = [
    CosmianCase {
        file: "sgx-ratls-cert_debug-enclave_tee-tools.pem",
        at: "2024-01-01T00:00:00Z",
        mrenclave: "72009e6e7ddebcb7a8cf6b000b40aa20fd15d2c4fd524e85e80df6e8e0841d10",
        debug: true,
        report_data: "25391834f9db02be3f373907cba5672c2a67f0dd549eea6a82d9291f7310d0c20000000000000000000000000000000000000000000000000000000000000000",
    },
    CosmianCase {
        file: "sgx-ratls-cert_mse-cloud-a161fb86-2023-05-15_tee-tools.pem",
        at: "2023-05-15T08:00:00Z",
        mrenclave: "b1ef922543fa54de9d45da6639713efd3386fa27553709b15a94485f9009401b",
        debug: false,
        report_data: "91b542447fc182aaf48aef66042a1905475a8d04ad04f90c18fec34f5de48c510000000000000000000000000000000000000000000000000000000000000000",
    },
    CosmianCase {
        file: "sgx-ratls-cert_mse-cloud-8cb26d2d-2023-09-19_x25519-in-reportdata_tee-tools-193aa26.pem",
        at: "2023-09-19T08:00:00Z",
        mrenclave: "958e39c89abec8cfb5ce01961a50860c770c75b01e64ed77847097f9705ed7bd",
        debug: false,
        report_data: "f274ba3415e8d477954b437e6fb6d9d71979c032928fa66657b4f28f4d144552bbffec2ccfc20eb7a75e5d4aec0930d27ba3fe003e4189629cea59a717d79018",
    },
];

#[test]
fn real_cosmian_certificates_give_their_recorded_identity_and_binding() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    for case in &COSMIAN {
        let der = leaf_of(&common::read(&dir, &format!("cosmian/{}", case.file)));
        let at = UnixTime::parse(case.at).expect("time").0;
        let a = appraise(&der, &no_collateral(), BindingMode::Auto, at);
        let q = a.appraisal.quote.as_ref().expect("quote parsed");
        assert_eq!(
            q.identity.sgx().expect("sgx").mrenclave.to_string(),
            case.mrenclave,
            "{}",
            case.file
        );
        assert_eq!(
            q.identity.sgx().expect("sgx").mrsigner.to_string(),
            "c1c161d0dd996e8a9847de67ea2c00226761f7715a2c422d3012ac10795a1ef5"
        );
        assert_eq!(q.identity.is_debug(), case.debug, "{}", case.file);
        assert_eq!(
            q.identity.report_data().to_string(),
            case.report_data,
            "{}",
            case.file
        );
        let code = a.refusal().map(|r| r.code);
        if case.debug {
            assert_eq!(code, Some(RefusalCode::DebugEnclave), "{}", case.file);
        } else {
            // Binding holds (even with an X25519 key in the upper half); the refusal is only
            // that no collateral was given.
            assert_eq!(a.binding, Some(Binding::Cosmian), "{}", case.file);
            assert_eq!(
                code,
                Some(RefusalCode::CollateralUnavailable),
                "{}",
                case.file
            );
            let g = appraise(&der, &no_collateral(), BindingMode::Gramine, at);
            assert_eq!(
                g.refusal().map(|r| r.code),
                Some(RefusalCode::BindingMismatch),
                "{}",
                case.file
            );
        }
    }
}

#[test]
fn the_debug_cosmian_certificate_binds_its_key_when_debug_is_allowed() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let der = leaf_of(&common::read(&dir, &format!("cosmian/{}", COSMIAN[0].file)));
    let a = appraise_certificate(
        &der,
        &no_collateral(),
        &common::permissive(true),
        BindingMode::Auto,
        UnixTime::parse(COSMIAN[0].at).expect("t"),
    );
    assert_eq!(a.binding, Some(Binding::Cosmian));
}

#[test]
fn an_expired_ra_tls_certificate_is_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let der = leaf_of(&common::read(&dir, &format!("cosmian/{}", COSMIAN[1].file)));
    let a = appraise(
        &der,
        &no_collateral(),
        BindingMode::Auto,
        UnixTime::parse("2023-05-16T00:00:00Z").expect("t").0,
    );
    assert_eq!(
        a.refusal().map(|r| r.code),
        Some(RefusalCode::CertificateExpired)
    );
    assert!(a.refusal().expect("refused").reasons[0].contains("RA-TLS certificate is valid"));
}

/// A self-signed certificate with the given key and extensions.
fn cert(key: &KeyPair, extensions: Vec<CustomExtension>) -> Vec<u8> {
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    p.custom_extensions = extensions;
    p.self_signed(key).expect("cert").der().to_vec()
}

fn rd(first: &[u8]) -> [u8; 64] {
    let mut r = [0u8; 64];
    r[..32].copy_from_slice(&Sha256::digest(first));
    r
}

struct Sim {
    pki: SimPki,
    collateral: Arc<VerifiedCollateral>,
    now: UnixTime,
}

fn sim() -> Sim {
    let now = UnixTime::now();
    let pki = SimPki::generate(now).expect("pki");
    let c = pki
        .collateral(UnixTime(now.0 - 60), &[])
        .expect("collateral");
    let collateral =
        Arc::new(VerifiedCollateral::verify(&c, &pki.anchor().expect("anchor")).expect("verifies"));
    Sim {
        pki,
        collateral,
        now,
    }
}

fn quote_for(s: &Sim, report_data: &[u8; 64]) -> Vec<u8> {
    let pck = s.pki.pck_leaf(TcbStatus::UpToDate, s.now).expect("pck");
    forge(&EnclaveSpec::default(), report_data, &pck).expect("quote")
}

/// A certificate whose sim quote, under `oid`, binds the SHA-256 of its SPKI.
fn bound_cert(s: &Sim, oid: &[u64]) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let quote = quote_for(s, &rd(&key.subject_public_key_info()));
    cert(&key, vec![CustomExtension::from_oid_content(oid, quote)])
}

#[test]
fn gramine_legacy_certificate_with_only_the_quirky_oid_binds_the_spki() {
    let s = sim();
    let der = bound_cert(&s, OID_SGX_QUOTE_GRAMINE_LEGACY);
    let a = appraise(&der, &s.collateral, BindingMode::Auto, s.now.0);
    assert!(a.appraisal.is_accepted(), "{:?}", a.refusal());
    assert_eq!(a.binding, Some(Binding::Gramine));
    let c = appraise(&der, &s.collateral, BindingMode::Cosmian, s.now.0);
    assert_eq!(
        c.refusal().map(|r| r.code),
        Some(RefusalCode::BindingMismatch)
    );
}

/// Only an accepted appraisal makes an [`AcceptedCert`] (what a cached verdict holds); a
/// refused one gives back its refusal and the whole appraisal for the audit trail.
#[test]
fn only_an_accepted_appraisal_makes_an_accepted_cert() {
    let s = sim();
    let der = bound_cert(&s, OID_SGX_QUOTE);
    let accepted = AcceptedCert::of(appraise(&der, &s.collateral, BindingMode::Auto, s.now.0))
        .expect("accepted");
    assert_eq!(
        accepted.quote().expect("an Intel quote").tcb.status,
        TcbStatus::UpToDate
    );
    assert_eq!(
        accepted.appraisal().cert_sha256.as_bytes(),
        &<[u8; 32]>::from(Sha256::digest(&der))
    );
    let refused = appraise(&der, &s.collateral, BindingMode::Cosmian, s.now.0);
    let Err((refusal, appraisal)) = AcceptedCert::of(refused) else {
        panic!("a binding mismatch made an AcceptedCert");
    };
    assert_eq!(refusal.code, RefusalCode::BindingMismatch);
    assert_eq!(appraisal.refusal(), Some(&refusal));
}

#[test]
fn dice_claims_that_do_not_name_the_certificate_key_are_a_binding_mismatch() {
    let s = sim();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    // Claims naming another key's SPKI hash; REPORTDATA commits to these claims.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let mut claims = vec![0xa1, 0x6b];
    claims.extend_from_slice(b"pubkey-hash");
    claims.extend_from_slice(&[0x58, 0x24, 0x82, 0x01, 0x58, 0x20]);
    claims.extend_from_slice(&Sha256::digest(other.subject_public_key_info()));
    let quote = quote_for(&s, &rd(&claims));
    let mut ev = vec![0xd9, 0xea, 0x60, 0x82, 0x59];
    ev.extend_from_slice(&u16::try_from(quote.len()).expect("fits").to_be_bytes());
    ev.extend_from_slice(&quote);
    ev.extend_from_slice(&[0x58, u8::try_from(claims.len()).expect("fits")]);
    ev.extend_from_slice(&claims);
    let der = cert(
        &key,
        vec![CustomExtension::from_oid_content(
            OID_TCG_DICE_TAGGED_EVIDENCE,
            ev.clone(),
        )],
    );
    let a = appraise(&der, &s.collateral, BindingMode::Auto, s.now.0);
    assert_eq!(
        a.refusal().map(|r| r.code),
        Some(RefusalCode::BindingMismatch),
        "{:?}",
        a.refusal()
    );
    assert!(a.refusal().expect("refused").reasons[0].contains("pubkey-hash"));

    // Truncated DICE evidence is malformed, never a panic.
    for cut in [1, 5, 100, ev.len() - 1] {
        let der = cert(
            &key,
            vec![CustomExtension::from_oid_content(
                OID_TCG_DICE_TAGGED_EVIDENCE,
                ev[..cut].to_vec(),
            )],
        );
        let a = appraise(&der, &s.collateral, BindingMode::Auto, s.now.0);
        assert_eq!(
            a.refusal().map(|r| r.code),
            Some(RefusalCode::QuoteMalformed),
            "cut {cut}"
        );
    }
}

#[test]
fn certificates_without_a_quote_with_two_encodings_or_garbage_are_refused() {
    let s = sim();
    let key = KeyPair::generate().expect("key");
    let plain = cert(&key, Vec::new());
    assert_eq!(
        appraise(&plain, &s.collateral, BindingMode::Auto, s.now.0)
            .refusal()
            .map(|r| r.code),
        Some(RefusalCode::NoQuote)
    );

    let quote = quote_for(&s, &rd(key.public_key_raw()));
    let both = cert(
        &key,
        vec![
            CustomExtension::from_oid_content(OID_SGX_QUOTE, quote.clone()),
            CustomExtension::from_oid_content(OID_SGX_QUOTE_GRAMINE_LEGACY, quote.clone()),
        ],
    );
    assert_eq!(
        appraise(&both, &s.collateral, BindingMode::Auto, s.now.0)
            .refusal()
            .map(|r| r.code),
        Some(RefusalCode::QuoteMalformed)
    );

    for garbage in [&b""[..], b"\x30\x03\x02\x01\x00", &plain[..plain.len() / 2]] {
        let a = appraise(garbage, &s.collateral, BindingMode::Auto, s.now.0);
        assert_eq!(
            a.refusal().map(|r| r.code),
            Some(RefusalCode::QuoteMalformed)
        );
        assert!(a.appraisal.quote.is_none());
    }

    let truncated = cert(
        &key,
        vec![CustomExtension::from_oid_content(
            OID_SGX_QUOTE,
            quote[..700].to_vec(),
        )],
    );
    assert_eq!(
        appraise(&truncated, &s.collateral, BindingMode::Auto, s.now.0)
            .refusal()
            .map(|r| r.code),
        Some(RefusalCode::QuoteMalformed)
    );

    let good = cert(
        &key,
        vec![CustomExtension::from_oid_content(OID_SGX_QUOTE, quote)],
    );
    let a = appraise(&good, &s.collateral, BindingMode::Auto, s.now.0);
    assert!(a.appraisal.is_accepted(), "{:?}", a.refusal());
    assert_eq!(a.binding, Some(Binding::Cosmian));
}

#[test]
fn the_upper_half_of_report_data_is_never_required_to_be_zero() {
    let s = sim();
    let key = KeyPair::generate().expect("key");
    let mut r = rd(key.public_key_raw());
    r[32..].copy_from_slice(&[0xab; 32]);
    let der = cert(
        &key,
        vec![CustomExtension::from_oid_content(
            OID_SGX_QUOTE,
            quote_for(&s, &r),
        )],
    );
    let a = appraise(&der, &s.collateral, BindingMode::Auto, s.now.0);
    assert!(a.appraisal.is_accepted(), "{:?}", a.refusal());
}

#[test]
fn a_revoked_pck_certificate_and_a_revoked_tcb_level_are_refused() {
    let s = sim();
    let pck = s.pki.pck_leaf(TcbStatus::UpToDate, s.now).expect("pck");
    let quote = forge(&EnclaveSpec::default(), &[0; 64], &pck).expect("quote");
    let c = s
        .pki
        .collateral(UnixTime(s.now.0 - 60), std::slice::from_ref(&pck.serial))
        .expect("collateral");
    let revoking = Arc::new(
        VerifiedCollateral::verify(&c, &s.pki.anchor().expect("anchor")).expect("verifies"),
    );
    let a = ratls_proxy::appraise::appraise(&quote, &revoking, &common::permissive(false), s.now);
    assert_eq!(
        a.outcome.as_ref().err().map(|r| r.code),
        Some(RefusalCode::Revoked)
    );
    let ok =
        ratls_proxy::appraise::appraise(&quote, &s.collateral, &common::permissive(false), s.now);
    assert!(ok.is_accepted());

    let revoked_level = s.pki.pck_leaf(TcbStatus::Revoked, s.now).expect("pck");
    let quote = forge(&EnclaveSpec::default(), &[0; 64], &revoked_level).expect("quote");
    let a =
        ratls_proxy::appraise::appraise(&quote, &s.collateral, &common::permissive(false), s.now);
    assert_eq!(
        a.outcome.as_ref().err().map(|r| r.code),
        Some(RefusalCode::Revoked)
    );
}

#[test]
fn every_tcb_level_of_the_sim_is_reported_as_its_status() {
    let s = sim();
    // The TD relaunch statuses are TDX's (tests/tdx_live.rs).
    for status in common::all_statuses()
        .into_iter()
        .filter(|s| s.is_published())
    {
        let pck = s.pki.pck_leaf(status, s.now).expect("pck");
        let quote = forge(&EnclaveSpec::default(), &[0; 64], &pck).expect("quote");
        let a = ratls_proxy::appraise::appraise(
            &quote,
            &s.collateral,
            &common::permissive(false),
            s.now,
        );
        assert!(a.is_accepted(), "{status}: {:?}", a.outcome);
        assert_eq!(a.tcb.expect("tcb").status, status);
    }
}

#[test]
fn sim_collateral_refuses_intel_quotes_and_intel_collateral_refuses_sim_quotes() {
    // Root pinning: a quote whose chain ends in the sim root is refused under Intel's
    // collateral and root, and vice versa.
    let s = sim();
    let quote = quote_for(&s, &[0; 64]);
    let Some(dir) = common::fixtures() else {
        return;
    };
    let intel = ratls_proxy::dcap::collateral::Collateral::from_json(&common::read(
        &dir,
        "dcap/sgx_v3_qvl.collateral.json",
    ))
    .expect("json");
    let verified = Arc::new(
        VerifiedCollateral::verify(&intel, &ratls_proxy::dcap::trust::TrustAnchor::intel())
            .expect("verifies"),
    );
    let a = ratls_proxy::appraise::appraise(
        &quote,
        &verified,
        &common::permissive(false),
        UnixTime(1_751_623_200),
    );
    assert_eq!(
        a.outcome.as_ref().err().map(|r| r.code),
        Some(RefusalCode::ChainInvalid)
    );
    let err =
        VerifiedCollateral::verify(&intel, &s.pki.anchor().expect("anchor")).expect_err("refused");
    assert_eq!(err.code(), RefusalCode::ChainInvalid);
}

#[test]
fn dice_evidence_binds_under_gramine_and_is_refused_under_a_dstack_or_cosmian_policy() {
    let s = sim();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let mut claims = vec![0xa1, 0x6b];
    claims.extend_from_slice(b"pubkey-hash");
    claims.extend_from_slice(&[0x58, 0x24, 0x82, 0x01, 0x58, 0x20]);
    claims.extend_from_slice(&Sha256::digest(key.subject_public_key_info()));
    let quote = quote_for(&s, &rd(&claims));
    let mut ev = vec![0xd9, 0xea, 0x60, 0x82, 0x59];
    ev.extend_from_slice(&u16::try_from(quote.len()).expect("fits").to_be_bytes());
    ev.extend_from_slice(&quote);
    ev.extend_from_slice(&[0x58, u8::try_from(claims.len()).expect("fits")]);
    ev.extend_from_slice(&claims);
    let der = cert(
        &key,
        vec![CustomExtension::from_oid_content(
            OID_TCG_DICE_TAGGED_EVIDENCE,
            ev,
        )],
    );
    for mode in [BindingMode::Auto, BindingMode::Gramine] {
        let a = appraise(&der, &s.collateral, mode, s.now.0);
        assert!(a.appraisal.is_accepted(), "{mode:?}: {:?}", a.refusal());
        assert_eq!(a.binding, Some(Binding::Gramine));
    }
    for mode in [BindingMode::Dstack, BindingMode::Cosmian] {
        let a = appraise(&der, &s.collateral, mode, s.now.0);
        assert_eq!(
            a.refusal().map(|r| r.code),
            Some(RefusalCode::BindingMismatch),
            "{mode:?}"
        );
    }
}
