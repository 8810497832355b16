//! What a request is going to: an enclave entry with its verifier, and a destination
//! matched to it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use crate::addr::Authority;
use crate::config::EnclaveConfig;
use crate::metrics::HostCounts;
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
    /// `host_header` as a header value, made once: a clone shares its bytes, where making
    /// it for each request (the sidecar route's client names the route's own address)
    /// copied and checked them every time. `None` if it is not a valid header value.
    pub(crate) host_value: Option<HeaderValue>,
    /// `host_header` read back by [`Authority::parse`] is `dest`: a request naming exactly
    /// `host_header` names this target without being parsed again, as the same bytes
    /// always parse the same way. False (every name parsed) should a spelling not round-trip.
    pub(crate) host_header_is_dest: bool,
    /// `dest`'s host as the access log and metrics name it, formatted once.
    pub(crate) host_label: String,
    /// The request counters of `host_label`, found on this target's first request (a
    /// target of a new generation for the same host finds the same counters).
    pub(crate) counts: OnceLock<Arc<HostCounts>>,
    /// This target's hash as a pool key, computed once: the pool looks a target up about
    /// four times per request, and hashing both host names each time was measurable.
    key: u64,
}

impl Target {
    /// `dest` under `enclave`.
    pub(crate) fn new(dest: Authority, enclave: &Arc<Enclave>) -> Self {
        let dial = enclave
            .config
            .connect_to
            .clone()
            .unwrap_or_else(|| dest.clone());
        let host_header = dest.host_header(443);
        // Per-process random seed, like the pool's own map: a client naming hosts under a
        // wildcard entry cannot aim collisions at it.
        static KEYS: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
        let key = KEYS
            .get_or_init(Default::default)
            .hash_one((&dest, &dial, Arc::as_ptr(enclave)));
        Self {
            key,
            host_value: HeaderValue::from_str(&host_header).ok(),
            host_header_is_dest: Authority::parse(&host_header, Some(443)).as_ref() == Ok(&dest),
            host_header,
            host_label: dest.host.to_string(),
            counts: OnceLock::new(),
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

// Equal targets have equal keys: the key is a hash of exactly what `eq` compares.
impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key);
    }
}
