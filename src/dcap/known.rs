//! PURE. What one collateral snapshot has already verified of the platforms it judged: the
//! quotes' PCK chains and QE report signatures, by their exact bytes, so that a new quote
//! from a platform already seen costs one ECDSA verification (the quote's own).
//!
//! A PCK chain and a QE report (with its signature) are the same bytes in every quote a
//! platform's quoting enclave produces until its attestation key changes. What is stored
//! is the proof value the verification returned (`pck_chain::VerifiedPck`,
//! `pck_chain::SignedQeReport`, constructed nowhere else), so a hit hands back exactly what
//! verifying those bytes again would; only successes are stored. The memo lives inside a
//! [`crate::dcap::verified::VerifiedCollateral`] and dies with it: it is never consulted
//! under another snapshot (other CRLs) or another trust root, and a clone starts cold.
//! No clock, no I/O: what depends on time (validity windows) is checked on every use.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Entries each memo holds at most: a fleet's platforms under one snapshot (one FMSPC),
/// a few MB at worst (a PCK chain is ~4 KB), and only chains Intel's PKI signed get in.
pub const CAPACITY: usize = 2048;

/// Verified values by the exact bytes they were verified from, bounded.
pub(crate) struct Memo<V> {
    entries: Mutex<HashMap<Box<[u8]>, V, foldhash::fast::RandomState>>,
    hits: AtomicU64,
    capacity: usize,
}

impl<V: Clone> Memo<V> {
    fn new() -> Self {
        Self::with_capacity(CAPACITY)
    }

    /// An empty memo holding at most `capacity` entries.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::default()),
            hits: AtomicU64::new(0),
            capacity,
        }
    }

    /// The value verified before from exactly `key`, or `verify()`'s, remembered when it
    /// succeeds (a failure is never remembered: the next use verifies again).
    pub(crate) fn get_or_verify<E>(
        &self,
        key: &[u8],
        verify: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        // A poisoned lock only costs the memo: verify as if it were empty.
        if let Some(v) = self.entries.lock().ok().and_then(|m| m.get(key).cloned()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        let v = verify()?;
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= self.capacity {
                // Full: make room by dropping one entry (which one does not matter for
                // correctness; the next quote of that platform verifies again).
                if let Some(old) = m.keys().next().cloned() {
                    m.remove(&old);
                }
            }
            m.insert(Box::from(key), v.clone());
        }
        Ok(v)
    }

    fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// The platforms one snapshot has seen: verified PCK chains and QE report signatures.
pub struct KnownPlatforms {
    /// By the quote's PCK chain PEM, byte for byte (leaf, PCK CA and root).
    pub(crate) pck: Memo<crate::dcap::pck_chain::VerifiedPck>,
    /// By the QE report, its signature and the PCK key it verified under.
    pub(crate) qe: Memo<crate::dcap::pck_chain::SignedQeReport>,
}

/// How much of the memo is filled and used (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownStats {
    /// PCK chains remembered.
    pub pck_chains: usize,
    /// Verifications of a PCK chain answered from the memo.
    pub pck_hits: u64,
    /// QE report signatures remembered.
    pub qe_reports: usize,
    /// Verifications of a QE report signature answered from the memo.
    pub qe_hits: u64,
}

impl KnownPlatforms {
    /// An empty memo.
    pub fn new() -> Self {
        Self {
            pck: Memo::new(),
            qe: Memo::new(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> KnownStats {
        KnownStats {
            pck_chains: self.pck.len(),
            pck_hits: self.pck.hits(),
            qe_reports: self.qe.len(),
            qe_hits: self.qe.hits(),
        }
    }
}

impl Default for KnownPlatforms {
    fn default() -> Self {
        Self::new()
    }
}

/// A copy starts cold: what was verified belongs to the value it was verified for.
impl Clone for KnownPlatforms {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl fmt::Debug for KnownPlatforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KnownPlatforms({:?})", self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_successes_only_and_stays_bounded() {
        let memo: Memo<u32> = Memo::new();
        assert_eq!(memo.get_or_verify(b"k", || Err::<u32, ()>(())), Err(()));
        assert_eq!(memo.len(), 0, "a failure is not remembered");
        assert_eq!(memo.get_or_verify(b"k", || Ok::<_, ()>(1)), Ok(1));
        // A hit never runs the verification.
        assert_eq!(
            memo.get_or_verify(b"k", || -> Result<u32, ()> { unreachable!() }),
            Ok(1)
        );
        assert_eq!(memo.hits(), 1);
        // Another key of the same length and a prefix are misses.
        assert_eq!(memo.get_or_verify(b"j", || Ok::<_, ()>(2)), Ok(2));
        assert_eq!(memo.get_or_verify(b"", || Ok::<_, ()>(3)), Ok(3));
        for i in 0..CAPACITY * 2 {
            let _ = memo.get_or_verify(&i.to_le_bytes(), || Ok::<_, ()>(0));
        }
        assert_eq!(memo.len(), CAPACITY);
    }

    #[test]
    fn a_clone_starts_cold() {
        let known = KnownPlatforms::new();
        assert_eq!(known.clone().stats(), KnownStats::default());
    }
}
