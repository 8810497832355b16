//! Shared test helpers, one place for each: where the real fixtures are and permissive
//! policies (here); the clients of the proxy (`client`: raw HTTP/1.1, CONNECT, rustls, curl;
//! `http`: hyper HTTP/1.1 and HTTP/2; `ws`: WebSocket); the binary as a command (`cli`,
//! with the one `verify https://` runner); the proxy and its sims (`proxy`: `Env`, `Harness`,
//! `Binary`); its admin listener (`admin`); a PCCS stand-in (`pccs`).
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod admin;
pub mod canned;
pub mod cli;
pub mod client;
pub mod http;
pub mod pccs;
pub mod proxy;
pub mod ws;

pub use admin::{gauge, metrics, metrics_text, parse_metrics, reload};
pub use cli::*;
pub use client::*;
pub use proxy::*;

use std::path::PathBuf;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::tcb::TcbStatus;

/// The fixtures directory (`RATLS_FIXTURES`, default `../shared/fixtures`), or `None`
/// with a printed notice when a clone has no fixtures next to it.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("dcap/expected.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "NOTICE: fixtures not found at {} (set RATLS_FIXTURES); skipping fixture tests",
            dir.display()
        );
        None
    }
}

/// A directory path unique per test binary, process and call (not created).
pub fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "ratls-{}-{}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Reads a file under the fixtures directory.
pub fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every TCB status except Revoked.
pub fn all_statuses() -> Vec<TcbStatus> {
    use TcbStatus::*;
    vec![
        UpToDate,
        SwHardeningNeeded,
        ConfigurationNeeded,
        ConfigurationAndSwHardeningNeeded,
        OutOfDate,
        OutOfDateConfigurationNeeded,
        TdRelaunchAdvised,
        TdRelaunchAdvisedConfigurationNeeded,
    ]
}

/// Accepts any verified identity and TCB status; DEBUG as given.
pub fn permissive(allow_debug: bool) -> EnclavePolicy {
    EnclavePolicy {
        allow_debug,
        tcb_statuses: all_statuses(),
        ..EnclavePolicy::default()
    }
}

/// The records of `host` in the audit trail at `path`.
pub fn audited(path: &std::path::Path, host: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["host"] == host)
        .collect()
}

/// The records of `host` in the audit trail at `path` that cut a stream (`cut` set).
pub fn audited_cuts(path: &std::path::Path, host: &str) -> Vec<serde_json::Value> {
    audited(path, host)
        .into_iter()
        .filter(|r| r.get("cut").is_some())
        .collect()
}

/// The lines of the file at `path` (none when it does not exist).
pub fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// SHA-256 of `line`, in hex (as the audit trail chains its records).
pub fn sha256_hex(line: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(line.as_bytes()))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Owned arguments from string slices.
pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// A self-signed P-256 CA under a fresh key whose subject is the Intel SGX Root CA's name,
/// byte for byte (checked here): for tests that a name is never the pin. With its key.
pub fn intel_named_impostor() -> (rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Intel SGX Root CA");
    dn.push(DnType::OrganizationName, "Intel Corporation");
    dn.push(DnType::LocalityName, "Santa Clara");
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(
        DnType::CountryName,
        DnValue::PrintableString("US".try_into().expect("printable")),
    );
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = p.self_signed(&key).expect("root");
    let subject = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).expect("parses");
        c.subject().as_raw().to_vec()
    };
    assert_eq!(
        subject(cert.der()),
        subject(ratls_proxy::dcap::trust::INTEL_SGX_ROOT_CA_DER),
        "the impostor's name is Intel's root's, byte for byte"
    );
    (cert, key)
}

/// A PEM chain of `ders`, 64 base64 characters a line (as Intel's PCS writes them).
pub fn pem_of<D: AsRef<[u8]>>(ders: &[D]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}
