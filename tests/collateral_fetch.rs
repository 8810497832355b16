//! Collateral fetched from a local server speaking the Intel PCS v4 API (status codes,
//! issuer-chain headers and bodies shaped like the real ones, the real PCS bodies where the
//! fixtures have them): fixture quotes verify exactly as with the JSON bundle, one fetch
//! serves many verifications, refresh replaces the snapshot, failures never accept and
//! recovery works, `verify --collateral URL` works, and the proxy fetches on first use.

// Parts are used only by the tests that need the `sim` feature.
#![cfg_attr(not(feature = "sim"), allow(unused_imports, dead_code))]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::pccs::{Fault, Pccs, Served};
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::{appraise, Unverified};
use ratls_proxy::dcap::collateral::pcs::PckCa;
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::{CollateralCache, PcsEndpoint, RefreshPolicy};

/// A PCCS stand-in serving `served` per FMSPC (each PCK CRL for both PCK CAs), in TLS with
/// `tls` when given.
async fn mock(served: Vec<(&str, Served)>, tls: Option<Arc<rustls::ServerConfig>>) -> Pccs {
    let pcs = Pccs::start_with(tls).await;
    for (fmspc, s) in served {
        for ca in ["platform", "processor"] {
            pcs.serve_docs(ca, fmspc, &s);
        }
    }
    pcs
}

fn bundle(dir: &Path, name: &str) -> Collateral {
    Collateral::from_json(&common::read(dir, &format!("dcap/{name}.collateral.json")))
        .expect("bundle")
}

/// The real Intel PCS responses the fixtures keep for FMSPC 00606a000000 (2025-08-15).
fn real_pcs_responses(dir: &Path) -> Served {
    let mut s = Served::of(&bundle(dir, "sgx_v3_automata"));
    s.tcb.body = common::read(dir, "dcap/raw/pcs_sgx_tcb_00606a000000_2025-08-15.json");
    s.qe.body = common::read(dir, "dcap/raw/pcs_sgx_qe_identity_2025-08-15.json");
    s.pck_crl.body = common::read(dir, "dcap/raw/pcs_pckcrl_platform_2025-08-15.der");
    s.root_crl = common::read(dir, "dcap/raw/intel_sgx_root_ca_crl_2025-03-20.der");
    s
}

fn cache_for(url: &str, anchor: TrustAnchor, policy: RefreshPolicy) -> Arc<CollateralCache> {
    let endpoint = PcsEndpoint::pccs(url, None, None)
        .expect("endpoint")
        .with_timeout(Duration::from_secs(3));
    Arc::new(CollateralCache::new(endpoint, anchor, policy))
}

