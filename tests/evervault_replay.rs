//! Review 5 (adversarial), through the real binary and curl: an enclave host that has seen a
//! genuine Evervault certificate replays its exact bytes from a server holding another key,
//! after the proxy has accepted (and cached a verdict for) those bytes. The verdict cache is
//! keyed by the certificate's SHA-256, and a hit re-checks only the binding in the bytes
//! (which still name the genuine key): only the TLS handshake's CertificateVerify stands
//! between the replay and acceptance. It must be refused and the impostor never reached.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{ratls_identity, NitroEnclaveSpec, SimConfig, SimEnclave, SimNitroCarrier};

use common::{curl_via, env, free_port, Harness};

const PCR0: [u8; 48] = [0x5a; 48];

fn config(pki: &Arc<SimNitro>) -> SimConfig {
    let mut spec = NitroEnclaveSpec::new(Arc::clone(pki), PCR0);
    spec.carrier = SimNitroCarrier::Evervault;
    SimConfig {
        nitro: Some(spec),
        ..SimConfig::default()
    }
}

fn entry(host: &str, sim: &SimEnclave) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\nconnect_to = \"{}\"\n\n",
        hex::encode(PCR0),
        sim.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_evervault_certificate_with_another_key_is_refused_after_a_cached_accept() {
    let env = env();
    let pki = Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("pki"));
    let genuine = ratls_identity(&env.pki, &config(&pki), env.now).expect("genuine");
    let other = ratls_identity(&env.pki, &config(&pki), env.now).expect("other key");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let real = SimEnclave::serve(
        genuine.cert_der.clone(),
        genuine.key_pkcs8.clone(),
        config(&pki),
        any,
    )
    .await
    .expect("real");
    // The impostor: the genuine certificate's bytes, its own key.
    let fake = SimEnclave::serve(genuine.cert_der.clone(), other.key_pkcs8, config(&pki), any)
        .await
        .expect("impostor");
    let proxy = free_port();
    let crls = env.dir.join("pki/collateral/nitro");
    // Same policy on both entries: whatever the verdict cache shares, it shares here.
    let entries = format!(
        "{}{}",
        entry("real.enclave.test", &real),
        entry("fake.enclave.test", &fake)
    );
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&format!(
            "nitro_trust_root = \"{}\"\nnitro_crls = \"{}\"\nnitro_revocation = \"required\"\n",
            env.dir.join("pki/nitro-root.pem").display(),
            crls.display()
        ))
        .tail(&entries)
        .start_binary("evervault-replay.toml")
        .await;

    for _ in 0..2 {
        let text = curl_via(proxy, "http://real.enclave.test/hello").await;
        assert!(text.starts_with("HTTP/1.1 200"), "control: {text}");
    }
    assert_eq!(real.request_count(), 2);
    for i in 0..2 {
        let text = curl_via(proxy, &format!("http://fake.enclave.test/try{i}")).await;
        assert!(
            !text.starts_with("HTTP/1.1 200"),
            "impostor accepted: {text}"
        );
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    }
    assert_eq!(fake.request_count(), 0, "the impostor was never reached");
    // And the genuine one is still accepted after.
    let text = curl_via(proxy, "http://real.enclave.test/again").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
