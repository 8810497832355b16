//! The Nitro checks one by one, each made to fail with a forged but correctly signed
//! document from the sim platform (`sim::nitro`): the chain's profile and shape, the
//! attacker's encodings, revocation over CRLs, policy and key binding.

use ratls_proxy::appraise::nitro_policy::{self, evaluate, NitroPolicy, NitroViolation, PcrValue};
use ratls_proxy::cbor;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::binding::{self, BindingError, NitroBinding};
use ratls_proxy::nitro::error::{DocumentError, NitroError};
use ratls_proxy::nitro::revocation::{self, Crl, Revocation};
use ratls_proxy::nitro::{parse, verify, NitroRoot};
use ratls_proxy::sim::nitro::{
    encode_document, sign_cose, sign_document, ChainSpec, DocSpec, LeafSpec, SimNitro, SIM_PCR1,
};

const NOW: i64 = 1_800_000_000;
const TS_MS: u64 = 1_800_000_000_250;

fn sim() -> SimNitro {
    SimNitro::generate(UnixTime(NOW)).expect("sim PKI")
}

fn spec() -> DocSpec {
    DocSpec::new(TS_MS, [0xab; 48])
}

fn check(sim: &SimNitro, bytes: &[u8], now: i64) -> Result<(), NitroError> {
    let parsed = parse(bytes)?;
    verify(&parsed, &sim.root().expect("root"), UnixTime(now)).map(drop)
}

fn chain_error(r: &Result<(), NitroError>, about: &str, says: &str) -> bool {
    matches!(r, Err(NitroError::Chain { what, detail }) if what == about && detail.contains(says))
}

fn payload_with_leaf(
    sim: &SimNitro,
    spec: &DocSpec,
) -> (Vec<u8>, ratls_proxy::sim::nitro::SimLeaf) {
    let leaf = sim.leaf(&spec.leaf, spec.at()).expect("leaf");
    (encode_document(spec, &leaf.der, &sim.bundle()), leaf)
}

#[test]
fn a_well_formed_sim_document_verifies_so_every_refusal_below_is_its_mutation() {
    let sim = sim();
    assert!(check(&sim, &sim.document(&spec()).expect("doc"), NOW).is_ok());
}

#[test]
fn a_signing_certificate_that_is_a_ca_or_cannot_sign_is_refused() {
    let sim = sim();
    let mut s = spec();
    s.leaf.is_ca = true;
    let r = check(&sim, &sim.document(&s).expect("doc"), NOW);
    assert!(
        chain_error(&r, "the signing certificate", "is a CA"),
        "{r:?}"
    );
    let mut s = spec();
    s.leaf.digital_signature = false;
    let r = check(&sim, &sim.document(&s).expect("doc"), NOW);
    assert!(
        chain_error(&r, "the signing certificate", "digitalSignature"),
        "{r:?}"
    );
}

#[test]
fn intermediates_without_key_cert_sign_or_beyond_their_path_length_are_refused() {
    let no_sign = SimNitro::generate_with(
        UnixTime(NOW),
        &ChainSpec {
            key_cert_sign: false,
            ..ChainSpec::default()
        },
    )
    .expect("sim");
    let r = check(&no_sign, &no_sign.document(&spec()).expect("doc"), NOW);
    assert!(chain_error(&r, "cabundle[1]", "keyCertSign"), "{r:?}");

    // A fourth CA below the instance CA, whose path length is 0.
    let too_long = SimNitro::generate_with(
        UnixTime(NOW),
        &ChainSpec {
            extra_intermediate: true,
            ..ChainSpec::default()
        },
    )
    .expect("sim");
    let r = check(&too_long, &too_long.document(&spec()).expect("doc"), NOW);
    assert!(
        chain_error(
            &r,
            "cabundle[1]",
            "allows 2 intermediate CAs below it, the bundle has 3"
        ),
        "{r:?}"
    );

    // The regional CA's path length 2 allows exactly the two below it; with 1 it does not.
    let tight = SimNitro::generate_with(
        UnixTime(NOW),
        &ChainSpec {
            path_lens: [Some(1), Some(1), Some(0)],
            ..ChainSpec::default()
        },
    )
    .expect("sim");
    let r = check(&tight, &tight.document(&spec()).expect("doc"), NOW);
    assert!(chain_error(&r, "cabundle[1]", "allows 1"), "{r:?}");
}

