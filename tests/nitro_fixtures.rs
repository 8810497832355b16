//! The real AWS Nitro attestation documents (`fixtures/dstack/`) verify offline at their own
//! timestamps to the pinned AWS root, fail once their signing certificate has expired, and
//! every field, the signature, the chain and the bundle order mutated is refused with the
//! error of the step it breaks.

mod nitro_common;

use nitro_common::{cose, offset_of, timestamp_ms, DSTACK, DSTACK_DEBUG, NSM};
use ratls_proxy::cbor;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::nitro::document::Digest;
use ratls_proxy::nitro::error::{DocumentError, NitroError};
use ratls_proxy::nitro::CoseSign1;
use ratls_proxy::nitro::{parse, verify, NitroRoot};

/// The signing certificate of the NSM fixture: valid 2025-12-25 13:15:34 .. 16:15:37 UTC.
const NSM_LEAF_NOT_BEFORE: i64 = 1_766_668_534;
const NSM_LEAF_NOT_AFTER: i64 = 1_766_679_337;

fn at(name: &str) -> UnixTime {
    UnixTime(i64::try_from(timestamp_ms(name) / 1000).expect("fits"))
}

/// Parses and verifies `bytes` against the AWS root at `now`.
fn check(bytes: &[u8], now: UnixTime) -> Result<(), NitroError> {
    let parsed = parse(bytes)?;
    verify(&parsed, &NitroRoot::aws(), now).map(drop)
}

/// The COSE_Sign1 re-encoded around a new payload (protected header and signature kept).
fn with_payload(cose_bytes: &[u8], payload: &[u8]) -> Vec<u8> {
    let p = parse(cose_bytes).expect("parses");
    CoseSign1 { payload, ..p.cose }.to_vec()
}

fn chain_error_about(r: &Result<(), NitroError>, about: &str) -> bool {
    matches!(r, Err(NitroError::Chain { what, .. }) if what == about)
}

#[test]
fn the_raw_nsm_document_verifies_at_its_own_timestamp_with_the_fields_its_readme_gives() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let parsed = parse(&bytes).expect("the real document parses");
    let doc = &parsed.doc;
    assert!(!parsed.cose.tagged, "the hypervisor sends it untagged");
    assert_eq!(doc.module_id, "i-0827e799ec9232d44-enc019b55a68bd2ed4b");
    assert_eq!(doc.digest, Digest::Sha384);
    assert_eq!(doc.timestamp_ms, 1_766_668_537_578);
    assert_eq!(doc.pcrs.len(), 16);
    assert!(doc.pcrs.iter().all(|(_, p)| p.0.len() == 48));
    let pcr = |i| doc.pcrs.get(i).map(|p| p.to_string()).unwrap_or_default();
    assert_eq!(pcr(0), "5cb702954321826d7939d6da829a940d787fcf32357beb8eae1ddf33c28c17d36f3ac3ba6828fdf7edeed02889702da6");
    assert_eq!(pcr(1), "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa");
    assert_eq!(pcr(2), "743ea12db9aba9440a8197f7ac9aeda43cfbb1587473ff7577415ac5be116bc026dfa836db6713930474d1aa0d06b049");
    assert_eq!(pcr(4), "7b3574ad9b7e88ec8335e8ce967315fac77218441e97eea9795de704d7f2678d0b298ecda39b544c1689669f48cba5e8");
    assert!(doc.pcrs.get(3).is_some_and(|p| p.is_zero()), "no IAM role");
    assert!(!doc.is_debug());
    assert_eq!(doc.cabundle.len(), 4, "root and three intermediates");
    assert_eq!(doc.cabundle[0], NitroRoot::aws().der());
    assert_eq!(doc.certificate.len(), 638);
    // The hypervisor sends `null` for what was not asked for.
    assert_eq!(doc.public_key, None);
    assert_eq!(doc.nonce, None);
    assert_eq!(doc.user_data, Some(&[0u8; 64][..]));

    let root = NitroRoot::aws();
    let verified = verify(&parsed, &root, at(NSM)).expect("verifies at its own timestamp");
    assert_eq!(verified.valid_until(&root), UnixTime(NSM_LEAF_NOT_AFTER));
    assert_eq!(verified.chain().intermediates.len(), 3);
    assert_eq!(verified.doc().module_id, doc.module_id);
}

