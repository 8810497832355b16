//! dstack certificates through the certificate verifier (`ratls::evidence`, the binding,
//! `appraise_certificate`): the two real chains of `tests/data/dstack/` (`.1.8` only, V0 and
//! V1), and certificates built here around their real evidence: the legacy carrier
//! (`.1.1`, the quote wrapped in an OCTET STRING as dstack writes it), on the real key and
//! moved to another one; the versioned attestation `.1.8` found, bound, replayed and
//! reported (`verify --cert`); and what an attacker changes: each change is refused with its
//! own code.

mod common;

use std::path::PathBuf;

use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::snp_policy::SnpPolicy;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::quote::TeeType;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dstack::{extension_value, Attestation, Platform, OID_ATTESTATION, OID_EVENT_LOG};
use ratls_proxy::ratls::evidence::{
    self, Evidence, OID_DSTACK_QUOTE, OID_TCG_DICE_TAGGED_EVIDENCE as OID_DICE, OID_TDX_QUOTE,
};
use ratls_proxy::ratls::{
    appraise_certificate, appraise_certificate_for, Binding, BindingMode, CertAppraisal,
};
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
    appraise_in(der, BindingMode::Auto)
}

fn appraise_in(der: &[u8], mode: BindingMode) -> CertAppraisal {
    let none = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ));
    appraise_certificate(der, &none, &common::permissive(false), mode, UnixTime(AT))
}

/// Appraises a certificate for `spki` carrying `extensions`: refused with `want`.
fn refused_as(
    spki: &[u8],
    extensions: &[(&[u64], Vec<u8>)],
    want: RefusalCode,
    what: &str,
) -> CertAppraisal {
    let a = appraise(&cert_for(spki, extensions));
    assert_eq!(code(&a), Some(want), "{what}: {:?}", a.refusal());
    a
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

/// dstack's verifier refuses `.1.1` without `.1.2`, and so do we: such a quote names no
/// app, and would pass here where dstack refuses it.
#[test]
fn a_real_quote_in_the_legacy_carrier_without_its_event_log_is_refused() {
    for name in [V0, V1] {
        let leaf = real_leaf(name);
        let der = cert_for(
            &spki_of(&leaf),
            &[(OID_DSTACK_QUOTE, octets(&real_quote(name)))],
        );
        let cert = parsed(&der);
        assert_eq!(
            evidence::find(&cert).err(),
            Some(evidence::EvidenceError::LegacyWithoutEventLog),
            "{name}"
        );
        let a = appraise(&der);
        assert_eq!(a.binding, None, "{name}");
        assert_eq!(code(&a), Some(RefusalCode::QuoteMalformed), "{name}");
    }
}

#[test]
fn a_real_legacy_pair_moved_to_another_key_is_refused() {
    let leaf = real_leaf(V0);
    let bytes = attestation_of(&leaf);
    let att = Attestation::parse(&bytes).expect("attestation");
    let log = octets(&legacy_event_log(&att));
    let pair = |spki: &[u8]| {
        cert_for(
            spki,
            &[
                (OID_DSTACK_QUOTE, octets(&real_quote(V0))),
                (OID_EVENT_LOG, log.clone()),
            ],
        )
    };
    // On its own key the binding holds (collateral withheld here is what stops it).
    let a = appraise(&pair(&spki_of(&leaf)));
    assert_eq!(a.binding, Some(Binding::Dstack));
    assert_eq!(code(&a), Some(RefusalCode::CollateralUnavailable));
    let a = appraise(&pair(&another_key()));
    assert_eq!(a.binding, None);
    assert_eq!(code(&a), Some(RefusalCode::BindingMismatch));
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
        refused_as(
            &spki_of(&leaf),
            &[(OID_DSTACK_QUOTE, value)],
            RefusalCode::QuoteMalformed,
            what,
        );
    }
}

// ---------------------------------------------------------------------------------------
// The versioned attestation `.1.8`.
// ---------------------------------------------------------------------------------------

