//! EDGE. Collateral fetched from Intel PCS v4 or a PCCS (`pcs.rs`), and the cache that
//! keeps it fresh.
//!
//! EDGE: it does network I/O. Snapshots are verified once when fetched
//! ([`VerifiedCollateral`]); the synchronous read path used inside TLS handshakes only
//! reads the snapshot map, so no request ever waits on the network in steady state.
//! Concurrent misses for one key are coalesced into one fetch; a failed refresh keeps
//! serving the old snapshot until its own expiry, after which verification refuses it.
//! Every fetched snapshot is admitted against the high-water marks ([`Marks`]) first: a
//! replay of older collateral is refused whether or not this cache holds a newer one.
//! With early data on (`early.rs`), Intel's early TCB data is fetched beside each snapshot,
//! verified against it and admitted against marks of its own; its failure never touches the
//! standard snapshot.

mod early;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::backoff::Backoff;
use super::marks::{Marks, Refused};
pub(crate) use super::pcs::PcsEndpoint;
pub use super::policy::RefreshPolicy;
use crate::appraise::{CollateralSource, SnapshotId};
use crate::dcap::collateral::pcs::PckCa;
use crate::dcap::collateral::tcb_info::CollateralTee;
use crate::dcap::collateral::{CollateralError, CollateralItem};
use crate::dcap::early::VerifiedEarly;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::quote::{Quote, TeeType};
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::VerifiedCollateral;
use crate::dcap::verify::pck_platform_under;
use crate::source::platform::PlatformOf;

/// Collateral cache key: the platform model, its PCK CA and the TEE (SGX and TDX collateral of
/// one platform are different documents).
pub(crate) type Key = (Fmspc, PckCa, TeeType);

struct Snapshot {
    verified: Arc<VerifiedCollateral>,
    fetched_at: UnixTime,
    /// Increases with every stored fetch: tells a waiter that someone else just fetched.
    stored: u64,
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Completed fetch attempts.
    pub fetches: u64,
    /// Failed attempts (network, status, content, verification).
    pub failures: u64,
    /// Lookups answered from a snapshot.
    pub hits: u64,
    /// Lookups with no snapshot.
    pub misses: u64,
    /// Fetched snapshots refused as older than the high-water marks.
    pub rollbacks: u64,
}

/// One cached snapshot, for readiness and metrics.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// Its key.
    pub key: Key,
    /// When it was fetched.
    pub fetched_at: UnixTime,
    /// The last second it is valid.
    pub valid_until: UnixTime,
}

/// Verified collateral by platform, fetched on demand and refreshed in the background.
pub struct CollateralCache {
    endpoint: PcsEndpoint,
    anchor: TrustAnchor,
    policy: RefreshPolicy,
    snapshots: RwLock<HashMap<Key, Snapshot>>,
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    missing: Mutex<HashSet<Key>>,
    /// Keys with no snapshot whose last fetch failed, and why: their quotes are refused with
    /// that reason (`collateral_rollback` for a replay) until a fetch succeeds.
    failed: Mutex<HashMap<Key, VerifyError>>,
    backoff: Backoff<Key>,
    /// The high-water marks (shared by every generation's cache, kept by the proxy).
    marks: Mutex<Arc<Marks>>,
    fetches: AtomicU64,
    rollbacks: AtomicU64,
    failures: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    stores: AtomicU64,
    /// Bumped whenever a snapshot with new content is stored (early data included): verdicts
    /// and pooled connections judged under an older one are judged again.
    changes: AtomicU64,
    /// Intel's early TCB data, when fetched.
    early: early::EarlyState,
    /// Called after each new snapshot is stored (set once, by whoever serves with the cache):
    /// exchanges in flight are judged again at once, not at their next request.
    on_new_snapshot: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The platform each quote names, by its PCK chain bytes.
    platforms: PlatformOf,
}

/// Platforms remembered as missing at most (only quotes with a verifying PCK chain count).
const MAX_MISSING: usize = 64;

fn key_of(platforms: &PlatformOf, quote: &Quote<'_>) -> Option<Key> {
    let (fmspc, issuer) = platforms.of(quote)?;
    Some((fmspc, PckCa::from_issuer_cn(&issuer)?, quote.header.tee))
}

fn unavailable(detail: String) -> VerifyError {
    VerifyError::Collateral(CollateralError::Unavailable(detail))
}

