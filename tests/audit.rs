//! The audit trail with the real binary: one hash-chained line per verdict (not per cache
//! hit), its fields, `audit verify` on intact and tampered files, SIGUSR1 rotation (and
//! SIGHUP, a reload, not reopening the file), and the `required` mode.

mod common;

use std::time::Duration;

use ratls_proxy::dcap::ids::MrEnclave;
use ratls_proxy::sim::{EnclaveSpec, SimConfig};
use serde_json::Value;

use common::{
    curl_via, env, free_port, lines, metrics_text, sha256_hex, start_sim, Binary, Harness,
};

fn audit_verify(path: &std::path::Path) -> (i32, String) {
    common::audit_verify(path, &[])
}

async fn get(proxy: u16, host: &str) -> String {
    curl_via(proxy, &format!("http://{host}/")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chained_record_per_verdict_and_audit_verify_finds_tampering() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let other = start_sim(
        &env,
        SimConfig {
            spec: EnclaveSpec {
                mrenclave: MrEnclave([0x0b; 32]),
                ..EnclaveSpec::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let trail = env.dir.join("verdicts.jsonl");
    let proxy = free_port();
    let admin = free_port();
    let _p = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .enclave("good.enclave.test", good.addr())
        .enclave("other.enclave.test", other.addr())
        .tail(&format!("[audit]\npath = \"{}\"\n", trail.display()))
        .start_binary("audit.toml")
        .await;
    assert!(get(proxy, "good.enclave.test")
        .await
        .starts_with("HTTP/1.1 200"));
    // A second request reuses the connection or hits the verdict cache: no new verdict.
    assert!(get(proxy, "good.enclave.test")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(get(proxy, "other.enclave.test")
        .await
        .starts_with("HTTP/1.1 502"));
    let l = lines(&trail);
    assert_eq!(l.len(), 2, "{l:#?}");
    let first: Value = serde_json::from_str(&l[0]).expect("json");
    let second: Value = serde_json::from_str(&l[1]).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev_sha256"], "0".repeat(64));
    assert_eq!(first["host"], "good.enclave.test");
    assert_eq!(first["port"], 443);
    assert_eq!(first["tee"], "SGX");
    assert_eq!(first["verdict"], "accepted");
    assert_eq!(first["code"], Value::Null);
    assert_eq!(first["mrenclave"], "e1".repeat(32));
    assert_eq!(first["tcb"]["status"], "UpToDate");
    for key in ["cert_sha256", "quote_sha256", "policy_sha256"] {
        assert_eq!(first[key].as_str().map(str::len), Some(64), "{key}");
    }
    for key in [
        "tcb_info_sha256",
        "qe_identity_sha256",
        "pck_crl_sha256",
        "root_ca_crl_sha256",
    ] {
        assert_eq!(
            first["collateral"][key].as_str().map(str::len),
            Some(64),
            "{key}"
        );
    }
    assert!(first["generation"].as_u64().is_some());
    assert_eq!(second["seq"], 2);
    assert_eq!(second["verdict"], "refused");
    assert_eq!(second["code"], "mrenclave_mismatch");
    assert_eq!(second["prev_sha256"], sha256_hex(&l[0]));

    let (code, out) = audit_verify(&trail);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 records"), "{out}");
    assert!(out.contains("MiB/s)"), "the throughput: {out}");
    // `audit verify` prints the last record's hash: anchored elsewhere, it also covers the
    // last line (which no later line chains).
    assert!(out.contains(&sha256_hex(&l[1])), "{out}");
    // Edited, reordered, truncated: each names the line where the chain breaks.
    let text = std::fs::read_to_string(&trail).expect("read");
    let tampered_first = env.dir.join("tampered.jsonl");
    std::fs::write(&tampered_first, text.replacen("UpToDate", "OutOfDate", 1)).expect("write");
    let (code, out) = audit_verify(&tampered_first);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":2:"), "the line after the edit breaks: {out}");
    let reordered = env.dir.join("reordered.jsonl");
    std::fs::write(&reordered, format!("{}\n{}\n", l[1], l[0])).expect("write");
    let (code, out) = audit_verify(&reordered);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":1:"), "{out}");
    let truncated = env.dir.join("truncated.jsonl");
    std::fs::write(&truncated, &text[..text.len() - 10]).expect("write");
    let (code, out) = audit_verify(&truncated);
    assert_eq!(code, 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_trail_after_rotation_and_sighup_does_not() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let trail = env.dir.join("verdicts.jsonl");
    let proxy = free_port();
    let admin = free_port();
    let config = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .enclave("a.enclave.test", good.addr())
        .enclave("b.enclave.test", good.addr())
        .enclave("c.enclave.test", good.addr())
        .tail(&format!("[audit]\npath = \"{}\"\n", trail.display()))
        .write("rotate.toml");
    let p = Binary::start(&config, admin, &[], false).await;
    assert!(get(proxy, "a.enclave.test")
        .await
        .starts_with("HTTP/1.1 200"));
    let rotated = env.dir.join("verdicts.jsonl.1");
    std::fs::rename(&trail, &rotated).expect("rotate");
    // A reload is not a rotation: the next verdict still goes to the file the proxy holds.
    p.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(get(proxy, "b.enclave.test")
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(lines(&rotated).len(), 2, "SIGHUP did not reopen the file");
    assert!(!trail.exists());
    p.signal("-USR1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(get(proxy, "c.enclave.test")
        .await
        .starts_with("HTTP/1.1 200"));
    let old = lines(&rotated);
    let new = lines(&trail);
    assert_eq!(old.len(), 2, "{old:#?}");
    assert_eq!(
        new.len(),
        2,
        "a rotation record, then the next verdict: {new:#?}"
    );
    let first: Value = serde_json::from_str(&new[0]).expect("json");
    assert_eq!(first["event"], "rotated");
    assert_eq!(
        first["prev_sha256"],
        "0".repeat(64),
        "a new file starts a new chain"
    );
    assert_eq!(
        first["previous_sha256"],
        sha256_hex(&old[1]),
        "…naming the last record of the file before"
    );
    assert_eq!(first["seq"], 3, "seq keeps counting");
    assert_eq!(audit_verify(&rotated).0, 0);
    let (code, out) = audit_verify(&trail);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&sha256_hex(&old[1])), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_refuses_rather_than_serve_unaudited() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let nowhere = env.dir.join("no-such-dir/verdicts.jsonl");
    for (required, want) in [(true, "HTTP/1.1 500"), (false, "HTTP/1.1 200")] {
        let proxy = free_port();
        let admin = free_port();
        let _p = Harness::new(&env)
            .listen(proxy)
            .admin(admin)
            .enclave("good.enclave.test", good.addr())
            .tail(&format!(
                "[audit]\npath = \"{}\"\nrequired = {required}\n",
                nowhere.display()
            ))
            .start_binary(&format!("required-{required}.toml"))
            .await;
        let answer = get(proxy, "good.enclave.test").await;
        assert!(answer.starts_with(want), "required = {required}: {answer}");
        let text = metrics_text(admin).await;
        assert!(
            text.lines()
                .any(|l| l.starts_with("ratls_audit_write_failures_total") && !l.ends_with(" 0")),
            "{text}"
        );
    }
}