const APP_ID: &str = "53226fcd7b6bc7ea979b0a550bf49cad993f28e2";
const COMPOSE_HASH: &str = "53226fcd7b6bc7ea979b0a550bf49cad993f28e2370169a9510e56c90b3029dc";
const INSTANCE_ID: &str = "daf6ebb5452578eba1a13acd1ed103157b03bff6";

fn code(a: &CertAppraisal) -> Option<RefusalCode> {
    a.refusal().map(|r| r.code)
}

/// Every occurrence of `from` replaced by `to` (same length).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    (out, n)
}

#[test]
fn the_real_certificates_are_found_bound_replayed_and_named() {
    for (name, wire) in [(V0, "v0"), (V1, "v1")] {
        let der = real_leaf(name);
        assert!(
            matches!(evidence::find(&parsed(&der)), Ok(Evidence::Dstack(_))),
            "{name}"
        );
        let a = appraise(&der);
        assert_eq!(a.binding, Some(Binding::Dstack), "{name}");
        // Everything but the collateral (withheld here) passed.
        assert_eq!(code(&a), Some(RefusalCode::CollateralUnavailable), "{name}");
        let d = a.dstack.as_deref().expect("dstack report");
        assert_eq!(d.wire, wire);
        assert_eq!(d.app.app_id.as_deref(), Some(APP_ID), "{name}");
        assert_eq!(d.app.compose_hash.as_deref(), Some(COMPOSE_HASH), "{name}");
        assert_eq!(d.app.instance_id.as_deref(), Some(INSTANCE_ID), "{name}");
        assert_eq!(d.app.os_image_hash, None, "{name}: key provider none");
        let kp = d.app.key_provider.as_ref().expect("key provider");
        assert_eq!(kp.name.as_deref(), Some("none"));
        assert!(d.app.system_ready);
        // A stripped log: RTMR3 replayed, RTMR0 only dstack's three digests, 1 and 2 absent.
        let replay: Vec<(&str, usize)> = d.rtmrs.iter().map(|r| (r.replay, r.events)).collect();
        assert_eq!(
            replay,
            [
                ("digests_only", 3),
                ("not_carried", 0),
                ("not_carried", 0),
                ("replayed", 9)
            ],
            "{name}"
        );
        assert!(d.events.iter().all(|e| e.replayed == (e.rtmr == 3)));
    }
}

#[test]
fn a_real_attestation_moved_to_another_key_is_refused() {
    for name in [V0, V1] {
        let value = octets(&attestation_of(&real_leaf(name)));
        let a = refused_as(
            &another_key(),
            &[(OID_ATTESTATION, value)],
            RefusalCode::BindingMismatch,
            name,
        );
        assert!(
            a.dstack.is_none(),
            "{name}: nothing reported from unbound evidence"
        );
    }
}

#[test]
fn report_data_rewritten_for_the_attackers_key_is_refused() {
    // The attacker binds the attestation's report data to their own key; the quote still
    // signs the victim's: the two differ.
    let leaf = real_leaf(V0);
    let bytes = attestation_of(&leaf);
    let att = Attestation::parse(&bytes).expect("attestation");
    let theirs = another_key();
    let forged = ratls_proxy::dstack::binding::ratls_cert_report_data(&theirs);
    let (mutated, n) = replace_all(&bytes, &att.stack.report_data, &forged);
    // Once in the quote's TD report, once in the stack evidence: change the stack's only.
    assert_eq!(n, 2);
    let last = bytes
        .windows(64)
        .rposition(|w| w == att.stack.report_data)
        .expect("stack report data");
    let mut only_stack = bytes.clone();
    only_stack[last..last + 64].copy_from_slice(&forged);
    assert_ne!(mutated, only_stack);
    for (key, what) in [(theirs, "attacker's key"), (spki_of(&leaf), "real key")] {
        let a = refused_as(
            &key,
            &[(OID_ATTESTATION, octets(&only_stack))],
            RefusalCode::BindingMismatch,
            what,
        );
        assert!(
            a.refusal()
                .is_some_and(|r| r.reasons[0].contains("differs from the report data")),
            "{what}: {:?}",
            a.refusal()
        );
    }
}

