//! SEV-SNP collateral fetched from a local server speaking AMD KDS's paths (only the exact
//! URLs of the KDS specification answer; anything else is 404): the sim platform's chain,
//! CRL and VCEK verify and are cached; a 404, garbage, another chip's or another TCB's VCEK,
//! a slow server, an oversized body and a replayed older CRL are refused and never cached;
//! the real Milan fixture's VCEK, served at the URL its report names, verifies to the pinned
//! ARK. And the offline directory form. Against a hostile network or peer: a CRL older
//! than a seen revocation is a rollback; a failed chain fetch is backed off; made-up
//! CHIP_IDs spend a small budget, not a KDS request each; one chip at many TCBs does not
//! lock out another; a directory without the product's CRL gives no unchecked chain.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::canned::Canned;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::snp::{sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, VekSpec, ASK_SERIAL};
use ratls_proxy::snp::ids::ChipId;
use ratls_proxy::snp::report::SigningKey;
use ratls_proxy::snp::trust::ARK_MILAN_DER;
use ratls_proxy::snp::verify::verify;
use ratls_proxy::snp::{Product, Report, SnpError, SnpTrust, Tcb, REPORT_LEN};
use ratls_proxy::{KdsCache, KdsEndpoint, KdsError, RefreshPolicy, SnpCollateralSource, SnpFiles};

const NOW: UnixTime = UnixTime(1_790_000_000);
const DAY: i64 = 86_400;

/// A KDS stand-in: path and query → body; anything else 404.
struct Kds(Canned);

impl std::ops::Deref for Kds {
    type Target = Canned;
    fn deref(&self) -> &Canned {
        &self.0
    }
}

impl Kds {
    async fn start() -> Self {
        Self(Canned::start().await)
    }

    fn endpoint(&self) -> KdsEndpoint {
        KdsEndpoint::at(&self.url(), None)
            .expect("endpoint")
            .with_timeout(Duration::from_secs(2))
    }
}

/// The sim Milan and Turin PKIs and the roots pinning them.
struct World {
    milan: SimSnpPki,
    turin: SimSnpPki,
    trust: SnpTrust,
}

fn world() -> World {
    let milan = SimSnpPki::new(Product::Milan, NOW).expect("milan");
    let turin = SimSnpPki::new(Product::Turin, NOW).expect("turin");
    let trust = SimSnpPki::trust(&[&milan, &turin]).expect("trust");
    World {
        milan,
        turin,
        trust,
    }
}

fn crl_at(pki: &SimSnpPki, from: i64, revoked: &[u64]) -> Vec<u8> {
    pki.crl(UnixTime(from), UnixTime(from + 30 * DAY), revoked)
        .expect("crl")
}

/// Serves `pki`'s chain and a CRL issued at `crl_from`, and a VCEK made from `spec` at the
/// URL for the sim chip's and TCB's; returns a report signed by the VCEK for that URL.
fn serve_platform(kds: &Kds, pki: &SimSnpPki, crl_from: i64) -> [u8; REPORT_LEN] {
    let p = pki.product();
    let ep = kds.endpoint();
    kds.serve(
        &ep.cert_chain_url(p, SigningKey::Vcek),
        pki.cert_chain_pem(SigningKey::Vcek),
    );
    kds.serve(&ep.crl_url(p, SigningKey::Vcek), crl_at(pki, crl_from, &[]));
    let vek = pki
        .vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
        .expect("vcek");
    kds.serve(
        &ep.vcek_url(p, &sim_chip_id(p), &sim_tcb(p)),
        vek.der.clone(),
    );
    ReportSpec::new(p).sign(&vek).expect("sign")
}

fn cache(kds: &Kds, trust: &SnpTrust) -> KdsCache {
    KdsCache::new(kds.endpoint(), trust.clone(), RefreshPolicy::default())
}

