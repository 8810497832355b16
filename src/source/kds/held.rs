//! EDGE. The VCEKs a KDS cache holds, bounded without locking anyone out: at most
//! [`MAX_VCEKS_PER_CHIP`] per chip (a new TCB replaces the chip's oldest) and [`MAX_VCEKS`] in
//! all (the expired go first, then the oldest). The TCB asked for is read from the report
//! before its signature is checked, so one host naming many TCBs of its own chip only
//! replaces its own keys; an evicted key is fetched again when next needed.

use std::collections::HashMap;
use std::sync::Arc;

use super::VcekKey;
use crate::dcap::time::UnixTime;
use crate::snp::verify::VerifiedVek;

/// VCEKs kept at most (each verified under a pinned ARK; one per chip and TCB).
pub(crate) const MAX_VCEKS: usize = 1024;
/// VCEKs kept at most for one chip (honest chips move to a new TCB a few times a year).
pub(crate) const MAX_VCEKS_PER_CHIP: usize = 8;

/// A held VCEK: its DER (to verify it again under a refreshed chain), the key verified from
/// it, and when it was stored (a sequence number: the smallest is the oldest).
pub(super) struct HeldVek {
    pub(super) der: Vec<u8>,
    pub(super) vek: Arc<VerifiedVek>,
    pub(super) stored: u64,
}

/// Stores `held` under `key`, first making room: the chip's oldest key when the chip has
/// its share, then, when the cache is full, every expired key (at `now`) or else the oldest.
pub(super) fn store(
    veks: &mut HashMap<VcekKey, HeldVek>,
    key: VcekKey,
    held: HeldVek,
    now: UnixTime,
) {
    let same_chip = |k: &VcekKey| k.0 == key.0 && k.1 == key.1;
    if !veks.contains_key(&key)
        && veks.keys().filter(|k| same_chip(k)).count() >= MAX_VCEKS_PER_CHIP
    {
        remove_oldest(veks, same_chip);
    }
    if !veks.contains_key(&key) && veks.len() >= MAX_VCEKS {
        veks.retain(|_, h| h.vek.valid_until() >= now);
        if veks.len() >= MAX_VCEKS {
            remove_oldest(veks, |_| true);
        }
    }
    veks.insert(key, held);
}

fn remove_oldest(veks: &mut HashMap<VcekKey, HeldVek>, among: impl Fn(&VcekKey) -> bool) {
    if let Some(oldest) = veks
        .iter()
        .filter(|(k, _)| among(k))
        .min_by_key(|(_, h)| h.stored)
        .map(|(k, _)| *k)
    {
        veks.remove(&oldest);
    }
}