#[test]
fn an_event_log_that_does_not_replay_is_refused_as_event_log_mismatch() {
    let leaf = real_leaf(V0);
    let bytes = attestation_of(&leaf);
    // The storage-fs event's payload ("zfs", compact length 3) in the stack's runtime events
    // only, then in both lists (the log's carries a digest, the stack's none).
    let last = bytes
        .windows(4)
        .rposition(|w| w == b"\x0czfs")
        .expect("runtime event payload");
    let mut stack_only = bytes.clone();
    stack_only[last + 1..last + 4].copy_from_slice(b"ext");
    let (both, n) = replace_all(&bytes, b"\x0czfs", b"\x0cext");
    assert_eq!(n, 2);
    // An app id of the attacker's choosing, in both lists.
    let (app_id, n) = replace_all(
        &bytes,
        &[&b"\x18app-id\x50"[..], &hex::decode(APP_ID).expect("hex")].concat(),
        &[&b"\x18app-id\x50"[..], &[0xaa; 20]].concat(),
    );
    assert_eq!(n, 2);
    for (what, value) in [
        ("stack events changed", stack_only),
        ("both lists changed", both),
        ("app id changed", app_id),
    ] {
        let a = refused_as(
            &spki_of(&leaf),
            &[(OID_ATTESTATION, octets(&value))],
            RefusalCode::EventLogMismatch,
            what,
        );
        assert_eq!(
            a.binding,
            Some(Binding::Dstack),
            "{what}: bound, not replayed"
        );
        assert!(
            a.dstack.is_none(),
            "{what}: no identity from a log that fails"
        );
    }
}

#[test]
fn two_carriers_in_one_certificate_are_refused() {
    let leaf = real_leaf(V0);
    let spki = spki_of(&leaf);
    let att = octets(&attestation_of(&leaf));
    let quote = octets(&real_quote(V0));
    let other = octets(&real_quote(V1));
    let log = octets(b"[]");
    let att2 = att.clone();
    let quote2 = quote.clone();
    // A well-formed DICE envelope: tag 60000, [quote, claims].
    let q = real_quote(V0);
    let mut dice = vec![0xd9, 0xea, 0x60, 0x82, 0x59];
    dice.extend_from_slice(&u16::try_from(q.len()).expect("len").to_be_bytes());
    dice.extend_from_slice(&q);
    dice.extend_from_slice(&[0x41, 0x00]);
    for (what, extensions) in [
        (
            "1.8 and the same quote in 1.1",
            vec![(OID_ATTESTATION, att.clone()), (OID_DSTACK_QUOTE, quote)],
        ),
        (
            "1.8 and another quote in 1.1",
            vec![(OID_ATTESTATION, att.clone()), (OID_DSTACK_QUOTE, other)],
        ),
        (
            "1.8 and a 1.2 event log",
            vec![(OID_ATTESTATION, att.clone()), (OID_EVENT_LOG, log.clone())],
        ),
        (
            "1.8 and Cosmian's TDX carrier",
            vec![(OID_ATTESTATION, att), (OID_TDX_QUOTE, real_quote(V0))],
        ),
        ("1.2 without 1.1", vec![(OID_EVENT_LOG, log.clone())]),
        // Gramine's verifier reads DICE first, dstack's its own: refused, whichever is valid.
        (
            "TCG DICE evidence and 1.8",
            vec![(OID_DICE, dice.clone()), (OID_ATTESTATION, att2.clone())],
        ),
        (
            "TCG DICE evidence and the legacy pair",
            vec![
                (OID_DICE, dice.clone()),
                (OID_DSTACK_QUOTE, quote2),
                (OID_EVENT_LOG, log),
            ],
        ),
        (
            "TCG DICE evidence and 1.2",
            vec![(OID_DICE, dice), (OID_EVENT_LOG, octets(b"[]"))],
        ),
    ] {
        refused_as(&spki, &extensions, RefusalCode::QuoteMalformed, what);
    }
}

