//! The pool's connections by destination, keyed by the `Arc<Target>` the pool was given.

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
/// Keyed by the `Arc<Target>` the pool was given: looked up with the caller's `Arc`, `Arc`'s
/// equality is true at once for the same one (a pointer compare, then `Target`'s own equality
/// for another), so a route's or origination's requests, whose `Target` is made once and shared,
/// do not compare host names on every lookup.
pub(super) type ByTarget = HashMap<Arc<Target>, TargetConns, foldhash::fast::RandomState>;

/// The connections of `target`, created if new. This runs under the pool's lock on every
/// HTTP/1.1 request: the key is cloned only when new, or when the one listed is held by the
/// map alone (its maker, a tunnel's CONNECT or a dropped route cache entry, let it go) and
/// `target` is another `Arc` equal to it, so later lookups with `target` compare pointers.
/// Two live `Arc`s of one destination never take the place from each other.
// Target hashes and compares its entry by identity (`Arc::ptr_eq`), never by the verifier's
// interior state, so the key cannot change while it is in the map.
#[allow(clippy::mutable_key_type)]
pub(super) fn conns_of<'a>(
    idle: &'a mut ByTarget,
    target: &Arc<Target>,
) -> Option<&'a mut TargetConns> {
    match idle.get_key_value(target) {
        None => {
            idle.insert(Arc::clone(target), TargetConns::default());
        }
        Some((key, _)) if !Arc::ptr_eq(key, target) && Arc::strong_count(key) == 1 => {
            if let Some(conns) = idle.remove(target) {
                idle.insert(Arc::clone(target), conns);
            }
        }
        Some(_) => {}
    }
    idle.get_mut(target)
}

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

    fn target(enclave: &Arc<Enclave>) -> Arc<Target> {
        let dest = Authority::parse("a.test", Some(443)).expect("authority");
        Arc::new(Target::new(dest, enclave))
    }

    /// Marks `target`'s connections so a later lookup shows whose they are.
    fn mark(map: &mut ByTarget, target: &Arc<Target>) {
        conns_of(map, target).expect("listed").h1_failed = Some(Instant::now());
    }

    fn marked(map: &mut ByTarget, target: &Arc<Target>) -> bool {
        conns_of(map, target).expect("listed").h1_failed.is_some()
    }

    #[test]
    fn the_same_name_under_another_entry_never_shares_connections() {
        let mut map = ByTarget::default();
        let (one, other) = (entry(), entry());
        let a = target(&one);
        mark(&mut map, &a);
        // Equal names, another entry (another generation's, or another policy): its own list.
        let b = target(&other);
        assert!(!marked(&mut map, &b));
        assert_eq!(map.len(), 2);
        // Even once `a`'s maker lets it go: the map's key is never taken by an unequal one.
        drop(a);
        assert!(!marked(&mut map, &b));
        assert!(marked(&mut map, &target(&one)));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn an_equal_target_takes_the_key_only_when_the_map_alone_holds_it() {
        let mut map = ByTarget::default();
        let enclave = entry();
        let a = target(&enclave);
        mark(&mut map, &a);
        let b = target(&enclave);
        // Equal, not the same: the same connections, and the live key stays `a`.
        assert!(marked(&mut map, &b));
        assert!(map.keys().all(|k| Arc::ptr_eq(k, &a)));
        drop(a);
        // `a` is held by the map alone: `b` takes its place, with its connections.
        assert!(marked(&mut map, &b));
        assert!(map.keys().all(|k| Arc::ptr_eq(k, &b)));
        assert_eq!(map.len(), 1);
    }
}