#[test]
fn the_raw_nsm_document_fails_an_hour_after_its_signing_certificate_expires() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let expired = |r: &Result<(), NitroError>| {
        matches!(r, Err(NitroError::Expired { what, until, .. })
            if what == "the signing certificate" && *until == UnixTime(NSM_LEAF_NOT_AFTER))
    };
    assert!(expired(&check(&bytes, UnixTime(NSM_LEAF_NOT_AFTER + 3600))));
    // Both ends of the validity are inclusive.
    assert!(check(&bytes, UnixTime(NSM_LEAF_NOT_AFTER)).is_ok());
    assert!(expired(&check(&bytes, UnixTime(NSM_LEAF_NOT_AFTER + 1))));
    assert!(check(&bytes, UnixTime(NSM_LEAF_NOT_BEFORE)).is_ok());
    assert!(matches!(
        check(&bytes, UnixTime(NSM_LEAF_NOT_BEFORE - 1)),
        Err(NitroError::Expired { what, .. }) if what == "the signing certificate"
    ));
    // Years later the intermediates have long expired too; the first one found is named.
    assert!(matches!(
        check(&bytes, UnixTime(1_900_000_000)),
        Err(NitroError::Expired { what, .. }) if what == "cabundle[1]"
    ));
}

#[test]
fn the_dstack_wrapped_documents_verify_and_the_debug_one_says_so() {
    let (Some(prod), Some(debug)) = (cose(DSTACK), cose(DSTACK_DEBUG)) else {
        return;
    };
    let root = NitroRoot::aws();
    let p = parse(&prod).expect("parses");
    verify(&p, &root, at(DSTACK)).expect("the production document verifies");
    assert!(!p.doc.is_debug());
    // dstack's own verified snapshot (dstack-attest/tests/snapshots/nitro_verify__nitro_report.snap).
    assert_eq!(p.doc.module_id, "i-0827e799ec9232d44-enc019b5640fdf630d6");
    assert_eq!(
        p.doc.pcrs.get(0).map(|v| v.to_string()).unwrap_or_default(),
        "eb7d0dab08ff41546d7e5659aee883af7b32bb2e58e46815b719f9f7bfae7b880188a10d86317e6509923740526cf74a"
    );
    assert_eq!(
        p.doc.user_data.map(hex::encode).unwrap_or_default(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550000000000000000000000000000000000000000000000000000000000000000"
    );

    let d = parse(&debug).expect("parses");
    verify(&d, &root, at(DSTACK_DEBUG)).expect("the debug document is genuine");
    assert!(d.doc.is_debug(), "PCR0-2 are zeros in debug mode");
    assert!(d.doc.pcrs.get(4).is_some_and(|p| !p.is_zero()));
}

#[test]
fn a_tagged_envelope_of_the_same_document_verifies_too() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    // Tag 18 is outside the signed bytes: RFC 9052 and AWS allow either form.
    let tagged = [&[0xd2][..], &bytes].concat();
    assert!(parse(&tagged).is_ok_and(|p| p.cose.tagged));
    assert!(check(&tagged, at(NSM)).is_ok());
    // Tag 18 twice, or another tag, is not a COSE_Sign1.
    assert!(check(&[&[0xd2, 0xd2][..], &bytes].concat(), at(NSM)).is_err());
    assert!(check(&[&[0xd1][..], &bytes].concat(), at(NSM)).is_err());
}