/// The real V0 attestation's event log as dstack's legacy `.1.2` JSON.
fn legacy_event_log(att: &Attestation<'_>) -> Vec<u8> {
    let Platform::Tdx(tdx) = &att.platform else {
        panic!("TDX")
    };
    let events: Vec<serde_json::Value> = tdx
        .event_log
        .iter()
        .map(|e| {
            serde_json::json!({
                "imr": e.imr,
                "event_type": e.event_type,
                "digest": hex::encode(&e.digest),
                "event": e.name,
                "event_payload": hex::encode(&e.payload),
            })
        })
        .collect();
    serde_json::to_vec(&events).expect("JSON")
}

#[test]
fn the_legacy_pair_is_replayed_like_the_versioned_attestation() {
    let leaf = real_leaf(V0);
    let bytes = attestation_of(&leaf);
    let att = Attestation::parse(&bytes).expect("attestation");
    let log = legacy_event_log(&att);
    let der = cert_for(
        &spki_of(&leaf),
        &[
            (OID_DSTACK_QUOTE, octets(&real_quote(V0))),
            (OID_EVENT_LOG, octets(&log)),
        ],
    );
    let a = appraise(&der);
    assert_eq!(code(&a), Some(RefusalCode::CollateralUnavailable));
    let d = a.dstack.as_deref().expect("dstack report");
    assert_eq!(d.wire, "legacy");
    assert_eq!(d.app.app_id.as_deref(), Some(APP_ID));
    assert_eq!(d.rtmrs[3].replay, "replayed");
    // A legacy log whose RTMR3 events were changed: refused, like in `.1.8`.
    let (forged, n) = replace_all(&log, b"7a6673", b"657874");
    assert_eq!(n, 1);
    let der = cert_for(
        &spki_of(&leaf),
        &[
            (OID_DSTACK_QUOTE, octets(&real_quote(V0))),
            (OID_EVENT_LOG, octets(&forged)),
        ],
    );
    assert_eq!(code(&appraise(&der)), Some(RefusalCode::EventLogMismatch));
}

#[test]
fn truncated_oversized_or_garbage_attestations_are_refused() {
    let leaf = real_leaf(V1);
    let spki = spki_of(&leaf);
    let bytes = attestation_of(&leaf);
    let mut cases: Vec<(String, Vec<u8>)> = [0, 1, 2, 100, bytes.len() / 2, bytes.len() - 1]
        .into_iter()
        .map(|cut| (format!("cut at {cut}"), octets(&bytes[..cut])))
        .collect();
    cases.push(("trailing byte".into(), octets(&[&bytes[..], &[0]].concat())));
    cases.push(("not wrapped".into(), bytes.clone()));
    cases.push(("garbage".into(), octets(&[0x42; 64])));
    let mut huge = vec![0u8; ratls_proxy::dstack::limits::MAX_ATTESTATION_LEN + 1];
    huge[0] = 0;
    cases.push(("above 10 MiB".into(), octets(&huge)));
    for (what, value) in cases {
        refused_as(
            &spki,
            &[(OID_ATTESTATION, value)],
            RefusalCode::QuoteMalformed,
            &what,
        );
    }
}

#[test]
fn other_platforms_in_the_envelope_are_refused_as_unsupported() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    for (file, platform) in [
        ("dstack/sev_snp_attestation.bin", "sev-snp"),
        ("dstack/nitro_attestation.bin", "nitro-enclave"),
    ] {
        let bytes = common::read(&dir, file);
        let a = refused_as(
            &another_key(),
            &[(OID_ATTESTATION, octets(&bytes))],
            RefusalCode::UnsupportedTee,
            file,
        );
        assert!(
            a.refusal().is_some_and(|r| r.reasons[0].contains(platform)),
            "{file}: {:?}",
            a.refusal()
        );
    }
}

/// Appraises `der` for a `tee = "snp"` entry (no Intel collateral).
fn appraise_snp_entry(der: &[u8]) -> CertAppraisal {
    let none = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ));
    let snp = SnpPolicy {
        measurement: vec![ratls_proxy::snp::ids::Measurement([0x5a; 48])],
        ..SnpPolicy::default()
    };
    let trust = ratls_proxy::snp::SnpTrust::amd();
    let judge = ratls_proxy::ratls::SnpJudge {
        policy: &snp,
        source: &ratls_proxy::appraise::snp_source::NoSnpCollateral,
        trust: &trust,
    };
    appraise_certificate_for(
        der,
        &none,
        (&common::permissive(true), Some(&judge)),
        BindingMode::Auto,
        UnixTime(AT),
    )
}

