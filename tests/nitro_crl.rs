//! AWS Nitro CRLs fetched from a real loopback HTTP server standing in for AWS's S3 buckets
//! (a mirror serving the distribution points' paths; anything else is 404): the sim chain's
//! CRLs are fetched, checked, cached and then revoke or clear the chain; garbage, an
//! oversized body, a server that never answers, a CRL signed by another CA, an expired
//! CRL and a replayed older CRL are refused and never kept; a failed point backs off. The
//! offline directory form, `if_available`, and the real document's distribution points.

#![cfg(feature = "sim")]

mod common;
mod nitro_common;

use std::time::Duration;

use common::canned::Canned;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::collateral::crl_points;
use ratls_proxy::nitro::error::NitroError;
use ratls_proxy::nitro::limits::MAX_CRL_LEN;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::{parse, verify, CrlPoint, NitroCollateral, NitroRoot};
use ratls_proxy::sim::nitro::{DocSpec, SimNitro};
use ratls_proxy::{NitroCrlCache, NitroCrlError, NitroCrlSpec, RefreshPolicy};

const NOW: i64 = 1_800_000_000;
const TS_MS: u64 = 1_800_000_000_250;
const DAY: i64 = 86_400;
/// The regional CA's serial in the sim chain (`cabundle[1]`).
const REGIONAL_SERIAL: &[u8] = &[0x10];

/// An S3 stand-in: path → body; anything else 404.
struct Bucket(Canned);

impl std::ops::Deref for Bucket {
    type Target = Canned;
    fn deref(&self) -> &Canned {
        &self.0
    }
}

impl Bucket {
    async fn start() -> Self {
        Self(Canned::start().await)
    }

    fn cache(&self, root: NitroRoot, mode: Revocation) -> NitroCrlCache {
        NitroCrlCache::new(
            root,
            &NitroCrlSpec::Mirror(self.url()),
            mode,
            RefreshPolicy::default(),
        )
        .expect("cache")
        .with_timeout(Duration::from_secs(1))
    }
}

struct World {
    sim: SimNitro,
    root: NitroRoot,
    doc: Vec<u8>,
}

fn world() -> World {
    let sim = SimNitro::generate(UnixTime(NOW)).expect("sim PKI");
    let root = sim.root().expect("root");
    let doc = sim
        .document(&DocSpec::new(TS_MS, [0xab; 48]))
        .expect("document");
    World { sim, root, doc }
}

impl World {
    /// A CRL from sim CA `issuer` (0: root, 1: regional) issued at `from`, valid 7 days.
    fn crl(&self, issuer: usize, from: i64, revoked: &[&[u8]]) -> Vec<u8> {
        self.sim
            .crl(issuer, revoked, UnixTime(from), UnixTime(from + 7 * DAY))
            .expect("crl")
    }

    /// The distribution points of the sim document's verified chain.
    fn points(&self) -> Vec<CrlPoint> {
        let parsed = parse(&self.doc).expect("parse");
        let verified = verify(&parsed, &self.root, UnixTime(NOW)).expect("verify");
        crl_points(&verified, &self.root)
    }

    /// The CRL verdict `c` gives the sim document at `now`.
    fn revocation(&self, c: &NitroCrlCache, now: i64) -> Result<Vec<String>, NitroError> {
        let parsed = parse(&self.doc).expect("parse");
        let verified = c.verify(&parsed, UnixTime(now))?;
        c.revocation(&verified, UnixTime(now)).map(|s| s.checked)
    }

    fn serve_good(&self, bucket: &Bucket, from: i64) {
        bucket.serve("/0.crl", self.crl(0, from, &[]));
        bucket.serve("/1.crl", self.crl(1, from, &[]));
    }
}

#[test]
fn the_sim_chain_names_two_distribution_points_each_issued_by_its_parent() {
    let w = world();
    let points = w.points();
    let urls: Vec<&str> = points.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://crl.sim.invalid/0.crl",
            "http://crl.sim.invalid/1.crl"
        ]
    );
    assert_eq!(points[0].what, "cabundle[1]");
    assert_eq!(points[0].issuer_subject, w.root.subject());
    assert_ne!(points[1].issuer_subject, w.root.subject());
}

