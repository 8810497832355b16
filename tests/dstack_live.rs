//! dstack apps end to end, through the proxy binary with curl: simulated dstack TDs in each
//! wire form (`.1.8` V0 and V1, the legacy `.1.1` + `.1.2` pair) accepted by their app
//! identity, refused for each identity field with its own code, for a log that does not
//! replay (`event_log_mismatch`), for a report data bound to another key
//! (`binding_mismatch`), and fail closed when an identity is pinned and the evidence is a
//! plain TDX quote. The audit trail names the app; the config refuses an identity without
//! the OS measurements under it.

mod common;

use ratls_proxy::sim::{DstackSpec, DstackWire, SimBinding, SimConfig, SimEnclave, TdSpec};
use serde_json::Value;

use common::{curl_status, curl_via, env, free_port, output, start_sim, Binary, Env, Harness};

fn hex48(b: u8) -> String {
    hex::encode([b; 48])
}

async fn dstack_sim(env: &Env, f: impl FnOnce(&mut DstackSpec)) -> SimEnclave {
    let mut app = DstackSpec::default();
    f(&mut app);
    start_sim(
        env,
        SimConfig {
            td: Some(TdSpec::default()),
            binding: SimBinding::Dstack,
            dstack: app,
            ..SimConfig::default()
        },
    )
    .await
}

/// The sim TD's OS measurements (MRTD, RTMR0–2), which an app identity needs beside it.
fn os_pins() -> String {
    format!(
        "mrtd = [\"{}\"]\nrtmr0 = [\"{}\"]\nrtmr1 = [\"{}\"]\nrtmr2 = [\"{}\"]\n",
        hex48(0x7d),
        hex48(0x10),
        hex48(0x11),
        hex48(0x12)
    )
}

/// The default sim app's whole identity, with `change` applied to one key's line.
fn identity(change: Option<(&str, String)>) -> String {
    let d = DstackSpec::default();
    let mut keys = vec![
        ("app_id", format!("[\"{}\"]", hex::encode(&d.app_id))),
        (
            "compose_hash",
            format!("[\"{}\"]", hex::encode(&d.compose_hash)),
        ),
        (
            "os_image_hash",
            format!("[\"{}\"]", hex::encode(&d.os_image_hash)),
        ),
        (
            "instance_id",
            format!("[\"{}\"]", hex::encode(&d.instance_id)),
        ),
        (
            "key_provider",
            format!("[\"{}:{}\"]", d.key_provider.0, d.key_provider.1),
        ),
    ];
    if let Some((key, value)) = change {
        for (k, v) in &mut keys {
            if *k == key {
                *v = value.clone();
            }
        }
    }
    keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

fn entry(host: &str, keys: &str, to: std::net::SocketAddr) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"tdx\"\n{}{keys}connect_to = \"{to}\"\n\n",
        os_pins()
    )
}

