//! EDGE. The CRLs a Nitro collateral cache holds, bounded without locking anyone out: at most
//! [`MAX_HELD_CRLS`] points; when a new point needs room, the CRLs past their nextUpdate go
//! first (no verdict can use them), then the one read longest ago. Points come only from
//! chains verified to AWS's root, so the bound is reached only by a long-running proxy that
//! saw many regional CAs come and go; an evicted point is fetched again when next needed (and
//! its high-water mark, kept apart, still refuses an older CRL).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::dcap::time::UnixTime;
use crate::nitro::collateral::CrlPoint;
use crate::nitro::revocation::CheckedCrl;

/// Distribution points whose CRL is held at most (AWS: one root CRL and one per regional
/// and zonal CA in use).
pub(crate) const MAX_HELD_CRLS: usize = 256;

/// A CRL kept for one distribution point.
pub(super) struct HeldCrl {
    pub(super) crl: Arc<CheckedCrl>,
    pub(super) point: CrlPoint,
    pub(super) fetched_at: UnixTime,
    /// The cache's read count when a verification last used it (eviction order).
    last_read: AtomicU64,
}

impl Clone for HeldCrl {
    fn clone(&self) -> Self {
        Self {
            crl: Arc::clone(&self.crl),
            point: self.point.clone(),
            fetched_at: self.fetched_at,
            last_read: AtomicU64::new(self.last_read.load(Ordering::Relaxed)),
        }
    }
}

impl HeldCrl {
    /// Notes that a verification used it, as read number `read`.
    pub(super) fn read(&self, read: u64) {
        self.last_read.store(read, Ordering::Relaxed);
    }
}

/// Stores `crl` for `point`, fetched at `now` (read number `read`), first making room when
/// `held` has `cap` points and `point` is new: every CRL past its nextUpdate, or else the one
/// read longest ago.
pub(super) fn store(
    held: &mut HashMap<String, HeldCrl>,
    cap: usize,
    point: &CrlPoint,
    crl: CheckedCrl,
    now: UnixTime,
    read: u64,
) {
    if !held.contains_key(&point.url) && held.len() >= cap {
        held.retain(|_, h| h.crl.until() >= now);
        if held.len() >= cap {
            if let Some(coldest) = held
                .iter()
                .min_by_key(|(_, h)| h.last_read.load(Ordering::Relaxed))
                .map(|(url, _)| url.clone())
            {
                held.remove(&coldest);
            }
        }
    }
    held.insert(
        point.url.clone(),
        HeldCrl {
            crl: Arc::new(crl),
            point: point.clone(),
            fetched_at: now,
            last_read: AtomicU64::new(read),
        },
    );
}