#[test]
fn every_field_of_the_real_document_mutated_is_refused_by_the_step_it_breaks() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let now = at(NSM);
    let parsed = parse(&bytes).expect("parses");
    let doc = &parsed.doc;
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("found")
    };
    let last = |s: &[u8]| offset_of(&bytes, s) + s.len() - 1;
    // (what, offset, new byte, expected)
    type Expect = fn(&Result<(), NitroError>) -> bool;
    let signature: Expect = |r| matches!(r, Err(NitroError::Signature));
    let cases: Vec<(&str, usize, Option<u8>, Expect)> = vec![
        (
            "module_id",
            last(doc.module_id.as_bytes()),
            Some(b'c'),
            signature,
        ),
        ("digest", find(b"SHA384") + 5, Some(b'5'), |r| {
            matches!(
                r,
                Err(NitroError::Document(DocumentError::Field {
                    field: "digest",
                    ..
                }))
            )
        }),
        ("timestamp", find(b"itimestamp") + 10 + 8, None, signature),
        (
            "pcr0",
            offset_of(&bytes, doc.pcrs.get(0).expect("pcr0").0),
            None,
            signature,
        ),
        (
            "pcr2",
            last(doc.pcrs.get(2).expect("pcr2").0),
            None,
            signature,
        ),
        (
            "pcr4",
            last(doc.pcrs.get(4).expect("pcr4").0),
            None,
            signature,
        ),
        (
            "pcr15",
            last(doc.pcrs.get(15).expect("pcr15").0),
            None,
            signature,
        ),
        (
            "user_data",
            last(doc.user_data.expect("user_data")),
            None,
            signature,
        ),
        (
            "certificate (its signature)",
            last(doc.certificate),
            None,
            |r| chain_error_about(r, "the signing certificate"),
        ),
        (
            "certificate (its key)",
            last(doc.certificate) - 110,
            None,
            |r| chain_error_about(r, "the signing certificate"),
        ),
        ("cabundle[0]", last(doc.cabundle[0]), None, |r| {
            chain_error_about(r, "cabundle[0]")
        }),
        ("cabundle[1]", last(doc.cabundle[1]), None, |r| {
            chain_error_about(r, "cabundle[1]")
        }),
        ("cabundle[2]", last(doc.cabundle[2]), None, |r| {
            chain_error_about(r, "cabundle[2]")
        }),
        ("cabundle[3]", last(doc.cabundle[3]), None, |r| {
            chain_error_about(r, "cabundle[3]")
        }),
        (
            "COSE signature r",
            offset_of(&bytes, parsed.cose.signature),
            None,
            signature,
        ),
        (
            "COSE signature s",
            last(parsed.cose.signature),
            None,
            signature,
        ),
        (
            "protected alg -35 → -36",
            offset_of(&bytes, parsed.cose.protected) + 3,
            Some(0x23),
            |r| matches!(r, Err(NitroError::Document(DocumentError::Algorithm(_)))),
        ),
        (
            "unprotected header",
            offset_of(&bytes, parsed.cose.protected) + 4,
            Some(0xa1),
            |r| matches!(r, Err(NitroError::Document(_))),
        ),
    ];
    for (what, at_offset, new, expect) in cases {
        let mut m = bytes.clone();
        m[at_offset] = new.unwrap_or(m[at_offset] ^ 0x01);
        assert_ne!(m, bytes, "{what}: nothing changed");
        let r = check(&m, now);
        assert!(expect(&r), "{what}: {r:?}");
    }
    // And unchanged, it verifies: every refusal above is the mutation's.
    assert!(check(&bytes, now).is_ok());
}

#[test]
fn a_bundle_out_of_order_is_refused_never_re_sorted() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let parsed = parse(&bytes).expect("parses");
    let payload = parsed.cose.payload;
    let bundle = &parsed.doc.cabundle;
    // Every entry is a bstr with a 3-byte head (`59 hh ll`): swap the encoded items of
    // cabundle[1] and cabundle[2], keeping the payload's length.
    let item = |i: usize| {
        let start = offset_of(payload, bundle[i]) - 3;
        start..offset_of(payload, bundle[i]) + bundle[i].len()
    };
    let (one, two) = (item(1), item(2));
    assert_eq!(one.end, two.start);
    let swapped = [
        &payload[..one.start],
        &payload[two.clone()],
        &payload[one.clone()],
        &payload[two.end..],
    ]
    .concat();
    let r = check(&with_payload(&bytes, &swapped), at(NSM));
    assert!(chain_error_about(&r, "cabundle[1]"), "{r:?}");

    // The whole bundle reversed (what Java's CertPath wants): the root is not first.
    let all = offset_of(payload, bundle[0]) - 3..offset_of(payload, bundle[3]) + bundle[3].len();
    let mut items: Vec<&[u8]> = (0..4)
        .map(|i| {
            &payload
                [offset_of(payload, bundle[i]) - 3..offset_of(payload, bundle[i]) + bundle[i].len()]
        })
        .collect();
    items.reverse();
    let reversed = [&payload[..all.start], &items.concat(), &payload[all.end..]].concat();
    let r = check(&with_payload(&bytes, &reversed), at(NSM));
    assert!(chain_error_about(&r, "cabundle[0]"), "{r:?}");

    // The unchanged payload re-encoded the same way still verifies: only the order mattered.
    assert!(check(&with_payload(&bytes, payload), at(NSM)).is_ok());
}

