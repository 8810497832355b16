//! PURE. Verified intermediates and signing certificates, remembered: the CA bundle above a
//! document (the regional and the per-instance intermediates) is the same bytes for every
//! document of an instance for days, and the signing certificate (the leaf) is the same bytes
//! in every document one enclave's NSM produces for its life (~3 h). Their signatures,
//! names, profiles and path lengths do not depend on time, so they are verified once per
//! (bundle bytes, root) and once per (leaf bytes, that bundle, root); what does depend on
//! time, each certificate's validity, is checked again at every use. A new document from a
//! known enclave then costs one P-384 verification: its own COSE signature.
//!
//! The cache is a value: whoever verifies owns one and drops it with itself (no global). It
//! is bounded ([`IntermediatesCache::new`]'s capacity for bundles, [`LEAVES_PER_BUNDLE`] times
//! that for leaves; the oldest entry goes first) and holds only [`VerifiedIntermediates`] and
//! [`VerifiedLeaf`], which only [`crate::nitro::chain`] makes, after a successful check. A
//! leaf's key includes its bundle's, which includes the root's fingerprint: a leaf is never
//! taken as verified under another bundle or another root.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
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

/// What identifies a signing certificate under a verified bundle: SHA-256 over the bundle's
/// key (so the root's fingerprint too) and the certificate's exact bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeafKey([u8; 32]);

impl LeafKey {
    /// The key of the signing certificate `leaf` under the bundle `bundle`.
    pub fn of(bundle: &BundleKey, leaf: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(bundle.0);
        h.update(leaf);
        Self(h.finalize().into())
    }
}

/// Signing certificates remembered per bundle remembered (a parent instance runs a few
/// enclaves, each with one signing certificate at a time).
pub const LEAVES_PER_BUNDLE: usize = 4;

/// Proof that a signing certificate links to the last intermediate of a verified bundle by
/// name and signature, fits a leaf's profile and holds a P-384 key: everything but time.
/// Made only by the chain module, after that check.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedLeaf(());

impl VerifiedLeaf {
    /// Only `chain::verify_chain_cached` calls this, for a leaf it has just verified under
    /// the bundle its key names.
    pub(crate) fn after_full_check() -> Self {
        Self(())
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

/// Bounded maps from bundle and from leaf to proof, shared by the verifications of one owner.
#[derive(Debug)]
pub struct IntermediatesCache {
    bundles: Mutex<Bounded<BundleKey, Arc<VerifiedIntermediates>>>,
    leaves: Mutex<Bounded<LeafKey, VerifiedLeaf>>,
    hits: AtomicU64,
    leaf_hits: AtomicU64,
}

/// A map of at most `capacity` entries that drops the oldest first.
#[derive(Debug)]
struct Bounded<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Copy + Eq + Hash, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }
}

fn lookup<K: Copy + Eq + Hash, V: Clone>(
    m: &Mutex<Bounded<K, V>>,
    key: &K,
    hits: &AtomicU64,
) -> Option<V> {
    let found = m
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .map
        .get(key)
        .cloned();
    if found.is_some() {
        hits.fetch_add(1, Ordering::Relaxed);
    }
    found
}

impl IntermediatesCache {
    /// A cache of at most `capacity` bundles and `LEAVES_PER_BUNDLE × capacity` signing
    /// certificates (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        Self::with_leaf_capacity(capacity, capacity.saturating_mul(LEAVES_PER_BUNDLE))
    }

    /// A cache of at most `capacity` bundles and `leaves` signing certificates (0 leaves:
    /// every signing certificate is verified, as before issue 30; benches compare the two).
    pub fn with_leaf_capacity(capacity: usize, leaves: usize) -> Self {
        Self {
            bundles: Mutex::new(Bounded::new(capacity)),
            leaves: Mutex::new(Bounded::new(leaves)),
            hits: AtomicU64::new(0),
            leaf_hits: AtomicU64::new(0),
        }
    }

    /// The proof for `key`, if remembered.
    pub fn get(&self, key: &BundleKey) -> Option<Arc<VerifiedIntermediates>> {
        lookup(&self.bundles, key, &self.hits)
    }

    /// Remembers `proof` for `key`, dropping the oldest entry when full.
    pub fn insert(&self, key: BundleKey, proof: VerifiedIntermediates) {
        self.bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::new(proof));
    }

    /// The proof for the signing certificate `key`, if remembered.
    pub fn leaf(&self, key: &LeafKey) -> Option<VerifiedLeaf> {
        lookup(&self.leaves, key, &self.leaf_hits)
    }

    /// Remembers `proof` for the signing certificate `key`, dropping the oldest when full.
    pub fn insert_leaf(&self, key: LeafKey, proof: VerifiedLeaf) {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, proof);
    }

    /// How many bundles are remembered.
    pub fn len(&self) -> usize {
        self.bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.leaves_len() == 0
    }

    /// How many signing certificates are remembered.
    pub fn leaves_len(&self) -> usize {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// How many lookups found their bundle.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many lookups found their signing certificate.
    pub fn leaf_hits(&self) -> u64 {
        self.leaf_hits.load(Ordering::Relaxed)
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

    #[test]
    fn leaves_are_keyed_by_bundle_and_bytes_and_bounded() {
        let root = NitroRoot::aws();
        let [b0, b1] = [0u8, 1].map(|i| BundleKey::of(&root, &[&[i][..]]));
        assert_ne!(LeafKey::of(&b0, b"leaf"), LeafKey::of(&b1, b"leaf"));
        assert_ne!(LeafKey::of(&b0, b"leaf"), LeafKey::of(&b0, b"leaf2"));
        let cache = IntermediatesCache::new(1);
        let keys: Vec<LeafKey> = (0..=LEAVES_PER_BUNDLE)
            .map(|i| LeafKey::of(&b0, &[u8::try_from(i).unwrap_or(0)]))
            .collect();
        for k in &keys {
            cache.insert_leaf(*k, VerifiedLeaf::after_full_check());
        }
        let (Some(oldest), Some(newest)) = (keys.first(), keys.last()) else {
            panic!("keys were made");
        };
        assert_eq!(cache.leaves_len(), LEAVES_PER_BUNDLE);
        assert!(cache.leaf(oldest).is_none(), "the oldest went first");
        assert!(cache.leaf(newest).is_some());
        assert_eq!(cache.leaf_hits(), 1);
        let none = IntermediatesCache::new(0);
        none.insert_leaf(*oldest, VerifiedLeaf::after_full_check());
        assert!(none.is_empty());
    }
}
