//! PURE. Verified intermediates, remembered: AWS mints a signing certificate per document,
//! but the CA bundle above it (the regional and the per-instance intermediates) is the same
//! bytes for every document of an instance for days. Their signatures, names, profiles and
//! path lengths do not depend on time, so they are verified once per (bundle bytes, root);
//! what does depend on time, each certificate's validity, is checked again at every use.
//!
//! The cache is a value: whoever verifies owns one and drops it with itself (no global). It
//! is bounded ([`IntermediatesCache::new`]'s capacity; the oldest entry goes first) and holds
//! only [`VerifiedIntermediates`], which only [`crate::nitro::chain`] makes, after the
//! whole chain (leaf included) verified.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::nitro::trust::NitroRoot;

/// What identifies a bundle under a root: SHA-256 over the root's fingerprint and each
/// intermediate's length and bytes (lengths keep two splits of the same bytes apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BundleKey([u8; 32]);

impl BundleKey {
    /// The key of `intermediates` (`cabundle[1..]`) under `root`.
    pub fn of(root: &NitroRoot, intermediates: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(root.sha256().0);
        for der in intermediates {
            h.update(u64::try_from(der.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(der);
        }
        Self(h.finalize().into())
    }
}

/// Proof that a bundle's intermediates chain from the root by name, signature, profile and
/// path length: everything but time. Made only by the chain module, after a full check.
#[derive(Clone, Debug)]
pub struct VerifiedIntermediates {
    count: usize,
}

impl VerifiedIntermediates {
    /// Only `chain::verify_chain_cached` calls this, for `count` intermediates it has just
    /// verified with the rest of the chain.
    pub(crate) fn after_full_check(count: usize) -> Self {
        Self { count }
    }

    /// How many intermediates the bundle holds.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// A bounded map from bundle to proof, shared by the verifications of one owner.
#[derive(Debug)]
pub struct IntermediatesCache {
    capacity: usize,
    inner: Mutex<Entries>,
    hits: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<BundleKey, Arc<VerifiedIntermediates>>,
    order: VecDeque<BundleKey>,
}

impl IntermediatesCache {
    /// A cache of at most `capacity` bundles (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Entries::default()),
            hits: AtomicU64::new(0),
        }
    }

    /// The proof for `key`, if remembered.
    pub fn get(&self, key: &BundleKey) -> Option<Arc<VerifiedIntermediates>> {
        let found = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(key)
            .cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Remembers `proof` for `key`, dropping the oldest entry when full.
    pub fn insert(&self, key: BundleKey, proof: VerifiedIntermediates) {
        if self.capacity == 0 {
            return;
        }
        let mut e = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if e.map.insert(key, Arc::new(proof)).is_none() {
            e.order.push_back(key);
        }
        while e.map.len() > self.capacity {
            match e.order.pop_front() {
                Some(old) => {
                    e.map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// How many bundles are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many lookups found their bundle.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof() -> VerifiedIntermediates {
        VerifiedIntermediates::after_full_check(2)
    }

    #[test]
    fn the_key_separates_bundles_that_concatenate_to_the_same_bytes() {
        let root = NitroRoot::aws();
        assert_ne!(
            BundleKey::of(&root, &[b"ab", b"c"]),
            BundleKey::of(&root, &[b"a", b"bc"])
        );
        assert_eq!(
            BundleKey::of(&root, &[b"ab", b"c"]),
            BundleKey::of(&root, &[b"ab", b"c"])
        );
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest_first() {
        let root = NitroRoot::aws();
        let [k0, k1, k2, k3] = [0u8, 1, 2, 3].map(|i| BundleKey::of(&root, &[&[i][..]]));
        let cache = IntermediatesCache::new(2);
        for k in [k0, k1, k2, k3] {
            cache.insert(k, proof());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&k0).is_none());
        assert!(cache.get(&k1).is_none());
        assert!(cache.get(&k3).is_some());
        assert_eq!(cache.hits(), 1);
        let none = IntermediatesCache::new(0);
        none.insert(k0, proof());
        assert!(cache.get(&k2).is_some());
        assert!(none.is_empty());
    }
}