async fn refused_with(proxy: u16, host: &str, code: &str) -> String {
    let text = curl_via(proxy, &format!("http://{host}/")).await;
    let lower = text.to_lowercase();
    assert!(lower.starts_with("http/1.1 502"), "{host}: {text}");
    assert!(
        lower.contains(&format!("\"code\":\"{code}\"")),
        "{host}: want {code}: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dstack_apps_are_judged_by_their_identity_through_the_proxy() {
    let env = env();
    let v0 = dstack_sim(&env, |a| a.wire = DstackWire::V0).await;
    let v1 = dstack_sim(&env, |a| a.wire = DstackWire::V1).await;
    let legacy = dstack_sim(&env, |a| a.wire = DstackWire::Legacy).await;
    let broken = dstack_sim(&env, |a| {
        a.wire = DstackWire::V1;
        a.break_replay = true;
    })
    .await;
    let moved = dstack_sim(&env, |a| {
        a.wire = DstackWire::V0;
        a.wrong_key = true;
    })
    .await;
    let plain = start_sim(
        &env,
        SimConfig {
            td: Some(TdSpec::default()),
            ..SimConfig::default()
        },
    )
    .await;
    let other20 = format!("[\"{}\"]", "ee".repeat(20));
    let other32 = format!("[\"{}\"]", "ee".repeat(32));
    let mismatches = [
        ("app-id.test", "app_id", other20.clone(), "app_id_mismatch"),
        (
            "compose.test",
            "compose_hash",
            other32.clone(),
            "compose_hash_mismatch",
        ),
        (
            // The VM configuration's unmeasured image hash (`ee…`) is never what is judged.
            "os-image.test",
            "os_image_hash",
            other32.clone(),
            "os_image_hash_mismatch",
        ),
        (
            "instance.test",
            "instance_id",
            other20.clone(),
            "instance_id_mismatch",
        ),
        (
            "provider.test",
            "key_provider",
            "[\"local-sgx:ab\"]".to_owned(),
            "key_provider_mismatch",
        ),
    ];
    let full = identity(None);
    let mut tail = String::new();
    let trail = env.dir.join("dstack-audit.jsonl");
    tail.push_str(&format!("[audit]\npath = \"{}\"\n\n", trail.display()));
    for (host, sim) in [
        ("v0.dstack.test", &v0),
        ("v1.dstack.test", &v1),
        ("legacy.dstack.test", &legacy),
    ] {
        tail.push_str(&entry(host, &full, sim.addr()));
    }
    for (host, key, value, _) in &mismatches {
        tail.push_str(&entry(
            host,
            &identity(Some((key, value.clone()))),
            v1.addr(),
        ));
    }
    tail.push_str(&entry("broken.dstack.test", &full, broken.addr()));
    tail.push_str(&entry("moved.dstack.test", &full, moved.addr()));
    tail.push_str(&entry("plain.dstack.test", &full, plain.addr()));
    let proxy = free_port();
    let harness = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .tail(&tail);
    let mut p = Binary::start(&harness.write("dstack.toml"), proxy, &[], true).await;
    let logs = p.log_lines();
    let via = format!("http://127.0.0.1:{proxy}");
    let ca = env.ca_pem().display().to_string();
    for (host, sim) in [
        ("v0.dstack.test", &v0),
        ("v1.dstack.test", &v1),
        ("legacy.dstack.test", &legacy),
    ] {
        let (code, body) = curl_status(&[
            "-x",
            &via,
            "--cacert",
            &ca,
            &format!("https://{host}/hello"),
        ])
        .await;
        assert_eq!(code, 200, "{host}: {body}");
        assert!(sim.request_count() >= 1, "{host} was reached");
    }
    for (host, _, _, code) in &mismatches {
        refused_with(proxy, host, code).await;
    }
    refused_with(proxy, "broken.dstack.test", "event_log_mismatch").await;
    refused_with(proxy, "moved.dstack.test", "binding_mismatch").await;
    // A plain TDX quote names no app: an entry pinning one refuses it, with every key.
    let text = refused_with(proxy, "plain.dstack.test", "app_id_mismatch").await;
    assert!(text.contains("carries no dstack app identity"), "{text}");
    assert_eq!(plain.request_count(), 0, "the plain TD was never reached");
    assert_eq!(broken.request_count() + moved.request_count(), 0);

    // The audit trail names the app of each dstack verdict, and no app otherwise.
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let of = |host: &str| {
        records
            .iter()
            .find(|r| r["host"] == host)
            .unwrap_or_else(|| panic!("no record for {host}: {records:#?}"))
    };
    let d = DstackSpec::default();
    for (host, wire) in [
        ("v0.dstack.test", "v0"),
        ("v1.dstack.test", "v1"),
        ("legacy.dstack.test", "legacy"),
    ] {
        let r = of(host);
        assert_eq!(r["verdict"], "accepted", "{r}");
        assert_eq!(r["app"]["dstack_wire"], wire, "{r}");
        assert_eq!(r["app"]["app_id"], hex::encode(&d.app_id), "{r}");
        assert_eq!(
            r["app"]["compose_hash"],
            hex::encode(&d.compose_hash),
            "{r}"
        );
        assert_eq!(r["app"]["key_provider"]["name"], "kms", "{r}");
    }
    let r = of("compose.test");
    assert_eq!(
        (r["verdict"].as_str(), r["code"].as_str()),
        (Some("refused"), Some("compose_hash_mismatch")),
        "{r}"
    );
    assert_eq!(
        r["app"]["compose_hash"],
        hex::encode(&d.compose_hash),
        "{r}"
    );
    assert!(of("plain.dstack.test").get("app").is_none());
    let (exit, out) = common::audit_verify(&trail, &[]);
    assert_eq!(exit, 0, "{out}");

    // The access line of an accepted dstack request names the app.
    let app_id = hex::encode(&d.app_id);
    let mut named = false;
    for _ in 0..50 {
        named = logs.lock().expect("logs").iter().any(|v| {
            v["target"] == "ratls_proxy::access"
                && v["host"] == "v1.dstack.test"
                && v["app_id"] == app_id.as_str()
        });
        if named {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(named, "{:#?}", logs.lock().expect("logs"));
}

/// `verify https://` reads the sim's `.1.8` in both wire forms like a real dstack app's:
/// the app identity the sim measured, every runtime event replayed into RTMR3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_shows_the_sim_apps_identity_in_each_wire() {
    let env = env();
    let d = DstackSpec::default();
    for (wire, name) in [
        (DstackWire::V0, "v0"),
        (DstackWire::V1, "v1"),
        (DstackWire::Legacy, "legacy"),
    ] {
        let sim = dstack_sim(&env, |a| a.wire = wire).await;
        let (code, j) = common::verify_https(
            &env,
            sim.addr(),
            env.dir.join("pki/collateral"),
            &["--mrtd", &hex48(0x7d)],
        )
        .await;
        assert_eq!(code, 0, "{name}: {j}");
        assert_eq!(j["dstack_wire"], name, "{j}");
        assert_eq!(j["app"]["app_id"], hex::encode(&d.app_id), "{j}");
        assert_eq!(
            j["app"]["os_image_hash"],
            hex::encode(&d.os_image_hash),
            "{j}"
        );
        assert_eq!(j["app"]["system_ready"], true, "{j}");
        assert_eq!(j["quote"]["rtmr3"], hex::encode(d.rtmr3()), "{j}");
        assert_eq!(j["rtmr_replay"][3]["replay"], "replayed", "{j}");
        // The VM configuration's image hash is reported as the guest's claim, apart.
        if wire != DstackWire::Legacy {
            assert_eq!(j["vm_config_os_image_hash"], "ee".repeat(32), "{j}");
        }
    }
}

/// `config check` refuses an app identity without MRTD and RTMR0–2 pinned under it, naming
/// the missing keys.
#[test]
fn config_check_requires_the_os_under_an_app_identity() {
    let env = env();
    let app = format!("app_id = [\"{}\"]\n", "a1".repeat(20));
    let path = env.dir.join("dstack-check.toml");
    let write = |body: &str| {
        std::fs::write(
            &path,
            format!("[[enclave]]\nhosts = [\"a.dstack.test\"]\ntee = \"tdx\"\n{body}"),
        )
        .expect("write config")
    };
    write(&format!("mrtd = [\"{}\"]\n{app}", hex48(0x7d)));
    let out = output(["config", "check", path.to_str().unwrap_or_default()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("must also pin rtmr0, rtmr1, rtmr2"), "{text}");
    write(&format!("{}{app}", os_pins()));
    let out = output(["config", "check", path.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
