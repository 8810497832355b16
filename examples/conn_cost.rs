//! The cost of one new attested upstream connection: with a verdict-cache hit (the
//! certificate was judged before) versus a miss (full quote verification), against a sim
//! enclave on loopback. Run: `cargo run --release --example conn_cost -- [N]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::ratls::client::connect;
use ratls_proxy::ratls::{BindingMode, RaTlsVerifier, VerdictCache};
use ratls_proxy::sim::{SimConfig, SimEnclave, SimPki};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let now = UnixTime::now();
    let pki = SimPki::generate(now)?;
    let anchor = pki.anchor()?;
    let verified = Arc::new(VerifiedCollateral::verify(
        &pki.collateral(UnixTime(now.0 - 60), &[])?,
        &anchor,
    )?);
    let collateral: Arc<dyn ratls_proxy::appraise::CollateralSource + Send + Sync> =
        Arc::new(verified);
    let sim = SimEnclave::start(&pki, SimConfig::default(), "127.0.0.1:0".parse()?, now).await?;
    let addr = sim.addr().to_string();
    let verifier = |cache: Arc<VerdictCache>| {
        Arc::new(RaTlsVerifier::new(
            EnclavePolicy::default(),
            BindingMode::Auto,
            anchor.sha256(),
            collateral.clone(),
            cache,
        ))
    };
    let shared = Arc::new(VerdictCache::new(100, Duration::from_secs(3600)));
    connect(&addr, "localhost", verifier(shared.clone()), &[b"h2"], None).await?; // warm
    let (mut hit, mut miss) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        connect(&addr, "localhost", verifier(shared.clone()), &[b"h2"], None).await?;
        hit.push(t.elapsed());
        let fresh = Arc::new(VerdictCache::new(100, Duration::from_secs(3600)));
        let t = Instant::now();
        connect(&addr, "localhost", verifier(fresh), &[b"h2"], None).await?;
        miss.push(t.elapsed());
    }
    let s = shared.stats();
    println!("connections: {n} each (TCP + TLS 1.3 handshake + verdict), loopback, one thread");
    println!(
        "new connection, verdict-cache hit : median {:?}",
        median(hit)
    );
    println!(
        "new connection, verdict-cache miss: median {:?}",
        median(miss)
    );
    println!(
        "shared cache: {} verifications, {} hits (the hits did no quote verification)",
        s.verifications, s.hits
    );
    Ok(())
}
