//! What a request is going to: an enclave entry with its verifier, and a destination
//! matched to it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::addr::Authority;
use crate::config::EnclaveConfig;
use crate::ratls::RaTlsVerifier;

/// One `[[enclave]]` entry as one generation uses it: its configuration and the verifier
/// built for it under that generation's policy and collateral.
#[derive(Debug)]
pub(crate) struct Enclave {
    /// The entry.
    pub(crate) config: EnclaveConfig,
    /// Judges this entry's certificates.
    pub(crate) verifier: Arc<RaTlsVerifier>,
}

/// An enclave destination: where the client asked to go, where we dial, and the entry
/// whose policy judges it.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// As the client named it (SNI, `Host`, `:authority`).
    pub(crate) dest: Authority,
    /// Where to dial: the entry's `connect_to`, else `dest`.
    pub(crate) dial: Authority,
    /// The entry.
    pub(crate) enclave: Arc<Enclave>,
    /// `dest` as an HTTP/1.1 `Host` (and HTTP/2 `:authority`): formatted once, not per request.
    pub(crate) host_header: String,
}

impl Target {
    /// `dest` under `enclave`.
    pub(crate) fn new(dest: Authority, enclave: &Arc<Enclave>) -> Self {
        let dial = enclave
            .config
            .connect_to
            .clone()
            .unwrap_or_else(|| dest.clone());
        Self {
            host_header: dest.host_header(443),
            dest,
            dial,
            enclave: Arc::clone(enclave),
        }
    }
}

// A pool key: the same entry (by identity, within one generation) at the same place.
impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.dest == other.dest
            && self.dial == other.dial
            && Arc::ptr_eq(&self.enclave, &other.enclave)
    }
}

impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dest.hash(state);
        self.dial.hash(state);
        Arc::as_ptr(&self.enclave).hash(state);
    }
}
