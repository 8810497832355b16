//! `tee = "nitro"` entries through the real proxy binary (real sockets, real TLS, curl):
//! Nitro sims behind dstack's `.1.8` (the sim Nitro root pinned by `nitro_trust_root`, CRLs
//! from the offline directory) are accepted, and refused for each PCR (0, 1, 2, 3, 4, 8), a
//! debug enclave (accepted with `allow_debug`), a key the document does not bind, an old
//! document, a revoked intermediate, and CRLs that cannot be had under
//! `nitro_revocation = "required"` (accepted under `"if_available"`); Intel evidence on a
//! Nitro entry and Nitro evidence on a TDX or SNP entry are `tee_mismatch`. A refused enclave
//! is never reached; every verdict is in the audit trail (`tee` NITRO, the `nitro` fields),
//! which `audit verify` accepts.

#![cfg(feature = "sim")]

mod common;

use std::path::Path;
use std::sync::Arc;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::nitro::{crl_file, SimNitro};
use ratls_proxy::sim::{NitroEnclaveSpec, SimConfig, SimEnclave, TdSpec};
use serde_json::Value;

use common::{curl_via, env, free_port, start_sim, Env, Harness};

/// The PCR0 the Nitro entries pin.
const PCR0: [u8; 48] = [0x5a; 48];

fn nitro_pki(env: &Env) -> Arc<SimNitro> {
    Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("pki"))
}

/// A Nitro sim on a free loopback port, its spec changed by `f`.
async fn start_nitro(
    env: &Env,
    pki: &Arc<SimNitro>,
    f: impl FnOnce(&mut NitroEnclaveSpec),
) -> SimEnclave {
    let mut spec = NitroEnclaveSpec::new(Arc::clone(pki), PCR0);
    f(&mut spec);
    start_sim(
        env,
        SimConfig {
            nitro: Some(spec),
            ..SimConfig::default()
        },
    )
    .await
}

/// `[collateral]` keys: the sim Nitro root pinned, CRLs from `crls`, revocation `mode`.
fn nitro_keys(env: &Env, crls: &Path, mode: &str) -> String {
    format!(
        "nitro_trust_root = \"{}\"\nnitro_crls = \"{}\"\nnitro_revocation = \"{mode}\"\n",
        env.dir.join("pki/nitro-root.pem").display(),
        crls.display()
    )
}

/// `[[enclave]]` text: `host`, tee = "nitro", PCR0 pinned, `extra` keys.
fn nitro_entry(host: &str, sim: &SimEnclave, extra: &str) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\n{extra}\nconnect_to = \"{}\"\n\n",
        hex::encode(PCR0),
        sim.addr()
    )
}