#[test]
fn a_bundle_of_a_thousand_certificates_is_refused_before_any_is_parsed() {
    let sim = sim();
    let (_, leaf) = payload_with_leaf(&sim, &spec());
    let bundle: Vec<Vec<u8>> = vec![sim.bundle()[0].clone(); 1000];
    let payload = encode_document(&spec(), &leaf.der, &bundle);
    let r = check(&sim, &sign_document(&payload, &leaf).expect("sign"), NOW);
    assert!(
        matches!(
            &r,
            Err(NitroError::Document(DocumentError::TooLarge {
                what: "the COSE_Sign1",
                ..
            }))
        ),
        "{r:?}"
    );
    // A thousand one-byte "certificates" fit in the size cap; the count cap stops them.
    let tiny: Vec<Vec<u8>> = vec![vec![0x30]; 1000];
    let payload = encode_document(&spec(), &leaf.der, &tiny);
    let r = check(&sim, &sign_document(&payload, &leaf).expect("sign"), NOW);
    assert!(
        matches!(
            &r,
            Err(NitroError::Document(DocumentError::Field {
                field: "cabundle",
                ..
            }))
        ),
        "{r:?}"
    );
    // Nine certificates fit in the payload and are still one too many.
    let bundle: Vec<Vec<u8>> = vec![sim.bundle()[0].clone(); 9];
    let payload = encode_document(&spec(), &leaf.der, &bundle);
    let r = check(&sim, &sign_document(&payload, &leaf).expect("sign"), NOW);
    assert!(
        matches!(
            &r,
            Err(NitroError::Document(DocumentError::Field {
                field: "cabundle",
                ..
            }))
        ),
        "{r:?}"
    );
}

#[test]
fn the_attackers_own_chain_under_the_real_root_name_is_refused() {
    let sim = sim();
    let (_, leaf) = payload_with_leaf(&sim, &spec());
    // AWS's root at the head of the bundle, the attacker's intermediates below it.
    let mut bundle = sim.bundle();
    bundle[0] = NitroRoot::aws().der().to_vec();
    let bytes = sign_document(&encode_document(&spec(), &leaf.der, &bundle), &leaf).expect("sign");
    let parsed = parse(&bytes).expect("parses");
    let r = verify(&parsed, &NitroRoot::aws(), UnixTime(NOW)).map(drop);
    assert!(
        matches!(&r, Err(NitroError::Chain { what, .. }) if what == "cabundle[1]"),
        "{r:?}"
    );
    // And the attacker's whole chain, checked against AWS's pinned root.
    let own = sim.document(&spec()).expect("doc");
    let r = verify(
        &parse(&own).expect("parses"),
        &NitroRoot::aws(),
        UnixTime(NOW),
    )
    .map(drop);
    assert!(
        matches!(&r, Err(NitroError::Chain { what, .. }) if what == "cabundle[0]"),
        "{r:?}"
    );
}

#[test]
fn a_certificate_swapped_for_another_genuine_leaf_fails_the_signature() {
    let sim = sim();
    let (payload, leaf) = payload_with_leaf(&sim, &spec());
    let other = sim.leaf(&LeafSpec::default(), spec().at()).expect("leaf");
    let swapped = encode_document(&spec(), &other.der, &sim.bundle());
    let _ = payload;
    let r = check(&sim, &sign_document(&swapped, &leaf).expect("sign"), NOW);
    assert!(matches!(r, Err(NitroError::Signature)), "{r:?}");
}

