//! `ratls-proxy verify` on AWS Nitro RA-TLS certificates (the real binary): a live sim enclave
//! by URL with `--tee nitro`, and a certificate file recognised by content, judged as the proxy
//! judges a `tee = "nitro"` entry (binding, debug, document age, chain, PCRs, CRLs required,
//! from the sim's CRL directory; the sim root pinned with `--trust-root`).

#![cfg(feature = "sim")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{ratls_identity, NitroEnclaveSpec, SimConfig};
use serde_json::Value;

use common::{env, start_sim, Env};

const PCR0: [u8; 48] = [0x5a; 48];

fn config(env: &Env, f: impl FnOnce(&mut NitroEnclaveSpec)) -> SimConfig {
    let pki = Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("pki"));
    let mut spec = NitroEnclaveSpec::new(pki, PCR0);
    f(&mut spec);
    SimConfig {
        nitro: Some(spec),
        ..SimConfig::default()
    }
}

/// `verify <target> --trust-root <sim root> --collateral <sim CRL dir> --json <extra>`.
async fn verify(env: &Env, target: &[&str], extra: &[&str]) -> (i32, Value) {
    let pki = env.dir.join("pki");
    let mut cmd = common::cli::command();
    cmd.arg("verify")
        .args(target)
        .arg("--trust-root")
        .arg(pki.join("nitro-root.pem"))
        .arg("--collateral")
        .arg(pki.join("collateral/nitro"))
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
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let path = env.dir.join(name);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    std::fs::write(&path, pem).expect("write the certificate");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_nitro_enclave_is_verified_by_url_with_tee_nitro() {
    let env = env();
    let sim = start_sim(&env, config(&env, |_| {})).await;
    let url = format!("https://{}", sim.addr());
    let pcr0 = hex::encode(PCR0);
    let (code, j) = verify(&env, &[&url, "--tee", "nitro"], &["--pcr0", &pcr0]).await;
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["quote"]["tee"], "NITRO");
    assert_eq!(j["quote"]["pcrs"]["0"], pcr0);
    assert_eq!(j["binding"], "dstack");
    assert_eq!(j["cert_sha256"].as_str().map(str::len), Some(64));
    // The CRLs were required and held: every certificate naming one was checked.
    assert!(
        j["revocation"]["unchecked"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{j}"
    );

    let (code, j) = verify(
        &env,
        &[&url, "--tee", "nitro"],
        &["--pcr0", &"77".repeat(48)],
    )
    .await;
    assert_eq!((code, j["code"].as_str()), (1, Some("pcr_mismatch")), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nitro_certificate_file_is_recognised_and_each_breakage_refused() {
    let env = env();
    let good = cert_file(&env, &config(&env, |_| {}), "good.pem");
    // Recognised by content, no --pcr0: any image is read, everything else judged.
    let (code, j) = verify(&env, &["--cert", good.to_str().expect("utf-8")], &[]).await;
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["quote"]["pcrs"]["0"], hex::encode(PCR0));

    type Break = fn(&mut NitroEnclaveSpec);
    let breakages: [(&str, Break, &str); 2] = [
        ("wrong-key", |s| s.wrong_key = true, "binding_mismatch"),
        ("debug", |s| s.debug = true, "debug_enclave"),
    ];
    for (name, f, want) in breakages {
        let path = cert_file(&env, &config(&env, f), &format!("{name}.pem"));
        let (code, j) = verify(&env, &["--cert", path.to_str().expect("utf-8")], &[]).await;
        assert_eq!((code, j["code"].as_str()), (1, Some(want)), "{name}: {j}");
    }
    // A document older than --max-cert-age-secs.
    let old = cert_file(&env, &config(&env, |s| s.age_secs = 3_600), "old.pem");
    let (code, j) = verify(
        &env,
        &["--cert", old.to_str().expect("utf-8")],
        &["--max-cert-age-secs", "60"],
    )
    .await;
    assert_eq!(
        (code, j["code"].as_str()),
        (1, Some("document_too_old")),
        "{j}"
    );
    // Without the CRLs (an empty directory), revocation required: could not check, exit 2.
    let empty = env.dir.join("no-crls");
    std::fs::create_dir_all(&empty).expect("dir");
    let mut cmd = common::cli::command();
    cmd.arg("verify")
        .arg("--cert")
        .arg(&good)
        .arg("--trust-root")
        .arg(env.dir.join("pki/nitro-root.pem"))
        .arg("--collateral")
        .arg(&empty)
        .arg("--json");
    let out = cmd.output().expect("the binary runs");
    let j = common::cli::json(&out);
    assert_eq!(
        (out.status.code(), j["code"].as_str()),
        (Some(2), Some("collateral_unavailable")),
        "{j}"
    );
}
