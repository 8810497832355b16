//! The CRL high-water marks across a restart; the CRLs held across a reload.

use super::*;
use crate::nitro::collateral::crl_points;
use crate::nitro::{parse, verify};
use crate::sim::nitro::{DocSpec, SimNitro};
use crate::source::marks::Book;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// A sim Nitro PKI, its root, and the CRL points of a document it signed (verified at `NOW`).
fn sim_points() -> (SimNitro, NitroRoot, Vec<CrlPoint>) {
    let sim = SimNitro::generate(UnixTime(NOW)).expect("sim");
    let root = sim.root().expect("root");
    let doc = sim
        .document(&DocSpec::new(1_800_000_000_000, [0xab; 48]))
        .expect("doc");
    let parsed = parse(&doc).expect("parse");
    let verified = verify(&parsed, &root, UnixTime(NOW)).expect("verify");
    let points = crl_points(&verified, &root);
    (sim, root, points)
}

/// The marks in the state directory outlive the cache: a restarted proxy (a new cache,
/// the same marks file) refuses the older CRL its predecessor had moved past.
#[tokio::test]
async fn an_older_crl_is_refused_after_a_restart() {
    let (sim, root, points) = sim_points();
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

/// A full cache makes room rather than refusing the new point: the CRL past its nextUpdate
/// goes first, else the one read longest ago; an evicted point is fetched again on its next
/// miss, and its high-water mark still refuses an older CRL.
#[tokio::test]
async fn a_full_cache_evicts_the_expired_then_the_coldest() {
    let (sim, root, points) = sim_points();
    assert_eq!(points.len(), 2);
    let crls = std::env::temp_dir().join(format!("ratls-nitro-evict-{}", std::process::id()));
    std::fs::create_dir_all(&crls).expect("dirs");
    let write = |issuer: usize, from: i64, days: i64| {
        let der = sim
            .crl(issuer, &[], UnixTime(from), UnixTime(from + days * DAY))
            .expect("crl");
        std::fs::write(crls.join(format!("{issuer}.crl")), der).expect("write");
    };
    let cache = NitroCrlCache::new(
        root.clone(),
        &NitroCrlSpec::Dir(crls.clone()),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache")
    .with_held_cap(1);
    let (a, b) = (&points[0..1], &points[1..2]);
    write(0, NOW - DAY, 7);
    write(1, NOW - DAY, 7);
    // The coldest goes: `a` stored, then `b` takes its place.
    assert_eq!(cache.fetch_for(a, UnixTime(NOW)).await.expect("a"), 1);
    assert_eq!(cache.held_crls(a).len(), 1);
    assert_eq!(cache.fetch_for(b, UnixTime(NOW)).await.expect("b"), 1);
    assert_eq!(cache.held(), 1, "bounded");
    assert!(cache.held_crls(a).is_empty(), "a was evicted");
    assert_eq!(cache.held_crls(b).len(), 1);
    // `a` is fetched again on its miss; an older CRL for it is still a rollback.
    write(0, NOW - 2 * DAY, 7);
    let e = cache
        .fetch_for(a, UnixTime(NOW))
        .await
        .expect_err("rollback");
    assert_eq!(e.code(), "collateral_rollback", "{e}");
    write(0, NOW, 7);
    let after_backoff = UnixTime(NOW + 10);
    assert_eq!(cache.fetch_for(a, after_backoff).await.expect("a again"), 1);
    assert_eq!(cache.held_crls(a).len(), 1);

    // With two held, the expired one goes first even when read last.
    let two = NitroCrlCache::new(
        root,
        &NitroCrlSpec::Dir(crls.clone()),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache")
    .with_held_cap(2);
    write(0, NOW - DAY, 2);
    write(1, NOW - DAY, 30);
    assert_eq!(
        two.fetch_for(&points, UnixTime(NOW)).await.expect("both"),
        2
    );
    assert_eq!(two.held_crls(a).len(), 1, "a read last");
    // A third point (another URL of `b`'s CA, as a new regional CA would bring) at a time
    // when `a`'s CRL is past its nextUpdate.
    let later = UnixTime(NOW + 3 * DAY);
    let third = CrlPoint {
        url: "http://crl.example/third.crl".into(),
        ..points[1].clone()
    };
    let der = sim
        .crl(1, &[], UnixTime(NOW + 2 * DAY), UnixTime(NOW + 9 * DAY))
        .expect("crl");
    let checked = crate::nitro::collateral::check_crl_for(&der, &third, later).expect("check");
    {
        let mut held = two.held.write().expect("lock");
        held::store(&mut held, two.held_cap, &third, checked, later, 0);
    }
    assert_eq!(two.held(), 2);
    assert_eq!(two.held_crls(&[third]).len(), 1);
    assert!(two.held_crls(a).is_empty(), "the expired CRL went");
    assert_eq!(two.held_crls(b).len(), 1, "the current one stayed");
    let _ = std::fs::remove_dir_all(&crls);
}