#[test]
fn a_protected_header_naming_another_algorithm_or_nesting_deeply_is_refused_though_signed() {
    let sim = sim();
    let (payload, leaf) = payload_with_leaf(&sim, &spec());
    // ES256 (-7) in the protected header.
    let r = check(
        &sim,
        &sign_cose(&[0xa1, 0x01, 0x26], &payload, &leaf).expect("sign"),
        NOW,
    );
    assert!(
        matches!(r, Err(NitroError::Document(DocumentError::Algorithm(_)))),
        "{r:?}"
    );
    // No alg in the protected header (it would have to come from the unprotected one).
    let r = check(
        &sim,
        &sign_cose(&[0xa0], &payload, &leaf).expect("sign"),
        NOW,
    );
    assert!(
        matches!(r, Err(NitroError::Document(DocumentError::Algorithm(_)))),
        "{r:?}"
    );
    // {1: -35, 5: [[[[…]]]]} twenty deep.
    let mut deep = vec![0xa2, 0x01, 0x38, 0x22, 0x05];
    deep.extend([0x81; 20]);
    deep.push(0x00);
    let r = check(&sim, &sign_cose(&deep, &payload, &leaf).expect("sign"), NOW);
    assert!(
        matches!(r, Err(NitroError::Document(DocumentError::Cbor { .. }))),
        "{r:?}"
    );
}

/// The document map of `spec` with `edit` applied to its encoded bytes (re-signed).
fn edited(sim: &SimNitro, edit: impl Fn(&mut Vec<u8>)) -> Result<(), NitroError> {
    let (mut payload, leaf) = payload_with_leaf(sim, &spec());
    edit(&mut payload);
    check(sim, &sign_document(&payload, &leaf).expect("sign"), NOW)
}

fn text(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::write_text(&mut out, s);
    out
}

fn replace(payload: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    let at = payload
        .windows(from.len())
        .position(|w| w == from)
        .expect("present");
    payload.splice(at..at + from.len(), to.iter().copied());
}

