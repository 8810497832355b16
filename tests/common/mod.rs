//! Shared test helpers: where the real fixtures are, and permissive policies.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use ratls_proxy::policy::EnclavePolicy;
use ratls_proxy::tcb::TcbStatus;

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

/// A temporary directory with a sim test PKI in `pki/` (root.pem, collateral.json), removed on drop.
#[cfg(feature = "sim")]
pub struct Env {
    pub dir: PathBuf,
    pub pki: ratls_proxy::sim::SimPki,
    pub now: ratls_proxy::unix_time::UnixTime,
}

#[cfg(feature = "sim")]
impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "sim")]
impl Env {
    /// The local CA certificate a proxy using `dir/ca` creates.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca/ca.pem")
    }
}

/// A fresh [`Env`], unique per test binary, process and call.
#[cfg(feature = "sim")]
pub fn env() -> Env {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ratls-{}-{}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let now = ratls_proxy::unix_time::UnixTime::now();
    let pki = ratls_proxy::sim::SimPki::load_or_create(&dir.join("pki"), now).expect("sim PKI");
    Env { dir, pki, now }
}
