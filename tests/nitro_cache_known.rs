//! One signature per new Nitro document from a known enclave (issue 30): the signing
//! certificate an enclave's NSM uses for ~3 h is remembered, by its exact bytes, under the
//! verified bundle (and so the root) it verified under. Counted: a new document with a known
//! leaf costs one P-384 verification, its COSE signature. Differential: the memo changes no
//! verdict (documents sharing a cached leaf but signed by another key, or altered, are still
//! refused; an expired leaf is refused on a hit; another root starts cold; a refused leaf is
//! never remembered), on the sim PKI and on the real documents.

#![cfg(feature = "sim")]

mod nitro_common;

use nitro_common::{cose, offset_of, timestamp_ms, DSTACK, DSTACK_DEBUG, NSM};
use ratls_proxy::dcap::pki::ecdsa_verifications_on_this_thread;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::error::NitroError;
use ratls_proxy::nitro::{parse, verify, verify_cached, IntermediatesCache, NitroRoot};
use ratls_proxy::sim::nitro::{
    encode_document, sign_document, DocSpec, LeafSpec, SimLeaf, SimNitro, LEAF_LIFETIME_SECS,
};

/// The verdict, comparable: the error, or the verified document's timestamp.
fn verdict(
    bytes: &[u8],
    root: &NitroRoot,
    now: UnixTime,
    cache: Option<&IntermediatesCache>,
) -> Result<u64, NitroError> {
    let parsed = parse(bytes)?;
    let v = match cache {
        Some(c) => verify_cached(&parsed, root, now, c)?,
        None => verify(&parsed, root, now)?,
    };
    Ok(v.doc().timestamp_ms)
}

/// The verdict and how many ECDSA verifications it took on this thread.
fn counted(
    bytes: &[u8],
    root: &NitroRoot,
    now: UnixTime,
    cache: Option<&IntermediatesCache>,
) -> (Result<u64, NitroError>, u64) {
    let before = ecdsa_verifications_on_this_thread();
    let v = verdict(bytes, root, now, cache);
    (v, ecdsa_verifications_on_this_thread() - before)
}

const T0: u64 = 1_800_000_000;

/// A document of the sim enclave measured `pcr0` at `ms`, carrying `leaf`'s certificate and
/// signed by `signer`'s key.
fn document(sim: &SimNitro, ms: u64, pcr0: u8, leaf: &SimLeaf, signer: &SimLeaf) -> Vec<u8> {
    let spec = DocSpec::new(ms, [pcr0; 48]);
    let payload = encode_document(&spec, &leaf.der, &sim.bundle());
    sign_document(&payload, signer).expect("signs")
}

fn sim() -> (SimNitro, NitroRoot, SimLeaf) {
    let sim = SimNitro::generate(UnixTime(i64::try_from(T0).expect("fits"))).expect("sim PKI");
    let root = sim.root().expect("root");
    let leaf = sim
        .leaf(
            &LeafSpec::default(),
            UnixTime(i64::try_from(T0).expect("fits")),
        )
        .expect("leaf");
    (sim, root, leaf)
}

fn at(secs: u64) -> UnixTime {
    UnixTime(i64::try_from(secs).expect("fits"))
}

#[test]
fn a_new_document_from_a_known_enclave_costs_one_verification() {
    let (sim, root, leaf) = sim();
    let first = document(&sim, T0 * 1000, 0xa0, &leaf, &leaf);
    let second = document(&sim, (T0 + 60) * 1000, 0xa1, &leaf, &leaf);
    let intermediates =
        u64::try_from(parse(&first).expect("parses").doc.cabundle.len() - 1).expect("fits");
    let full = intermediates + 2; // each intermediate, the leaf, the COSE signature

    assert_eq!(
        counted(&second, &root, at(T0 + 60), None),
        (Ok((T0 + 60) * 1000), full)
    );
    let cache = IntermediatesCache::new(8);
    assert_eq!(
        counted(&first, &root, at(T0), Some(&cache)),
        (Ok(T0 * 1000), full),
        "cold: the whole chain"
    );
    assert_eq!(
        counted(&second, &root, at(T0 + 60), Some(&cache)),
        (Ok((T0 + 60) * 1000), 1),
        "a new document, a known leaf: the COSE signature only"
    );
    assert_eq!(cache.leaf_hits(), 1);
    // Another enclave of the same instance: the bundle is known, its leaf is not.
    let other = sim.leaf(&LeafSpec::default(), at(T0)).expect("leaf");
    let third = document(&sim, (T0 + 120) * 1000, 0xa2, &other, &other);
    assert_eq!(
        counted(&third, &root, at(T0 + 120), Some(&cache)),
        (Ok((T0 + 120) * 1000), 2),
        "a known bundle, a new leaf: the leaf and the COSE signature"
    );
    assert_eq!(cache.leaves_len(), 2);
}