#[test]
fn signed_documents_with_hostile_encodings_are_refused_by_the_parser() {
    let sim = sim();
    let doc_err = |r: Result<(), NitroError>| match r {
        Err(NitroError::Document(e)) => e,
        other => panic!("expected a document error, got {other:?}"),
    };
    // Trailing bytes after the document map, inside the signed payload.
    let e = doc_err(edited(&sim, |p| p.push(0x00)));
    assert!(matches!(
        e,
        DocumentError::TrailingBytes {
            what: "the attestation document",
            ..
        }
    ));
    // A duplicate key: `digest` written twice.
    let e = doc_err(edited(&sim, |p| {
        let d = [text("digest"), text("SHA384")].concat();
        replace(p, &d, &[d.clone(), d.clone()].concat());
    }));
    assert_eq!(e, DocumentError::DuplicateField("digest".into()));
    // A field the specification does not have.
    let e = doc_err(edited(&sim, |p| {
        let d = [text("digest"), text("SHA384")].concat();
        replace(p, &d, &[d.clone(), text("extra"), vec![0x01]].concat());
    }));
    assert_eq!(e, DocumentError::UnknownField("extra".into()));
    // A missing mandatory field.
    let e = doc_err(edited(&sim, |p| {
        replace(p, &[text("digest"), text("SHA384")].concat(), &[])
    }));
    assert_eq!(e, DocumentError::MissingField("digest"));
    // `null` in a mandatory field.
    let e = doc_err(edited(&sim, |p| replace(p, &text("SHA384"), &[0xf6])));
    assert!(matches!(
        e,
        DocumentError::Field {
            field: "digest",
            ..
        }
    ));
    // A chunked (indefinite-length) text string.
    let e = doc_err(edited(&sim, |p| {
        replace(
            p,
            &text("SHA384"),
            &[&[0x7f, 0x63][..], b"SHA", &[0x63], b"384", &[0xff]].concat(),
        )
    }));
    assert!(matches!(e, DocumentError::Cbor { what: "digest", .. }));
    // Another digest.
    let e = doc_err(edited(&sim, |p| {
        replace(p, &text("SHA384"), &text("SHA256"))
    }));
    assert!(matches!(
        e,
        DocumentError::Field {
            field: "digest",
            ..
        }
    ));
    // The same PCR index twice, an index of 32, a 47-byte PCR.
    let pcr1 = [&[0x01, 0x58, 0x30][..], &SIM_PCR1].concat();
    let e = doc_err(edited(&sim, |p| {
        replace(p, &pcr1, &[&[0x00, 0x58, 0x30][..], &SIM_PCR1].concat())
    }));
    assert_eq!(e, DocumentError::DuplicateField("pcrs[0]".into()));
    let e = doc_err(edited(&sim, |p| {
        replace(
            p,
            &pcr1,
            &[&[0x18, 0x20, 0x58, 0x30][..], &SIM_PCR1].concat(),
        )
    }));
    assert!(matches!(e, DocumentError::Field { field: "pcrs", .. }));
    let e = doc_err(edited(&sim, |p| {
        replace(
            p,
            &pcr1,
            &[&[0x01, 0x58, 0x2f][..], &SIM_PCR1[..47]].concat(),
        )
    }));
    assert!(matches!(e, DocumentError::Field { field: "pcrs", .. }));
    // A huge declared length: the certificate claiming 4 GiB.
    let e = doc_err(edited(&sim, |p| {
        let at = p
            .windows(12)
            .position(|w| w == &text("certificate")[..])
            .expect("present")
            + 12;
        p.splice(at..at + 3, [0x5a, 0xff, 0xff, 0xff, 0xff]);
    }));
    assert!(
        matches!(e, DocumentError::Cbor { .. } | DocumentError::Field { .. }),
        "{e:?}"
    );
    // A tag around the timestamp.
    let e = doc_err(edited(&sim, |p| {
        replace(
            p,
            &text("timestamp"),
            &[text("timestamp"), vec![0xc1]].concat(),
        )
    }));
    assert!(matches!(
        e,
        DocumentError::Cbor {
            what: "timestamp",
            ..
        }
    ));
    // Sizes beyond AWS's bounds.
    let mut s = spec();
    s.user_data = Some(vec![1; 513]);
    let (p, leaf) = payload_with_leaf(&sim, &s);
    let e = doc_err(check(&sim, &sign_document(&p, &leaf).expect("sign"), NOW));
    assert!(matches!(
        e,
        DocumentError::Field {
            field: "user_data",
            ..
        }
    ));
    s.user_data = None;
    s.module_id = String::new();
    let (p, leaf) = payload_with_leaf(&sim, &s);
    let e = doc_err(check(&sim, &sign_document(&p, &leaf).expect("sign"), NOW));
    assert!(matches!(
        e,
        DocumentError::Field {
            field: "module_id",
            ..
        }
    ));
    // The unchanged payload, re-signed the same way, verifies.
    assert!(edited(&sim, |_| {}).is_ok());
}

#[test]
fn a_document_stamped_outside_its_signing_certificate_or_in_the_future_is_refused() {
    let sim = sim();
    // The certificate starts ten seconds after the document's timestamp.
    let mut s = spec();
    s.leaf.before_secs = -10;
    let r = check(&sim, &sim.document(&s).expect("doc"), NOW + 20);
    assert!(
        matches!(r, Err(NitroError::TimestampOutsideLeaf { .. })),
        "{r:?}"
    );

    // Stamped an hour ahead: its certificate is not valid yet now…
    let ahead = DocSpec::new(TS_MS + 3_600_000, [0xab; 48]);
    let r = check(&sim, &sim.document(&ahead).expect("doc"), NOW);
    assert!(
        matches!(&r, Err(NitroError::Expired { what, .. }) if what == "the signing certificate"),
        "{r:?}"
    );
    // …and with a certificate that is, the policy refuses the future timestamp.
    let mut ahead = ahead;
    ahead.leaf.before_secs = 7200;
    let bytes = sim.document(&ahead).expect("doc");
    let parsed = parse(&bytes).expect("parses");
    let verified = verify(&parsed, &sim.root().expect("root"), UnixTime(NOW)).expect("verifies");
    let v = evaluate(&policy(), &verified, UnixTime(NOW));
    assert_eq!(v, vec![NitroViolation::FromTheFuture { ahead_secs: 3600 }]);
    assert_eq!(v[0].code(), "document_too_old");
}

