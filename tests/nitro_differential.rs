//! Differential tests of the Nitro verifier against an independent implementation: AWS's
//! `aws-nitro-enclaves-cose` (COSE_Sign1 and its Sig_structure) with ciborium (the CBOR),
//! RustCrypto's `p384` (every ECDSA check) and `rustls-webpki`'s path validation (the chain),
//! so no byte of the oracle's path runs through our CBOR reader, our chain code or ring.
//!
//! Properties: both accept the real documents and agree on every field; we never accept what
//! the oracle refuses; where we are deliberately stricter, a test names the case.
//! Case count: `RATLS_PROPTEST_CASES` (default 300).

mod nitro_common;

use std::time::Duration;

use std::cell::Cell;

use aws_nitro_enclaves_cose::CoseSign1 as OracleCose;
use ciborium::value::Value;
use nitro_common::oracle::{field, oracle, Fields, P384Sha384, Sha2};
use nitro_common::{cose, timestamp_ms, DSTACK, DSTACK_DEBUG, NSM};
use proptest::prelude::*;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::{parse, verify, NitroRoot};
use rustls_pki_types::CertificateDer;

/// Ours, in the oracle's shape.
fn ours(bytes: &[u8], root: &NitroRoot, now: i64) -> Result<Fields, String> {
    let parsed = parse(bytes).map_err(|e| e.to_string())?;
    let v = verify(&parsed, root, UnixTime(now)).map_err(|e| e.to_string())?;
    let d = v.doc();
    Ok(Fields {
        module_id: d.module_id.to_owned(),
        timestamp_ms: d.timestamp_ms,
        pcrs: d
            .pcrs
            .iter()
            .map(|(i, p)| (u64::try_from(i).unwrap_or(99), p.0.to_vec()))
            .collect(),
        public_key: d.public_key.map(<[u8]>::to_vec),
        user_data: d.user_data.map(<[u8]>::to_vec),
        nonce: d.nonce.map(<[u8]>::to_vec),
    })
}

fn secs(name: &str) -> i64 {
    i64::try_from(timestamp_ms(name) / 1000).unwrap_or_default()
}

fn cases() -> u32 {
    std::env::var("RATLS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

#[test]
fn both_accept_the_real_documents_and_agree_on_every_field() {
    let root = NitroRoot::aws();
    for name in [NSM, DSTACK, DSTACK_DEBUG] {
        let Some(bytes) = cose(name) else {
            return;
        };
        let theirs = oracle(&bytes, root.der(), secs(name));
        let mine = ours(&bytes, &root, secs(name));
        assert!(theirs.is_ok(), "{name}: oracle refused: {theirs:?}");
        assert_eq!(mine, theirs, "{name}");
        // And both refuse them an hour after the signing certificate expired (3 h).
        let later = secs(name) + 4 * 3600;
        assert!(
            oracle(&bytes, root.der(), later).is_err(),
            "{name}: oracle accepted late"
        );
        assert!(ours(&bytes, &root, later).is_err(), "{name}: accepted late");
    }
}

#[test]
fn never_accepts_a_mutated_real_document_that_the_oracle_refuses() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let root = NitroRoot::aws();
    let now = secs(NSM);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
        proptest::option::of(any::<usize>()),
    );
    let stricter = Cell::new(0u32);
    runner
        .run(&strategy, |(edits, cut)| {
            let mut m = bytes.clone();
            for (pos, x) in edits {
                let i = pos % m.len();
                m[i] ^= x;
            }
            if let Some(c) = cut {
                m.truncate(c % (m.len() + 1));
            }
            let mine = ours(&m, &root, now);
            let theirs = oracle(&m, root.der(), now);
            if let Ok(fields) = &mine {
                prop_assert_eq!(
                    Ok(fields),
                    theirs.as_ref(),
                    "we accepted what the oracle refused"
                );
            } else if theirs.is_ok() {
                stricter.set(stricter.get() + 1);
            }
            Ok(())
        })
        .expect("no difference");
    eprintln!(
        "{} mutated documents; the oracle alone accepted {}",
        cases(),
        stricter.get()
    );
}

