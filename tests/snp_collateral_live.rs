//! SEV-SNP collateral from a KDS against a hostile network, through the real proxy binary: a
//! revoked AMD ASK stays revoked when a network (or another KDS-compatible cache) later
//! serves a CRL issued before the revocation, after a reload or a restart; such a refusal
//! says `collateral_rollback`; a chain KDS cannot serve is not asked for on every request.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::dstack_snp::{ARK_FILE, KDS_DIR};
use ratls_proxy::sim::snp::{SimSnpPki, ASK_SERIAL};
use ratls_proxy::sim::{SimConfig, SimEnclave, SnpSim, SnpSimSpec};
use ratls_proxy::snp::report::SigningKey;
use ratls_proxy::snp::Product;

use common::{curl_via, env, start_sim, Env, Harness};

const MEASUREMENT: [u8; 48] = [0x5e; 48];

fn snp_sim(env: &Env) -> Arc<SnpSim> {
    Arc::new(SnpSim::load_or_create(&env.dir.join("pki"), env.now).expect("SNP sim"))
}

async fn start_snp(env: &Env, sim: &Arc<SnpSim>) -> SimEnclave {
    let spec = SnpSimSpec::new(Arc::clone(sim), Product::Milan, MEASUREMENT);
    start_sim(
        env,
        SimConfig {
            snp: Some(spec),
            ..SimConfig::default()
        },
    )
    .await
}

type Answers = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>;

/// A loopback KDS stand-in serving the sim's offline directory at KDS's paths.
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
        let served = Arc::clone(&answers);
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&hits);
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

    fn serve_milan_crl(&self, crl: Vec<u8>) {
        let ep = ratls_proxy::KdsEndpoint::at(&self.base, None).expect("endpoint");
        let url = ep.crl_url(Product::Milan, SigningKey::Vcek);
        let path = url.strip_prefix(&self.base).expect("ours").to_owned();
        self.answers.lock().expect("answers").insert(path, crl);
    }
}

/// A validly signed (sim ARK) Milan CRL from `from`, revoking `revoked`.
fn milan_crl(env: &Env, from: i64, revoked: &[u64]) -> Vec<u8> {
    let signer = SimSnpPki::new(Product::Milan, env.now).expect("pki");
    signer
        .crl(UnixTime(from), UnixTime(env.now.0 + 30 * 86_400), revoked)
        .expect("crl")
}

fn harness<'e>(env: &'e Env, ports: common::Ports, kds: &str, guest: &SimEnclave) -> Harness<'e> {
    Harness::new(env)
        .ports(ports)
        .collateral(&env.dir.join("pki").join("collateral"))
        .collateral_keys(&format!(
            "amd_kds = \"{kds}\"\namd_trust_root = \"{}\"\n",
            env.dir.join("pki").join(ARK_FILE).display()
        ))
        .tail(&format!(
            "[[enclave]]\nhosts = [\"kds.enclave.test\"]\ntee = \"snp\"\nmeasurement = [\"{}\"]\nconnect_to = \"{}\"\n\n",
            hex::encode(MEASUREMENT),
            guest.addr()
        ))
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
    first.serve_milan_crl(milan_crl(&env, env.now.0 - 600, &[ASK_SERIAL]));
    let second = Kds::start(&sim, &dir).await;
    second.serve_milan_crl(milan_crl(&env, env.now.0 - 7 * 86_400, &[]));
    let guest = start_snp(&env, &sim).await;
    let ports = common::Ports::free();
    let _p = harness(&env, ports, &first.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.contains("\"code\":\"revoked\""), "{text}");
    harness(&env, ports, &second.base, &guest).write("kds.toml");
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
    kds.serve_milan_crl(milan_crl(&env, env.now.0 - 600, &[ASK_SERIAL]));
    let guest = start_snp(&env, &sim).await;
    let ports = common::Ports::free();
    let proxy = harness(&env, ports, &kds.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.contains("\"code\":\"revoked\""), "{text}");
    drop(proxy);
    // The network replays the CRL from before the revocation.
    kds.serve_milan_crl(milan_crl(&env, env.now.0 - 7 * 86_400, &[]));
    let _p = harness(&env, ports, &kds.base, &guest)
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
    let guest = start_snp(&env, &sim).await;
    let ports = common::Ports::free();
    let _p = harness(&env, ports, &first.base, &guest)
        .start_binary("kds.toml")
        .await;
    let text = curl_via(ports.proxy, "http://kds.enclave.test/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    harness(&env, ports, &second.base, &guest).write("kds.toml");
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
    kds.drop_url(&ep.cert_chain_url(Product::Milan, SigningKey::Vcek));
    let guest = start_snp(&env, &sim).await;
    let ports = common::Ports::free();
    let _p = harness(&env, ports, &kds.base, &guest)
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