fn pcr(b: u8) -> PcrValue {
    hex::encode([b; 48]).parse().expect("pcr")
}

fn policy() -> NitroPolicy {
    NitroPolicy {
        pcr0: vec![pcr(0xab)],
        ..NitroPolicy::default()
    }
}

#[test]
fn the_policy_refuses_each_pcr_debug_and_age_with_its_code() {
    let sim = sim();
    let root = sim.root().expect("root");
    let bytes = sim.document(&spec()).expect("doc");
    let parsed = parse(&bytes).expect("parses");
    let verified = verify(&parsed, &root, UnixTime(NOW)).expect("verifies");
    let now = UnixTime(NOW);
    assert_eq!(evaluate(&policy(), &verified, now), vec![]);

    // Each pinned PCR, wrong: the violation names it.
    for index in [0usize, 1, 2, 3, 4, 8] {
        let mut p = policy();
        let wrong = vec![pcr(0x99)];
        match index {
            0 => p.pcr0 = wrong,
            1 => p.pcr1 = wrong,
            2 => p.pcr2 = wrong,
            3 => p.pcr3 = wrong,
            4 => p.pcr4 = wrong,
            _ => p.pcr8 = wrong,
        }
        let v = evaluate(&p, &verified, now);
        assert!(
            matches!(v.as_slice(), [NitroViolation::Pcr { index: i, .. }] if *i == index),
            "PCR{index}: {v:?}"
        );
        assert_eq!(v[0].code(), "pcr_mismatch");
        assert!(v[0].to_string().starts_with(&format!("PCR{index} ")));
    }
    // An allow-list of several values passes when one matches.
    let mut p = policy();
    p.pcr1 = vec![pcr(0x99), PcrValue::from(SIM_PCR1)];
    assert_eq!(evaluate(&p, &verified, now), vec![]);
    // An empty PCR0 list pins nothing, so it accepts nothing.
    let v = evaluate(&NitroPolicy::default(), &verified, now);
    assert!(
        matches!(v.as_slice(), [NitroViolation::Pcr { index: 0, .. }]),
        "{v:?}"
    );

    // Age.
    let mut p = policy();
    p.max_age_secs = Some(60);
    assert_eq!(evaluate(&p, &verified, UnixTime(NOW + 60)), vec![]);
    let v = evaluate(&p, &verified, UnixTime(NOW + 61));
    assert_eq!(
        v,
        vec![NitroViolation::TooOld {
            age_secs: 61,
            max_secs: 60
        }]
    );
    assert_eq!(v[0].code(), "document_too_old");

    // Debug mode: refused unless allowed (its PCR0 is zeros, so the allow-list must say so).
    let debug = sim.document(&DocSpec::debug(TS_MS)).expect("doc");
    let parsed = parse(&debug).expect("parses");
    let verified = verify(&parsed, &root, now).expect("verifies");
    let mut p = NitroPolicy {
        pcr0: vec![pcr(0)],
        ..NitroPolicy::default()
    };
    let v = evaluate(&p, &verified, now);
    assert_eq!(v, vec![NitroViolation::Debug]);
    assert_eq!(v[0].code(), "debug_enclave");
    p.allow_debug = true;
    assert_eq!(evaluate(&p, &verified, now), vec![]);
}

