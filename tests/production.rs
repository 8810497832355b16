//! Running it in production: `/metrics` parsed and moving, `/readyz` following collateral,
//! reload by SIGHUP and `POST /reload` (the new policy judges new connections and the next
//! request of open ones, invalid config rejected), graceful SIGTERM, JSON logs, the attestation header.

mod common;

use std::path::Path;
use std::time::Duration;

use ratls_proxy::dcap::ids::MrEnclave;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::SimEnclave;
use serde_json::Value;

use common::http::Http;
use common::{
    curl_status, curl_via, env, free_port, metrics, start_sim_with, Binary, Env, Harness, Mode,
    Ports, OTHER, TRUSTED,
};

async fn sim(env: &Env, mrenclave: MrEnclave) -> SimEnclave {
    start_sim_with(env, |c| c.spec.mrenclave = mrenclave).await
}

fn config_text(
    env: &Env,
    ports: &Ports,
    collateral: &Path,
    entries: &[(&str, std::net::SocketAddr, &str)],
    top: &str,
) -> String {
    entries
        .iter()
        .fold(
            Harness::new(env)
                .ports(*ports)
                .top(top)
                .collateral(collateral),
            |h, (host, addr, mrenclave)| h.enclave_with(&[host], *addr, mrenclave, ""),
        )
        .text()
}

