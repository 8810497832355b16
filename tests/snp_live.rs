//! `tee = "snp"` entries through the real proxy binary (real sockets, real TLS, curl): the
//! configuration is read, and an SNP entry refuses every Intel quote (`tee_mismatch`), TDX
//! and SGX sims alike, with the refusal in the audit trail. SEV-SNP evidence through the
//! proxy is still refused (`unsupported_tee`, `tests/dstack_cert.rs`): the SNP sim and the
//! appraisal are the next steps of issue 27.

mod common;

use ratls_proxy::sim::{SimConfig, TdSpec};
use serde_json::Value;

use common::{curl_via, env, free_port, start_sim, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_snp_entry_refuses_intel_quotes_through_the_proxy() {
    let env = env();
    let td = start_sim(
        &env,
        SimConfig {
            td: Some(TdSpec::default()),
            ..SimConfig::default()
        },
    )
    .await;
    let sgx = start_sim(&env, SimConfig::default()).await;
    let proxy = free_port();
    let trail = env.dir.join("snp-audit.jsonl");
    // An offline SEV-SNP collateral directory: nothing is fetched from AMD.
    let kds = env.dir.join("amd-kds");
    std::fs::create_dir_all(&kds).expect("kds dir");
    let measurement = "5a".repeat(48);
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&format!("amd_kds = \"{}\"\n", kds.display()))
        .tail(&format!(
            "[audit]\npath = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"snp-td.enclave.test\"]\ntee = \"snp\"\nmeasurement = [\"{measurement}\"]\nmin_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"snp-sgx.enclave.test\"]\ntee = \"snp\"\nmeasurement = [\"{measurement}\"]\nallow_debug = true\nconnect_to = \"{}\"\n",
            trail.display(),
            td.addr(),
            sgx.addr(),
        ))
        .start_binary("snp.toml")
        .await;
    for host in ["snp-td.enclave.test", "snp-sgx.enclave.test"] {
        let text = curl_via(proxy, &format!("http://{host}/"))
            .await
            .to_lowercase();
        assert!(text.starts_with("http/1.1 502"), "{host}: {text}");
        assert!(text.contains("\"code\":\"tee_mismatch\""), "{host}: {text}");
        assert!(text.contains("sev-snp"), "{host}: {text}");
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
        assert_eq!(r["code"], "tee_mismatch", "{r}");
    }
}