#[tokio::test]
async fn a_sim_vcek_fetched_from_kds_verifies_and_is_then_read_from_the_cache() {
    let w = world();
    let kds = Kds::start().await;
    for pki in [&w.milan, &w.turin] {
        let bytes = serve_platform(&kds, pki, NOW.0 - DAY);
        let report = Report::parse(&bytes).expect("parses");
        let cache = cache(&kds, &w.trust);
        assert!(matches!(
            cache.vek_for(&report),
            Err(KdsError::Unavailable(_))
        ));
        let before = kds.hits();
        let vek = cache.fetch_for(&report, NOW).await.expect("fetched");
        assert_eq!(kds.hits() - before, 3, "cert_chain, crl, vcek");
        let v = verify(&report, &vek, NOW).expect("verifies");
        assert_eq!(v.identity.product, pki.product());
        assert!(vek.chain().crl_checked());
        // Then from the cache, without the network.
        let held = cache.vek_for(&report).expect("held");
        verify(&report, &held, NOW).expect("verifies");
        cache.fetch_for(&report, NOW).await.expect("held");
        assert_eq!(kds.hits() - before, 3, "no new fetch");
        assert_eq!(cache.stats().fetches, 2);
    }
}

#[tokio::test]
async fn what_a_hostile_or_broken_kds_serves_is_refused_and_never_cached() {
    let w = world();
    let kds = Kds::start().await;
    let ep = kds.endpoint();
    let p = Product::Milan;
    let bytes = serve_platform(&kds, &w.milan, NOW.0 - DAY);
    let report = Report::parse(&bytes).expect("parses");
    let vcek_url = ep.vcek_url(p, &sim_chip_id(p), &sim_tcb(p));
    let mut other_chip = sim_chip_id(p);
    other_chip.0[5] ^= 1;
    let older_tcb = Tcb {
        snp: 22,
        ..sim_tcb(p)
    };
    let vek = |chip: ChipId, tcb: Tcb| w.milan.vek(&VekSpec::vcek(chip, tcb)).expect("vek").der;
    type Check = fn(&KdsError) -> bool;
    let cases: Vec<(&str, Option<Vec<u8>>, Check)> = vec![
        ("404", None, |e| matches!(e, KdsError::Fetch(_))),
        ("garbage", Some(b"<html>maintenance</html>".to_vec()), |e| {
            matches!(e, KdsError::Invalid(_))
        }),
        (
            "another chip's VCEK",
            Some(vek(other_chip, sim_tcb(p))),
            |e| matches!(e, KdsError::Invalid(SnpError::ChipIdMismatch { .. })),
        ),
        (
            "another TCB's VCEK",
            Some(vek(sim_chip_id(p), older_tcb)),
            |e| matches!(e, KdsError::Invalid(SnpError::TcbMismatch { .. })),
        ),
        ("oversized", Some(vec![0x30; 300 * 1024]), |e| {
            matches!(e, KdsError::Fetch(_)) && e.to_string().contains("body")
        }),
    ];
    for (name, body, check) in cases {
        match body {
            Some(b) => kds.serve(&vcek_url, b),
            None => {
                kds.forget(&vcek_url);
            }
        }
        let cache = cache(&kds, &w.trust);
        let e = cache.fetch_for(&report, NOW).await.expect_err(name);
        assert!(check(&e), "{name}: {e}");
        assert_eq!(e.code(), "collateral_unavailable", "{name}");
        assert!(cache.vek_for(&report).is_err(), "{name}: nothing cached");
    }
    // The chain: an ARK copy that is not the pin, a CRL revoking the ASK.
    kds.serve(&vcek_url, vek(sim_chip_id(p), sim_tcb(p)));
    let chain_url = ep.cert_chain_url(p, SigningKey::Vcek);
    let foreign = SimSnpPki::new(Product::Milan, NOW).expect("another milan pki");
    let mut not_pinned =
        String::from_utf8(w.milan.cert_chain_pem(SigningKey::Vcek).into()).expect("pem");
    let own_ark = foreign.cert_chain_pem(SigningKey::Vcek);
    let (_, foreign_ark) = own_ark.split_at(own_ark.find("-----END").expect("end") + 26);
    let cut = not_pinned.find("-----END").expect("end") + 26;
    not_pinned.truncate(cut);
    not_pinned.push_str(foreign_ark);
    kds.serve(&chain_url, not_pinned);
    let e = cache(&kds, &w.trust)
        .fetch_for(&report, NOW)
        .await
        .expect_err("foreign ARK");
    assert!(
        matches!(
            e,
            KdsError::Invalid(SnpError::NotPinned { .. })
                | KdsError::Invalid(SnpError::CertificateSignature(_))
        ),
        "{e}"
    );
    kds.serve(&chain_url, w.milan.cert_chain_pem(SigningKey::Vcek));
    kds.serve(
        &ep.crl_url(p, SigningKey::Vcek),
        crl_at(&w.milan, NOW.0 - DAY, &[ASK_SERIAL]),
    );
    let e = cache(&kds, &w.trust)
        .fetch_for(&report, NOW)
        .await
        .expect_err("revoked");
    assert_eq!(e.code(), "revoked", "{e}");
}