fn records(trail: &Path) -> Vec<Value> {
    std::fs::read_to_string(trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// curl through `proxy` to `host`: the status line's code and the whole answer.
async fn get(proxy: u16, host: &str) -> String {
    curl_via(proxy, &format!("http://{host}/hello")).await
}

fn assert_refused(text: &str, host: &str, code: &str) {
    assert!(text.starts_with("HTTP/1.1 502"), "{host}: {text}");
    assert!(
        text.contains(&format!("\"code\":\"{code}\"")),
        "{host}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_enclaves_are_accepted_or_refused_each_with_its_code() {
    let env = env();
    let pki = nitro_pki(&env);
    let good = start_nitro(&env, &pki, |_| {}).await;
    let debug = start_nitro(&env, &pki, |s| s.debug = true).await;
    let td = start_sim(
        &env,
        SimConfig {
            td: Some(TdSpec::default()),
            ..SimConfig::default()
        },
    )
    .await;
    let mut refused: Vec<(&str, SimEnclave, &str)> = vec![
        (
            "other-pcr0",
            start_nitro(&env, &pki, |s| s.pcr0 = [0x11; 48]).await,
            "pcr_mismatch",
        ),
        ("debug", debug, "debug_enclave"),
        (
            "wrong-key",
            start_nitro(&env, &pki, |s| s.wrong_key = true).await,
            "binding_mismatch",
        ),
        (
            "old",
            start_nitro(&env, &pki, |s| s.age_secs = 900).await,
            "document_too_old",
        ),
    ];
    // The good sim under entries whose policy it does not meet: one per PCR.
    let other = |n: u8| format!("[\"{}\"]", hex::encode([n; 48]));
    let policies: Vec<(String, String)> = [1u8, 2, 3, 4, 8]
        .iter()
        .map(|i| (format!("pcr{i}"), format!("pcr{i} = {}", other(0x70 + i))))
        .collect();
    let proxy = free_port();
    let trail = env.dir.join("nitro-audit.jsonl");
    let crls = env.dir.join("pki/collateral/nitro");
    let mut entries = format!("[audit]\npath = \"{}\"\n\n", trail.display());
    // Every PCR the good sim has, pinned: it passes them all.
    entries.push_str(&nitro_entry(
        "nitro.enclave.test",
        &good,
        &format!(
            "pcr1 = {}\npcr2 = {}\npcr3 = {}\npcr4 = {}\npcr8 = {}\nmax_cert_age_secs = 600",
            other(0x11),
            other(0x22),
            other(0),
            other(0x44),
            other(0)
        ),
    ));
    entries.push_str(&format!(
        "[[enclave]]\nhosts = [\"debug-allowed.enclave.test\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\nallow_debug = true\nconnect_to = \"{}\"\n\n",
        "00".repeat(48),
        refused[1].1.addr()
    ));
    for (name, sim, _) in &refused {
        let extra = if *name == "old" {
            "max_cert_age_secs = 600"
        } else {
            ""
        };
        entries.push_str(&nitro_entry(&format!("{name}.enclave.test"), sim, extra));
    }
    for (name, extra) in &policies {
        entries.push_str(&nitro_entry(
            &format!("policy-{name}.enclave.test"),
            &good,
            extra,
        ));
    }
    // Intel evidence on a Nitro entry; Nitro evidence on a TDX entry.
    entries.push_str(&nitro_entry("nitro-td.enclave.test", &td, ""));
    entries.push_str(&format!(
        "[[enclave]]\nhosts = [\"tdx.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{}\"]\nconnect_to = \"{}\"\n\n",
        "7d".repeat(48),
        good.addr()
    ));
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&nitro_keys(&env, &crls, "required"))
        .tail(&entries)
        .start_binary("nitro.toml")
        .await;
    for host in ["nitro.enclave.test", "debug-allowed.enclave.test"] {
        let text = get(proxy, host).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
    }
    let text = get(proxy, "nitro.enclave.test").await;
    assert!(
        text.contains(&format!("\"pcr0\":\"{}\"", hex::encode(PCR0))),
        "{text}"
    );
    assert!(good.request_count() >= 2);
    let mut expected: Vec<(String, &str)> = Vec::new();
    for (name, sim, code) in &mut refused {
        let host = format!("{name}.enclave.test");
        let text = get(proxy, &host).await;
        assert_refused(&text, &host, code);
        if *name != "debug" {
            assert_eq!(
                sim.request_count(),
                0,
                "{host}: a refused enclave is never reached"
            );
        }
        expected.push((host, *code));
    }
    let before = good.request_count();
    for (name, _) in &policies {
        let host = format!("policy-{name}.enclave.test");
        let text = get(proxy, &host).await;
        assert_refused(&text, &host, "pcr_mismatch");
        assert!(
            text.contains(&format!("PCR{}", &name[3..])),
            "{host}: {text}"
        );
        expected.push((host, "pcr_mismatch"));
    }
    assert_eq!(
        good.request_count(),
        before,
        "a refused entry never reaches the enclave"
    );
    for host in ["nitro-td.enclave.test", "tdx.enclave.test"] {
        let text = get(proxy, host).await;
        assert_refused(&text, host, "tee_mismatch");
    }
    assert_eq!(td.request_count(), 0, "a refused TD is never reached");
    assert_eq!(
        good.request_count(),
        before,
        "nor is the enclave under a TDX entry"
    );
    let recs = records(&trail);
    // The first handshake found no CRL held: refused, the CRLs fetched, dialed again.
    let first = recs
        .iter()
        .find(|r| r["host"] == "nitro.enclave.test")
        .expect("a record");
    assert_eq!(first["code"], "collateral_unavailable", "{first}");
    let accepted = recs
        .iter()
        .find(|r| r["host"] == "nitro.enclave.test" && r["verdict"] == "accepted")
        .expect("accepted record");
    assert_eq!(accepted["verdict"], "accepted", "{accepted}");
    assert_eq!(accepted["tee"], "NITRO", "{accepted}");
    assert_eq!(
        accepted["nitro"]["pcrs"]["0"],
        hex::encode(PCR0),
        "{accepted}"
    );
    assert!(accepted["nitro"]["module_id"].is_string(), "{accepted}");
    assert_eq!(
        accepted["nitro"]["revocation"]["checked"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "both intermediates naming a CRL were checked: {accepted}"
    );
    for (host, code) in &expected {
        let r = recs
            .iter()
            .find(|r| r["host"] == host.as_str())
            .unwrap_or_else(|| panic!("{host} not audited: {recs:#?}"));
        assert_eq!(r["verdict"], "refused", "{r}");
        assert_eq!(r["code"], *code, "{r}");
        assert_eq!(r["tee"], "NITRO", "{r}");
    }
    // Two entries, one policy each: their digests differ (the Nitro policy is covered).
    let digest = |host: &str| {
        recs.iter()
            .find(|r| r["host"] == host)
            .map(|r| r["policy_sha256"].clone())
    };
    assert_ne!(
        digest("policy-pcr1.enclave.test"),
        digest("policy-pcr2.enclave.test")
    );
    let (code, out) = common::audit_verify(&trail, &[]);
    assert_eq!(code, 0, "{out}");
}

/// A proxy with one Nitro entry for `sim`, CRLs from `crls` under revocation `mode`: what
/// curl gets.
async fn one_entry(env: &Env, sim: &SimEnclave, crls: &Path, mode: &str, name: &str) -> String {
    let proxy = free_port();
    let _p = Harness::new(env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&nitro_keys(env, crls, mode))
        .tail(&nitro_entry("nitro.enclave.test", sim, ""))
        .start_binary(name)
        .await;
    get(proxy, "nitro.enclave.test").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_the_proxy_revoked_unavailable_and_if_available() {
    let env = env();
    let pki = nitro_pki(&env);
    let sim = start_nitro(&env, &pki, |_| {}).await;
    // The root's CRL lists the regional intermediate (serial 0x10).
    let revoked = env.dir.join("revoked-crls");
    std::fs::create_dir_all(&revoked).expect("dir");
    let now = UnixTime(env.now.0);
    for (issuer, serials) in [(0, vec![&[0x10u8][..]]), (1, vec![])] {
        let der = pki
            .crl(
                issuer,
                &serials,
                UnixTime(now.0 - 3600),
                UnixTime(now.0 + 86_400),
            )
            .expect("crl");
        std::fs::write(revoked.join(crl_file(issuer)), der).expect("write");
    }
    let text = one_entry(&env, &sim, &revoked, "required", "revoked.toml").await;
    assert_refused(&text, "revoked", "revoked");
    assert!(text.contains("cabundle[1]"), "{text}");
    // No CRL to be had: refused when required, accepted (unchecked) when not.
    let empty = env.dir.join("no-crls");
    std::fs::create_dir_all(&empty).expect("dir");
    let text = one_entry(&env, &sim, &empty, "required", "required.toml").await;
    assert_refused(&text, "required", "collateral_unavailable");
    assert_eq!(sim.request_count(), 0, "a refused enclave is never reached");
    let text = one_entry(&env, &sim, &empty, "if_available", "lax.toml").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(sim.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_evidence_on_an_snp_entry_is_a_tee_mismatch() {
    let env = env();
    let pki = nitro_pki(&env);
    let sim = start_nitro(&env, &pki, |_| {}).await;
    let kds = env.dir.join("amd-kds");
    std::fs::create_dir_all(&kds).expect("kds dir");
    let proxy = free_port();
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&format!("amd_kds = \"{}\"\n", kds.display()))
        .tail(&format!(
            "[[enclave]]\nhosts = [\"snp.enclave.test\"]\ntee = \"snp\"\nmeasurement = [\"{}\"]\nconnect_to = \"{}\"\n",
            "5a".repeat(48),
            sim.addr()
        ))
        .start_binary("snp-nitro.toml")
        .await;
    let text = get(proxy, "snp.enclave.test").await;
    assert_refused(&text, "snp", "tee_mismatch");
    assert!(text.contains("nitro-enclave"), "{text}");
    assert_eq!(sim.request_count(), 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_line_header_and_metrics_name_the_nitro_enclave() {
    let env = env();
    let pki = nitro_pki(&env);
    let sim = start_nitro(&env, &pki, |_| {}).await;
    let ports = common::Ports::free();
    let crls = env.dir.join("pki/collateral/nitro");
    let harness = Harness::new(&env)
        .ports(ports)
        .top("attestation_header = true\n")
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&nitro_keys(&env, &crls, "required"))
        .tail(&nitro_entry("nitro.enclave.test", &sim, ""));
    let mut p = common::Binary::start(&harness.write("access.toml"), ports.proxy, &[], true).await;
    let logs = p.log_lines();
    let text = get(ports.proxy, "nitro.enclave.test").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let pcr0 = hex::encode(PCR0);
    let header = text
        .lines()
        .find(|l| l.to_lowercase().starts_with("ratls-attestation:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        header.contains("tee=nitro")
            && header.contains(&format!("pcr0={pcr0}"))
            && header.contains("binding=dstack"),
        "{header}"
    );
    let mut named = false;
    for _ in 0..50 {
        named = logs.lock().expect("logs").iter().any(|v| {
            v["target"] == "ratls_proxy::access"
                && v["host"] == "nitro.enclave.test"
                && v["pcr0"] == pcr0.as_str()
                && v["verdict"] == "accepted"
        });
        if named {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(named, "{:#?}", logs.lock().expect("logs"));
    // The two CRLs read on the first handshake's miss, held, counted.
    let (status, body) =
        common::curl_status(&[&format!("http://127.0.0.1:{}/metrics", ports.admin)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("ratls_nitro_crl_held{tee=\"nitro\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("ratls_nitro_crl_fetches_total{tee=\"nitro\"} 2"),
        "{body}"
    );
}
