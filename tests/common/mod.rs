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