#[test]
fn the_real_documents_name_aws_s3_distribution_points() {
    let Some(cose) = nitro_common::cose(nitro_common::DSTACK) else {
        return;
    };
    let at = UnixTime(
        i64::try_from(nitro_common::timestamp_ms(nitro_common::DSTACK) / 1000).expect("ts"),
    );
    let root = NitroRoot::aws();
    let parsed = parse(&cose).expect("parse");
    let verified = verify(&parsed, &root, at).expect("the real document verifies");
    let points = crl_points(&verified, &root);
    let urls: Vec<&str> = points.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://aws-nitro-enclaves-crl.s3.amazonaws.com/crl/ab4960cc-7d63-42bd-9e9f-59338cb67f84.crl",
            "http://crl-us-east-1-aws-nitro-enclaves.s3.us-east-1.amazonaws.com/crl/e7f1198f-2766-4ca0-85e5-7a75f05d9614.crl",
        ]
    );
    // The regional CA's CRL is the root's; the zonal CA's is the regional CA's.
    assert_eq!(points[0].issuer_subject, root.subject());
    assert_eq!(
        points[0].file_name(),
        Some("ab4960cc-7d63-42bd-9e9f-59338cb67f84.crl")
    );
    // Required by default, and nothing held: the real document fails closed.
    let c = NitroCrlCache::new(
        root,
        &NitroCrlSpec::Aws,
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache");
    let v = c.verify(&parsed, at).expect("verify");
    assert!(matches!(
        c.revocation(&v, at),
        Err(NitroError::RevocationUnknown { what }) if what == "cabundle[1]"
    ));
}

#[tokio::test]
async fn crls_are_fetched_checked_cached_and_then_clear_the_chain() {
    let w = world();
    let bucket = Bucket::start().await;
    w.serve_good(&bucket, NOW - DAY);
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    // Nothing held yet: revocation is required, so the chain fails closed.
    assert!(matches!(
        w.revocation(&c, NOW),
        Err(NitroError::RevocationUnknown { what }) if what == "cabundle[1]"
    ));
    assert_eq!(
        c.fetch_for(&w.points(), UnixTime(NOW))
            .await
            .expect("fetch"),
        2
    );
    assert_eq!(bucket.hits(), 2);
    assert_eq!(
        w.revocation(&c, NOW).expect("not revoked"),
        ["cabundle[1]", "cabundle[2]"]
    );
    // Held: asking again reads nothing.
    assert_eq!(
        c.fetch_for(&w.points(), UnixTime(NOW)).await.expect("held"),
        0
    );
    assert_eq!(bucket.hits(), 2);
    assert_eq!(c.held(), 2);
    assert_eq!(c.stats().failures, 0);
}

