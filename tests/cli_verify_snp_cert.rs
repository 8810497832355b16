//! `ratls-proxy verify` on SEV-SNP RA-TLS certificates (the real binary): a live sim guest by
//! URL with `--tee snp`, and a certificate file recognised by content, judged as the proxy
//! judges a `tee = "snp"` entry (binding, policy, collateral from the sim's offline KDS
//! directory, the sim ARKs pinned with `--trust-root`).

#![cfg(feature = "sim")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use ratls_proxy::sim::dstack_snp::{ARK_FILE, KDS_DIR};
use ratls_proxy::sim::{ratls_identity, SimConfig, SnpSim, SnpSimSpec};
use ratls_proxy::snp::Product;
use serde_json::Value;

use common::{env, start_sim, Env};

const MEASUREMENT: [u8; 48] = [0x5e; 48];

fn snp_sim(env: &Env) -> Arc<SnpSim> {
    Arc::new(SnpSim::load_or_create(&env.dir.join("pki"), env.now).expect("SNP sim"))
}

fn spec(env: &Env, f: impl FnOnce(&mut SnpSimSpec)) -> SimConfig {
    let mut spec = SnpSimSpec::new(snp_sim(env), Product::Milan, MEASUREMENT);
    f(&mut spec);
    SimConfig {
        snp: Some(spec),
        ..SimConfig::default()
    }
}

/// `verify <target> --trust-root <sim ARKs> --collateral <sim KDS dir> --json <extra>`.
async fn verify(env: &Env, target: &[&str], extra: &[&str]) -> (i32, Value) {
    let pki = env.dir.join("pki");
    let mut cmd = common::cli::command();
    cmd.arg("verify")
        .args(target)
        .arg("--trust-root")
        .arg(pki.join(ARK_FILE))
        .arg("--collateral")
        .arg(pki.join(KDS_DIR))
        .arg("--json")
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("the binary runs");
    (out.status.code().unwrap_or(-1), common::cli::json(&out))
}

/// The sim certificate of `config`, as a PEM file in `env`'s directory.
fn cert_file(env: &Env, config: &SimConfig, name: &str) -> PathBuf {
    let id = ratls_identity(&env.pki, config, env.now).expect("sim certificate");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &id.cert_der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let path = env.dir.join(name);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        body.join("\n")
    );
    std::fs::write(&path, pem).expect("write the certificate");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_snp_guest_is_verified_by_url_with_tee_snp() {
    let env = env();
    let sim = start_sim(&env, spec(&env, |_| {})).await;
    let url = format!("https://{}", sim.addr());
    let measurement = hex::encode(MEASUREMENT);
    let (code, j) = verify(
        &env,
        &[&url, "--tee", "snp"],
        &["--measurement", &measurement],
    )
    .await;
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["verdict"], "accepted");
    assert_eq!(j["quote"]["tee"], "SNP");
    assert_eq!(j["quote"]["measurement"], measurement);
    assert_eq!(j["binding"], "dstack");
    assert_eq!(j["cert_sha256"].as_str().map(str::len), Some(64));

    let (code, j) = verify(
        &env,
        &[&url, "--tee", "snp"],
        &["--measurement", &"a1".repeat(48)],
    )
    .await;
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["code"], "measurement_mismatch");
    // The report verified, so what it claims is shown beside the refusal.
    assert_eq!(j["quote"]["measurement"], measurement);

    // Without --tee snp a URL takes the Intel path, which names what it found and admits
    // nothing.
    let pki = env.dir.join("pki");
    let mut cmd = common::cli::command();
    cmd.args(["verify", &url, "--json", "--trust-root"])
        .arg(pki.join("root.pem"))
        .arg("--collateral")
        .arg(pki.join("collateral.json"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("the binary runs");
    let j = common::cli::json(&out);
    assert_eq!(
        (out.status.code(), j["code"].as_str()),
        (Some(1), Some("unsupported_tee")),
        "{j}"
    );
    assert!(j["reasons"].to_string().contains("sev-snp"), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_snp_certificate_file_is_recognised_and_each_breakage_refused() {
    let env = env();
    let measurement = hex::encode(MEASUREMENT);
    let good = cert_file(&env, &spec(&env, |_| {}), "good.pem");
    let good = good.to_str().expect("utf-8 path");
    // Recognised by content: no --tee needed.
    let (code, j) = verify(&env, &["--cert", good], &["--measurement", &measurement]).await;
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["quote"]["tee"], "SNP");
    assert_eq!(j["binding"], "dstack");

    // Each way a host could lie refuses, with its code.
    let wrong_key = cert_file(&env, &spec(&env, |s| s.wrong_key = true), "wrong-key.pem");
    let (code, j) = verify(
        &env,
        &["--cert", wrong_key.to_str().expect("utf-8")],
        &["--measurement", &measurement],
    )
    .await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("binding_mismatch")),
        "{j}"
    );

    let host_data = cert_file(
        &env,
        &spec(&env, |s| s.wrong_host_data = true),
        "host-data.pem",
    );
    let (code, j) = verify(
        &env,
        &["--cert", host_data.to_str().expect("utf-8")],
        &["--measurement", &measurement],
    )
    .await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("binding_mismatch")),
        "{j}"
    );

    let other_chip = cert_file(&env, &spec(&env, |s| s.other_chip = true), "chip.pem");
    let (code, j) = verify(
        &env,
        &["--cert", other_chip.to_str().expect("utf-8")],
        &["--measurement", &measurement],
    )
    .await;
    assert_ne!(code, 0, "another chip's key must not verify: {j}");
    assert_eq!(j["verdict"], "refused", "{j}");

    let debug = cert_file(
        &env,
        &spec(&env, |s| s.report.policy |= 1 << 19),
        "debug.pem",
    );
    let (code, j) = verify(
        &env,
        &["--cert", debug.to_str().expect("utf-8")],
        &["--measurement", &measurement],
    )
    .await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("debug_enclave")),
        "{j}"
    );

    // The certificate's window: a week later it has expired.
    let later = (env.now.0 + 7 * 86_400).to_string();
    let (code, j) = verify(
        &env,
        &["--cert", good],
        &["--measurement", &measurement, "--at", &later],
    )
    .await;
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["verdict"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_insists_both_ways_on_certificates() {
    let env = env();
    let measurement = hex::encode(MEASUREMENT);
    let snp = cert_file(&env, &spec(&env, |_| {}), "snp.pem");
    let intel = cert_file(&env, &SimConfig::default(), "sgx.pem");
    // An Intel certificate under --tee snp, and an SEV-SNP one under --tee tdx.
    let (code, j) = verify(
        &env,
        &["--cert", intel.to_str().expect("utf-8"), "--tee", "snp"],
        &["--measurement", &measurement],
    )
    .await;
    assert_eq!((code, j["code"].as_str()), (1, Some("tee_mismatch")), "{j}");
    // The Intel path, with Intel's (sim) root and collateral.
    let pki = env.dir.join("pki");
    let mut cmd = common::cli::command();
    cmd.arg("verify")
        .arg("--cert")
        .arg(&snp)
        .args(["--tee", "tdx", "--json", "--trust-root"])
        .arg(pki.join("root.pem"))
        .arg("--collateral")
        .arg(pki.join("collateral.json"));
    let out = cmd.output().expect("the binary runs");
    let j = common::cli::json(&out);
    assert_eq!(
        (out.status.code(), j["code"].as_str()),
        (Some(1), Some("tee_mismatch")),
        "{j}"
    );
}