/// Appraises with the fetching cache the way the CLI and the proxy do: on a miss, fetch, retry once.
async fn appraise_fetching(
    cache: &Arc<CollateralCache>,
    quote: &[u8],
    at: i64,
    allow: bool,
) -> ratls_proxy::appraise::Appraisal {
    let policy = common::permissive(allow);
    let first = appraise(quote, cache.as_ref(), &policy, UnixTime(at));
    if first.outcome.as_ref().err().map(|r| r.code) == Some(RefusalCode::CollateralUnavailable)
        && cache.fetch_missing().await > 0
    {
        return appraise(quote, cache.as_ref(), &policy, UnixTime(at));
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_quotes_verify_with_fetched_collateral_exactly_as_with_the_bundle() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    // One server per case: a PCS serves one current QE identity and root CRL at a time.
    let cases = [
        (
            "sgx_v3_automata",
            "00606a000000",
            1_756_530_000,
            real_pcs_responses(&dir),
        ),
        (
            "sgx_v3_qvl",
            "00a067110000",
            1_751_623_200,
            Served::of(&bundle(&dir, "sgx_v3_qvl")),
        ),
    ];
    for (name, fmspc, at, served) in cases {
        let pcs = mock(vec![(fmspc, served)], None).await;
        let cache = cache_for(&pcs.url(), TrustAnchor::intel(), RefreshPolicy::default());
        let quote = common::read(&dir, &format!("dcap/{name}.quote.bin"));
        let fetched = appraise_fetching(&cache, &quote, at, false).await;
        let b = bundle(&dir, name);
        let anchor = TrustAnchor::intel();
        let direct = appraise(
            &quote,
            &Unverified {
                collateral: &b,
                anchor: &anchor,
            },
            &common::permissive(false),
            UnixTime(at),
        );
        assert!(fetched.is_accepted(), "{name}: {:?}", fetched.outcome);
        assert_eq!(fetched.tcb, direct.tcb, "{name}");
        assert_eq!(fetched.quote, direct.quote, "{name}");
        // One fetch serves every later verification.
        for _ in 0..20 {
            assert!(appraise_fetching(&cache, &quote, at, false)
                .await
                .is_accepted());
        }
        assert_eq!(pcs.tcb_hits(), 1, "{name}: one TCB info fetch");
        assert_eq!(cache.stats().failures, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_from_the_shell_fetches_from_a_pccs_url() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let pcs = mock(vec![("00606a000000", real_pcs_responses(&dir))], None).await;
    let quote = dir
        .join("dcap/sgx_v3_automata.quote.bin")
        .display()
        .to_string();
    let url = pcs.url();
    let out = tokio::task::spawn_blocking(move || {
        common::output([
            "verify",
            "--quote",
            &quote,
            "--collateral",
            &url,
            "--at",
            "1756530000",
            "--tcb-status",
            "SWHardeningNeeded",
            "--json",
        ])
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let j = common::json(&out);
    assert_eq!(j["tcb"]["status"], "SWHardeningNeeded");
    assert_eq!(
        j["tcb"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00615"])
    );
}

#[cfg(feature = "sim")]
mod with_sim {
    use super::*;
    use ratls_proxy::dcap::tcb::TcbStatus;
    use ratls_proxy::sim::{forge, EnclaveSpec, SimPki};

    struct Sim {
        pki: SimPki,
        quote: Vec<u8>,
        now: UnixTime,
    }

    fn sim() -> Sim {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let pck = pki.pck_leaf(TcbStatus::UpToDate, now).expect("pck");
        let quote = forge(&EnclaveSpec::default(), &[0; 64], &pck).expect("quote");
        Sim { pki, quote, now }
    }

    fn served(s: &Sim, issued: i64) -> Served {
        Served::of(&s.pki.collateral(UnixTime(issued), &[]).expect("collateral"))
    }

    const SIM_FMSPC: &str = "5ec0de000000";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_never_accept_and_fetching_recovers() {
        let s = sim();
        let pcs = mock(vec![(SIM_FMSPC, served(&s, s.now.0 - 60))], None).await;
        for fault in [
            Fault::Status(404),
            Fault::Status(500),
            Fault::Status(503),
            Fault::Garbage,
            Fault::TamperedTcbInfo,
        ] {
            pcs.set_fault(Some(fault));
            let cache = cache_for(
                &pcs.url(),
                s.pki.anchor().expect("anchor"),
                RefreshPolicy::default(),
            );
            let a = appraise_fetching(&cache, &s.quote, s.now.0, false).await;
            assert_eq!(
                a.outcome.as_ref().err().map(|r| r.code),
                Some(RefusalCode::CollateralUnavailable),
                "{fault:?}"
            );
            assert!(cache.stats().failures >= 1, "{fault:?}");
        }
        // Nothing listening at all.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let cache = cache_for(
            &down,
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        assert!(!appraise_fetching(&cache, &s.quote, s.now.0, false)
            .await
            .is_accepted());

        // A failed fetch backs off: the server answering again is not asked at once.
        pcs.set_fault(Some(Fault::Status(500)));
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        assert!(!appraise_fetching(&cache, &s.quote, s.now.0, false)
            .await
            .is_accepted());
        let fetches = cache.stats().fetches;
        pcs.set_fault(None);
        assert!(!appraise_fetching(&cache, &s.quote, s.now.0, false)
            .await
            .is_accepted());
        assert_eq!(cache.stats().fetches, fetches, "backing off, no new fetch");

        // Recovery: once the backoff has passed, the same cache fetches and accepts.
        pcs.set_fault(Some(Fault::Status(500)));
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy {
                min_backoff: Duration::ZERO,
                ..RefreshPolicy::default()
            },
        );
        assert!(!appraise_fetching(&cache, &s.quote, s.now.0, false)
            .await
            .is_accepted());
        pcs.set_fault(None);
        let a = appraise_fetching(&cache, &s.quote, s.now.0, false).await;
        assert!(a.is_accepted(), "{:?}", a.outcome);

        // The server goes away: the snapshot serves until its own expiry, then refuses.
        pcs.set_fault(Some(Fault::Status(500)));
        assert!(cache
            .ensure(
                (
                    ratls_proxy::dcap::ids::Fmspc::from_hex(SIM_FMSPC).expect("hex"),
                    PckCa::Platform,
                    ratls_proxy::dcap::quote::TeeType::Sgx,
                ),
                true
            )
            .await
            .is_err());
        assert!(appraise_fetching(&cache, &s.quote, s.now.0 + 86_400, false)
            .await
            .is_accepted());
        let late = appraise_fetching(&cache, &s.quote, s.now.0 + 31 * 86_400, false).await;
        assert_eq!(
            late.outcome.as_ref().err().map(|r| r.code),
            Some(RefusalCode::CollateralExpired)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_before_next_update_replaces_the_snapshot() {
        let s = sim();
        let first_issue = s.now.0 - 3600;
        let pcs = mock(vec![(SIM_FMSPC, served(&s, first_issue))], None).await;
        let policy = RefreshPolicy {
            interval: Duration::from_secs(1),
            ..RefreshPolicy::default()
        };
        let cache = cache_for(&pcs.url(), s.pki.anchor().expect("anchor"), policy);
        assert!(appraise_fetching(&cache, &s.quote, s.now.0, false)
            .await
            .is_accepted());
        let key = (
            ratls_proxy::dcap::ids::Fmspc::from_hex(SIM_FMSPC).expect("hex"),
            PckCa::Platform,
            ratls_proxy::dcap::quote::TeeType::Sgx,
        );
        let before = cache.ensure(key, false).await.expect("snapshot");
        assert_eq!(before.tcb_info.issue_date, UnixTime(first_issue));

        // The PCS publishes newer collateral; the background refresher picks it up.
        pcs.serve_docs("platform", SIM_FMSPC, &served(&s, s.now.0 - 60));
        let refresher = cache.spawn_refresher(Duration::from_millis(200));
        let mut replaced = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = cache.ensure(key, false).await.expect("snapshot");
            if now.tcb_info.issue_date == UnixTime(s.now.0 - 60) {
                replaced = true;
                break;
            }
        }
        refresher.abort();
        assert!(replaced, "the refresher replaced the snapshot");
        assert!(pcs.tcb_hits() >= 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collateral_never_moves_backwards() {
        let s = sim();
        let newer = s.now.0 - 60;
        let pcs = mock(vec![(SIM_FMSPC, served(&s, newer))], None).await;
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        let key = (
            ratls_proxy::dcap::ids::Fmspc::from_hex(SIM_FMSPC).expect("hex"),
            PckCa::Platform,
            ratls_proxy::dcap::quote::TeeType::Sgx,
        );
        cache.ensure(key, false).await.expect("first snapshot");
        let snapshot = ratls_proxy::appraise::CollateralSource::snapshot_id(cache.as_ref());
        // A replay of older, validly signed collateral (it would hide a TCB recovery).
        pcs.serve_docs("platform", SIM_FMSPC, &served(&s, newer - 7 * 86_400));
        let err = cache.ensure(key, true).await.expect_err("rollback refused");
        assert!(err.to_string().contains("rollback"), "{err}");
        let held = cache.ensure(key, false).await.expect("held");
        assert_eq!(
            held.tcb_info.issue_date,
            UnixTime(newer),
            "the newer snapshot stays"
        );
        assert_eq!(
            ratls_proxy::appraise::CollateralSource::snapshot_id(cache.as_ref()),
            snapshot,
            "nothing changed, so no verdict is judged again"
        );
        // Newer collateral is a change: verdicts made under the old snapshot are stale.
        let base = s
            .pki
            .collateral(UnixTime(newer + 30), &[])
            .expect("collateral");
        pcs.serve_docs("platform", SIM_FMSPC, &Served::of(&base));
        cache.ensure(key, true).await.expect("newer accepted");
        let after_tcb = ratls_proxy::appraise::CollateralSource::snapshot_id(cache.as_ref());
        assert_ne!(after_tcb, snapshot);

        // The same TCB info and QE identity bytes with a new PCK CRL (a revocation) are a
        // change too: pooled connections are judged again under it.
        let mut revoking = base.clone();
        revoking.pck_crl = s
            .pki
            .collateral(UnixTime(newer + 30), &[vec![0x42]])
            .expect("collateral")
            .pck_crl;
        pcs.serve_docs("platform", SIM_FMSPC, &Served::of(&revoking));
        cache.ensure(key, true).await.expect("a new CRL accepted");
        let after_crl = ratls_proxy::appraise::CollateralSource::snapshot_id(cache.as_ref());
        assert_ne!(after_crl, after_tcb, "a new CRL is a new snapshot");

        // A replayed older CRL (it would un-revoke a PCK) beside current TCB info is refused.
        let mut replay = base;
        replay.pck_crl = s
            .pki
            .collateral(UnixTime(newer - 86_400), &[])
            .expect("collateral")
            .pck_crl;
        pcs.serve_docs("platform", SIM_FMSPC, &Served::of(&replay));
        let err = cache
            .ensure(key, true)
            .await
            .expect_err("CRL rollback refused");
        assert!(err.to_string().contains("PCK CRL"), "{err}");
        assert_eq!(
            ratls_proxy::appraise::CollateralSource::snapshot_id(cache.as_ref()),
            after_crl
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_quote_whose_pck_chain_verifies_makes_the_cache_fetch() {
        let s = sim();
        let pcs = mock(vec![(SIM_FMSPC, served(&s, s.now.0 - 60))], None).await;
        // A quote from another "Intel": its PCK chain does not lead to our root.
        let forger = SimPki::generate(s.now).expect("pki");
        let pck = forger.pck_leaf(TcbStatus::UpToDate, s.now).expect("pck");
        let forged = forge(&EnclaveSpec::default(), &[0; 64], &pck).expect("quote");
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        let a = appraise_fetching(&cache, &forged, s.now.0, false).await;
        // Refused as what it is, a chain that does not verify, not as missing collateral.
        assert_eq!(
            a.outcome.as_ref().err().map(|r| r.code),
            Some(RefusalCode::ChainInvalid),
            "{:?}",
            a.outcome
        );
        assert_eq!(pcs.tcb_hits(), 0, "no fetch for an unverified platform");
        assert_eq!(cache.fetch_missing().await, 0);
        // The genuine quote of the same platform does make it fetch.
        let a = appraise_fetching(&cache, &s.quote, s.now.0, false).await;
        assert!(a.is_accepted(), "{:?}", a.outcome);
        assert_eq!(pcs.tcb_hits(), 1);
    }

    /// A TDX quote makes the cache fetch from the TDX endpoints (`/tdx/certification/v4/tcb`
    /// and `/qe/identity`); the mock serves the TDX platform's bundle only there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tdx_collateral_is_fetched_from_the_tdx_endpoints() {
        use ratls_proxy::sim::{forge_td, SimPlatform, TdSpec};
        let s = sim();
        let bundle = s
            .pki
            .collateral_for(SimPlatform::Tdx, UnixTime(s.now.0 - 60), &[])
            .expect("collateral");
        let pcs = mock(vec![("5EC0DE000081", Served::of(&bundle))], None).await;
        let pck = s
            .pki
            .pck_leaf_on(SimPlatform::Tdx, TcbStatus::UpToDate, s.now)
            .expect("pck");
        let quote = forge_td(&TdSpec::default(), &[0; 64], &pck).expect("quote");
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        let a = appraise_fetching(&cache, &quote, s.now.0, false).await;
        assert!(a.is_accepted(), "{:?}", a.outcome);
        assert_eq!(a.quote.as_ref().map(|q| q.tee.as_str()), Some("TDX"));
        assert!(pcs.tcb_hits() >= 1);
        assert!(
            cache
                .snapshots()
                .iter()
                .any(|snap| snap.key.2 == ratls_proxy::dcap::quote::TeeType::Tdx),
            "cached under the TDX key"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_are_coalesced_into_one_fetch() {
        let s = sim();
        let pcs = mock(vec![(SIM_FMSPC, served(&s, s.now.0 - 60))], None).await;
        let cache = cache_for(
            &pcs.url(),
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        let key = (
            ratls_proxy::dcap::ids::Fmspc::from_hex(SIM_FMSPC).expect("hex"),
            PckCa::Platform,
            ratls_proxy::dcap::quote::TeeType::Sgx,
        );
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = Arc::clone(&cache);
                tokio::spawn(async move { c.ensure(key, false).await.is_ok() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.expect("join"));
        }
        assert_eq!(pcs.tcb_hits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pccs_over_https_with_its_own_ca() {
        let s = sim();
        let key = rcgen::KeyPair::generate().expect("key");
        let ca_params = {
            let mut p =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
            p
        };
        let cert = ca_params.self_signed(&key).expect("cert");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("tls");
        let pcs = mock(
            vec![(SIM_FMSPC, served(&s, s.now.0 - 60))],
            Some(Arc::new(tls)),
        )
        .await;
        let url = format!("https://127.0.0.1:{}", pcs.addr.port());
        // Without the PCCS's CA the TLS connection fails: nothing is accepted.
        let untrusted = cache_for(
            &url,
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        );
        assert!(!appraise_fetching(&untrusted, &s.quote, s.now.0, false)
            .await
            .is_accepted());
        let endpoint =
            PcsEndpoint::pccs(&url, Some(cert.pem().as_bytes()), Some("secret-key".into()))
                .expect("endpoint");
        let cache = Arc::new(CollateralCache::new(
            endpoint,
            s.pki.anchor().expect("anchor"),
            RefreshPolicy::default(),
        ));
        let a = appraise_fetching(&cache, &s.quote, s.now.0, false).await;
        assert!(a.is_accepted(), "{:?}", a.outcome);
        assert!(!format!(
            "{cache:?}",
            cache = PcsEndpoint::pccs(&url, None, Some("secret-key".into())).expect("e")
        )
        .contains("secret"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_proxy_fetches_collateral_on_first_use() {
        let env = common::env();
        let enclave = common::start_sim(&env, ratls_proxy::sim::SimConfig::default()).await;
        let bundle =
            Collateral::from_json(&common::read(&env.dir, "pki/collateral.json")).expect("json");
        let pcs = mock(vec![(SIM_FMSPC, Served::of(&bundle))], None).await;
        let running = common::Harness::new(&env)
            .collateral_source(&pcs.url())
            .enclave_with(
                &["good.enclave.test"],
                enclave.addr(),
                &EnclaveSpec::default().mrenclave.to_string(),
                "",
            )
            .start()
            .await;
        let proxy = format!("http://{}", running.addr);
        for _ in 0..3 {
            let text = common::curl_text(&["-x", &proxy, "http://good.enclave.test/first"]).await;
            let j: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(j["path"], "/first");
        }
        assert_eq!(pcs.tcb_hits(), 1, "fetched once, on the first connection");
        drop(running);
    }
}