#[test]
fn the_real_document_verified_again_costs_one_verification() {
    let root = NitroRoot::aws();
    let Some(doc) = cose(NSM) else { return };
    let now = at(timestamp_ms(NSM) / 1000);
    let cache = IntermediatesCache::new(8);
    let (cold, cold_n) = counted(&doc, &root, now, Some(&cache));
    assert!(cold.is_ok(), "{cold:?}");
    let (hit, hit_n) = counted(&doc, &root, now, Some(&cache));
    assert_eq!((hit, hit_n), (cold, 1));
    assert!(cold_n >= 3, "{cold_n}");
    assert_eq!(cache.leaf_hits(), 1);
}

#[test]
fn a_known_leaf_on_a_document_signed_by_another_key_or_altered_is_refused() {
    let (sim, root, leaf) = sim();
    let cache = IntermediatesCache::new(8);
    let genuine = document(&sim, T0 * 1000, 0xa0, &leaf, &leaf);
    assert!(verdict(&genuine, &root, at(T0), Some(&cache)).is_ok());
    let hits = cache.leaf_hits();
    // The attacker's own key, presenting the known enclave's certificate.
    let attacker = sim.leaf(&LeafSpec::default(), at(T0)).expect("leaf");
    let forged = document(&sim, (T0 + 1) * 1000, 0xa0, &leaf, &attacker);
    let mut altered = genuine.clone();
    let pcr0 = genuine
        .windows(48)
        .position(|w| w == [0xa0; 48])
        .expect("pcr0 in the document");
    altered[pcr0 + 5] ^= 1;
    for (what, bytes, now) in [("forged", &forged, T0 + 1), ("altered", &altered, T0)] {
        let (hit, n) = counted(bytes, &root, at(now), Some(&cache));
        assert_eq!(hit, Err(NitroError::Signature), "{what}");
        assert_eq!(n, 1, "{what}: the leaf was a hit, the COSE check still ran");
        assert_eq!(hit, verdict(bytes, &root, at(now), None), "{what}");
        assert_eq!(
            hit,
            verdict(bytes, &root, at(now), Some(&IntermediatesCache::new(8))),
            "{what}"
        );
    }
    assert_eq!(cache.leaf_hits(), hits + 2);
}

#[test]
fn an_expired_leaf_is_refused_on_a_hit() {
    let (sim, root, leaf) = sim();
    let cache = IntermediatesCache::new(8);
    let doc = document(&sim, T0 * 1000, 0xa0, &leaf, &leaf);
    assert!(verdict(&doc, &root, at(T0), Some(&cache)).is_ok());
    let late = T0 + u64::try_from(LEAF_LIFETIME_SECS).expect("fits") + 60;
    for now in [at(late), at(T0 - 3600)] {
        let hits = cache.leaf_hits();
        let hit = verdict(&doc, &root, now, Some(&cache));
        assert!(
            matches!(&hit, Err(NitroError::Expired { what, .. }) if what == "the signing certificate"),
            "{hit:?}"
        );
        assert_eq!(cache.leaf_hits(), hits + 1, "that was a hit");
        assert_eq!(hit, verdict(&doc, &root, now, None));
    }
}