#[test]
fn sev_snp_evidence_for_an_intel_entry_is_a_tee_mismatch() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let bytes = common::read(&dir, "dstack/sev_snp_attestation.bin");
    let der = cert_for(&another_key(), &[(OID_ATTESTATION, octets(&bytes))]);
    let none = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ));
    for tee in [TeeType::Sgx, TeeType::Tdx] {
        let policy = ratls_proxy::appraise::policy::EnclavePolicy {
            tee: Some(tee),
            ..common::permissive(true)
        };
        let a = appraise_certificate(&der, &none, &policy, BindingMode::Auto, UnixTime(AT));
        assert_eq!(
            code(&a),
            Some(RefusalCode::TeeMismatch),
            "{tee:?}: {:?}",
            a.refusal()
        );
    }
    // An SNP entry appraises it: the real report's REPORT_DATA commits to the key of the
    // certificate dstack issued, not to this one, so the binding refuses it before any
    // collateral is asked for.
    let a = appraise_snp_entry(&der);
    assert_eq!(
        code(&a),
        Some(RefusalCode::BindingMismatch),
        "{:?}",
        a.refusal()
    );
    assert_eq!(a.tee(), Some("snp"));
}

#[test]
fn an_snp_entry_refuses_every_intel_quote() {
    // The real dstack TDX certificates (and a bare quote carrier) under an SNP entry:
    // tee_mismatch before anything else, even with a permissive Intel policy beside it.
    for name in [V0, V1] {
        let a = appraise_snp_entry(&real_leaf(name));
        assert_eq!(
            code(&a),
            Some(RefusalCode::TeeMismatch),
            "{name}: {:?}",
            a.refusal()
        );
    }
    let quote = real_quote(V0);
    let der = cert_for(&another_key(), &[(OID_TDX_QUOTE, quote)]);
    assert_eq!(
        code(&appraise_snp_entry(&der)),
        Some(RefusalCode::TeeMismatch)
    );
    // Garbage is still garbage, and no evidence is still no evidence.
    assert_eq!(
        code(&appraise_snp_entry(b"not a certificate")),
        Some(RefusalCode::QuoteMalformed)
    );
    let bare = cert_for(&another_key(), &[]);
    assert_eq!(code(&appraise_snp_entry(&bare)), Some(RefusalCode::NoQuote));
}

#[test]
fn a_policy_requiring_another_binding_refuses_dstack_evidence() {
    for mode in [BindingMode::Cosmian, BindingMode::Gramine] {
        let a = appraise_in(&real_leaf(V0), mode);
        assert_eq!(code(&a), Some(RefusalCode::BindingMismatch), "{mode:?}");
    }
    let a = appraise_in(&real_leaf(V1), BindingMode::Dstack);
    assert_eq!(a.binding, Some(Binding::Dstack));
}

// ---------------------------------------------------------------------------------------
// `verify --cert`, the binary.
// ---------------------------------------------------------------------------------------