/// What the edge keeps (CRLs checked once, [`revocation::check_held`]) judges every chain
/// as the full check over the same CRLs' bytes does ([`revocation::check`]).
#[test]
fn checked_once_judges_as_checking_every_time() {
    use ratls_proxy::nitro::revocation::{self, CheckedCrl, Crl};
    let w = world();
    let zonal: &[u8] = &[0x11];
    let short = |issuer: usize, revoked: &[&[u8]]| {
        w.sim
            .crl(issuer, revoked, UnixTime(NOW - DAY), UnixTime(NOW + 3600))
            .expect("crl")
    };
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "both clear",
            vec![w.crl(0, NOW - DAY, &[]), w.crl(1, NOW - DAY, &[])],
        ),
        (
            "regional revoked",
            vec![
                w.crl(0, NOW - DAY, &[REGIONAL_SERIAL]),
                w.crl(1, NOW - DAY, &[]),
            ],
        ),
        (
            "zonal revoked",
            vec![w.crl(0, NOW - DAY, &[]), w.crl(1, NOW - DAY, &[zonal])],
        ),
        ("the root's only", vec![w.crl(0, NOW - DAY, &[])]),
        ("none", vec![]),
        ("ending in an hour", vec![short(0, &[]), short(1, &[])]),
    ];
    let parsed = parse(&w.doc).expect("parse");
    let points = w.points();
    for (name, ders) in &cases {
        let checked: Vec<CheckedCrl> = ders
            .iter()
            .map(|d| {
                points
                    .iter()
                    .find_map(|p| {
                        ratls_proxy::nitro::collateral::check_crl_for(d, p, UnixTime(NOW)).ok()
                    })
                    .expect("each CRL is some point's")
            })
            .collect();
        let held: Vec<&CheckedCrl> = checked.iter().collect();
        let crls: Vec<Crl<'_>> = ders.iter().map(|d| Crl::parse(d).expect("crl")).collect();
        for at in [NOW, NOW + 2 * 3600] {
            let v = verify(&parsed, &w.root, UnixTime(at)).expect("verify");
            for mode in [Revocation::Required, Revocation::IfSupplied] {
                let every_time = revocation::check(&v, &w.root, &crls, UnixTime(at), mode);
                let once = revocation::check_held(&v, &w.root, &held, UnixTime(at), mode);
                assert_eq!(once, every_time, "{name} at +{} s, {mode:?}", at - NOW);
            }
        }
    }
    // The cases mean something: revoked, expired and unknown all occur.
    let v = verify(&parsed, &w.root, UnixTime(NOW + 2 * 3600)).expect("verify");
    let expiring: Vec<CheckedCrl> = cases[5]
        .1
        .iter()
        .zip(&points)
        .map(|(d, p)| {
            ratls_proxy::nitro::collateral::check_crl_for(d, p, UnixTime(NOW)).expect("ok")
        })
        .collect();
    let held: Vec<&CheckedCrl> = expiring.iter().collect();
    assert!(matches!(
        revocation::check_held(
            &v,
            &w.root,
            &held,
            UnixTime(NOW + 2 * 3600),
            Revocation::Required
        ),
        Err(NitroError::CrlExpired { .. })
    ));
}

#[tokio::test]
async fn a_held_crl_past_its_next_update_is_collateral_expired() {
    let w = world();
    let bucket = Bucket::start().await;
    for (path, issuer) in [("/0.crl", 0), ("/1.crl", 1)] {
        bucket.serve(
            path,
            w.sim
                .crl(issuer, &[], UnixTime(NOW - DAY), UnixTime(NOW + 3600))
                .expect("crl"),
        );
    }
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    c.fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect("fetch");
    assert_eq!(w.revocation(&c, NOW + 1800).expect("current").len(), 2);
    // The document's signing certificate still lives; the CRLs do not.
    assert!(matches!(
        w.revocation(&c, NOW + 2 * 3600),
        Err(NitroError::CrlExpired { .. })
    ));
}

#[tokio::test]
async fn a_revoked_intermediate_is_refused() {
    let w = world();
    let bucket = Bucket::start().await;
    bucket.serve("/0.crl", w.crl(0, NOW - DAY, &[REGIONAL_SERIAL]));
    bucket.serve("/1.crl", w.crl(1, NOW - DAY, &[]));
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    c.fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect("fetch");
    let r = w.revocation(&c, NOW);
    assert!(
        matches!(&r, Err(NitroError::Revoked { what, .. }) if what == "cabundle[1]"),
        "{r:?}"
    );
    // And with revocation not required: a CRL held still revokes.
    let lax = bucket.cache(w.root.clone(), Revocation::IfSupplied);
    lax.fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect("fetch");
    assert!(matches!(
        w.revocation(&lax, NOW),
        Err(NitroError::Revoked { .. })
    ));
}

#[tokio::test]
async fn garbage_is_refused_never_kept_and_backs_off() {
    let w = world();
    let bucket = Bucket::start().await;
    bucket.serve("/0.crl", b"<html>AccessDenied</html>".to_vec());
    bucket.serve("/1.crl", w.crl(1, NOW - DAY, &[]));
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    let e = c
        .fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect_err("garbage");
    assert!(matches!(e, NitroCrlError::Invalid { .. }), "{e}");
    assert_eq!(e.code(), "collateral_unavailable");
    assert_eq!(c.held(), 1, "the good CRL is kept, the garbage not");
    assert!(matches!(
        w.revocation(&c, NOW),
        Err(NitroError::RevocationUnknown { what }) if what == "cabundle[1]"
    ));
    // Asked again at once: refused without a request (backoff).
    let hits = bucket.hits();
    let e = c
        .fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect_err("backoff");
    assert!(matches!(e, NitroCrlError::Unavailable(_)), "{e}");
    assert_eq!(bucket.hits(), hits);
    // After the backoff, the corrected CRL is fetched.
    bucket.serve("/0.crl", w.crl(0, NOW - DAY, &[]));
    c.fetch_for(&w.points(), UnixTime(NOW + 5))
        .await
        .expect("after the backoff");
    assert_eq!(w.revocation(&c, NOW + 5).expect("clear").len(), 2);
}