#[test]
fn revocation_over_sim_crls_covers_checks_refuses_and_fails_closed() {
    let sim = sim();
    let root = sim.root().expect("root");
    let bytes = sim.document(&spec()).expect("doc");
    let parsed = parse(&bytes).expect("parses");
    let verified = verify(&parsed, &root, UnixTime(NOW)).expect("verifies");
    let now = UnixTime(NOW);
    let (this, next) = (UnixTime(NOW - 3600), UnixTime(NOW + 3600));

    // No CRL: the regional and zonal CAs name a distribution point.
    let s = revocation::check(&verified, &root, &[], now, Revocation::IfSupplied).expect("ok");
    assert_eq!(s.unchecked, ["cabundle[1]", "cabundle[2]"]);
    let r = revocation::check(&verified, &root, &[], now, Revocation::Required);
    assert!(
        matches!(&r, Err(NitroError::RevocationUnknown { what }) if what == "cabundle[1]"),
        "{r:?}"
    );
    assert_eq!(
        nitro_policy::error_code(&r.expect_err("err")),
        "collateral_unavailable"
    );

    // The root's and the regional CA's CRLs, nothing listed: covered.
    let root_crl = sim.crl(0, &[], this, next).expect("crl");
    let regional_crl = sim.crl(1, &[], this, next).expect("crl");
    let crls = [
        Crl::parse(&root_crl).expect("crl"),
        Crl::parse(&regional_crl).expect("crl"),
    ];
    let s = revocation::check(&verified, &root, &crls, now, Revocation::Required).expect("ok");
    assert_eq!(s.checked, ["cabundle[1]", "cabundle[2]"]);

    // The zonal CA (serial 0x11) revoked by the regional CA.
    let revoking = sim.crl(1, &[&[0x11]], this, next).expect("crl");
    let crls = [
        Crl::parse(&root_crl).expect("crl"),
        Crl::parse(&revoking).expect("crl"),
    ];
    let r = revocation::check(&verified, &root, &crls, now, Revocation::IfSupplied);
    assert!(
        matches!(&r, Err(NitroError::Revoked { what, .. }) if what == "cabundle[2]"),
        "{r:?}"
    );
    assert_eq!(nitro_policy::error_code(&r.expect_err("err")), "revoked");

    // The signing certificate (serial 0x1eaf) revoked by the instance CA.
    let leaf_crl = sim.crl(3, &[&[0x1e, 0xaf]], this, next).expect("crl");
    let r = revocation::check(
        &verified,
        &root,
        &[Crl::parse(&leaf_crl).expect("crl")],
        now,
        Revocation::IfSupplied,
    );
    assert!(
        matches!(&r, Err(NitroError::Revoked { what, .. }) if what == "the signing certificate"),
        "{r:?}"
    );

    // A CRL in the root's name signed by another key (another sim's root of the same name).
    let impostor = SimNitro::generate(now)
        .expect("sim")
        .crl(0, &[], this, next)
        .expect("crl");
    let r = revocation::check(
        &verified,
        &root,
        &[Crl::parse(&impostor).expect("crl")],
        now,
        Revocation::IfSupplied,
    );
    assert!(matches!(r, Err(NitroError::CrlInvalid(_))), "{r:?}");

    // An expired CRL.
    let old = sim
        .crl(0, &[], UnixTime(NOW - 7200), UnixTime(NOW - 3600))
        .expect("crl");
    let r = revocation::check(
        &verified,
        &root,
        &[Crl::parse(&old).expect("crl")],
        now,
        Revocation::IfSupplied,
    );
    assert!(matches!(r, Err(NitroError::CrlExpired { .. })), "{r:?}");

    // Garbage and oversized CRLs do not parse.
    assert!(Crl::parse(b"not a crl").is_err());
    assert!(Crl::parse(&vec![0x30; 2 * 1024 * 1024]).is_err());
}

