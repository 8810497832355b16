//! `tee = "nitro"` entries through the real proxy binary (real sockets, real TLS, curl): the
//! configuration is read and `config check` passes it, and until the proxy appraises Nitro
//! evidence a Nitro entry fails closed: Intel evidence (SGX and TDX sims) is refused, with
//! the refusal in the audit trail, and the enclave is never reached; so is a Nitro sim's
//! dstack evidence, for a Nitro entry and for an Intel one alike.

mod common;

use std::sync::Arc;

use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{NitroEnclaveSpec, SimConfig, TdSpec};
use serde_json::Value;

use common::{curl_via, env, free_port, start_sim, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nitro_entry_refuses_intel_quotes_through_the_proxy() {
    let env = env();
    let td = start_sim(
        &env,
        SimConfig {
            td: Some(TdSpec::default()),
            ..SimConfig::default()
        },
    )
    .await;
    // A debug SGX enclave and an allow_debug entry: the most permissive Intel case.
    let sgx = start_sim(&env, SimConfig::default()).await;
    let proxy = free_port();
    let trail = env.dir.join("nitro-audit.jsonl");
    let pcr0 = "5a".repeat(48);
    let harness = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .tail(&format!(
            "[audit]\npath = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"nitro-td.enclave.test\"]\ntee = \"nitro\"\npcr0 = [\"{pcr0}\"]\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"nitro-sgx.enclave.test\"]\ntee = \"nitro\"\npcr0 = [\"{pcr0}\"]\nallow_debug = true\nconnect_to = \"{}\"\n",
            trail.display(),
            td.addr(),
            sgx.addr(),
        ));
    let _p = harness.start_binary("nitro.toml").await;
    let (code, out) = common::cli::run([
        std::ffi::OsString::from("config"),
        "check".into(),
        env.dir.join("nitro.toml").into(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 enclave entries"), "{out}");
    for host in ["nitro-td.enclave.test", "nitro-sgx.enclave.test"] {
        let text = curl_via(proxy, &format!("http://{host}/"))
            .await
            .to_lowercase();
        assert!(text.starts_with("http/1.1 502"), "{host}: {text}");
        // The entry's Intel policy accepts no TCB status (`config/nitro.rs`); once ratls
        // knows Nitro entries this becomes `tee_mismatch`.
        assert!(
            text.contains("\"code\":\"tcb_status_not_allowed\""),
            "{host}: {text}"
        );
    }
    assert_eq!(td.request_count(), 0, "a refused TD is never reached");
    assert_eq!(sgx.request_count(), 0, "a refused enclave is never reached");
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(r["verdict"], "refused", "{r}");
        assert_eq!(r["code"], "tcb_status_not_allowed", "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_evidence_is_refused_through_the_proxy_until_it_is_appraised() {
    let env = env();
    let pki = Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("pki"));
    let pcr0 = [0x5a; 48];
    let nitro = start_sim(
        &env,
        SimConfig {
            nitro: Some(NitroEnclaveSpec::new(pki, pcr0)),
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = free_port();
    let trail = env.dir.join("nitro-audit.jsonl");
    let pki_dir = env.dir.join("pki");
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&pki_dir.join("collateral"))
        .collateral_keys(&format!(
            "nitro_trust_root = \"{}\"\nnitro_crls = \"{}\"\n",
            pki_dir.join("nitro-root.pem").display(),
            pki_dir.join("collateral/nitro").display()
        ))
        .tail(&format!(
            "[audit]\npath = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"nitro.enclave.test\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"tdx.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{}\"]\nconnect_to = \"{}\"\n",
            trail.display(),
            hex::encode(pcr0),
            nitro.addr(),
            "7d".repeat(48),
            nitro.addr(),
        ))
        .start_binary("nitro-sim.toml")
        .await;
    for (host, code) in [
        ("nitro.enclave.test", "unsupported_tee"),
        ("tdx.enclave.test", "unsupported_tee"),
    ] {
        let text = curl_via(proxy, &format!("http://{host}/"))
            .await
            .to_lowercase();
        assert!(text.starts_with("http/1.1 502"), "{host}: {text}");
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "{host}: {text}"
        );
    }
    assert_eq!(
        nitro.request_count(),
        0,
        "a refused enclave is never reached"
    );
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(
        records.iter().all(|r| r["verdict"] == "refused"),
        "{records:#?}"
    );
}

#[test]
fn config_check_reads_the_nitro_collateral_keys() {
    let env = env();
    let pki = env.dir.join("pki");
    SimNitro::load_or_create(&pki, env.now).expect("pki");
    let write = |name: &str, root: &std::path::Path| {
        let path = env.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[trust]\nroot_ca = \"{}\"\n\n[collateral]\nsource = \"{}\"\nnitro_trust_root = \"{}\"\nnitro_crls = \"{}\"\nnitro_revocation = \"required\"\n\n\
                 [[enclave]]\nhosts = [\"nitro.test\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\n",
                pki.join("root.pem").display(),
                pki.join("collateral").display(),
                root.display(),
                pki.join("collateral/nitro").display(),
                "5a".repeat(48)
            ),
        )
        .expect("write");
        path
    };
    let good = write("good.toml", &pki.join("nitro-root.pem"));
    let (code, out) = common::cli::run([
        std::ffi::OsStr::new("config"),
        "check".as_ref(),
        good.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 enclave entries"), "{out}");
    assert!(
        out.contains("replaces AWS Nitro Enclaves Root-G1"),
        "warned: {out}"
    );
    // A file that is no certificate (the CRL) as the root: refused by config check.
    let bad = write("bad.toml", &pki.join("collateral/nitro/0.crl"));
    let (code, out) = common::cli::run([
        std::ffi::OsStr::new("config"),
        "check".as_ref(),
        bad.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("0.crl is not a usable root certificate"),
        "{out}"
    );
}