#[tokio::test]
async fn a_crl_signed_by_another_ca_or_expired_is_refused() {
    let w = world();
    let bucket = Bucket::start().await;
    // The regional CA's CRL served where the root's belongs: the wrong issuer.
    bucket.serve("/0.crl", w.crl(1, NOW - DAY, &[]));
    // The regional CA's own CRL, but its window ended yesterday.
    bucket.serve(
        "/1.crl",
        w.sim
            .crl(1, &[], UnixTime(NOW - 9 * DAY), UnixTime(NOW - DAY))
            .expect("crl"),
    );
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    let e = c
        .fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, NitroCrlError::Invalid { source: NitroError::CrlInvalid(why), .. } if why.contains("not by the certificate's issuer")),
        "{e}"
    );
    assert_eq!(c.held(), 0);
    assert_eq!(c.stats().failures, 2);
    // The other sim chain's root CRL (same names, another key): the signature fails.
    let other = world();
    bucket.serve("/0.crl", other.crl(0, NOW - DAY, &[]));
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    let e = c
        .fetch_for(&w.points()[..1], UnixTime(NOW))
        .await
        .expect_err("forged");
    assert!(
        matches!(
            &e,
            NitroCrlError::Invalid {
                source: NitroError::CrlInvalid(_),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(c.held(), 0);
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let w = world();
    let bucket = Bucket::start().await;
    bucket.serve("/0.crl", vec![0x30; MAX_CRL_LEN + 1]);
    let c = bucket.cache(w.root.clone(), Revocation::Required);
    let e = c
        .fetch_for(&w.points()[..1], UnixTime(NOW))
        .await
        .expect_err("oversized");
    assert!(matches!(e, NitroCrlError::Fetch(_)), "{e}");
    assert_eq!(c.held(), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let w = world();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = NitroCrlCache::new(
        w.root.clone(),
        &NitroCrlSpec::Mirror(format!("http://{addr}")),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache")
    .with_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let e = c
        .fetch_for(&w.points()[..1], UnixTime(NOW))
        .await
        .expect_err("slow");
    task.abort();
    assert!(
        matches!(&e, NitroCrlError::Fetch(f) if f.to_string().contains("no answer within")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(c.held(), 0);
}

#[tokio::test]
async fn an_older_crl_is_a_rollback_and_the_held_one_stays() {
    let w = world();
    let bucket = Bucket::start().await;
    w.serve_good(&bucket, NOW - DAY);
    let c = NitroCrlCache::new(
        w.root.clone(),
        &NitroCrlSpec::Mirror(bucket.url()),
        Revocation::Required,
        RefreshPolicy {
            interval: Duration::from_secs(60),
            ..RefreshPolicy::default()
        },
    )
    .expect("cache");
    c.fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect("fetch");
    // The bucket now replays an older, validly signed root CRL (from before a revocation).
    bucket.serve("/0.crl", w.crl(0, NOW - 2 * DAY, &[]));
    let refresh_at = NOW + 3600;
    assert_eq!(
        c.refresh(UnixTime(refresh_at)).await,
        1,
        "only /1.crl replaced"
    );
    assert_eq!(c.stats().rollbacks, 1);
    assert_eq!(w.revocation(&c, refresh_at).expect("held").len(), 2);
    // A newer one is admitted.
    bucket.serve("/0.crl", w.crl(0, NOW, &[REGIONAL_SERIAL]));
    assert_eq!(c.refresh(UnixTime(refresh_at + 3600)).await, 2);
    assert!(matches!(
        w.revocation(&c, refresh_at + 3600),
        Err(NitroError::Revoked { .. })
    ));
}

#[tokio::test]
async fn the_offline_directory_form() {
    let w = world();
    let dir = std::env::temp_dir().join(format!("nitro-crls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("0.crl"), w.crl(0, NOW - DAY, &[])).expect("write");
    let c = NitroCrlCache::new(
        w.root.clone(),
        &NitroCrlSpec::Dir(dir.clone()),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache");
    // 1.crl is missing: unavailable, and the chain fails closed.
    let e = c
        .fetch_for(&w.points(), UnixTime(NOW))
        .await
        .expect_err("missing");
    assert!(
        matches!(&e, NitroCrlError::Unavailable(m) if m.contains("1.crl")),
        "{e}"
    );
    assert!(matches!(
        w.revocation(&c, NOW),
        Err(NitroError::RevocationUnknown { what }) if what == "cabundle[2]"
    ));
    std::fs::write(dir.join("1.crl"), w.crl(1, NOW - DAY, &[])).expect("write");
    c.fetch_for(&w.points(), UnixTime(NOW + 10))
        .await
        .expect("both");
    assert_eq!(w.revocation(&c, NOW + 10).expect("clear").len(), 2);
    // An oversized file is refused.
    std::fs::write(dir.join("0.crl"), vec![0x30; MAX_CRL_LEN + 1]).expect("write");
    let e = c.refresh(UnixTime(NOW + 7 * 3600)).await;
    assert_eq!(e, 1, "only 1.crl replaced: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn if_available_reports_unchecked_certificates() {
    let w = world();
    let c = NitroCrlCache::new(
        w.root.clone(),
        &NitroCrlSpec::Aws,
        Revocation::IfSupplied,
        RefreshPolicy::default(),
    )
    .expect("cache");
    let parsed = parse(&w.doc).expect("parse");
    let v = c.verify(&parsed, UnixTime(NOW)).expect("verify");
    let status = c.revocation(&v, UnixTime(NOW)).expect("if available");
    assert!(status.checked.is_empty());
    assert_eq!(status.unchecked, ["cabundle[1]", "cabundle[2]"]);
}

mod fuzz {
    use proptest::prelude::*;
    use ratls_proxy::dcap::time::UnixTime;
    use ratls_proxy::nitro::collateral::check_crl_for;
    use ratls_proxy::nitro::CrlPoint;

    use super::{world, DAY, NOW};

    fn cases(default: u32) -> u32 {
        std::env::var("RATLS_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(256)))]

        /// A fetched body is kept only if it is the genuine CRL byte for byte: arbitrary
        /// bytes and every single-byte change of a real (sim) CRL are refused, never a panic.
        #[test]
        fn fetched_crl_bytes_are_kept_only_when_genuine(
            noise in proptest::collection::vec(any::<u8>(), 0..2048),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            static WORLD: std::sync::OnceLock<super::World> = std::sync::OnceLock::new();
            let w = WORLD.get_or_init(world);
            let point = w.points().remove(0);
            let now = UnixTime(NOW);
            prop_assert!(check_crl_for(&noise, &point, now).is_err());
            let genuine = w.crl(0, NOW - DAY, &[]);
            prop_assert!(check_crl_for(&genuine, &point, now).is_ok());
            let mut mutated = genuine.clone();
            let i = at.index(mutated.len());
            mutated[i] ^= xor;
            prop_assert!(check_crl_for(&mutated, &point, now).is_err(), "byte {} ^ {:#x} accepted", i, xor);
        }

        /// Distribution point URLs (signed, but still bytes from a certificate) never panic
        /// the file-name and path readers, and a file name is always a plain one.
        #[test]
        fn distribution_point_urls_on_arbitrary_text(url in ".{0,200}") {
            let p = CrlPoint { what: String::new(), url, issuer_subject: Vec::new(), issuer_point: Vec::new() };
            if let Some(name) = p.file_name() {
                prop_assert!(!name.is_empty() && !name.starts_with('.'));
                prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            }
            prop_assert!(p.path().starts_with('/'));
        }
    }
}
