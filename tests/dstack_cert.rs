//! dstack certificates through the certificate verifier (`ratls::evidence`, the binding,
//! `appraise_certificate`): the two real chains of `tests/data/dstack/` (`.1.8` only, V0 and
//! V1), and certificates built here around their real evidence: the legacy carrier
//! (`.1.1`, the quote wrapped in an OCTET STRING as dstack writes it), on the real key and
//! moved to another one, and what an attacker changes.

mod common;

use std::path::PathBuf;

use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dstack::{extension_value, Attestation, Platform, OID_ATTESTATION};
use ratls_proxy::ratls::evidence::{self, Evidence, OID_DSTACK_QUOTE};
use ratls_proxy::ratls::{appraise_certificate, Binding, BindingMode, CertAppraisal};
use rcgen::{
    CertificateParams, CustomExtension, Issuer, KeyPair, PublicKeyData, SubjectPublicKeyInfo,
};
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Inside the real certificates' validity (1975 .. 2036) and after the quotes were taken.
const AT: i64 = 1_790_000_000;

/// The leaf of a real chain, DER.
fn real_leaf(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dstack")
        .join(name);
    let pem = std::fs::read(&path).expect("real dstack chain");
    ratls_proxy::dcap::pki::pem_chain(&pem, "real dstack chain").expect("PEM")[0].clone()
}

fn parsed(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).expect("certificate").1
}

/// The `.1.8` content of a certificate (after dstack's OCTET STRING wrapper).
fn attestation_of(der: &[u8]) -> Vec<u8> {
    let cert = parsed(der);
    let oid = Oid::from(OID_ATTESTATION).expect("OID");
    let ext = cert
        .get_extension_unique(&oid)
        .expect("unique")
        .expect(".1.8 present");
    extension_value(ext.value).expect("wrapped").to_vec()
}

/// The real leaf's TDX quote, from its `.1.8` attestation.
fn real_quote(name: &str) -> Vec<u8> {
    let bytes = attestation_of(&real_leaf(name));
    let att = Attestation::parse(&bytes).expect("attestation");
    match att.platform {
        Platform::Tdx(tdx) => tdx.quote.into_owned(),
        other => panic!("not TDX: {}", other.name()),
    }
}

fn spki_of(der: &[u8]) -> Vec<u8> {
    parsed(der).public_key().raw.to_vec()
}

/// DER OCTET STRING, as dstack wraps each extension's content.
fn octets(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).expect("short"));
    } else {
        let digits: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|d| *d == 0)
            .collect();
        out.push(0x80 | u8::try_from(digits.len()).expect("few digits"));
        out.extend(digits);
    }
    out.extend_from_slice(content);
    out
}

/// A certificate for the key `spki` (its private key need not be known: a test CA signs),
/// carrying `extensions` (OID arcs, extnValue content exactly as given).
fn cert_for(spki: &[u8], extensions: &[(&[u64], Vec<u8>)]) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["dstack-app.local".to_owned()]).expect("params");
    params.custom_extensions = extensions
        .iter()
        .map(|(oid, value)| CustomExtension::from_oid_content(oid, value.clone()))
        .collect();
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = Issuer::new(CertificateParams::default(), ca_key);
    let key = SubjectPublicKeyInfo::from_der(spki).expect("SPKI");
    params.signed_by(&key, &ca).expect("signed").der().to_vec()
}

fn another_key() -> Vec<u8> {
    KeyPair::generate().expect("key").subject_public_key_info()
}

fn appraise(der: &[u8]) -> CertAppraisal {
    let none = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ));
    appraise_certificate(
        der,
        &none,
        &common::permissive(false),
        BindingMode::Auto,
        UnixTime(AT),
    )
}

const V0: &str = "tdx-lite-v0-get-tls-key.pem";
const V1: &str = "tdx-lite-v1-issue-cert.pem";

// ---------------------------------------------------------------------------------------
// The legacy carrier `.1.1`.
// ---------------------------------------------------------------------------------------

#[test]
fn the_real_certificates_carry_the_versioned_attestation_only() {
    for name in [V0, V1] {
        let der = real_leaf(name);
        let cert = parsed(&der);
        let has = |arcs: &[u64]| {
            cert.get_extension_unique(&Oid::from(arcs).expect("OID"))
                .expect("unique")
                .is_some()
        };
        assert!(has(OID_ATTESTATION), "{name}");
        assert!(!has(OID_DSTACK_QUOTE), "{name}");
    }
}

#[test]
fn a_real_quote_in_the_legacy_carrier_binds_its_real_key() {
    for name in [V0, V1] {
        let leaf = real_leaf(name);
        let der = cert_for(
            &spki_of(&leaf),
            &[(OID_DSTACK_QUOTE, octets(&real_quote(name)))],
        );
        let cert = parsed(&der);
        match evidence::find(&cert) {
            Ok(Evidence::Raw { quote, oid }) => {
                assert_eq!(oid, OID_DSTACK_QUOTE);
                assert_eq!(quote, real_quote(name).as_slice(), "{name}: unwrapped once");
            }
            other => panic!("{name}: {other:?}"),
        }
        // The binding holds; what stops it here is only the collateral this test withholds.
        let a = appraise(&der);
        assert_eq!(a.binding, Some(Binding::Dstack), "{name}");
        assert_eq!(
            a.refusal().map(|r| r.code),
            Some(RefusalCode::CollateralUnavailable),
            "{name}: {:?}",
            a.refusal()
        );
    }
}

#[test]
fn a_real_legacy_quote_moved_to_another_key_is_refused() {
    let der = cert_for(
        &another_key(),
        &[(OID_DSTACK_QUOTE, octets(&real_quote(V0)))],
    );
    let a = appraise(&der);
    assert_eq!(a.binding, None);
    assert_eq!(
        a.refusal().map(|r| r.code),
        Some(RefusalCode::BindingMismatch)
    );
}

#[test]
fn a_legacy_quote_without_dstacks_wrapper_or_with_a_broken_one_is_refused() {
    let leaf = real_leaf(V0);
    let quote = real_quote(V0);
    let mut trailing = octets(&quote);
    trailing.push(0);
    let mut short = octets(&quote);
    short.pop();
    let mut utf8 = octets(&quote);
    utf8[0] = 0x0c;
    // The bare quote is what this project's simulator used to write; dstack never did.
    for (what, value) in [
        ("bare quote", quote.clone()),
        ("trailing byte", trailing),
        ("truncated", short),
        ("not an OCTET STRING", utf8),
        ("empty", Vec::new()),
        ("wrapped twice", octets(&octets(&quote))),
    ] {
        let der = cert_for(&spki_of(&leaf), &[(OID_DSTACK_QUOTE, value)]);
        let a = appraise(&der);
        assert_eq!(
            a.refusal().map(|r| r.code),
            Some(RefusalCode::QuoteMalformed),
            "{what}: {:?}",
            a.refusal()
        );
    }
}
