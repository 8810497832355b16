//! Review 5 (adversarial): the Nitro signing-certificate memo (issue 30,
//! `nitro::cache::LeafKey`). A hostile host that has seen one genuine document knows a
//! signing certificate the verifier remembers; these prove knowing it buys nothing: a
//! payload signed by another key under the known leaf's bytes, the known leaf under a
//! different bundle or root, and the known leaf outside its validity are refused on the
//! memo's hit path as they are on a cold cache.

#![cfg(feature = "sim")]

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::{parse, verify, verify_cached, IntermediatesCache};
use ratls_proxy::sim::nitro::{encode_document, sign_document, DocSpec, SimNitro};

const PCR0: [u8; 48] = [0x5a; 48];

fn now() -> UnixTime {
    UnixTime::now()
}

fn ok_cached(doc: &[u8], pki: &SimNitro, at: UnixTime, cache: &IntermediatesCache) -> bool {
    let parsed = parse(doc).expect("parses");
    verify_cached(&parsed, &pki.root().expect("root"), at, cache).is_ok()
}

fn ok_cold(doc: &[u8], pki: &SimNitro, at: UnixTime) -> bool {
    let parsed = parse(doc).expect("parses");
    verify(&parsed, &pki.root().expect("root"), at).is_ok()
}

#[test]
fn a_known_leaf_signs_nothing_for_an_attacker() {
    let t = now();
    let pki = SimNitro::generate(t).expect("pki");
    let spec = DocSpec::new(u64::try_from(t.0).expect("t") * 1000, PCR0);
    let leaf = pki.leaf(&spec.leaf, spec.at()).expect("leaf");
    let genuine =
        sign_document(&encode_document(&spec, &leaf.der, &pki.bundle()), &leaf).expect("genuine");
    let cache = IntermediatesCache::new(8);
    assert!(ok_cached(&genuine, &pki, t, &cache), "control: genuine");
    assert_eq!(cache.leaves_len(), 1, "the leaf is remembered");

    // The attacker's own key (a leaf it minted, or any P-384 key) signs a payload that
    // names the known leaf's bytes and the genuine bundle, with a PCR0 of its choosing.
    let mut evil = DocSpec::new(u64::try_from(t.0).expect("t") * 1000, [0x66; 48]);
    evil.user_data = Some(b"attacker".to_vec());
    let attacker = pki.leaf(&evil.leaf, evil.at()).expect("attacker key");
    let forged = sign_document(&encode_document(&evil, &leaf.der, &pki.bundle()), &attacker)
        .expect("forged");
    let hits = cache.leaf_hits();
    assert!(
        !ok_cached(&forged, &pki, t, &cache),
        "forged: accepted on a hit"
    );
    assert!(cache.leaf_hits() > hits, "the memo's hit path was taken");
    assert!(!ok_cold(&forged, &pki, t), "forged: accepted cold");

    // The known leaf, with the bundle cut short (its last intermediate dropped): another
    // bundle key, so it must link again, and fails.
    let mut short = pki.bundle();
    short.pop();
    let cut = sign_document(&encode_document(&spec, &leaf.der, &short), &leaf).expect("cut");
    assert!(!ok_cached(&cut, &pki, t, &cache), "short bundle: accepted");

    // The same genuine document under another pinned root, same cache.
    let other = SimNitro::generate(t).expect("other pki");
    let parsed = parse(&genuine).expect("parses");
    assert!(verify_cached(&parsed, &other.root().expect("root"), t, &cache).is_err());

    // The known leaf outside its validity, on the hit path: after its notAfter and before
    // its notBefore.
    let (from, until) = {
        let (_, c) = x509_parser::parse_x509_certificate(&leaf.der).expect("leaf parses");
        (
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
        )
    };
    assert!(ok_cached(&genuine, &pki, t, &cache), "still fine now");
    let hits = cache.leaf_hits();
    assert!(
        !ok_cached(&genuine, &pki, UnixTime(until + 1), &cache),
        "expired leaf accepted from the memo"
    );
    assert!(
        !ok_cached(&genuine, &pki, UnixTime(from - 1), &cache),
        "not-yet-valid leaf accepted from the memo"
    );
    assert!(cache.leaf_hits() >= hits, "hit path consulted");
}