#[test]
fn a_bundle_headed_by_another_root_or_checked_against_another_root_is_refused() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let parsed = parse(&bytes).expect("parses");
    let payload = parsed.cose.payload;
    let root = parsed.doc.cabundle[0];
    let start = offset_of(payload, root) - 3;
    // An attacker's root in place of AWS's (here: Intel's SGX root, any other root will do).
    let other = TrustAnchor::intel().der().to_vec();
    let mut head = Vec::new();
    cbor::write_bytes(&mut head, &other);
    let replaced = [&payload[..start], &head, &payload[start + 3 + root.len()..]].concat();
    let r = check(&with_payload(&bytes, &replaced), at(NSM));
    assert!(chain_error_about(&r, "cabundle[0]"), "{r:?}");

    // Pinning another root than AWS's refuses the genuine document.
    let intel_as_nitro_root = NitroRoot::from_der(other);
    assert!(
        intel_as_nitro_root.is_err(),
        "a P-256 root is not a Nitro root"
    );
}

#[test]
fn trailing_bytes_after_the_envelope_or_inside_the_payload_are_refused() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let mut trailing = bytes.clone();
    trailing.push(0x00);
    assert!(matches!(
        check(&trailing, at(NSM)),
        Err(NitroError::Document(DocumentError::TrailingBytes {
            what: "the COSE_Sign1",
            extra: 1
        }))
    ));
    let parsed = parse(&bytes).expect("parses");
    let longer = [parsed.cose.payload, &[0xf6]].concat();
    assert!(matches!(
        check(&with_payload(&bytes, &longer), at(NSM)),
        Err(NitroError::Document(DocumentError::TrailingBytes {
            what: "the attestation document",
            extra: 1
        }))
    ));
    // Truncated anywhere: a document error, never a panic.
    for cut in [0, 1, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(check(&bytes[..cut], at(NSM)), Err(NitroError::Document(_))),
            "cut {cut}"
        );
    }
}

#[test]
fn the_real_debug_document_is_refused_as_debug_unless_allowed_and_the_other_accepted() {
    use ratls_proxy::appraise::nitro_policy::{evaluate, NitroPolicy, NitroViolation};
    let (Some(prod), Some(debug)) = (cose(DSTACK), cose(DSTACK_DEBUG)) else {
        return;
    };
    let root = NitroRoot::aws();
    let p = parse(&prod).expect("parses");
    let verified = verify(&p, &root, at(DSTACK)).expect("verifies");
    let policy = NitroPolicy {
        pcr0: vec![p
            .doc
            .pcrs
            .get(0)
            .expect("pcr0")
            .to_string()
            .parse()
            .expect("hex")],
        max_age_secs: Some(60),
        ..NitroPolicy::default()
    };
    assert_eq!(evaluate(&policy, &verified, at(DSTACK)), vec![]);
    assert!(matches!(
        evaluate(&policy, &verified, UnixTime(at(DSTACK).0 + 61)).as_slice(),
        [NitroViolation::TooOld {
            age_secs: 61,
            max_secs: 60
        }]
    ));

    let d = parse(&debug).expect("parses");
    let verified = verify(&d, &root, at(DSTACK_DEBUG)).expect("verifies");
    let zeros = NitroPolicy {
        pcr0: vec!["00".repeat(48).parse().expect("hex")],
        ..NitroPolicy::default()
    };
    assert_eq!(
        evaluate(&zeros, &verified, at(DSTACK_DEBUG)),
        vec![NitroViolation::Debug]
    );
    let allowed = NitroPolicy {
        allow_debug: true,
        ..zeros
    };
    assert_eq!(evaluate(&allowed, &verified, at(DSTACK_DEBUG)), vec![]);
    // The production policy refuses it twice over: debug, and PCR0 not pinned.
    let v = evaluate(&policy, &verified, at(DSTACK_DEBUG));
    assert!(
        matches!(
            v.as_slice(),
            [NitroViolation::Debug, NitroViolation::Pcr { index: 0, .. }]
        ),
        "{v:?}"
    );
}
