//! `tee = "snp"` entries through the real proxy binary (real sockets, real TLS, curl): an
//! SNP entry refuses every Intel quote (`tee_mismatch`); SEV-SNP sims behind dstack (the sim
//! ARKs pinned by `amd_trust_root`) are accepted, and refused for each policy field, a
//! broken binding, another chip's key and a revoked ASK, each with its own code, the refused
//! VM never reached, every verdict in the audit trail (`tee` SNP, the `snp` fields) which
//! `audit verify` accepts. Collateral from the offline KDS directory, and fetched on the
//! first handshake from a loopback server speaking KDS's paths. Against a hostile network:
//! a revoked ASK stays revoked when an older CRL is served after a reload or a restart, such
//! a refusal says `collateral_rollback`, and a chain KDS cannot serve is not asked for on
//! every client request.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::sim::dstack_snp::{ARK_FILE, KDS_DIR};
use ratls_proxy::sim::{SimConfig, SimEnclave, SnpSim, SnpSimSpec, TdSpec};
use ratls_proxy::snp::report::GuestPolicy;
use ratls_proxy::snp::Product;
use serde_json::Value;

use common::{curl_via, env, free_port, start_sim, Env, Harness};

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

/// The MEASUREMENT the SNP entries pin.
const MEASUREMENT: [u8; 48] = [0x5e; 48];

/// The sim AMD PKI of `env`'s PKI directory.
fn snp_sim(env: &Env) -> Arc<SnpSim> {
    Arc::new(SnpSim::load_or_create(&env.dir.join("pki"), env.now).expect("SNP sim"))
}

/// An SEV-SNP sim on a free loopback port, its spec changed by `f`.
async fn start_snp(env: &Env, sim: &Arc<SnpSim>, f: impl FnOnce(&mut SnpSimSpec)) -> SimEnclave {
    let mut spec = SnpSimSpec::new(Arc::clone(sim), Product::Milan, MEASUREMENT);
    f(&mut spec);
    start_sim(
        env,
        SimConfig {
            snp: Some(spec),
            ..SimConfig::default()
        },
    )
    .await
}

/// `[collateral]` keys: SEV-SNP collateral from `kds` (a directory or a URL), the sim ARKs
/// of `env`'s PKI directory pinned.
fn amd_keys(kds: &str, env: &Env) -> String {
    format!(
        "amd_kds = \"{kds}\"\namd_trust_root = \"{}\"\n",
        env.dir.join("pki").join(ARK_FILE).display()
    )
}

/// `[[enclave]]` text: `host`, tee = "snp", the pinned measurement, `extra` keys.
fn snp_entry(host: &str, sim: &SimEnclave, extra: &str) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"snp\"\nmeasurement = [\"{}\"]\n{extra}\nconnect_to = \"{}\"\n\n",
        hex::encode(MEASUREMENT),
        sim.addr()
    )
}