#[test]
fn verify_cert_prints_the_app_identity_and_exits_2_without_collateral() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    // Collateral for another platform only: the dstack quotes' FMSPC cannot be had.
    let coll_dir = std::env::temp_dir().join(format!("ratls-dstack-cert-{}", std::process::id()));
    std::fs::create_dir_all(&coll_dir).expect("temp dir");
    std::fs::copy(
        dir.join("dcap/tdx_v4_qvl.collateral.json"),
        coll_dir.join("other.json"),
    )
    .expect("copy");
    let coll = coll_dir.display().to_string();
    for (name, wire) in [(V0, "v0"), (V1, "v1")] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/dstack")
            .join(name)
            .display()
            .to_string();
        let out = common::output(["verify", "--cert", &path, "--collateral", &coll, "--json"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let j = common::json(&out);
        assert_eq!(j["code"], "collateral_unavailable");
        assert_eq!(j["binding"], "dstack");
        assert_eq!(j["dstack_wire"], wire);
        assert_eq!(j["app"]["app_id"], APP_ID);
        assert_eq!(j["app"]["compose_hash"], COMPOSE_HASH);
        assert_eq!(j["app"]["instance_id"], INSTANCE_ID);
        assert_eq!(j["app"]["os_image_hash"], serde_json::Value::Null);
        assert_eq!(j["app"]["key_provider"]["name"], "none");
        assert_eq!(j["rtmr_replay"][3]["replay"], "replayed");
        assert_eq!(j["rtmr_replay"][3]["value"], j["quote"]["rtmr3"]);
        assert_eq!(j["rtmr_replay"][0]["replay"], "digests_only");
        let events = j["event_log"].as_array().expect("events");
        assert_eq!(events.len(), 12);
        assert_eq!(events[4]["name"], "app-id");
        assert_eq!(events[4]["replayed"], true);

        let (status, text) = common::cli::run(["verify", "--cert", &path, "--collateral", &coll]);
        assert_eq!(status, 2, "{text}");
        for line in [
            format!("dstack       {wire} attestation"),
            format!("app_id       {APP_ID}"),
            format!("compose_hash {COMPOSE_HASH}"),
            format!("instance_id  {INSTANCE_ID}"),
            "key_provider none".to_owned(),
            "rtmr3 replay replayed from 9 events".to_owned(),
            "rtmr0 replay not replayed (3 ACPI DATA digests only)".to_owned(),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&coll_dir);
}

/// The real app identity pinned, on the real certificates: a matching identity goes on to
/// the collateral (withheld here), each field changed is refused with its own code, and the
/// bare quote (`verify --quote`: no event log) is refused whatever it is.
#[test]
fn the_real_app_identity_is_judged_by_the_policy() {
    use ratls_proxy::appraise::app_identity::AppIdentityPolicy;
    let unhex = |h: &str| hex::decode(h).expect("hex");
    let pinned = || {
        let mut p = common::permissive(false);
        p.app = AppIdentityPolicy {
            app_id: vec![unhex(APP_ID)],
            compose_hash: vec![unhex(COMPOSE_HASH)],
            instance_id: vec![unhex(INSTANCE_ID)],
            key_provider: vec!["none".parse().expect("pin")],
            ..AppIdentityPolicy::default()
        };
        p
    };
    let none = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "none in this test".into(),
    ));
    let judge = |der: &[u8], policy| {
        let a = appraise_certificate(der, &none, &policy, BindingMode::Auto, UnixTime(AT));
        code(&a)
    };
    for name in [V0, V1] {
        let der = real_leaf(name);
        assert_eq!(
            judge(&der, pinned()),
            Some(RefusalCode::CollateralUnavailable),
            "{name}"
        );
        type Change = fn(&mut AppIdentityPolicy);
        let cases: [(Change, RefusalCode); 5] = [
            (
                |a| a.app_id = vec![vec![0xee; 20]],
                RefusalCode::AppIdMismatch,
            ),
            (
                |a| a.compose_hash = vec![vec![0xee; 32]],
                RefusalCode::ComposeHashMismatch,
            ),
            // Key provider `none`: no os-image-hash event, so a pinned one is refused.
            (
                |a| a.os_image_hash = vec![vec![0xee; 32]],
                RefusalCode::OsImageHashMismatch,
            ),
            (
                |a| a.instance_id = vec![vec![0xee; 20]],
                RefusalCode::InstanceIdMismatch,
            ),
            (
                |a| a.key_provider = vec!["kms:ab".parse().expect("pin")],
                RefusalCode::KeyProviderMismatch,
            ),
        ];
        for (change, want) in cases {
            let mut p = pinned();
            change(&mut p.app);
            assert_eq!(judge(&der, p), Some(want), "{name}");
        }
        let quote = real_quote(name);
        let a = ratls_proxy::appraise::appraise(&quote, &none, &pinned(), UnixTime(AT));
        assert_eq!(
            a.outcome.err().map(|r| r.code),
            Some(RefusalCode::AppIdMismatch),
            "{name}: a bare quote names no app"
        );
    }
}