#[test]
fn key_binding_by_public_key_by_user_data_and_by_dstack_report_data() {
    let sim = sim();
    let root = sim.root().expect("root");
    let tls = rcgen::KeyPair::generate().expect("key");
    let spki = rcgen::PublicKeyData::subject_public_key_info(&tls);
    let other =
        rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::generate().expect("key"));
    let verify_doc = |s: &DocSpec| {
        let bytes = sim.document(s).expect("doc");
        let parsed = parse(&bytes).expect("parses");
        verify(&parsed, &root, UnixTime(NOW)).expect("verifies");
        bytes
    };

    let mut s = spec();
    s.public_key = Some(spki.clone());
    let bytes = verify_doc(&s);
    let doc = parse(&bytes).expect("parses").doc;
    assert_eq!(
        binding::public_key_is_spki(&doc, &spki),
        Ok(NitroBinding::PublicKey)
    );
    assert_eq!(
        binding::any_spki_rule(&doc, &spki),
        Ok(NitroBinding::PublicKey)
    );
    assert!(matches!(
        binding::public_key_is_spki(&doc, &other),
        Err(BindingError::Mismatch {
            field: "public_key",
            ..
        })
    ));
    assert_eq!(
        binding::user_data_is_spki(&doc, &spki),
        Err(BindingError::Missing("user_data"))
    );
    // A prefix of the key is not the key.
    assert!(binding::public_key_is_spki(&doc, &spki[..spki.len() - 1]).is_err());

    let mut s = spec();
    s.user_data = Some(spki.clone());
    let bytes = verify_doc(&s);
    let doc = parse(&bytes).expect("parses").doc;
    assert_eq!(
        binding::user_data_is_spki(&doc, &spki),
        Ok(NitroBinding::UserDataSpki)
    );
    assert_eq!(
        binding::any_spki_rule(&doc, &spki),
        Ok(NitroBinding::UserDataSpki)
    );
    assert!(matches!(
        binding::any_spki_rule(&doc, &other),
        Err(BindingError::Mismatch {
            field: "user_data",
            ..
        })
    ));

    let report_data = ratls_proxy::ratls::binding::dstack_report_data(&spki);
    let mut s = spec();
    s.user_data = Some(report_data.to_vec());
    let bytes = verify_doc(&s);
    let doc = parse(&bytes).expect("parses").doc;
    assert_eq!(
        binding::user_data_is_dstack_report_data(&doc, &report_data),
        Ok(NitroBinding::Dstack)
    );
    let wrong = ratls_proxy::ratls::binding::dstack_report_data(&other);
    assert!(binding::user_data_is_dstack_report_data(&doc, &wrong).is_err());
    // No field at all binds nothing.
    let bytes = verify_doc(&spec());
    let doc = parse(&bytes).expect("parses").doc;
    assert_eq!(
        binding::any_spki_rule(&doc, &spki),
        Err(BindingError::Missing("user_data"))
    );
}

#[test]
fn every_verification_error_maps_to_one_design_refusal_code() {
    use ratls_proxy::dcap::time::UnixTime as T;
    let cases = [
        (
            NitroError::Document(DocumentError::Cose("x")),
            "quote_malformed",
        ),
        (
            NitroError::Chain {
                what: "x".into(),
                detail: "y".into(),
            },
            "chain_invalid",
        ),
        (
            NitroError::TimestampOutsideLeaf {
                timestamp_ms: 0,
                from: T(0),
                until: T(0),
            },
            "chain_invalid",
        ),
        (NitroError::CrlInvalid("x".into()), "chain_invalid"),
        (
            NitroError::Expired {
                what: "x".into(),
                from: T(0),
                until: T(0),
                now: T(0),
            },
            "certificate_expired",
        ),
        (NitroError::Signature, "signature_invalid"),
        (
            NitroError::Revoked {
                what: "x".into(),
                serial: "01".into(),
            },
            "revoked",
        ),
        (
            NitroError::RevocationUnknown { what: "x".into() },
            "collateral_unavailable",
        ),
        (
            NitroError::CrlExpired {
                issuer: "x".into(),
                from: T(0),
                until: T(0),
                now: T(0),
            },
            "collateral_expired",
        ),
    ];
    for (e, code) in cases {
        assert_eq!(nitro_policy::error_code(&e), code, "{e}");
    }
}
