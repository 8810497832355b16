//! PURE. The pinned root's signatures a trust anchor has verified: the root CA CRL, the TCB
//! Signing certificate and the PCK Platform/Processor CA are signed by the root over bytes
//! that do not change for months, so once one verified under this anchor's key, re-verifying
//! collateral (the hourly refresh, a new FMSPC, a second `verify` in one process) skips that
//! ECDSA verification and runs every other check as before.
//!
//! Only the signature check is remembered: issuer names, revocation, validity windows and a
//! CRL's content are judged by the caller at every use. An entry is the exact algorithm
//! (its OID), signed bytes and signature, entered only after ECDSA accepted them under the
//! anchor's key, and a hit is the same three byte for byte: failures are never stored, and
//! since only what the root signed can enter, a hostile peer cannot fill it. (Exact bytes
//! rather than a SHA-256 of them: the same answer, no collision argument, and no hashing of
//! ~1.4 KB on every collateral verification, cold or warm.) The memo belongs to one
//! [`crate::dcap::trust::TrustAnchor`] and its clones: an anchor built anew (a reload,
//! another root, the same bytes parsed again) starts cold. No clock, no I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Signatures one anchor remembers at most. Intel's root signs a handful of certificates and
/// one CRL at a time; when full the memo is cleared (simple, and only costs a re-verification).
pub const CAPACITY: usize = 64;

/// One signature verified under the anchor's key: what it depended on besides the key.
struct Verified {
    algorithm: Box<[u8]>,
    signed: Box<[u8]>,
    signature: Box<[u8]>,
}

impl Verified {
    fn is(&self, [algorithm, signed, signature]: [&[u8]; 3]) -> bool {
        *self.signature == *signature && *self.algorithm == *algorithm && *self.signed == *signed
    }
}

/// The root's signatures verified under one anchor, bounded (a few, scanned in order).
#[derive(Default)]
pub(crate) struct AnchorMemo {
    verified: Mutex<Vec<Verified>>,
    hits: AtomicU64,
}

/// How much of an anchor's memo is filled and used (for tests, benches and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnchorMemoStats {
    /// Root signatures remembered.
    pub signatures: usize,
    /// Signature checks answered from the memo.
    pub hits: u64,
}

impl AnchorMemo {
    /// `Ok` if this exact signature over these exact bytes with this algorithm verified
    /// before, else `verify()`'s answer, remembered when it is `Ok` (a failure is never
    /// remembered: the next use verifies again). `parts`: the algorithm's OID, the signed
    /// bytes and the signature.
    pub(crate) fn check_or_verify<E>(
        &self,
        parts: [&[u8]; 3],
        verify: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        // A poisoned lock only costs the memo: verify as if it were empty.
        let known = |m: &Vec<Verified>| m.iter().any(|v| v.is(parts));
        if self.verified.lock().is_ok_and(|m| known(&m)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        verify()?;
        let [algorithm, signed, signature] = parts;
        if let Ok(mut m) = self.verified.lock() {
            // Another thread may have verified the same signature meanwhile: one entry.
            if !known(&m) {
                if m.len() >= CAPACITY {
                    m.clear();
                }
                m.push(Verified {
                    algorithm: algorithm.into(),
                    signed: signed.into(),
                    signature: signature.into(),
                });
            }
        }
        Ok(())
    }

    /// The counters.
    pub(crate) fn stats(&self) -> AnchorMemoStats {
        AnchorMemoStats {
            signatures: self.verified.lock().map(|m| m.len()).unwrap_or(0),
            hits: self.hits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_successes_only_by_every_part_and_stays_bounded() {
        let memo = AnchorMemo::default();
        assert_eq!(memo.check_or_verify([b"a", b"s", b"g"], || Err(1)), Err(1));
        assert_eq!(
            memo.stats(),
            AnchorMemoStats::default(),
            "a failure is not remembered"
        );
        assert_eq!(memo.check_or_verify([b"a", b"s", b"g"], || Err(2)), Err(2));
        assert_eq!(
            memo.check_or_verify::<()>([b"a", b"s", b"g"], || Ok(())),
            Ok(())
        );
        // A hit never runs the verification.
        assert_eq!(
            memo.check_or_verify::<()>([b"a", b"s", b"g"], || unreachable!()),
            Ok(())
        );
        assert_eq!(memo.stats().hits, 1);
        // Any part different, or the parts' boundary moved, is a miss.
        for (alg, signed, sig) in [
            (&b"b"[..], &b"s"[..], &b"g"[..]),
            (b"a", b"t", b"g"),
            (b"a", b"s", b"h"),
            (b"a", b"sg", b""),
            (b"as", b"", b"g"),
        ] {
            assert_eq!(
                memo.check_or_verify([alg, signed, sig], || Err(())),
                Err(())
            );
        }
        assert_eq!(
            memo.stats(),
            AnchorMemoStats {
                signatures: 1,
                hits: 1
            }
        );
        for i in 0..CAPACITY * 3 {
            let _ = memo.check_or_verify::<()>([b"a", &i.to_le_bytes(), b"g"], || Ok(()));
            assert!(memo.stats().signatures <= CAPACITY);
        }
    }
}
