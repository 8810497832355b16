//! The Nitro verified-intermediates cache changes no verdict: on the real documents and on
//! mutated copies that share their (cached) CA bundle, `verify_cached` with a cold cache,
//! with a cache warmed by the genuine documents, and `verify` without one all agree, error
//! for error; intermediates are still refused by time on a hit, a mutated bundle misses,
//! and a refused chain is never remembered.

mod nitro_common;

use nitro_common::{cose, offset_of, timestamp_ms, DSTACK, DSTACK_DEBUG, NSM};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::error::NitroError;
use ratls_proxy::nitro::{parse, verify, verify_cached, IntermediatesCache, NitroRoot};

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

fn at(name: &str) -> UnixTime {
    UnixTime(i64::try_from(timestamp_ms(name) / 1000).expect("fits"))
}

/// Mutated copies of a genuine document that keep its CA bundle byte for byte.
fn mutations(doc: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let parsed = parse(doc).expect("parses");
    let flip = |i: usize| {
        let mut m = doc.to_vec();
        m[i] ^= 0x01;
        m
    };
    let leaf = offset_of(doc, parsed.doc.certificate);
    let pcr0 = offset_of(doc, parsed.doc.pcrs.get(0).expect("pcr0").0);
    let module = offset_of(doc, parsed.doc.module_id.as_bytes());
    vec![
        ("signature", flip(doc.len() - 1)),
        (
            "leaf signature",
            flip(leaf + parsed.doc.certificate.len() - 1),
        ),
        ("leaf key", flip(leaf + parsed.doc.certificate.len() - 120)),
        ("pcr0", flip(pcr0 + 7)),
        ("module id", flip(module + 2)),
    ]
}

#[test]
fn a_cache_hit_changes_no_verdict_on_real_and_mutated_documents() {
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
        assert!(verdict(doc, &root, at(name), Some(&warm)).is_ok(), "{name}");
    }
    // All three documents come from one region's intermediates... or not: whatever they
    // share, every bundle is remembered once.
    assert!(!warm.is_empty() && warm.len() <= 3);
    let hits_before = warm.hits();
    for (name, doc) in &docs {
        let late = UnixTime(at(name).0 + 4 * 3600);
        let times = [at(name), late, UnixTime(1_800_000_000)];
        let mut cases = mutations(doc);
        cases.push(("genuine", doc.clone()));
        for (what, bytes) in &cases {
            for now in times {
                let plain = verdict(bytes, &root, now, None);
                let cold = verdict(bytes, &root, now, Some(&IntermediatesCache::new(8)));
                let hit = verdict(bytes, &root, now, Some(&warm));
                assert_eq!(plain, cold, "{name} {what} at {now}");
                assert_eq!(plain, hit, "{name} {what} at {now}");
                if *what != "genuine" && now == at(name) {
                    assert!(plain.is_err(), "{name} {what} must be refused");
                }
            }
        }
    }
    assert!(
        warm.hits() > hits_before,
        "the mutated documents shared the cached bundles"
    );
}

#[test]
fn intermediates_are_refused_by_time_on_a_hit() {
    let root = NitroRoot::aws();
    let Some(doc) = cose(DSTACK) else { return };
    let cache = IntermediatesCache::new(4);
    assert!(verdict(&doc, &root, at(DSTACK), Some(&cache)).is_ok());
    let hits = cache.hits();
    // 2026-06-01: cabundle[1] (valid to 2026-01-10) has expired; a hit does not hide it.
    let later = UnixTime(1_780_272_000);
    let hit = verdict(&doc, &root, later, Some(&cache));
    assert!(
        matches!(&hit, Err(NitroError::Expired { what, .. }) if what == "cabundle[1]"),
        "{hit:?}"
    );
    assert_eq!(hit, verdict(&doc, &root, later, None));
    assert_eq!(cache.hits(), hits + 1, "that was a hit");
    // Before the intermediates were issued, too.
    let early = UnixTime(1_700_000_000);
    assert_eq!(
        verdict(&doc, &root, early, Some(&cache)),
        verdict(&doc, &root, early, None)
    );
}

#[test]
fn a_mutated_bundle_misses_and_a_refused_chain_is_not_remembered() {
    let root = NitroRoot::aws();
    let Some(doc) = cose(DSTACK) else { return };
    let parsed = parse(&doc).expect("parses");
    let inter = parsed.doc.cabundle[2];
    let mut bad = doc.clone();
    bad[offset_of(&doc, inter) + inter.len() - 1] ^= 0x01;
    drop(parsed);
    let cache = IntermediatesCache::new(4);
    let refused = verdict(&bad, &root, at(DSTACK), Some(&cache));
    assert!(
        matches!(&refused, Err(NitroError::Chain { what, .. }) if what == "cabundle[2]"),
        "{refused:?}"
    );
    assert!(cache.is_empty(), "a refused chain is never remembered");
    // The genuine bundle fills it; the mutated one still misses and is still refused.
    assert!(verdict(&doc, &root, at(DSTACK), Some(&cache)).is_ok());
    assert_eq!(cache.len(), 1);
    let hits = cache.hits();
    assert_eq!(verdict(&bad, &root, at(DSTACK), Some(&cache)), refused);
    assert_eq!(cache.hits(), hits, "another bundle is another key");
    // A document whose leaf is bad is refused and leaves nothing new behind.
    let other = IntermediatesCache::new(4);
    let (_, leaf_bad) = mutations(&doc).remove(1);
    assert!(verdict(&leaf_bad, &root, at(DSTACK), Some(&other)).is_err());
    assert!(other.is_empty());
}