#[test]
fn another_root_starts_cold_and_a_refused_leaf_is_not_remembered() {
    let (sim_a, root_a, leaf_a) = sim();
    let (sim_b, root_b, leaf_b) = sim();
    assert_ne!(root_a.der(), root_b.der());
    let cache = IntermediatesCache::new(8);
    let doc_a = document(&sim_a, T0 * 1000, 0xa0, &leaf_a, &leaf_a);
    assert!(verdict(&doc_a, &root_a, at(T0), Some(&cache)).is_ok());
    let (hits, leaf_hits) = (cache.hits(), cache.leaf_hits());
    // A's document under B's root: refused as without the cache, nothing found.
    let under_b = verdict(&doc_a, &root_b, at(T0), Some(&cache));
    assert!(
        matches!(under_b, Err(NitroError::Chain { .. })),
        "{under_b:?}"
    );
    assert_eq!(under_b, verdict(&doc_a, &root_b, at(T0), None));
    // B's own document through the same cache verifies cold: the whole chain.
    let doc_b = document(&sim_b, T0 * 1000, 0xb0, &leaf_b, &leaf_b);
    let full = u64::try_from(parse(&doc_b).expect("parses").doc.cabundle.len() + 1).expect("fits");
    assert_eq!(
        counted(&doc_b, &root_b, at(T0), Some(&cache)),
        (Ok(T0 * 1000), full)
    );
    assert_eq!((cache.hits(), cache.leaf_hits()), (hits, leaf_hits));
    // B's leaf inside A's bundle: A's intermediates do not sign it; refused, not remembered.
    let payload = encode_document(
        &DocSpec::new(T0 * 1000, [0xa0; 48]),
        &leaf_b.der,
        &sim_a.bundle(),
    );
    let mixed = sign_document(&payload, &leaf_b).expect("signs");
    let leaves = cache.leaves_len();
    for _ in 0..2 {
        let refused = verdict(&mixed, &root_a, at(T0), Some(&cache));
        assert!(
            matches!(&refused, Err(NitroError::Chain { what, .. }) if what == "the signing certificate"),
            "{refused:?}"
        );
        assert_eq!(refused, verdict(&mixed, &root_a, at(T0), None));
    }
    assert_eq!(
        cache.leaves_len(),
        leaves,
        "a refused leaf is never remembered"
    );
}

#[test]
fn a_known_leaf_changes_no_verdict_on_the_real_documents() {
    let root = NitroRoot::aws();
    let Some(docs) = [NSM, DSTACK, DSTACK_DEBUG]
        .iter()
        .map(|n| cose(n).map(|c| (*n, c)))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let warm = IntermediatesCache::new(8);
    for (name, doc) in &docs {
        let now = at(timestamp_ms(name) / 1000);
        assert!(verdict(doc, &root, now, Some(&warm)).is_ok(), "{name}");
    }
    let hits_before = warm.leaf_hits();
    for (name, doc) in &docs {
        let t = timestamp_ms(name) / 1000;
        let parsed = parse(doc).expect("parses");
        let pcr0 = offset_of(doc, parsed.doc.pcrs.get(0).expect("pcr0").0);
        let module = offset_of(doc, parsed.doc.module_id.as_bytes());
        let flip = |i: usize| {
            let mut m = doc.clone();
            m[i] ^= 0x01;
            m
        };
        // Each keeps the leaf (and bundle) byte for byte.
        let cases = [
            ("genuine", doc.clone()),
            ("signature", flip(doc.len() - 1)),
            ("pcr0", flip(pcr0 + 7)),
            ("module id", flip(module + 2)),
        ];
        for (what, bytes) in &cases {
            // At its time, after the leaf's ~3 h, and long after.
            for now in [at(t), at(t + 4 * 3600), at(T0)] {
                let plain = verdict(bytes, &root, now, None);
                let cold = verdict(bytes, &root, now, Some(&IntermediatesCache::new(8)));
                let hit = verdict(bytes, &root, now, Some(&warm));
                assert_eq!(plain, cold, "{name} {what} at {now}");
                assert_eq!(plain, hit, "{name} {what} at {now}");
                if *what != "genuine" && now == at(t) {
                    assert!(plain.is_err(), "{name} {what} must be refused");
                }
            }
        }
    }
    assert!(
        warm.leaf_hits() > hits_before,
        "the altered documents shared the cached leaves"
    );
}
