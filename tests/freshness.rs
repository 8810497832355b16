//! Freshness limits and offline `verify`: certificates and collateral issued too long ago
//! are refused with their own codes, and `verify` without reachable collateral still decides
//! everything that needs none (exit 1) or says it could not check (exit 2), quickly.

mod common;

use std::time::{Duration, Instant};

use ratls_proxy::sim::{SimConfig, SimEnclave};
use serde_json::Value;

use common::{env, start_sim, verify_https, Env};

/// `ratls-proxy verify https://sim --json` with the sim root and `collateral`; how long it
/// took.
async fn verify(
    env: &Env,
    sim: &SimEnclave,
    collateral: &str,
    extra: &[&str],
) -> (i32, Value, Duration) {
    let started = Instant::now();
    let (code, json) = verify_https(env, sim.addr(), collateral, extra).await;
    (code, json, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_collateral_issued_too_long_ago_are_refused() {
    let env = env();
    let sim = start_sim(&env, SimConfig::default()).await;
    let bundle = env.dir.join("pki/collateral.json").display().to_string();
    // The sim's certificate was issued an hour ago, its collateral an hour ago too.
    let (code, j, _) = verify(&env, &sim, &bundle, &["--max-cert-age-secs", "60"]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("certificate_too_old")),
        "{j}"
    );
    let (code, j, _) = verify(&env, &sim, &bundle, &["--max-cert-age-secs", "7200"]).await;
    assert_eq!(code, 0, "{j}");
    let (code, j, _) = verify(&env, &sim, &bundle, &["--max-collateral-age-secs", "60"]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("collateral_too_old")),
        "{j}"
    );
    let (code, j, _) = verify(&env, &sim, &bundle, &["--max-collateral-age-secs", "86400"]).await;
    assert_eq!(code, 0, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_applies_both_freshness_limits() {
    let env = env();
    let sim = start_sim(&env, SimConfig::default()).await;
    let port = common::free_port();
    let _p = common::Harness::new(&env)
        .listen(port)
        .enclave_with(
            &["old.enclave.test"],
            sim.addr(),
            common::TRUSTED,
            "max_cert_age_secs = 60",
        )
        .enclave_with(
            &["fresh.enclave.test"],
            sim.addr(),
            common::TRUSTED,
            "max_cert_age_secs = 7200",
        )
        .start_binary("fresh.toml")
        .await;
    let text = common::curl_via(port, "http://old.enclave.test/").await;
    assert!(text.contains("\"code\":\"certificate_too_old\""), "{text}");
    let text = common::curl_via(port, "http://fresh.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Collateral older than [collateral] max_age_secs: this bundle was issued two hours ago.
    let old = env.dir.join("old-collateral.json");
    let bundle = env
        .pki
        .collateral(ratls_proxy::dcap::time::UnixTime(env.now.0 - 7200), &[])
        .expect("collateral");
    std::fs::write(&old, bundle.to_json()).expect("write");
    let cfg = env.dir.join("stale.toml");
    let port = common::free_port();
    std::fs::write(
        &cfg,
        common::Harness::new(&env)
            .listen(port)
            .collateral(&old)
            .enclave("good.enclave.test", sim.addr())
            .text()
            .replace("[collateral]\n", "[collateral]\nmax_age_secs = 3600\n"),
    )
    .expect("write");
    let _q = common::Binary::start(&cfg, port, &[], false).await;
    let text = common::curl_via(port, "http://good.enclave.test/").await;
    assert!(text.contains("\"code\":\"collateral_too_old\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_without_reachable_collateral_decides_what_it_can_quickly() {
    let env = env();
    let sim = start_sim(&env, SimConfig::default()).await;
    let debug = start_sim(
        &env,
        SimConfig {
            spec: ratls_proxy::sim::EnclaveSpec {
                debug: true,
                ..Default::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    // A PCCS that is not there: nothing listens at this port.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let (code, j, took) = verify(&env, &debug, &dead, &[]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("debug_enclave")),
        "{j}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let (code, j, _) = verify(&env, &sim, &dead, &["--mrenclave", &"00".repeat(32)]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("mrenclave_mismatch")),
        "{j}"
    );
    let (code, j, took) = verify(&env, &sim, &dead, &[]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (2, Some("collateral_unavailable")),
        "{j}"
    );
    assert_eq!(
        j["quote"]["mrenclave"],
        "e1".repeat(32),
        "the parsed quote is reported"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}
