//! RA-TLS over real sockets and real TLS: `ratls-proxy verify https://` (the real binary)
//! against running sim enclaves for every sim flag, and the attested connector: replayed
//! certificates, the verdict cache, policy changes and expiry.

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::SnapshotId;
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::ids::{MrEnclave, MrSigner};
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::ratls::client::{connect, ConnectError};
use ratls_proxy::ratls::{BindingMode, GenerationId, RaTlsVerifier, VerdictCache};
use ratls_proxy::sim::{EnclaveSpec, SimBinding, SimConfig, SimEnclave};
use serde_json::Value;

use common::{command, env, start_sim, verify_https, Env};

async fn sim(env: &Env, config: SimConfig) -> SimEnclave {
    start_sim(env, config).await
}

/// `ratls-proxy verify https://… --json` with the sim root and collateral bundle.
async fn verify(env: &Env, sim: &SimEnclave, extra: &[&str]) -> (i32, Value) {
    verify_https(env, sim.addr(), env.dir.join("pki/collateral.json"), extra).await
}

fn config(f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut c = SimConfig::default();
    f(&mut c);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_https_gives_the_expected_verdict_for_every_sim_flag() {
    let env = env();
    let other = "ab".repeat(32);

    let good = sim(&env, SimConfig::default()).await;
    let (code, j) = verify(&env, &good, &[]).await;
    assert_eq!((code, j["verdict"].as_str()), (0, Some("accepted")), "{j}");
    assert_eq!(j["binding"], "cosmian");
    assert_eq!(j["tcb"]["status"], "UpToDate");
    assert_eq!(
        j["quote"]["mrenclave"],
        EnclaveSpec::default().mrenclave.to_string()
    );
    assert_eq!(j["cert_sha256"].as_str().map(str::len), Some(64));
    let (code, j) = verify(&env, &good, &["--mrenclave", &other]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("mrenclave_mismatch")),
        "{j}"
    );
    assert!(j["reasons"][0].as_str().expect("reason").contains(&other));
    let (code, _) = verify(
        &env,
        &good,
        &[
            "--mrenclave",
            &other,
            "--mrenclave",
            &EnclaveSpec::default().mrenclave.to_string(),
        ],
    )
    .await;
    assert_eq!(code, 0, "any of several allowed MRENCLAVEs");
    let (code, j) = verify(&env, &good, &["--mrsigner", &other]).await;
    assert_eq!((code, j["code"].as_str()), (1, Some("mrsigner_mismatch")));
    let (code, j) = verify(&env, &good, &["--isv-prod-id", "9"]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("isv_prod_id_mismatch"))
    );
    let (code, j) = verify(&env, &good, &["--min-isv-svn", "2"]).await;
    assert_eq!((code, j["code"].as_str()), (1, Some("isv_svn_too_low")));

    let debug = sim(&env, config(|c| c.spec.debug = true)).await;
    let (code, j) = verify(&env, &debug, &[]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("debug_enclave")),
        "{j}"
    );
    assert_eq!(
        j["quote"]["debug"], true,
        "the refused report still shows the parsed quote"
    );
    let (code, _) = verify(&env, &debug, &["--allow-debug"]).await;
    assert_eq!(code, 0);

    let outdated = sim(
        &env,
        config(|c| c.tcb_status = TcbStatus::SwHardeningNeeded),
    )
    .await;
    let (code, j) = verify(&env, &outdated, &[]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("tcb_status_not_allowed")),
        "{j}"
    );
    assert_eq!(j["tcb"]["status"], "SWHardeningNeeded");
    let (code, _) = verify(&env, &outdated, &["--tcb-status", "SWHardeningNeeded"]).await;
    assert_eq!(code, 0);
    let (code, j) = verify(
        &env,
        &outdated,
        &[
            "--tcb-status",
            "SWHardeningNeeded",
            "--allow-advisory",
            "SIM-SA-00001",
        ],
    )
    .await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("advisory_not_allowed"))
    );

    let revoked = sim(&env, config(|c| c.tcb_status = TcbStatus::Revoked)).await;
    let (code, j) = verify(&env, &revoked, &["--tcb-status", "OutOfDate"]).await;
    assert_eq!((code, j["code"].as_str()), (1, Some("revoked")), "{j}");

    let wrong = sim(&env, config(|c| c.binding = SimBinding::Wrong)).await;
    let (code, j) = verify(&env, &wrong, &[]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("binding_mismatch")),
        "{j}"
    );
    assert_eq!(j["binding"], Value::Null);
    assert_eq!(
        j["quote"]["mrenclave"],
        EnclaveSpec::default().mrenclave.to_string()
    );

    let gramine = sim(&env, config(|c| c.binding = SimBinding::Gramine)).await;
    let (code, j) = verify(&env, &gramine, &[]).await;
    assert_eq!((code, j["binding"].as_str()), (0, Some("gramine")), "{j}");
    let (code, j) = verify(&env, &gramine, &["--binding", "cosmian"]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("binding_mismatch")),
        "{j}"
    );

    // The sims never served an HTTP request: verification happens in the handshake.
    assert_eq!(
        good.request_count() + wrong.request_count() + debug.request_count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_https_when_nothing_listens_or_the_server_is_not_tls_exits_two() {
    let env = env();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let collateral = env.dir.join("pki/collateral.json");
    for url in [
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1:1".into(),
    ] {
        let out = command()
            .args(["verify", &url, "--collateral"])
            .arg(&collateral)
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn verifier(env: &Env, policy: EnclavePolicy, cache: &Arc<VerdictCache>) -> Arc<RaTlsVerifier> {
    let c =
        Collateral::from_json(&std::fs::read(env.dir.join("pki/collateral.json")).expect("read"))
            .expect("json");
    let anchor = env.pki.anchor().expect("anchor");
    let verified = Arc::new(VerifiedCollateral::verify(&c, &anchor).expect("verifies"));
    Arc::new(RaTlsVerifier::new(
        policy,
        BindingMode::Auto,
        anchor.sha256(),
        Arc::new(verified),
        Arc::clone(cache),
    ))
}

fn cache() -> Arc<VerdictCache> {
    Arc::new(VerdictCache::new(100, std::time::Duration::from_secs(300)))
}

async fn dial(
    sim: &SimEnclave,
    v: &Arc<RaTlsVerifier>,
    at: Option<UnixTime>,
) -> Result<ratls_proxy::ratls::client::Attested, ConnectError> {
    connect(
        &sim.addr().to_string(),
        "localhost",
        Arc::clone(v),
        &[b"http/1.1"],
        at,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_certificate_without_its_key_is_refused_even_after_a_cached_verdict() {
    let env = env();
    let genuine = sim(&env, SimConfig::default()).await;
    let cache = cache();
    let v = verifier(&env, EnclavePolicy::default(), &cache);
    dial(&genuine, &v, None)
        .await
        .expect("genuine enclave accepted");
    assert_eq!(cache.stats().verifications, 1);

    // The impostor presents the genuine RA-TLS certificate but signs the handshake with its own key.
    let own_key = rcgen::KeyPair::generate().expect("key").serialize_der();
    let impostor = SimEnclave::serve(
        genuine.certificate_der().to_vec(),
        own_key,
        SimConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("impostor starts");
    let hits_before = cache.stats().hits;
    match dial(&impostor, &v, None).await {
        Err(ConnectError::Tls { source, .. }) => {
            let text = source.to_string();
            assert!(text.contains("BadSignature"), "{text}");
        }
        Err(other) => panic!("expected a handshake failure, got {other}"),
        Ok(_) => panic!("a replayed certificate was accepted"),
    }
    assert!(
        cache.stats().hits > hits_before,
        "the certificate verdict was cached, and still the connection failed"
    );
    assert_eq!(impostor.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_connections_use_the_verdict_cache_and_failures_are_never_cached() {
    let env = env();
    let good = sim(&env, SimConfig::default()).await;
    let cache = cache();
    let v = verifier(&env, EnclavePolicy::default(), &cache);
    for _ in 0..3 {
        let a = dial(&good, &v, None).await.expect("accepted");
        assert_eq!(
            a.verdict.accepted.appraisal().cert_sha256.as_bytes().len(),
            32
        );
    }
    let s = cache.stats();
    assert_eq!(s.verifications, 1, "{s:?}");
    // Each connection consults the verifier (resumption is off) and the post-handshake step.
    assert_eq!(s.hits, 5, "{s:?}");

    let wrong = sim(&env, config(|c| c.binding = SimBinding::Wrong)).await;
    for _ in 0..2 {
        match dial(&wrong, &v, None).await {
            Err(ConnectError::Refused(r)) => {
                assert_eq!(Some(r.refusal.code), Some(RefusalCode::BindingMismatch))
            }
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
    }
    assert_eq!(
        cache.stats().verifications,
        3,
        "each refused connection was verified afresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_or_an_expired_verdict_is_never_served_from_the_cache() {
    let env = env();
    let good = sim(&env, SimConfig::default()).await;
    let cache = cache();
    let accepting = verifier(&env, EnclavePolicy::default(), &cache);
    dial(&good, &accepting, None).await.expect("accepted");

    // Same cache, another policy: the earlier verdict does not apply.
    let strict = verifier(
        &env,
        EnclavePolicy {
            mrenclave: vec![MrEnclave([0x01; 32])],
            mrsigner: vec![MrSigner([0x5a; 32])],
            ..EnclavePolicy::default()
        },
        &cache,
    );
    match dial(&good, &strict, None).await {
        Err(ConnectError::Refused(r)) => {
            assert_eq!(Some(r.refusal.code), Some(RefusalCode::MrenclaveMismatch))
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }

    // Past the collateral's validity the cached verdict is not served: full verification refuses.
    let late = UnixTime(env.now.0 + 40 * 86_400);
    match dial(&good, &accepting, Some(late)).await {
        Err(ConnectError::Refused(r)) => {
            let code = Some(r.refusal.code);
            assert!(
                matches!(
                    code,
                    Some(RefusalCode::CollateralExpired | RefusalCode::CertificateExpired)
                ),
                "{code:?}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_over_the_attested_connection_in_http1_and_http2() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let env = env();
    let good = sim(&env, SimConfig::default()).await;
    let v = verifier(&env, EnclavePolicy::default(), &cache());
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let attested = connect(
            &good.addr().to_string(),
            "localhost",
            Arc::clone(&v),
            &[alpn],
            None,
        )
        .await
        .expect("attested");
        assert_eq!(attested.stream.get_ref().1.alpn_protocol(), Some(alpn));
        let io = TokioIo::new(attested.stream);
        let req = hyper::Request::get(format!(
            "https://localhost:{}/hello?x=1",
            good.addr().port()
        ))
        .header("x-test", "yes")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
        let resp = if alpn == b"h2" {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2");
            tokio::spawn(conn);
            send.send_request(req).await.expect("response")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1");
            tokio::spawn(conn);
            send.send_request(req).await.expect("response")
        };
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let echo: Value = serde_json::from_slice(&body).expect("echo JSON");
        assert_eq!(echo["path"], "/hello");
        assert_eq!(echo["query"], "x=1");
        assert_eq!(echo["headers"]["x-test"], "yes");
        assert_eq!(
            echo["mrenclave"],
            EnclaveSpec::default().mrenclave.to_string()
        );
        assert_eq!(
            echo["version"],
            if alpn == b"h2" {
                "HTTP/2.0"
            } else {
                "HTTP/1.1"
            }
        );
    }
    assert_eq!(good.request_count(), 2);
}

/// Collateral that switches to a second snapshot on demand, as a refresh would.
struct Switching {
    first: Arc<VerifiedCollateral>,
    second: Arc<VerifiedCollateral>,
    switched: std::sync::atomic::AtomicBool,
}

impl ratls_proxy::appraise::CollateralSource for Switching {
    fn verified_for(
        &self,
        _quote: &ratls_proxy::dcap::quote::Quote<'_>,
    ) -> Result<Arc<VerifiedCollateral>, ratls_proxy::dcap::error::VerifyError> {
        Ok(Arc::clone(
            if self.switched.load(std::sync::atomic::Ordering::SeqCst) {
                &self.second
            } else {
                &self.first
            },
        ))
    }

    fn snapshot_id(&self) -> SnapshotId {
        SnapshotId(u64::from(
            self.switched.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_collateral_snapshot_makes_every_cached_verdict_stale() {
    use x509_parser::prelude::FromDer;
    let env = env();
    let good = sim(&env, SimConfig::default()).await;
    let anchor = env.pki.anchor().expect("anchor");
    // The second snapshot revokes the sim's PCK certificate.
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(good.certificate_der()).expect("cert");
    let evidence = ratls_proxy::ratls::evidence::find(&cert).expect("evidence");
    let quote = ratls_proxy::dcap::quote::Quote::parse(evidence.quote()).expect("quote");
    let chain = ratls_proxy::dcap::pki::pem_chain(quote.qe.pck_chain_pem, "pck").expect("chain");
    let (_, pck) = x509_parser::certificate::X509Certificate::from_der(&chain[0]).expect("pck");
    let verified = |revoked: &[Vec<u8>]| {
        let c = env
            .pki
            .collateral(UnixTime(env.now.0 - 60), revoked)
            .expect("collateral");
        Arc::new(VerifiedCollateral::verify(&c, &anchor).expect("verifies"))
    };
    let source = Arc::new(Switching {
        first: verified(&[]),
        second: verified(&[pck.raw_serial().to_vec()]),
        switched: std::sync::atomic::AtomicBool::new(false),
    });
    let cache = cache();
    let v = RaTlsVerifier::new(
        EnclavePolicy::default(),
        BindingMode::Auto,
        anchor.sha256(),
        source.clone(),
        Arc::clone(&cache),
    );
    let leaf = good.certificate_der();
    assert!(v.verdict_for(leaf, env.now).is_ok());
    assert!(v.verdict_for(leaf, env.now).is_ok());
    assert_eq!(cache.stats().verifications, 1, "the second was a cache hit");
    source
        .switched
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = v
        .verdict_for(leaf, env.now)
        .expect_err("judged again, refused");
    assert_eq!(refused.refusal.code, RefusalCode::Revoked);
    assert_eq!(cache.stats().verifications, 2);
    // Another generation of the same policy never reuses this generation's verdicts.
    source
        .switched
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let next = RaTlsVerifier::new(
        EnclavePolicy::default(),
        BindingMode::Auto,
        anchor.sha256(),
        source,
        Arc::clone(&cache),
    )
    .in_generation(GenerationId(7));
    assert!(next.verdict_for(leaf, env.now).is_ok());
    assert_eq!(
        cache.stats().verifications,
        3,
        "a new generation verifies anew"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_verdict_never_outlives_the_policys_freshness_limits() {
    let env = env();
    let good = sim(&env, SimConfig::default()).await;
    let leaf = good.certificate_der();
    // A cache that would keep a verdict for a day: only the policy limits end it sooner.
    let cache = Arc::new(VerdictCache::new(
        100,
        std::time::Duration::from_secs(86_400),
    ));
    for (policy, code) in [
        (
            EnclavePolicy {
                max_cert_age_secs: Some(7_200),
                ..EnclavePolicy::default()
            },
            RefusalCode::CertificateTooOld,
        ),
        (
            EnclavePolicy {
                max_collateral_age_secs: Some(7_200),
                ..EnclavePolicy::default()
            },
            RefusalCode::CollateralTooOld,
        ),
    ] {
        let v = verifier(&env, policy, &cache);
        let first = v.verdict_for(leaf, env.now).expect("accepted now");
        // The sim issued its certificate and collateral about an hour ago.
        assert!(
            first.valid_until.0 <= env.now.0 + 3_600,
            "{code:?}: the verdict holds until {}, past the limit",
            first.valid_until
        );
        let verifications = cache.stats().verifications;
        let refused = v
            .verdict_for(leaf, UnixTime(first.valid_until.0 + 1))
            .expect_err("refused past the limit");
        assert_eq!(refused.refusal.code, code);
        assert_eq!(
            cache.stats().verifications,
            verifications + 1,
            "judged afresh, not served from the cache"
        );
    }
}
