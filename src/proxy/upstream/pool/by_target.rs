//! The pool's connections by destination.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use super::Conn;
use crate::proxy::target::Target;

/// A destination's idle connections and its count of HTTP/1.1 connections.
#[derive(Default)]
pub(super) struct TargetConns {
    pub(super) idle: Vec<Conn>,
    pub(super) h1_open: Arc<AtomicUsize>,
    /// When an HTTP/1.1 dial last failed: an HTTP/2-only enclave is not asked again at once.
    pub(super) h1_failed: Option<Instant>,
    /// The dial beside borrowed connections (see `beside`).
    pub(super) beside: super::beside::Beside,
}

/// The pool's connections by destination. foldhash, not std's SipHash: the map is hashed several
/// times per request under the pool's lock (a fast hash with a per-process random seed).
pub(super) type ByTarget = HashMap<Target, TargetConns, foldhash::fast::RandomState>;

/// The connections of `target`, created if new. The key is cloned only then: this runs under the
/// pool's lock on every HTTP/1.1 request.
// Target hashes and compares its entry by identity (`Arc::ptr_eq`), never by the verifier's
// interior state, so the key cannot change while it is in the map.
#[allow(clippy::mutable_key_type)]
pub(super) fn conns_of<'a>(idle: &'a mut ByTarget, target: &Target) -> Option<&'a mut TargetConns> {
    if !idle.contains_key(target) {
        idle.insert(target.clone(), TargetConns::default());
    }
    idle.get_mut(target)
}

// The map's key as the pool's: see `conns_of`.
#[allow(clippy::mutable_key_type)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Authority;
    use crate::appraise::policy::EnclavePolicy;
    use crate::config::EnclaveConfig;
    use crate::dcap::ids::CertSha256;
    use crate::proxy::target::Enclave;
    use crate::ratls::{BindingMode, RaTlsVerifier, VerdictCache};
    use crate::source::CollateralSetup;

    /// An `[[enclave]]` entry for `a.test` as one generation builds it (its own `Arc`).
    fn entry() -> Arc<Enclave> {
        let verifier = RaTlsVerifier::new(
            EnclavePolicy::default(),
            BindingMode::Auto,
            CertSha256([0; 32]),
            Arc::new(CollateralSetup::Unconfigured),
            Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60))),
        );
        Arc::new(Enclave {
            config: EnclaveConfig {
                hosts: Vec::new(),
                policy: EnclavePolicy::default(),
                binding: BindingMode::Auto,
                connect_to: None,
                snp: None,
                nitro: None,
            },
            verifier: Arc::new(verifier),
        })
    }

    fn target(enclave: &Arc<Enclave>) -> Target {
        let dest = Authority::parse("a.test", Some(443)).expect("authority");
        Target::new(dest, enclave)
    }

    /// Marks `target`'s connections so a later lookup shows whose they are.
    fn mark(map: &mut ByTarget, target: &Target) {
        conns_of(map, target).expect("listed").h1_failed = Some(Instant::now());
    }

    fn marked(map: &mut ByTarget, target: &Target) -> bool {
        conns_of(map, target).expect("listed").h1_failed.is_some()
    }

    #[test]
    fn the_same_name_under_another_entry_never_shares_connections() {
        let mut map = ByTarget::default();
        let (one, other) = (entry(), entry());
        mark(&mut map, &target(&one));
        // Equal names, another entry (another generation's, or another policy): its own list.
        assert!(!marked(&mut map, &target(&other)));
        // The same entry at the same place: the same list, whichever `Target` asks.
        assert!(marked(&mut map, &target(&one)));
        assert_eq!(map.len(), 2);
    }
}
