//! The CRL high-water marks across a restart; the CRLs held across a reload.

use super::*;
use crate::nitro::collateral::crl_points;
use crate::nitro::{parse, verify};
use crate::sim::nitro::{DocSpec, SimNitro};
use crate::source::marks::Book;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// The marks in the state directory outlive the cache: a restarted proxy (a new cache,
/// the same marks file) refuses the older CRL its predecessor had moved past.
#[tokio::test]
async fn an_older_crl_is_refused_after_a_restart() {
    let sim = SimNitro::generate(UnixTime(NOW)).expect("sim");
    let root = sim.root().expect("root");
    let doc = sim
        .document(&DocSpec::new(1_800_000_000_000, [0xab; 48]))
        .expect("doc");
    let parsed = parse(&doc).expect("parse");
    let verified = verify(&parsed, &root, UnixTime(NOW)).expect("verify");
    let points = crl_points(&verified, &root);
    let crls = std::env::temp_dir().join(format!("ratls-nitro-crls-{}", std::process::id()));
    let state = crls.join("state");
    std::fs::create_dir_all(&state).expect("dirs");
    let write = |issuer: usize, from: i64| {
        let der = sim
            .crl(issuer, &[], UnixTime(from), UnixTime(from + 7 * DAY))
            .expect("crl");
        std::fs::write(crls.join(format!("{issuer}.crl")), der).expect("write");
    };
    let cache = |marks: Arc<Marks>| {
        NitroCrlCache::new(
            root.clone(),
            &NitroCrlSpec::Dir(crls.clone()),
            Revocation::Required,
            RefreshPolicy::default(),
        )
        .expect("cache")
        .with_marks(marks)
    };
    write(0, NOW - DAY);
    write(1, NOW - DAY);
    let first = cache(Arc::new(
        Marks::load(&state, Book::Standard).expect("marks"),
    ));
    assert_eq!(
        first
            .fetch_for(&points, UnixTime(NOW))
            .await
            .expect("fetch"),
        2
    );
    drop(first);
    // The directory now holds an older root CRL, validly signed.
    write(0, NOW - 2 * DAY);
    let restarted = cache(Arc::new(
        Marks::load(&state, Book::Standard).expect("marks"),
    ));
    let e = restarted
        .fetch_for(&points, UnixTime(NOW))
        .await
        .expect_err("rollback");
    assert!(matches!(e, NitroCrlError::Rollback(_)), "{e}");
    assert_eq!(e.code(), "collateral_rollback");
    assert_eq!(restarted.stats().rollbacks, 1);
    // Without the marks file, the same cache would have taken it.
    let forgetful = cache(Arc::new(Marks::in_memory()));
    assert_eq!(
        forgetful
            .fetch_for(&points, UnixTime(NOW))
            .await
            .expect("no marks"),
        2
    );
    // A reload keeping the source adopts what was held; another root adopts nothing.
    let reloaded = cache(Arc::new(Marks::in_memory()));
    reloaded.adopt(&forgetful);
    assert_eq!(reloaded.held(), 2);
    assert_eq!(reloaded.held_crls(&points).len(), 2);
    let other = SimNitro::generate(UnixTime(NOW)).expect("sim");
    let stranger = NitroCrlCache::new(
        other.root().expect("root"),
        &NitroCrlSpec::Dir(crls.clone()),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache");
    stranger.adopt(&forgetful);
    assert_eq!(stranger.held(), 0);
    let _ = std::fs::remove_dir_all(&crls);
}