impl CollateralCache {
    /// An empty cache fetching from `endpoint`, verifying against `anchor`, with high-water
    /// marks of its own in memory until [`Self::share_marks`].
    pub fn new(endpoint: PcsEndpoint, anchor: TrustAnchor, policy: RefreshPolicy) -> Self {
        Self {
            endpoint,
            anchor,
            policy,
            snapshots: RwLock::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashMap::new()),
            backoff: Backoff::default(),
            marks: Mutex::new(Arc::new(Marks::in_memory())),
            fetches: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stores: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            early: early::EarlyState::default(),
            on_new_snapshot: std::sync::OnceLock::new(),
            platforms: PlatformOf::default(),
        }
    }

    /// Sets (once; later calls are ignored) what is called after each new snapshot.
    pub fn on_new_snapshot(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_new_snapshot.set(Box::new(f));
    }

    /// Counters.
    pub fn stats(&self) -> FetchStats {
        FetchStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Admits fetched collateral against `marks` from now on (the proxy's, kept in its state
    /// directory and shared by the caches of every generation).
    pub(crate) fn share_marks(&self, marks: &Arc<Marks>) {
        if let Ok(mut m) = self.marks.lock() {
            *m = Arc::clone(marks);
        }
    }

    /// Takes over the snapshots `older` holds that this cache has none for: a reload that
    /// keeps the collateral source keeps serving what was fetched, even if the source is
    /// unreachable at that moment. (They were admitted against the same marks.)
    pub(crate) fn adopt(&self, older: &CollateralCache) {
        // Snapshots verified under another root say nothing under this one.
        if self.anchor.der() != older.anchor.der() {
            return;
        }
        let Ok(held) = older.snapshots.read() else {
            return;
        };
        let Ok(mut mine) = self.snapshots.write() else {
            return;
        };
        for (key, s) in held.iter() {
            mine.entry(*key).or_insert_with(|| Snapshot {
                verified: Arc::clone(&s.verified),
                fetched_at: s.fetched_at,
                stored: self.stores.fetch_add(1, Ordering::Relaxed),
            });
        }
        drop(mine);
        self.adopt_early(older);
    }

    /// Every snapshot held.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.snapshots
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, s)| SnapshotInfo {
                        key: *k,
                        fetched_at: s.fetched_at,
                        valid_until: s.verified.valid_until(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn snapshot(&self, key: &Key) -> Option<(Arc<VerifiedCollateral>, u64)> {
        let map = self.snapshots.read().ok()?;
        map.get(key).map(|s| (Arc::clone(&s.verified), s.stored))
    }

    /// The current snapshot for `key`, fetching it (once, for all concurrent callers) when
    /// absent or expired, or always when `force`.
    pub async fn ensure(
        &self,
        key: Key,
        force: bool,
    ) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .map_err(|_| unavailable("cache lock poisoned".into()))?;
            Arc::clone(locks.entry(key).or_default())
        };
        let seen = self.snapshot(&key).map(|(_, stored)| stored);
        let _guard = lock.lock().await;
        if let Some((v, stored)) = self.snapshot(&key) {
            // Somebody else fetched while we waited, or no refresh is needed.
            if Some(stored) != seen || (!force && v.check_fresh(UnixTime::now()).is_ok()) {
                return Ok(v);
            }
        }
        // The early data comes beside the standard data, on its schedule.
        let (fetched, early) = tokio::join!(self.fetch_and_verify(key), self.fetch_early(key));
        let result = match fetched {
            Ok(v) => self.admit(key, v).await,
            Err(e) => Err(e),
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match result.and_then(|v| self.store(key, v)) {
            Ok(v) => {
                if let Some(early) = early {
                    self.take_early(key, &v, early).await;
                }
                self.backoff.succeeded(&key);
                if let Ok(mut m) = self.missing.lock() {
                    m.remove(&key);
                }
                if let Ok(mut f) = self.failed.lock() {
                    f.remove(&key);
                }
                tracing::info!(fmspc = %key.0, ca = key.1.as_str(), valid_until = %v.valid_until(), "collateral fetched and verified");
                Ok(v)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let held = self.snapshot(&key).is_some();
                if !held {
                    if let Ok(mut f) = self.failed.lock() {
                        if f.len() < MAX_MISSING || f.contains_key(&key) {
                            f.insert(key, e.clone());
                        }
                    }
                }
                if held {
                    tracing::warn!(fmspc = %key.0, ca = key.1.as_str(), error = %e, "collateral fetch failed; serving the previous snapshot until it expires");
                } else {
                    tracing::warn!(fmspc = %key.0, ca = key.1.as_str(), error = %e, "collateral fetch failed; there is no snapshot for this platform, so its quotes are refused (collateral_unavailable)");
                }
                self.backoff.failed(key, UnixTime::now(), &self.policy, ());
                Err(e)
            }
        }
    }

    /// Admits a fetched snapshot for `key` against the high-water marks (on the blocking
    /// pool: raising them writes and fsyncs the marks file, which must not stall the
    /// connections this thread serves). An attacker replaying old, validly signed
    /// collateral would hide a TCB recovery or a revocation; a refusal is logged here,
    /// whichever generation's cache made the fetch.
    async fn admit(
        &self,
        key: Key,
        v: Arc<VerifiedCollateral>,
    ) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let marks = self
            .marks
            .lock()
            .map(|m| Arc::clone(&m))
            .map_err(|_| unavailable("marks lock poisoned".into()))?;
        let (anchor, held) = (self.anchor.sha256(), Arc::clone(&v));
        let admitted = tokio::task::spawn_blocking(move || marks.admit(&anchor, key.1, &held))
            .await
            .map_err(|e| unavailable(format!("admitting collateral: {e}")))?;
        match admitted {
            Ok(()) => Ok(v),
            Err(Refused::Rollback(detail)) => {
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(fmspc = %key.0, ca = key.1.as_str(), tee = key.2.as_str(), %detail, "collateral rollback refused: the source served collateral older than already seen");
                Err(VerifyError::Collateral(CollateralError::Rollback(format!(
                    "FMSPC {} ({} CA, {}): {detail}",
                    key.0,
                    key.1.as_str(),
                    key.2.as_str()
                ))))
            }
            Err(Refused::Full) => Err(unavailable(format!(
                "no room for the high-water marks of another platform (at most {})",
                super::marks::MAX_MARKS
            ))),
        }
    }

    /// Stores an admitted snapshot for `key` (fetches of one key are serialised by
    /// [`Self::ensure`]).
    fn store(
        &self,
        key: Key,
        v: Arc<VerifiedCollateral>,
    ) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let mut map = self
            .snapshots
            .write()
            .map_err(|_| unavailable("cache lock poisoned".into()))?;
        let changed = match map.get(&key) {
            // Any new byte (a CRL included: a newly revoked PCK must reach pooled
            // connections) is a new snapshot, judged again.
            Some(held) => {
                v.digests != held.verified.digests || v.valid_until() != held.verified.valid_until()
            }
            None => true,
        };
        if changed {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        map.insert(
            key,
            Snapshot {
                verified: Arc::clone(&v),
                fetched_at: UnixTime::now(),
                stored: self.stores.fetch_add(1, Ordering::Relaxed),
            },
        );
        if changed {
            if let Some(f) = self.on_new_snapshot.get() {
                f();
            }
        }
        Ok(v)
    }

    async fn fetch_and_verify(&self, key: Key) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let collateral = self.endpoint.fetch(key.0, key.1, key.2).await?;
        let verified = VerifiedCollateral::verify(&collateral, &self.anchor)?;
        if verified.tcb_info.fmspc != key.0 {
            return Err(VerifyError::FmspcMismatch {
                pck: key.0,
                tcb_info: verified.tcb_info.fmspc,
            });
        }
        // The TEE asked for: another TEE's TCB info or QE identity would be admitted against
        // that TEE's marks and then fail every verification for this one.
        let tee = match key.2 {
            TeeType::Sgx => CollateralTee::Sgx,
            TeeType::Tdx => CollateralTee::Tdx,
        };
        if verified.tcb_info.tee != tee || verified.qe_identity.tee != tee {
            return Err(unavailable(format!(
                "asked for {} collateral, got another TEE's TCB info or QE identity",
                key.2.as_str()
            )));
        }
        // The CRL asked for is the key's CA's: another CA's CRL says nothing about this
        // platform's PCK certificates, and must not raise (or dodge) that CA's mark.
        if verified.pck_crl_ca != Some(key.1) {
            return Err(unavailable(format!(
                "asked for the PCK {} CA's CRL, got one issued by {}",
                key.1.as_str(),
                verified.pck_crl_ca.map_or("neither PCK CA", |c| c.as_str())
            )));
        }
        Ok(Arc::new(verified))
    }

    /// Fetches every key a quote asked for but found missing (after a refused handshake),
    /// except those backing off after a failed fetch; how many were tried (each now has a
    /// snapshot or the reason it has none).
    pub async fn fetch_missing(&self) -> usize {
        let now = UnixTime::now();
        let keys: Vec<Key> = self
            .missing
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|k| self.backoff.until(k, now).is_none())
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let mut tried = keys.len();
        for key in keys {
            // Failed or not, the answer is now known: judged again, its quotes get the
            // reason (a rollback, the source's error) rather than "not fetched yet".
            let _ = self.ensure(key, false).await;
        }
        for key in self.early_missing(now) {
            self.ensure_early(key).await;
            tried = tried.saturating_add(1);
        }
        tried
    }

    /// Fetches both PCK CA variants of each FMSPC (start-up prefetch).
    pub async fn prefetch(&self, fmspcs: &[Fmspc]) {
        for f in fmspcs {
            for ca in [PckCa::Platform, PckCa::Processor] {
                let _ = self.ensure((*f, ca, TeeType::Sgx), false).await;
            }
        }
    }

    /// Keys due for a refresh now (old, near expiry, and not backing off).
    pub fn due(&self, now: UnixTime) -> Vec<Key> {
        let Ok(map) = self.snapshots.read() else {
            return Vec::new();
        };
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        map.iter()
            .filter(|(key, s)| {
                let old = now.0 >= s.fetched_at.0.saturating_add(secs(self.policy.interval));
                let near_expiry = now.0
                    >= s.verified
                        .valid_until()
                        .0
                        .saturating_sub(secs(self.policy.margin));
                let waiting = self.backoff.until(key, now).is_some();
                (old || near_expiry) && !waiting
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Refreshes what is due, every `tick`, forever (run it as a task; abort to stop); also
    /// tries again, once their backoff has passed, platforms with no snapshot (a refused
    /// rollback, a source that was down), so they recover without waiting for a request.
    pub async fn refresh_loop(self: Arc<Self>, tick: Duration) {
        loop {
            tokio::time::sleep(tick).await;
            for key in self.due(UnixTime::now()) {
                let _ = self.ensure(key, true).await;
            }
            let _ = self.fetch_missing().await;
        }
    }

    /// Spawns [`Self::refresh_loop`].
    pub fn spawn_refresher(self: &Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::clone(self).refresh_loop(tick))
    }
}

impl CollateralSource for CollateralCache {
    fn snapshot_id(&self) -> SnapshotId {
        SnapshotId(self.changes.load(Ordering::Relaxed))
    }

    fn early_for(&self, quote: &Quote<'_>) -> Option<Arc<VerifiedEarly>> {
        self.early_of(key_of(&self.platforms, quote)?)
    }

    fn verified_for(&self, quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let Some(key) = key_of(&self.platforms, quote) else {
            // A chain that does not verify is that (chain_invalid), whatever it names.
            pck_platform_under(quote, &self.anchor)?;
            return Err(unavailable(
                "the quote's PCK certificate names no FMSPC or PCK CA".into(),
            ));
        };
        match self.snapshot(&key) {
            Some((v, _)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                // Only a quote whose PCK chain verifies to the trust root may make us fetch.
                // A chain that does not verify is that (chain_invalid), not missing collateral.
                pck_platform_under(quote, &self.anchor)?;
                if let Ok(mut m) = self.missing.lock() {
                    if m.len() < MAX_MISSING {
                        m.insert(key);
                    }
                }
                let failed = self.failed.lock().ok().and_then(|f| f.get(&key).cloned());
                match failed {
                    Some(e @ VerifyError::Collateral(CollateralError::Rollback(_))) => Err(e),
                    Some(e) => Err(unavailable(format!(
                        "no collateral for FMSPC {} ({} CA): the last fetch failed: {e}",
                        key.0,
                        key.1.as_str()
                    ))),
                    None => Err(unavailable(format!(
                        "no collateral fetched yet for FMSPC {} ({} CA)",
                        key.0,
                        key.1.as_str()
                    ))),
                }
            }
        }
    }
}

/// Why `new` would move collateral backwards from `old`, if it would: an older TCB info or QE
/// identity (by `tcbEvaluationDataNumber`, then `issueDate`: Intel's early data has a higher
/// number and an older date), or an older CRL `thisUpdate` (a replayed CRL would un-revoke a
/// PCK). Bundle files use it between two bundles of one platform.
pub(super) fn rollback(old: &VerifiedCollateral, new: &VerifiedCollateral) -> Option<String> {
    let (o, n) = (&old.tcb_info, &new.tcb_info);
    if (n.tcb_evaluation_data_number, n.issue_date) < (o.tcb_evaluation_data_number, o.issue_date) {
        return Some(format!(
            "TCB evaluation data number {} issued {}, against {} issued {}",
            n.tcb_evaluation_data_number, n.issue_date, o.tcb_evaluation_data_number, o.issue_date
        ));
    }
    let (o, n) = (&old.qe_identity, &new.qe_identity);
    if (n.tcb_evaluation_data_number, n.issue_date) < (o.tcb_evaluation_data_number, o.issue_date) {
        return Some(format!(
            "QE identity number {} issued {}, against {} issued {}",
            n.tcb_evaluation_data_number, n.issue_date, o.tcb_evaluation_data_number, o.issue_date
        ));
    }
    for item in [CollateralItem::RootCaCrl, CollateralItem::PckCrl] {
        let from =
            |v: &VerifiedCollateral| v.windows().iter().find(|w| w.item == item).map(|w| w.from);
        if let (Some(held), Some(fetched)) = (from(old), from(new)) {
            if fetched < held {
                return Some(format!(
                    "{item} issued {fetched}, against one issued {held}"
                ));
            }
        }
    }
    None
}