#[tokio::test]
async fn a_kds_that_does_not_answer_in_time_is_a_bounded_failure() {
    let w = world();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let ep = KdsEndpoint::at(&format!("http://{addr}"), None)
        .expect("endpoint")
        .with_timeout(Duration::from_millis(500));
    let vek = w
        .milan
        .vek(&VekSpec::vcek(
            sim_chip_id(Product::Milan),
            sim_tcb(Product::Milan),
        ))
        .expect("vcek");
    let bytes = ReportSpec::new(Product::Milan).sign(&vek).expect("sign");
    let report = Report::parse(&bytes).expect("parses");
    let cache = KdsCache::new(ep, w.trust.clone(), RefreshPolicy::default());
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), cache.fetch_for(&report, NOW))
        .await
        .expect("bounded by the endpoint's timeout")
        .expect_err("no answer");
    assert!(matches!(e, KdsError::Fetch(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test]
async fn an_older_crl_replayed_at_refresh_is_refused_and_the_held_chain_stays() {
    let w = world();
    let kds = Kds::start().await;
    let ep = kds.endpoint();
    let crl_url = ep.crl_url(Product::Milan, SigningKey::Vcek);
    let bytes = serve_platform(&kds, &w.milan, NOW.0 - DAY);
    let report = Report::parse(&bytes).expect("parses");
    let policy = RefreshPolicy {
        interval: Duration::from_secs(3600),
        ..RefreshPolicy::default()
    };
    let cache = KdsCache::new(kds.endpoint(), w.trust.clone(), policy);
    let vek = cache.fetch_for(&report, NOW).await.expect("fetched");
    let first = vek.chain().crl_this_update();
    // Not due yet: nothing fetched.
    assert_eq!(cache.refresh(NOW).await, 0);
    // Due, but the source replays a CRL issued before the one held.
    let later = UnixTime(NOW.0 + 2 * 3600);
    kds.serve(&crl_url, crl_at(&w.milan, NOW.0 - 3 * DAY, &[]));
    assert_eq!(cache.refresh(later).await, 0);
    assert_eq!(cache.stats().rollbacks, 1);
    let held = cache.vek_for(&report).expect("still held");
    assert_eq!(held.chain().crl_this_update(), first);
    verify(&report, &held, later).expect("still verifies");
    // A newer CRL is served: the refresher waits for the failed chain's backoff (one
    // request per delay, not one per tick), then replaces it, and the held VCEK is verified
    // again under it.
    kds.serve(&crl_url, crl_at(&w.milan, NOW.0, &[]));
    let asked = kds.hits();
    assert_eq!(cache.refresh(later).await, 0, "backing off");
    assert_eq!(kds.hits(), asked, "nothing asked while backing off");
    let later = UnixTime(later.0 + 5);
    assert_eq!(cache.refresh(later).await, 1);
    let held = cache.vek_for(&report).expect("held");
    assert_eq!(held.chain().crl_this_update(), Some(NOW));
    // A fresh cache fetching the replayed CRL would not know better; the marks it shares
    // with the proxy (kept on disk) do: that is the wiring's part (docs/snp.md).
}

#[tokio::test]
async fn the_real_milan_vcek_served_at_the_url_its_report_names_verifies_to_the_pinned_ark() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let json = common::read(&dir, "dstack/sev-snp-attestation.json");
    let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let blob = hex::decode(value["attestation"].as_str().expect("hex")).expect("hex");
    let bytes = blob[4..4 + REPORT_LEN].to_vec();
    let report = Report::parse(&bytes).expect("parses");
    let vcek_pem = common::read(&dir, "dstack/sev_snp_vcek.pem");
    let vcek_der = ratls_proxy::dcap::pki::pem_chain(&vcek_pem, "vcek")
        .expect("pem")
        .remove(0);
    let ask_pem = String::from_utf8(common::read(&dir, "dstack/sev_snp_ask.pem")).expect("pem");
    let ark_pem = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(ARK_MILAN_DER);
        let lines: Vec<_> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    let kds = Kds::start().await;
    let ep = kds.endpoint();
    let tcb = report.tcbs(Product::Milan).expect("tcbs").reported;
    let url = ep.vcek_url(Product::Milan, &report.chip_id, &tcb);
    assert!(
        url.ends_with("?blSPL=04&teeSPL=00&snpSPL=23&ucodeSPL=213"),
        "{url}"
    );
    kds.serve(&url, vcek_der);
    kds.serve(
        &ep.cert_chain_url(Product::Milan, SigningKey::Vcek),
        format!("{ask_pem}{ark_pem}"),
    );
    let captured = UnixTime::parse("2026-06-17T12:00:00Z").expect("time");
    // The fixtures hold no CRL of AMD's: KDS without its CRL is not enough (fail closed).
    let cache = KdsCache::new(ep.clone(), SnpTrust::amd(), RefreshPolicy::default());
    let e = cache
        .fetch_for(&report, captured)
        .await
        .expect_err("no CRL");
    assert!(matches!(e, KdsError::Fetch(_)), "{e}");
    assert_eq!(e.code(), "collateral_unavailable");
    // The VCEK fetch itself, under the real ASK verified to the pinned ARK.
    let chain = ratls_proxy::snp::chain::VerifiedChain::verify(
        Product::Milan,
        SigningKey::Vcek,
        &ratls_proxy::dcap::pki::pem_chain(ask_pem.as_bytes(), "ask").expect("ask")[0],
        None,
        &SnpTrust::amd(),
    )
    .expect("the real ASK under the pinned ARK");
    let key = (Product::Milan, report.chip_id.0, tcb);
    let (_, vek) = ep
        .fetch_vcek(&key, Arc::new(chain))
        .await
        .expect("the real VCEK");
    verify(&report, &vek, captured).expect("the real report verifies");
}

#[test]
fn a_directory_of_pems_and_ders_in_any_order_verifies_and_the_newest_crl_stands() {
    let w = world();
    let dir = std::env::temp_dir().join(format!("ratls-snp-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let p = Product::Milan;
    let vek = w
        .milan
        .vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
        .expect("vcek");
    let write = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).expect("write");
    write(
        "cert_chain.pem",
        w.milan.cert_chain_pem(SigningKey::Vcek).as_bytes(),
    );
    write("zz-vcek.der", &vek.der);
    write("milan-new.crl", &crl_at(&w.milan, NOW.0 - DAY, &[]));
    write("milan-old.crl", &crl_at(&w.milan, NOW.0 - 5 * DAY, &[]));
    write("notes.txt", b"ignored");
    write(
        "junk.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let (files, skipped) = SnpFiles::load(&dir, &w.trust).expect("loads");
    assert_eq!(files.counts(), (1, 1));
    assert!(
        skipped.iter().any(|s| s.contains("milan-old.crl")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.contains("junk.pem")),
        "{skipped:?}"
    );
    let bytes = ReportSpec::new(p).sign(&vek).expect("sign");
    let report = Report::parse(&bytes).expect("parses");
    let held = files.vek_for(&report).expect("found by chip and TCB");
    assert_eq!(held.chain().crl_this_update(), Some(UnixTime(NOW.0 - DAY)));
    verify(&report, &held, NOW).expect("verifies");
    // Another chip's report finds nothing (not another chip's VCEK).
    let mut other = ReportSpec::new(p);
    other.chip_id[0] ^= 1;
    let other = other.sign(&vek).expect("sign");
    let e = files
        .vek_for(&Report::parse(&other).expect("parses"))
        .expect_err("none");
    assert_eq!(e.code(), "collateral_unavailable");
    // A CRL revoking the ASK takes the chain (and its VCEK) down whatever else is there.
    write(
        "revoking.crl",
        &crl_at(&w.milan, NOW.0 - 2 * DAY, &[ASK_SERIAL]),
    );
    // The directory still loads: its reports are refused `revoked`, not left unchecked.
    let (files, skipped) = SnpFiles::load(&dir, &w.trust).expect("loads, revoked");
    assert!(skipped.iter().any(|s| s.contains("revoked")), "{skipped:?}");
    assert_eq!(files.counts(), (0, 0));
    let e = files.vek_for(&report).expect_err("revoked");
    assert_eq!(e.code(), "revoked", "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ratls-proxy verify --quote REPORT --collateral URL`: the binary fetches from the KDS
/// stand-in (the sim ARK given as `--trust-root`), exit 0; another chip's VCEK served at the
/// report's URL is "could not check", exit 2, never an acceptance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fetches_from_a_kds_url_and_refuses_another_chips_vcek() {
    let w = world();
    let kds = Kds::start().await;
    let bytes = serve_platform(&kds, &w.milan, NOW.0 - DAY);
    let dir = std::env::temp_dir().join(format!("ratls-snp-kds-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let report = dir.join("report.bin");
    std::fs::write(&report, bytes).expect("write");
    let chain = w.milan.cert_chain_pem(SigningKey::Vcek);
    let ark = &chain[chain.find("-----END").expect("end") + 26..];
    let root = dir.join("ark.pem");
    std::fs::write(&root, ark).expect("write");
    let run = |report: std::path::PathBuf, root: std::path::PathBuf, url: String| {
        tokio::task::spawn_blocking(move || {
            common::output([
                "verify".as_ref(),
                "--quote".as_ref(),
                report.as_os_str(),
                "--collateral".as_ref(),
                url.as_ref(),
                "--trust-root".as_ref(),
                root.as_os_str(),
                "--at".as_ref(),
                std::ffi::OsStr::new(&NOW.0.to_string()),
                "--json".as_ref(),
            ])
        })
    };
    let out = run(report.clone(), root.clone(), kds.url())
        .await
        .expect("ran");
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    assert_eq!(common::json(&out)["quote"]["product"], "Milan");
    // The same URL now serves another chip's VCEK.
    let p = Product::Milan;
    let mut other = sim_chip_id(p);
    other.0[0] ^= 1;
    let wrong = w.milan.vek(&VekSpec::vcek(other, sim_tcb(p))).expect("vek");
    kds.serve(
        &kds.endpoint().vcek_url(p, &sim_chip_id(p), &sim_tcb(p)),
        wrong.der,
    );
    let out = run(report, root, kds.url()).await.expect("ran");
    assert_eq!(out.status.code(), Some(2), "{}", common::printed(&out));
    assert_eq!(common::json(&out)["code"], "collateral_unavailable");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chip whose VCEK could not be had is not asked for again before its backoff ends (a
/// peer presenting made-up CHIP_IDs must not make every handshake a KDS request); then it
/// is, and a VCEK served by then is taken.
#[tokio::test]
async fn a_failed_vcek_fetch_is_not_repeated_before_its_backoff_ends() {
    let w = world();
    let kds = Kds::start().await;
    let p = Product::Milan;
    let bytes = serve_platform(&kds, &w.milan, NOW.0 - DAY);
    let report = Report::parse(&bytes).expect("parses");
    let url = kds.endpoint().vcek_url(p, &sim_chip_id(p), &sim_tcb(p));
    let served = kds.forget(&url).expect("served");
    let policy = RefreshPolicy {
        min_backoff: Duration::from_secs(30),
        ..RefreshPolicy::default()
    };
    let cache = KdsCache::new(kds.endpoint(), w.trust.clone(), policy);
    let e = cache.fetch_for(&report, NOW).await.expect_err("404");
    assert!(matches!(e, KdsError::Fetch(_)), "{e}");
    let hits = kds.hits();
    kds.serve(&url, served);
    for later in [0, 29] {
        let e = cache
            .fetch_for(&report, UnixTime(NOW.0 + later))
            .await
            .expect_err("backing off");
        assert!(matches!(e, KdsError::Unavailable(_)), "{e}");
    }
    assert_eq!(kds.hits(), hits, "KDS not asked while backing off");
    let vek = cache
        .fetch_for(&report, UnixTime(NOW.0 + 30))
        .await
        .expect("asked again");
    verify(&report, &vek, NOW).expect("verifies");
}

/// The sim Milan PKI alone and the root pinning it.
fn milan() -> (SimSnpPki, SnpTrust) {
    let pki = SimSnpPki::new(Product::Milan, NOW).expect("milan");
    let trust = SimSnpPki::trust(&[&pki]).expect("trust");
    (pki, trust)
}

/// A CRL revoking the ASK raises the high-water mark before the product is refused
/// `revoked`: a network replaying the older (validly signed, non-revoking) CRL gets a
/// rollback, never the ASK back.
#[tokio::test]
async fn a_crl_older_than_a_seen_revocation_is_a_rollback() {
    let (pki, trust) = milan();
    let kds = Kds::start().await;
    let crl_url = kds.endpoint().crl_url(Product::Milan, SigningKey::Vcek);
    let bytes = serve_platform(&kds, &pki, NOW.0 - DAY);
    let report = Report::parse(&bytes).expect("parses");
    let policy = RefreshPolicy {
        interval: Duration::from_secs(3600),
        ..RefreshPolicy::default()
    };
    let cache = KdsCache::new(kds.endpoint(), trust, policy);
    cache.fetch_for(&report, NOW).await.expect("fetched");

    // AMD revokes the ASK: the refresh sees it, every report is refused `revoked`.
    kds.serve(&crl_url, crl_at(&pki, NOW.0, &[ASK_SERIAL]));
    let later = UnixTime(NOW.0 + 2 * 3600);
    assert_eq!(cache.refresh(later).await, 0);
    let e = cache.vek_for(&report).expect_err("revoked");
    assert_eq!(e.code(), "revoked", "{e}");

    // The network replays the CRL from before the revocation.
    kds.serve(&crl_url, crl_at(&pki, NOW.0 - DAY, &[]));
    let replay = cache.fetch_for(&report, UnixTime(later.0 + 60)).await;
    let after = cache.vek_for(&report);
    assert!(
        replay.is_err() && after.is_err(),
        "a CRL older than the revoking one already seen was admitted: fetch {:?}, vek_for {:?}, rollbacks counted {}",
        replay.as_ref().map(|_| "Ok(vek)").map_err(|e| e.code()),
        after.as_ref().map(|_| "Ok(vek)").map_err(|e| e.code()),
        cache.stats().rollbacks
    );
}

/// When the product's chain (cert_chain or CRL) cannot be had, the failure is backed off:
/// handshake misses (vek_for, then the pool's fetch_missing) do not each fetch the chain and
/// the CRL again.
#[tokio::test]
async fn a_failed_chain_fetch_is_backed_off_like_a_failed_vcek_fetch() {
    let (pki, trust) = milan();
    let kds = Kds::start().await;
    // Only the VCEK is served: the chain and CRL answer 404.
    let p = Product::Milan;
    let vek = pki
        .vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
        .expect("vcek");
    kds.serve(
        &kds.endpoint().vcek_url(p, &sim_chip_id(p), &sim_tcb(p)),
        vek.der.clone(),
    );
    let bytes = ReportSpec::new(p).sign(&vek).expect("sign");
    let report = Report::parse(&bytes).expect("parses");
    let policy = RefreshPolicy {
        min_backoff: Duration::from_secs(300),
        ..RefreshPolicy::default()
    };
    let cache = KdsCache::new(kds.endpoint(), trust, policy);
    let mut per_attempt = Vec::new();
    for _handshake in 0..5 {
        let before = kds.hits();
        let e = cache.vek_for(&report).expect_err("nothing held");
        assert_eq!(e.code(), "collateral_unavailable");
        cache.fetch_missing().await;
        per_attempt.push(kds.hits() - before);
    }
    let total: usize = per_attempt.iter().sum();
    assert!(
        total <= 2,
        "KDS requests per handshake with the chain unavailable: {per_attempt:?} (total {total}); expected the first failure to back off"
    );
}

/// The CHIP_ID is the upstream's to choose before any signature is checked: a fresh made-up
/// one on each handshake spends the budget for new chips, not a KDS request each.
#[tokio::test]
async fn made_up_chip_ids_do_not_each_cost_a_kds_request() {
    let (pki, trust) = milan();
    let kds = Kds::start().await;
    let bytes = serve_platform(&kds, &pki, NOW.0 - DAY);
    let report = Report::parse(&bytes).expect("parses");
    let cache = KdsCache::new(kds.endpoint(), trust, RefreshPolicy::default());
    cache
        .fetch_for(&report, NOW)
        .await
        .expect("chain and one VCEK");
    let before = kds.hits();
    let handshakes = 20u8;
    for i in 0..handshakes {
        // Unsigned: vek_for is reached before any signature check.
        let mut spec = ReportSpec::new(Product::Milan);
        spec.chip_id = [i.wrapping_add(1); 64];
        let forged = spec.bytes();
        let r = Report::parse(&forged).expect("parses");
        assert!(cache.vek_for(&r).is_err());
        cache.fetch_missing().await;
    }
    let asked = kds.hits() - before;
    assert!(
        asked < usize::from(handshakes) / 2,
        "{asked} KDS requests for {handshakes} handshakes with made-up CHIP_IDs"
    );
}

/// The TCB asked for is read from the unsigned report and KDS serves a chip's VCEK for any
/// TCB: one hostile host on a real chip asking for its VCEK at 1024 TCBs only replaces its
/// own keys, and an honest guest on another chip still gets its VCEK.
#[tokio::test]
async fn a_full_vcek_cache_does_not_lock_out_new_chips() {
    use ratls_proxy::snp::ids::ChipId;
    use ratls_proxy::snp::product::TcbVersion;
    let (pki, trust) = milan();
    let kds = Kds::start().await;
    serve_platform(&kds, &pki, NOW.0 - DAY);
    let p = Product::Milan;
    let ep = kds.endpoint();
    let cache = KdsCache::new(kds.endpoint(), trust, RefreshPolicy::default());
    // The hostile host: its own chip, 1024 made-up TCBs (KDS answers each with a VCEK).
    let started = std::time::Instant::now();
    for i in 0..1024u32 {
        let tcb = ratls_proxy::snp::Tcb {
            microcode: u8::try_from(i % 256).expect("u8"),
            snp: u8::try_from(i / 256).expect("u8"),
            ..sim_tcb(p)
        };
        let vek = pki.vek(&VekSpec::vcek(sim_chip_id(p), tcb)).expect("vcek");
        kds.serve(&ep.vcek_url(p, &sim_chip_id(p), &tcb), vek.der.clone());
        let mut spec = ReportSpec::new(p);
        spec.reported_tcb = TcbVersion::encode(&tcb, p.tcb_layout());
        let bytes = spec.bytes();
        let r = Report::parse(&bytes).expect("parses");
        cache
            .fetch_for(&r, NOW)
            .await
            .expect("a VCEK for the made-up TCB");
    }
    eprintln!("filled 1024 VCEKs in {:?}", started.elapsed());
    // An honest guest on another chip, its VCEK served by KDS.
    let other = ChipId([0x42; 64]);
    let vek = pki.vek(&VekSpec::vcek(other, sim_tcb(p))).expect("vcek");
    kds.serve(&ep.vcek_url(p, &other, &sim_tcb(p)), vek.der.clone());
    let mut spec = ReportSpec::new(p);
    spec.chip_id = other.0;
    let honest = spec.sign(&vek).expect("sign");
    let honest = Report::parse(&honest).expect("parses");
    let before = kds.hits();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(
            cache
                .fetch_for(&honest, NOW)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    }
    assert!(
        outcomes.iter().all(Result::is_ok),
        "an honest new chip after the cache filled: {outcomes:?}, KDS requests {}",
        kds.hits() - before
    );
}

/// As KDS refuses a chain without its CRL ("a network that could drop the CRL could hide a
/// revocation"), a collateral directory with no CRL for the product gives no chain its
/// guests could be accepted under.
#[test]
fn a_directory_without_the_product_crl_is_not_accepted_unchecked() {
    use ratls_proxy::snp::verify::verify;
    use ratls_proxy::SnpFiles;
    let (pki, trust) = milan();
    let dir = std::env::temp_dir().join(format!("ratls-snp-nocrl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let p = Product::Milan;
    let vek = pki
        .vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
        .expect("vcek");
    std::fs::write(
        dir.join("cert_chain.pem"),
        pki.cert_chain_pem(SigningKey::Vcek),
    )
    .expect("write");
    std::fs::write(dir.join("vcek.der"), &vek.der).expect("write");
    let loaded = SnpFiles::load(&dir, &trust);
    // `verify`'s one-shot form takes the chain without a CRL, and says so.
    let lenient = SnpFiles::load_without_crl(&dir, &trust);
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = ReportSpec::new(p).sign(&vek).expect("sign");
    let report = Report::parse(&bytes).expect("parses");
    match loaded {
        Err(e) => assert!(e.contains("no Milan CRL in the directory"), "{e}"),
        Ok((files, skipped)) => {
            let accepted = files
                .vek_for(&report)
                .ok()
                .and_then(|held| verify(&report, &held, NOW).ok().map(|_| held));
            assert!(
                accepted.is_none(),
                "accepted with no product CRL (crl_this_update {:?}); load notes: {skipped:?}",
                accepted.and_then(|h| h.chain().crl_this_update())
            );
        }
    }
    let (files, notes) = lenient.expect("verify's form loads");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("without a revocation check")),
        "{notes:?}"
    );
    let held = files.vek_for(&report).expect("held");
    assert!(!held.chain().crl_checked());
}