async fn start(config: &Path, ports: &Ports, json_logs: bool) -> Binary {
    Binary::start(config, ports.admin, &[], json_logs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_requests_are_accepted_and_refused() {
    let env = env();
    let good = sim(&env, MrEnclave([0xe1; 32])).await;
    let other = sim(&env, MrEnclave([0x0b; 32])).await;
    let ports = Ports::free();
    let config = env.dir.join("p.toml");
    let text = config_text(
        &env,
        &ports,
        &env.dir.join("pki/collateral.json"),
        &[
            ("good.test", good.addr(), TRUSTED),
            ("other.test", other.addr(), TRUSTED),
        ],
        "",
    );
    std::fs::write(&config, text).expect("write");
    let _p = start(&config, &ports, false).await;
    let proxy = format!("http://127.0.0.1:{}", ports.proxy);
    let before = metrics(ports.admin).await;
    assert_eq!(before.get("ratls_verifications_total"), Some(&0.0));
    for _ in 0..3 {
        let (code, _) = curl_status(&["-x", &proxy, "http://good.test/m"]).await;
        assert_eq!(code, 200);
    }
    let (code, _) = curl_status(&["-x", &proxy, "http://other.test/m"]).await;
    assert_eq!(code, 502);
    let m = metrics(ports.admin).await;
    assert_eq!(
        m.get("ratls_requests_total{host=\"good.test\",verdict=\"accepted\",code=\"-\"}"),
        Some(&3.0),
        "{m:?}"
    );
    assert_eq!(m.get("ratls_requests_total{host=\"other.test\",verdict=\"refused\",code=\"mrenclave_mismatch\"}"), Some(&1.0));
    assert_eq!(
        m.get("ratls_verifications_total"),
        Some(&2.0),
        "one per certificate; the refusal is not cached"
    );
    assert_eq!(
        m.get("ratls_verification_duration_seconds_count"),
        Some(&2.0)
    );
    assert!(
        m.get("ratls_verdict_cache_hits_total")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        m.get("ratls_collateral_cache_hits_total")
            .copied()
            .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        m.get("ratls_bytes_relayed_total{direction=\"to_client\"}")
            .copied()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        m.get("ratls_upstream_connections").copied().unwrap_or(0.0) >= 1.0,
        "the verified connection stays pooled"
    );
    assert!(m.keys().any(|k| k
        == "ratls_collateral_valid_seconds{fmspc=\"5ec0de000000\",ca=\"platform\",tee=\"sgx\"}"));

    let (code, body) = curl_status(&[&format!("http://127.0.0.1:{}/healthz", ports.admin)]).await;
    assert_eq!((code, body.trim()), (200, r#"{"status":"ok"}"#));
    let (code, _) = curl_status(&[&format!("http://127.0.0.1:{}/nope", ports.admin)]).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_collateral() {
    let env = env();
    let good = sim(&env, MrEnclave([0xe1; 32])).await;
    // Collateral that expired ten days ago.
    let old = env
        .pki
        .collateral(UnixTime(env.now.0 - 40 * 86_400), &[])
        .expect("collateral");
    let stale = env.dir.join("stale.json");
    std::fs::write(&stale, old.to_json()).expect("write");
    for (file, want, reason) in [
        (stale, 503, Some("expired")),
        (env.dir.join("pki/collateral.json"), 200, None),
    ] {
        let ports = Ports::free();
        let config = env.dir.join(format!("r{}.toml", ports.admin));
        std::fs::write(
            &config,
            config_text(
                &env,
                &ports,
                &file,
                &[("good.test", good.addr(), TRUSTED)],
                "",
            ),
        )
        .expect("write");
        let _p = start(&config, &ports, false).await;
        let (code, body) =
            curl_status(&[&format!("http://127.0.0.1:{}/readyz", ports.admin)]).await;
        assert_eq!(code, want, "{body}");
        let j: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(j["ready"], want == 200);
        if let Some(r) = reason {
            assert!(j["reasons"][0].as_str().expect("reason").contains(r), "{j}");
        }
    }
    // A PCCS that is down: no collateral for the prefetched FMSPC, not ready.
    let ports = Ports::free();
    let down = format!("http://127.0.0.1:{}", free_port());
    let text = config_text(
        &env,
        &ports,
        Path::new("unused"),
        &[("good.test", good.addr(), TRUSTED)],
        "",
    )
    .replace(
        "source = \"unused\"",
        &format!("source = \"{down}\"\nprefetch = [\"5EC0DE000000\"]"),
    );
    let config = env.dir.join("down.toml");
    std::fs::write(&config, text).expect("write");
    let _p = start(&config, &ports, false).await;
    let (code, body) = curl_status(&[&format!("http://127.0.0.1:{}/readyz", ports.admin)]).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("5ec0de000000"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_judges_new_and_open_connections_under_the_new_policy() {
    let env = env();
    let good = sim(&env, MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let config = env.dir.join("p.toml");
    let collateral = env.dir.join("pki/collateral.json");
    std::fs::write(
        &config,
        config_text(
            &env,
            &ports,
            &collateral,
            &[("good.test", good.addr(), TRUSTED)],
            "",
        ),
    )
    .expect("write");
    let p = start(&config, &ports, false).await;
    let proxy = format!("http://127.0.0.1:{}", ports.proxy);
    let mut open = Http::open(&env.via(ports.proxy), "good.test", Mode::Intercepted).await;
    assert_eq!(open.status("/kept").await, 200);

    // SIGHUP with an allow-list that no longer contains the enclave.
    std::fs::write(
        &config,
        config_text(
            &env,
            &ports,
            &collateral,
            &[("good.test", good.addr(), OTHER)],
            "",
        ),
    )
    .expect("write");
    p.signal("-HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if metrics(ports.admin)
            .await
            .get("ratls_reloads_total{result=\"ok\"}")
            == Some(&1.0)
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "SIGHUP reloaded the configuration");
    let (code, body) = curl_status(&["-x", &proxy, "http://good.test/new"]).await;
    assert_eq!(
        code, 502,
        "a new connection is judged by the new policy: {body}"
    );
    assert!(body.contains("mrenclave_mismatch"));
    assert_eq!(
        open.status("/kept").await,
        502,
        "the open tunnel's next request is judged under the new policy and refused"
    );

    // An invalid config is rejected over POST /reload; the policy in force stays.
    std::fs::write(&config, "listen = \"not an address\"\n").expect("write");
    let (code, body) = curl_status(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{}/reload", ports.admin),
    ])
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("\"reloaded\":false") && body.contains("listen"),
        "{body}"
    );
    let (code, _) = curl_status(&["-x", &proxy, "http://good.test/again"]).await;
    assert_eq!(code, 502, "the previous (valid) policy is still in force");
    assert_eq!(
        metrics(ports.admin)
            .await
            .get("ratls_reloads_total{result=\"rejected\"}"),
        Some(&1.0)
    );

    // A valid config back over POST /reload.
    std::fs::write(
        &config,
        config_text(
            &env,
            &ports,
            &collateral,
            &[("good.test", good.addr(), TRUSTED)],
            "",
        ),
    )
    .expect("write");
    let (code, body) = curl_status(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{}/reload", ports.admin),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = curl_status(&["-x", &proxy, "http://good.test/back"]).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_slow_request_finish() {
    let env = env();
    let good = sim(&env, MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let config = env.dir.join("p.toml");
    std::fs::write(
        &config,
        config_text(
            &env,
            &ports,
            &env.dir.join("pki/collateral.json"),
            &[("good.test", good.addr(), TRUSTED)],
            "",
        ),
    )
    .expect("write");
    let mut p = start(&config, &ports, false).await;
    let proxy = format!("http://127.0.0.1:{}", ports.proxy);
    let slow = {
        let proxy = proxy.clone();
        tokio::spawn(
            async move { curl_status(&["-x", &proxy, "http://good.test/slow?ms=1500"]).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once shutting down.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", ports.proxy))
            .await
            .is_err(),
        "listener closed"
    );
    let (code, body) = slow.await.expect("join");
    assert_eq!(code, 200, "the in-flight request finished: {body}");
    let status = tokio::task::spawn_blocking(move || {
        let status = p.child.wait().expect("wait");
        std::mem::forget(p);
        status
    })
    .await
    .expect("join");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_the_attestation_header_tells_what_was_verified() {
    let env = env();
    let good = sim(&env, MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let config = env.dir.join("p.toml");
    std::fs::write(
        &config,
        config_text(
            &env,
            &ports,
            &env.dir.join("pki/collateral.json"),
            &[("good.test", good.addr(), TRUSTED)],
            "attestation_header = true",
        ),
    )
    .expect("write");
    let mut p = start(&config, &ports, true).await;
    let text = curl_via(ports.proxy, "http://good.test/hdr")
        .await
        .to_lowercase();
    let header = text
        .lines()
        .find(|l| l.starts_with("ratls-attestation:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        header.contains(&format!("mrenclave={TRUSTED}"))
            && header.contains("tcb=uptodate")
            && header.contains("binding=cosmian"),
        "{header}"
    );
    let lines = p.stop("-TERM").await;
    assert!(!lines.is_empty());
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = parsed
        .iter()
        .find(|v| v["target"] == "ratls_proxy::access")
        .expect("an access line");
    assert_eq!(access["host"], "good.test");
    assert_eq!(access["status"], 200);
    assert_eq!(access["verdict"], "accepted");
    assert_eq!(access["mrenclave"], TRUSTED);
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("BEGIN PRIVATE KEY") && !l.contains("api_key")),
        "nothing secret in logs"
    );
}