#[test]
fn never_accepts_a_sim_document_that_the_oracle_refuses_and_agrees_when_both_accept() {
    use ratls_proxy::sim::nitro::{DocSpec, SimNitro};
    let now = 1_800_000_000;
    let sim = SimNitro::generate(UnixTime(now)).expect("sim");
    let root = sim.root().expect("root");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases() / 10,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        any::<[u8; 48]>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..100)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        0u64..1000,
        any::<bool>(),
    );
    runner
        .run(
            &strategy,
            |(pcr0, public_key, user_data, nonce, ms, debug)| {
                let ts = 1_800_000_000_000 + ms;
                let mut spec = if debug {
                    DocSpec::debug(ts)
                } else {
                    DocSpec::new(ts, pcr0)
                };
                spec.public_key = public_key;
                spec.user_data = user_data;
                spec.nonce = nonce;
                let bytes = sim.document(&spec).expect("doc");
                let mine = ours(&bytes, &root, now);
                let theirs = oracle(&bytes, root.der(), now);
                prop_assert!(mine.is_ok(), "{mine:?}");
                prop_assert_eq!(mine, theirs);
                Ok(())
            },
        )
        .expect("no difference");
}

/// The envelope of `cose` around another payload (protected header and signature kept).
fn rewrap(cose: &ratls_proxy::nitro::CoseSign1<'_>, payload: &[u8]) -> Vec<u8> {
    ratls_proxy::nitro::CoseSign1 { payload, ..*cose }.to_vec()
}

/// Where we refuse and the oracle accepts, on purpose (docs/nitro.md, "Stricter than").
#[test]
fn the_deliberate_differences_are_these() {
    let Some(bytes) = cose(NSM) else {
        return;
    };
    let root = NitroRoot::aws();
    let now = secs(NSM);
    let parsed = parse(&bytes).expect("parses");
    let payload = parsed.cose.payload;
    let bundle = &parsed.doc.cabundle;
    let at = |c: &[u8]| c.as_ptr().addr() - payload.as_ptr().addr();
    // 1. A bundle out of AWS's order: webpki builds a path from any order, we refuse (AWS §3.2.3
    //    fixes the order; a verifier that re-sorts accepts bundles AWS never sends). Not signed
    //    over differently: only the order of intermediates changed, so the signature fails
    //    for both; the chain step is where we differ, shown on the chain alone.
    let swapped = {
        let one = at(bundle[1]) - 3..at(bundle[1]) + bundle[1].len();
        let two = at(bundle[2]) - 3..at(bundle[2]) + bundle[2].len();
        [
            &payload[..one.start],
            &payload[two.clone()],
            &payload[one],
            &payload[two.end..],
        ]
        .concat()
    };
    let doc = ratls_proxy::nitro::AttestationDoc::parse(&swapped).expect("parses");
    assert!(ratls_proxy::nitro::chain::verify_chain(&doc, &root, UnixTime(now)).is_err());
    let intermediates: Vec<CertificateDer<'_>> = doc
        .cabundle
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    let leaf = CertificateDer::from(doc.certificate.to_vec());
    let root_der = CertificateDer::from(root.der().to_vec());
    let webpki_ok = webpki::EndEntityCert::try_from(&leaf).is_ok_and(|ee| {
        ee.verify_for_usage(
            &[&P384Sha384],
            &[webpki::anchor_from_trusted_cert(&root_der).expect("anchor")],
            &intermediates,
            rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_766_668_537)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    });
    assert!(webpki_ok, "webpki re-sorts the bundle");
    // 2. Trailing bytes after the document map: ciborium reads one item and stops.
    let trailing = [payload, &[0x00]].concat();
    assert!(parse(&rewrap(&parsed.cose, &trailing)).is_err());
    let c = OracleCose::from_bytes(&rewrap(&parsed.cose, &trailing)).expect("oracle COSE parses");
    let p = c.get_payload::<Sha2>(None).expect("payload");
    assert!(ciborium::de::from_reader::<Value, _>(p.as_slice()).is_ok());
    // 3. An unknown field: the oracle (like serde-based verifiers) ignores it; we refuse.
    let mut unknown = payload.to_vec();
    let end = unknown.len() - 1; // before the break of the indefinite map
    unknown.splice(end..end, [0x65, b'e', b'x', b't', b'r', b'a', 0x01]);
    assert!(parse(&rewrap(&parsed.cose, &unknown)).is_err());
    let doc: Value = ciborium::de::from_reader(unknown.as_slice()).expect("oracle CBOR parses");
    assert!(doc.as_map().is_some_and(|m| field(m, "extra").is_some()));
    // (4. The bundle's own root differing from the pinned one: webpki ignores bundle[0]; we
    //     refuse it — shown in tests/nitro_fixtures.rs with an attacker root in its place.)
    let _ = ours(&bytes, &root, now).expect("the unmodified document verifies");
}