fn records(trail: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snp_guests_are_accepted_or_refused_each_with_its_code() {
    let env = env();
    let sim = snp_sim(&env);
    let pki = env.dir.join("pki");
    let good = start_snp(&env, &sim, |_| {}).await;
    let v0 = start_snp(&env, &sim, |s| s.wire = ratls_proxy::sim::DstackWire::V0).await;
    let carried = start_snp(&env, &sim, |s| s.carry_chain = true).await;
    // Sims whose own evidence is refused, whatever the entry.
    let mut refused: Vec<(&str, SimEnclave, &str)> = vec![
        (
            "other-measurement",
            start_snp(&env, &sim, |s| s.report.measurement = [0x11; 48]).await,
            "measurement_mismatch",
        ),
        (
            "debug",
            start_snp(&env, &sim, |s| s.report.policy |= GuestPolicy::DEBUG).await,
            "debug_enclave",
        ),
        (
            "vmpl",
            start_snp(&env, &sim, |s| s.report.vmpl = 2).await,
            "vmpl_not_allowed",
        ),
        (
            "migration",
            start_snp(&env, &sim, |s| s.report.policy |= GuestPolicy::MIGRATE_MA).await,
            "guest_policy_not_allowed",
        ),
        (
            "wrong-key",
            start_snp(&env, &sim, |s| s.wrong_key = true).await,
            "binding_mismatch",
        ),
        (
            "wrong-host-data",
            start_snp(&env, &sim, |s| s.wrong_host_data = true).await,
            "binding_mismatch",
        ),
        (
            "other-chip",
            start_snp(&env, &sim, |s| s.other_chip = true).await,
            "signature_invalid",
        ),
    ];
    // The good sim under entries whose policy it does not meet.
    let policies: &[(&str, &str, &str)] = &[
        (
            "host-data",
            &format!("host_data = [\"{}\"]", "22".repeat(32)),
            "host_data_mismatch",
        ),
        (
            "id-key",
            &format!("id_key_digest = [\"{}\"]", "33".repeat(48)),
            "id_key_mismatch",
        ),
        (
            "author-key",
            &format!("author_key_digest = [\"{}\"]", "44".repeat(48)),
            "author_key_mismatch",
        ),
        (
            "family",
            &format!("family_id = \"{}\"", "55".repeat(16)),
            "id_block_mismatch",
        ),
        (
            "image",
            &format!("image_id = \"{}\"", "66".repeat(16)),
            "id_block_mismatch",
        ),
        ("svn", "min_guest_svn = 2", "guest_svn_too_low"),
        (
            "tcb-bootloader",
            "min_tcb = { bootloader = 5, tee = 0, snp = 0, microcode = 0 }",
            "tcb_below_minimum",
        ),
        (
            "tcb-tee",
            "min_tcb = { bootloader = 0, tee = 2, snp = 0, microcode = 0 }",
            "tcb_below_minimum",
        ),
        (
            "tcb-snp",
            "min_tcb = { bootloader = 0, tee = 0, snp = 24, microcode = 0 }",
            "tcb_below_minimum",
        ),
        (
            "tcb-microcode",
            "min_tcb = { bootloader = 0, tee = 0, snp = 0, microcode = 214 }",
            "tcb_below_minimum",
        ),
    ];
    let proxy = free_port();
    let trail = env.dir.join("snp-audit.jsonl");
    let mut entries = format!("[audit]\npath = \"{}\"\n\n", trail.display());
    entries.push_str(&snp_entry(
        "snp.enclave.test",
        &good,
        "min_tcb = { bootloader = 4, tee = 1, snp = 23, microcode = 213 }\nmin_guest_svn = 1",
    ));
    entries.push_str(&snp_entry("snp-v0.enclave.test", &v0, ""));
    entries.push_str(&snp_entry("snp-carried.enclave.test", &carried, ""));
    for (name, sim, _) in &refused {
        entries.push_str(&snp_entry(&format!("{name}.enclave.test"), sim, ""));
    }
    for (name, extra, _) in policies {
        entries.push_str(&snp_entry(
            &format!("policy-{name}.enclave.test"),
            &good,
            extra,
        ));
    }
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&pki.join("collateral"))
        .collateral_keys(&amd_keys(&pki.join(KDS_DIR).display().to_string(), &env))
        .tail(&entries)
        .start_binary("snp.toml")
        .await;
    for host in [
        "snp.enclave.test",
        "snp-v0.enclave.test",
        "snp-carried.enclave.test",
    ] {
        let text = curl_via(proxy, &format!("http://{host}/hello")).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
        assert!(
            text.contains(&format!("snp:{}", hex::encode(MEASUREMENT))),
            "{host}: {text}"
        );
    }
    assert!(good.request_count() >= 1);
    let mut expected = Vec::new();
    for (name, sim, code) in &mut refused {
        let host = format!("{name}.enclave.test");
        let text = curl_via(proxy, &format!("http://{host}/")).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{host}: {text}");
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "{host}: {text}"
        );
        assert_eq!(
            sim.request_count(),
            0,
            "{host}: a refused VM is never reached"
        );
        expected.push((host, *code));
    }
    let before = good.request_count();
    for (name, _, code) in policies {
        let host = format!("policy-{name}.enclave.test");
        let text = curl_via(proxy, &format!("http://{host}/")).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{host}: {text}");
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "{host}: {text}"
        );
        expected.push((host, *code));
    }
    assert_eq!(
        good.request_count(),
        before,
        "a refused entry never reaches the VM"
    );
    let recs = records(&trail);
    let accepted = recs
        .iter()
        .find(|r| r["host"] == "snp.enclave.test")
        .expect("accepted record");
    assert_eq!(accepted["verdict"], "accepted", "{accepted}");
    assert_eq!(accepted["tee"], "SNP", "{accepted}");
    assert_eq!(
        accepted["snp"]["measurement"],
        hex::encode(MEASUREMENT),
        "{accepted}"
    );
    assert_eq!(accepted["snp"]["vmpl"], 0, "{accepted}");
    assert!(
        accepted["collateral"]["vek_sha256"].is_string(),
        "{accepted}"
    );
    for (host, code) in &expected {
        let r = recs
            .iter()
            .find(|r| r["host"] == host.as_str())
            .unwrap_or_else(|| panic!("{host} not audited: {recs:#?}"));
        assert_eq!(r["verdict"], "refused", "{r}");
        assert_eq!(r["code"], *code, "{r}");
        assert_eq!(r["tee"], "SNP", "{r}");
    }
    // Two entries, one policy each: their digests differ (the SNP policy is covered).
    let digest = |host: &str| {
        recs.iter()
            .find(|r| r["host"] == host)
            .map(|r| r["policy_sha256"].clone())
    };
    assert_ne!(
        digest("policy-svn.enclave.test"),
        digest("policy-family.enclave.test")
    );
    let (code, out) = common::audit_verify(&trail, &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ask_refuses_its_guests() {
    let env = env();
    let sim = snp_sim(&env);
    let pki = env.dir.join("pki");
    let revoked = env.dir.join("amd-revoked");
    sim.write_kds_dir(&revoked, &[Product::Milan])
        .expect("revoking dir");
    let milan = start_snp(&env, &sim, |_| {}).await;
    let genoa = start_snp(&env, &sim, |s| {
        s.product = Product::Genoa;
        s.report = ratls_proxy::sim::snp::ReportSpec {
            measurement: MEASUREMENT,
            ..ratls_proxy::sim::snp::ReportSpec::new(Product::Genoa)
        };
    })
    .await;
    let proxy = free_port();
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&pki.join("collateral"))
        .collateral_keys(&amd_keys(&revoked.display().to_string(), &env))
        .tail(&format!(
            "{}{}",
            snp_entry("milan.enclave.test", &milan, ""),
            snp_entry("genoa.enclave.test", &genoa, "")
        ))
        .start_binary("revoked.toml")
        .await;
    let text = curl_via(proxy, "http://milan.enclave.test/").await;
    assert!(text.contains("\"code\":\"revoked\""), "{text}");
    assert_eq!(milan.request_count(), 0);
    let text = curl_via(proxy, "http://genoa.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Path and query → body, as a KDS stand-in serves them (anything else 404).
type Answers = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>;

/// A loopback server answering KDS's paths from the sim's offline directory, counting hits.
struct Kds {
    base: String,
    answers: Answers,
    hits: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kds {
    async fn start(sim: &SnpSim, dir: &std::path::Path) -> Self {
        use ratls_proxy::snp::report::SigningKey;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let ep = ratls_proxy::KdsEndpoint::at(&base, None).expect("endpoint");
        let answers: Answers = Arc::default();
        for product in Product::ALL {
            let name = product.name().to_lowercase();
            let strip = |u: String| u.strip_prefix(&base).expect("ours").to_owned();
            let mut a = answers.lock().expect("answers");
            a.insert(
                strip(ep.cert_chain_url(product, SigningKey::Vcek)),
                std::fs::read(dir.join(format!("{name}-cert_chain.pem"))).expect("chain"),
            );
            a.insert(
                strip(ep.crl_url(product, SigningKey::Vcek)),
                std::fs::read(dir.join(format!("{name}.crl"))).expect("crl"),
            );
            let chip = ratls_proxy::sim::snp::sim_chip_id(product);
            let tcb = ratls_proxy::sim::snp::sim_tcb(product);
            a.insert(
                strip(ep.vcek_url(product, &chip, &tcb)),
                sim.vcek(product, false).expect("vcek").der,
            );
        }
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (counter, served) = (Arc::clone(&hits), Arc::clone(&answers));
        let task = tokio::spawn(common::pccs::serve_http(listener, None, move |req| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let body = served.lock().expect("answers").get(&target).cloned();
            hyper::Response::builder()
                .status(if body.is_some() { 200 } else { 404 })
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.unwrap_or_default(),
                )))
                .expect("response")
        }));
        Self {
            base,
            answers,
            hits,
            task,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers 404 at `url` from now on.
    fn drop_url(&self, url: &str) {
        let path = url.strip_prefix(&self.base).expect("ours").to_owned();
        self.answers.lock().expect("answers").remove(&path);
    }

    /// Serves `crl` as Milan's CRL from now on.
    fn serve_milan_crl(&self, crl: Vec<u8>) {
        use ratls_proxy::snp::report::SigningKey;
        let ep = ratls_proxy::KdsEndpoint::at(&self.base, None).expect("endpoint");
        let url = ep.crl_url(Product::Milan, SigningKey::Vcek);
        let path = url.strip_prefix(&self.base).expect("ours").to_owned();
        self.answers.lock().expect("answers").insert(path, crl);
    }
}

/// A proxy whose SEV-SNP collateral comes from `kds` (the sim ARKs pinned), with an admin
/// listener, one entry for `guest`.
fn kds_harness<'e>(
    env: &'e Env,
    ports: common::Ports,
    kds: &str,
    guest: &SimEnclave,
) -> Harness<'e> {
    let pki = env.dir.join("pki");
    Harness::new(env)
        .ports(ports)
        .collateral(&pki.join("collateral"))
        .collateral_keys(&amd_keys(kds, env))
        .tail(&snp_entry("kds.enclave.test", guest, ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_is_fetched_from_a_kds_on_the_first_handshake_and_kept_across_reloads() {
    let env = env();
    let sim = snp_sim(&env);
    let kds = Kds::start(&sim, &env.dir.join("pki").join(KDS_DIR)).await;
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let _p = kds_harness(&env, ports, &kds.base, &guest)
        .start_binary("kds.toml")
        .await;
    assert_eq!(kds.hits(), 0, "nothing fetched before a guest is seen");
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The chain, its CRL and the VCEK: three requests; a second connection fetches nothing.
    assert_eq!(kds.hits(), 3);
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(kds.hits(), 3);
    let m = common::admin::metrics(ports.admin).await;
    assert_eq!(
        m.get("ratls_snp_collateral_fetches_total{tee=\"snp\"}"),
        Some(&2.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("ratls_snp_collateral_held{tee=\"snp\",kind=\"vcek\"}"),
        Some(&1.0),
        "{m:?}"
    );
    // A reload keeping the source keeps what was fetched: KDS unreachable now, still served.
    kds.task.abort();
    common::admin::reload(ports.admin).await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_crl_from_another_kds_after_a_reload_is_a_rollback() {
    let env = env();
    let sim = snp_sim(&env);
    let dir = env.dir.join("pki").join(KDS_DIR);
    let first = Kds::start(&sim, &dir).await;
    let second = Kds::start(&sim, &dir).await;
    // The second serves a validly signed Milan CRL issued before the one the first serves.
    let signer = ratls_proxy::sim::snp::SimSnpPki::new(Product::Milan, env.now).expect("pki");
    let older = ratls_proxy::dcap::time::UnixTime(env.now.0 - 7 * 86_400);
    let crl = signer
        .crl(
            older,
            ratls_proxy::dcap::time::UnixTime(env.now.0 + 30 * 86_400),
            &[],
        )
        .expect("crl");
    second.serve_milan_crl(crl);
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let _p = kds_harness(&env, ports, &first.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Another source (nothing adopted), the same high-water marks: its older CRL is refused.
    kds_harness(&env, ports, &second.base, &guest).write("kds.toml");
    common::admin::reload(ports.admin).await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    let m = common::admin::metrics_text(ports.admin).await;
    assert!(
        text.starts_with("HTTP/1.1 502"),
        "{text}\nsecond hits {} first hits {}\n{m}",
        second.hits(),
        first.hits()
    );
    assert!(second.hits() >= 2, "the second KDS was asked");
    let m = common::admin::metrics(ports.admin).await;
    assert_eq!(
        m.get("ratls_snp_collateral_rollbacks_total{tee=\"snp\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        guest.request_count(),
        1,
        "only the first request reached the VM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_line_names_the_snp_measurement() {
    let env = env();
    let sim = snp_sim(&env);
    let pki = env.dir.join("pki");
    let guest = start_snp(&env, &sim, |_| {}).await;
    let proxy = free_port();
    let harness = Harness::new(&env)
        .listen(proxy)
        .collateral(&pki.join("collateral"))
        .collateral_keys(&amd_keys(&pki.join(KDS_DIR).display().to_string(), &env))
        .tail(&snp_entry("snp.enclave.test", &guest, ""));
    let mut p = common::Binary::start(&harness.write("access.toml"), proxy, &[], true).await;
    let logs = p.log_lines();
    let text = curl_via(proxy, "http://snp.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let want = hex::encode(MEASUREMENT);
    let mut named = false;
    for _ in 0..50 {
        named = logs.lock().expect("logs").iter().any(|v| {
            v["target"] == "ratls_proxy::access"
                && v["host"] == "snp.enclave.test"
                && v["snp_measurement"] == want.as_str()
                && v["verdict"] == "accepted"
        });
        if named {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(named, "{:#?}", logs.lock().expect("logs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_snp_source_that_cannot_be_set_up_fails_closed_and_readyz_says_why() {
    let env = env();
    let sim = snp_sim(&env);
    let guest = start_snp(&env, &sim, |_| {}).await;
    // A directory with nothing usable in it, and the sim ARKs pinned.
    let empty = env.dir.join("amd-empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let ports = common::Ports::free();
    let _p = Harness::new(&env)
        .ports(ports)
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&amd_keys(&empty.display().to_string(), &env))
        .tail(&snp_entry("snp.enclave.test", &guest, ""))
        .start_binary("empty.toml")
        .await;
    let text = curl_via(ports.proxy, "http://snp.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.contains("\"code\":\"collateral_unavailable\""),
        "{text}"
    );
    assert_eq!(guest.request_count(), 0);
    let (status, body) =
        common::curl_status(&[&format!("http://127.0.0.1:{}/readyz", ports.admin)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("SEV-SNP collateral could not be set up"),
        "{body}"
    );
}

/// A validly signed (sim ARK) Milan CRL from `from`, revoking `revoked`.
fn milan_crl(env: &Env, from: i64, revoked: &[u64]) -> Vec<u8> {
    use ratls_proxy::dcap::time::UnixTime;
    let signer = ratls_proxy::sim::snp::SimSnpPki::new(Product::Milan, env.now).expect("pki");
    signer
        .crl(UnixTime(from), UnixTime(env.now.0 + 30 * 86_400), revoked)
        .expect("crl")
}

/// The KDS serves a CRL revoking Milan's ASK, the guest is refused `revoked`; after a reload
/// to another KDS source (nothing adopted, the same high-water marks) serving a CRL from
/// before the revocation, the guest is still refused: the revoking CRL raised the mark.
/// Compare tests/snp_live.rs::an_older_crl_from_another_kds_after_a_reload_is_a_rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ask_is_not_restored_by_an_older_crl_after_a_reload() {
    let env = env();
    let sim = snp_sim(&env);
    let dir = env.dir.join("pki").join(KDS_DIR);
    let first = Kds::start(&sim, &dir).await;
    first.serve_milan_crl(milan_crl(
        &env,
        env.now.0 - 600,
        &[ratls_proxy::sim::snp::ASK_SERIAL],
    ));
    let second = Kds::start(&sim, &dir).await;
    second.serve_milan_crl(milan_crl(&env, env.now.0 - 7 * 86_400, &[]));
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let _p = kds_harness(&env, ports, &first.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.contains("\"code\":\"revoked\""), "{text}");
    kds_harness(&env, ports, &second.base, &guest).write("kds.toml");
    common::admin::reload(ports.admin).await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "a CRL older than the revoking one re-admitted the revoked ASK: {}\nguest reached {} times",
        text.lines().next().unwrap_or_default(),
        guest.request_count()
    );
    assert_eq!(guest.request_count(), 0, "a revoked guest is never reached");
}

/// The same across a restart with one KDS URL: the revocation is held only in memory, the
/// on-disk marks hold the revoking CRL, so a network replaying the pre-revocation CRL after
/// the restart does not restore the ASK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ask_is_not_restored_by_a_replayed_crl_after_a_restart() {
    let env = env();
    let sim = snp_sim(&env);
    let dir = env.dir.join("pki").join(KDS_DIR);
    let kds = Kds::start(&sim, &dir).await;
    kds.serve_milan_crl(milan_crl(
        &env,
        env.now.0 - 600,
        &[ratls_proxy::sim::snp::ASK_SERIAL],
    ));
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let proxy = kds_harness(&env, ports, &kds.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.contains("\"code\":\"revoked\""), "{text}");
    drop(proxy);
    // The network replays the CRL from before the revocation.
    kds.serve_milan_crl(milan_crl(&env, env.now.0 - 7 * 86_400, &[]));
    let _p = kds_harness(&env, ports, &kds.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "after a restart a replayed pre-revocation CRL re-admitted the revoked ASK: {}\nguest reached {} times",
        text.lines().next().unwrap_or_default(),
        guest.request_count()
    );
}

/// A guest refused because the only CRL on offer is older than one already admitted gets
/// `collateral_rollback` (docs/snp.md, refusal-codes.md), not "no VCEK fetched yet".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_caused_by_a_crl_rollback_says_collateral_rollback() {
    let env = env();
    let sim = snp_sim(&env);
    let dir = env.dir.join("pki").join(KDS_DIR);
    let first = Kds::start(&sim, &dir).await;
    let second = Kds::start(&sim, &dir).await;
    second.serve_milan_crl(milan_crl(&env, env.now.0 - 7 * 86_400, &[]));
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let _p = kds_harness(&env, ports, &first.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    kds_harness(&env, ports, &second.base, &guest).write("kds.toml");
    common::admin::reload(ports.admin).await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    let m = common::admin::metrics(ports.admin).await;
    assert_eq!(
        m.get("ratls_snp_collateral_rollbacks_total{tee=\"snp\"}"),
        Some(&1.0),
        "the rollback happened: {m:?}"
    );
    let code = text
        .split("\"code\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("?");
    assert_eq!(code, "collateral_rollback", "{text}");
}

/// With the product's chain unavailable (KDS answering 404 on `cert_chain`), client requests
/// to an SEV-SNP host do not each cost two KDS requests (chain and CRL) and a second TLS
/// handshake with the upstream: the failure is backed off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_do_not_each_cost_kds_requests_when_the_chain_fails() {
    let env = env();
    let sim = snp_sim(&env);
    let kds = Kds::start(&sim, &env.dir.join("pki").join(KDS_DIR)).await;
    let ep = ratls_proxy::KdsEndpoint::at(&kds.base, None).expect("endpoint");
    kds.drop_url(&ep.cert_chain_url(Product::Milan, ratls_proxy::snp::report::SigningKey::Vcek));
    let guest = start_snp(&env, &sim, |_| {}).await;
    let ports = common::Ports::free();
    let _p = kds_harness(&env, ports, &kds.base, &guest)
        .start_binary("kds.toml")
        .await;
    let requests = 10;
    for _ in 0..requests {
        let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
        assert!(text.contains("collateral_unavailable"), "{text}");
    }
    let hits = kds.hits();
    assert!(
        hits <= 4,
        "{hits} KDS requests for {requests} client requests with the chain unavailable"
    );
}
