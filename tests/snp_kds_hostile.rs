//! The SEV-SNP KDS cache against a hostile network or peer (a loopback server speaking KDS's
//! paths): a CRL from before a seen revocation is a rollback; a failed chain fetch is backed
//! off; made-up CHIP_IDs spend a small budget, not a KDS request each; a cache filled by one
//! chip at many TCBs still takes new chips; a directory without the product's CRL gives no
//! unchecked chain.

#![cfg(feature = "sim")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::snp::{sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, VekSpec, ASK_SERIAL};
use ratls_proxy::snp::report::SigningKey;
use ratls_proxy::snp::{Product, Report, SnpTrust, REPORT_LEN};
use ratls_proxy::{KdsCache, KdsEndpoint, RefreshPolicy, SnpCollateralSource};

const NOW: UnixTime = UnixTime(1_790_000_000);
const DAY: i64 = 86_400;

type Answers = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A KDS stand-in on loopback: path and query → (status, body); anything else 404.
struct Kds {
    addr: std::net::SocketAddr,
    answers: Answers,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kds {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answers: Answers = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a, h) = (Arc::clone(&answers), Arc::clone(&hits));
        let task = tokio::spawn(common::pccs::serve_http(listener, None, move |req| {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            h.lock().expect("hits").push(target.clone());
            let (status, body) = a
                .lock()
                .expect("answers")
                .get(&target)
                .cloned()
                .unwrap_or((404, Vec::new()));
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        }));
        Self {
            addr,
            answers,
            hits,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn endpoint(&self) -> KdsEndpoint {
        KdsEndpoint::at(&self.url(), None)
            .expect("endpoint")
            .with_timeout(Duration::from_secs(2))
    }

    fn serve(&self, url: &str, body: impl Into<Vec<u8>>) {
        let path = url.strip_prefix(&self.url()).expect("our URL").to_owned();
        self.answers
            .lock()
            .expect("answers")
            .insert(path, (200, body.into()));
    }

    fn hits(&self) -> usize {
        self.hits.lock().expect("hits").len()
    }
}

fn milan() -> (SimSnpPki, SnpTrust) {
    let pki = SimSnpPki::new(Product::Milan, NOW).expect("milan");
    let trust = SimSnpPki::trust(&[&pki]).expect("trust");
    (pki, trust)
}

fn crl_at(pki: &SimSnpPki, from: i64, revoked: &[u64]) -> Vec<u8> {
    pki.crl(UnixTime(from), UnixTime(from + 30 * DAY), revoked)
        .expect("crl")
}

/// Serves the chain, a CRL from `crl_from` and the sim chip's VCEK; a report it signs.
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
