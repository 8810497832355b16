//! Issue 24, item 7: the audit trail. An emptied trail, or one not starting at its first
//! record, is reported; an invented chain does not verify under the key; a torn last line
//! is closed at the next start and the trail verifies; `--expect-last`; the first use of a
//! cached verdict for each host is recorded.

use std::path::{Path, PathBuf};

use ratls_proxy::sim::SimConfig;
use serde_json::{json, Value};

use super::get;
use crate::common::{
    audit_verify, command, env, free_port, lines, sha256_hex, start_sim, Binary, Env, Harness,
};

/// A proxy writing its trail to `trail` (with `extra` under `[audit]`), one good enclave
/// under `hosts`; its proxy port.
async fn proxy_with_trail(
    env: &Env,
    good: &ratls_proxy::sim::SimEnclave,
    hosts: &[&str],
    trail: &Path,
    extra: &str,
    name: &str,
) -> (Binary, u16) {
    let proxy = free_port();
    let p = Harness::new(env)
        .listen(proxy)
        .enclave_with(hosts, good.addr(), crate::common::TRUSTED, "")
        .tail(&format!(
            "[audit]\npath = \"{}\"\n{extra}\n",
            trail.display()
        ))
        .start_binary(name)
        .await;
    (p, proxy)
}

/// An emptied trail, and one whose beginning was cut (and the rest re-chained from zero),
/// are reported, not "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_or_beheaded_trail_does_not_verify() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let trail = env.dir.join("verdicts.jsonl");
    let (_p, proxy) = proxy_with_trail(
        &env,
        &good,
        &["good.enclave.test"],
        &trail,
        "",
        "empty.toml",
    )
    .await;
    assert!(get(proxy, "good.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(audit_verify(&trail, &[]).0, 0);

    let emptied = env.dir.join("emptied.jsonl");
    std::fs::write(&emptied, "").expect("write");
    let (code, out) = audit_verify(&emptied, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no records"), "{out}");

    // Its first record made to look like record 5 of a trail whose first four were removed.
    let mut record: Value = serde_json::from_str(&lines(&trail)[0]).expect("json");
    record["seq"] = json!(5);
    let beheaded = env.dir.join("beheaded.jsonl");
    std::fs::write(&beheaded, format!("{record}\n")).expect("write");
    let (code, out) = audit_verify(&beheaded, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("starts at seq 5"), "{out}");
}

/// Without a key anyone can write a chain that verifies; with `[audit] key_file` every line
/// carries an HMAC, and an invented chain (schema, hashes and all) does not verify. The
/// key is refused when others can read it, and never shows in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invented_chain_does_not_verify_under_the_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let key = env.dir.join("audit-key");
    let secret = "7f3a0c2e9b1d4f6a8c0e2b4d6f8a1c3e";
    std::fs::write(&key, format!("{secret}\n")).expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let trail = env.dir.join("keyed.jsonl");
    let config = Harness::new(&env)
        .listen(free_port())
        .enclave("good.enclave.test", good.addr())
        .tail(&format!(
            "[audit]\npath = \"{}\"\nkey_file = \"{}\"\n",
            trail.display(),
            key.display()
        ))
        .write("keyed.toml");
    let refused = command()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600") && !err.contains(secret), "{err}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let proxy = free_port();
    let config = Harness::new(&env)
        .listen(proxy)
        .enclave("good.enclave.test", good.addr())
        .enclave_with(
            &["other.enclave.test"],
            good.addr(),
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
        )
        .tail(&format!(
            "[audit]\npath = \"{}\"\nkey_file = \"{}\"\n",
            trail.display(),
            key.display()
        ))
        .write("keyed.toml");
    let mut b = Binary::start(&config, proxy, &[], true).await;
    assert!(get(proxy, "good.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(get(proxy, "other.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 502"));
    let logs = b.stop("-KILL").await.join("\n");
    assert!(!logs.contains(secret), "the key is never logged");
    assert!(logs.contains("audit record written"), "{logs}");

    let key_arg = key.display().to_string();
    let (code, out) = audit_verify(&trail, &["--key-file", &key_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 records") && out.contains("HMAC"), "{out}");
    let (code, out) = audit_verify(&trail, &[]);
    assert_eq!(code, 2, "a keyed trail needs its key: {out}");

    // An invented chain: the real records' shape, re-chained from zero, HMACs made up.
    let mut invented = String::new();
    let mut prev = "0".repeat(64);
    for l in lines(&trail) {
        let mut r: Value = serde_json::from_str(&l).expect("json");
        r["mrenclave"] = json!("ab".repeat(32));
        r["prev_sha256"] = json!(prev);
        r["hmac"] = json!("cd".repeat(32));
        let text = r.to_string();
        prev = sha256_hex(&text);
        invented.push_str(&text);
        invented.push('\n');
    }
    let forged = env.dir.join("forged.jsonl");
    std::fs::write(&forged, &invented).expect("write");
    let (code, out) = audit_verify(&forged, &["--key-file", &key_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":1:") && out.contains("HMAC"), "{out}");
    // The same chain without HMACs is what anyone could write with no key configured: it
    // verifies without the key (the schema holds), and not with it.
    let bare: String = invented
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).expect("json");
            r.as_object_mut().expect("object").remove("hmac");
            r.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rechained = String::new();
    let mut prev = "0".repeat(64);
    for l in bare.lines() {
        let mut r: Value = serde_json::from_str(l).expect("json");
        r["prev_sha256"] = json!(prev);
        let text = r.to_string();
        prev = sha256_hex(&text);
        rechained.push_str(&text);
        rechained.push('\n');
    }
    std::fs::write(&forged, &rechained).expect("write");
    assert_eq!(audit_verify(&forged, &[]).0, 0);
    let (code, out) = audit_verify(&forged, &["--key-file", &key_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no HMAC"), "{out}");
    // A record of the wrong shape does not verify, key or not.
    let mut r: Value = serde_json::from_str(rechained.lines().next().expect("line")).expect("json");
    r["port"] = json!("443");
    std::fs::write(&forged, format!("{r}\n")).expect("write");
    let (code, out) = audit_verify(&forged, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("`port`"), "{out}");
}

/// A crash (or a full disk) mid-write leaves a torn last line. The next start closes it and
/// writes a `recovered` record naming it, so the records after it verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_recovered_at_the_next_start() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let trail = env.dir.join("torn.jsonl");
    let (p, proxy) =
        proxy_with_trail(&env, &good, &["good.enclave.test"], &trail, "", "torn.toml").await;
    assert!(get(proxy, "good.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    drop(p);
    // What a crash mid-write leaves: the start of a record, no newline.
    let first = lines(&trail).remove(0);
    let torn = &first[..first.len() / 2];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&trail)
        .expect("open");
    std::io::Write::write_all(&mut f, torn.as_bytes()).expect("write");
    drop(f);
    assert_eq!(audit_verify(&trail, &[]).0, 1, "torn, not yet closed");

    let (_p, proxy) =
        proxy_with_trail(&env, &good, &["good.enclave.test"], &trail, "", "torn.toml").await;
    assert!(get(proxy, "good.enclave.test", "/again", "")
        .await
        .starts_with("HTTP/1.1 200"));
    let l = lines(&trail);
    assert_eq!(l.len(), 4, "{l:#?}");
    assert_eq!(l[1], torn, "the torn bytes stay, on a line of their own");
    let recovered: Value = serde_json::from_str(&l[2]).expect("json");
    assert_eq!(recovered["event"], "recovered");
    assert_eq!(recovered["torn_sha256"], sha256_hex(torn));
    assert_eq!(recovered["prev_sha256"], sha256_hex(&l[0]));
    assert_eq!(recovered["seq"], 2);
    let (code, out) = audit_verify(&trail, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 records") && out.contains("1 torn line"),
        "{out}"
    );
}

/// `--expect-last`: the last record is the one anchored elsewhere, so records cut from the
/// end are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_last_finds_records_cut_from_the_end() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let trail = env.dir.join("cut.jsonl");
    let (_p, proxy) = proxy_with_trail(
        &env,
        &good,
        &["a.enclave.test", "b.enclave.test"],
        &trail,
        "",
        "cut.toml",
    )
    .await;
    for host in ["a.enclave.test", "b.enclave.test"] {
        assert!(get(proxy, host, "/", "").await.starts_with("HTTP/1.1 200"));
    }
    let l = lines(&trail);
    assert_eq!(l.len(), 2, "{l:#?}");
    let last = sha256_hex(&l[1]);
    let (code, out) = audit_verify(&trail, &["--expect-last", &last]);
    assert_eq!(code, 0, "{out}");
    let cut = env.dir.join("cut-short.jsonl");
    std::fs::write(&cut, format!("{}\n", l[0])).expect("write");
    assert_eq!(
        audit_verify(&cut, &[]).0,
        0,
        "a prefix of a chain is a chain"
    );
    let (code, out) = audit_verify(&cut, &["--expect-last", &last]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&last), "{out}");
}

/// A verdict from the cache admitting a connection to another host is recorded once for
/// that host: the trail says which hosts an enclave served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_use_of_a_cached_verdict_for_each_host_is_recorded() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let trail: PathBuf = env.dir.join("hosts.jsonl");
    let (_p, proxy) =
        proxy_with_trail(&env, &good, &["*.enclave.test"], &trail, "", "hosts.toml").await;
    for host in [
        "a.enclave.test",
        "b.enclave.test",
        "a.enclave.test",
        "b.enclave.test",
    ] {
        assert!(get(proxy, host, "/", "").await.starts_with("HTTP/1.1 200"));
    }
    let l = lines(&trail);
    assert_eq!(l.len(), 2, "one record per host: {l:#?}");
    let first: Value = serde_json::from_str(&l[0]).expect("json");
    let second: Value = serde_json::from_str(&l[1]).expect("json");
    assert_eq!(first["host"], "a.enclave.test");
    assert!(first.get("event").is_none(), "{first}");
    assert_eq!(second["host"], "b.enclave.test");
    assert_eq!(second["event"], "cached");
    assert_eq!(second["verdict"], "accepted");
    assert_eq!(second["cert_sha256"], first["cert_sha256"]);
    assert_eq!(audit_verify(&trail, &[]).0, 0);
}
