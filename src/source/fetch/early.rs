//! EDGE. Intel's early TCB data in the collateral cache: fetched beside each standard snapshot
//! (on its schedule), verified against it, admitted against the early book of high-water
//! marks, and held per key. A fetch that fails or is refused (bad signature, another
//! platform, older than the standard data or than what was seen) keeps what was held, backs
//! off on its own, and never touches the standard snapshot or its marks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{CollateralCache, Key, MAX_MISSING};
use crate::dcap::collateral::early::EarlyCollateral;
use crate::dcap::early::VerifiedEarly;
use crate::dcap::error::VerifyError;
use crate::dcap::time::UnixTime;
use crate::dcap::verified::VerifiedCollateral;
use crate::source::backoff::Backoff;
use crate::source::marks::{Marks, Refused};
use crate::source::pcs::FetchError;

/// The early data the cache holds, and how fetching it goes.
#[derive(Default)]
pub(super) struct EarlyState {
    /// Fetch early data at all (`[collateral] early` is not off).
    enabled: AtomicBool,
    held: RwLock<HashMap<Key, Held>>,
    /// Keys with a standard snapshot and no early data, a verdict asked for.
    missing: Mutex<HashSet<Key>>,
    backoff: Backoff<Key>,
    /// The early book of marks (shared by every generation's cache, kept by the proxy).
    marks: Mutex<Option<Arc<Marks>>>,
    failures: AtomicU64,
    rollbacks: AtomicU64,
}

struct Held {
    verified: Arc<VerifiedEarly>,
    fetched_at: UnixTime,
}

/// One key's early data, for readiness, metrics and `/tcb`.
#[derive(Clone, Debug)]
pub struct EarlyInfo {
    /// Its key.
    pub key: Key,
    /// Its TCB evaluation data number.
    pub evaluation_number: u32,
    /// When it becomes standard, if dated.
    pub standard_from: Option<UnixTime>,
    /// When it was fetched.
    pub fetched_at: UnixTime,
    /// The last second it is valid.
    pub valid_until: UnixTime,
}

/// Counters of early data fetches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EarlyStats {
    /// Fetches that failed or were refused (the standard data unaffected).
    pub failures: u64,
    /// Early data refused as older than the early book's marks.
    pub rollbacks: u64,
}

impl CollateralCache {
    /// Fetches Intel's early TCB data beside every snapshot from now on.
    pub fn with_early(self) -> Self {
        self.early.enabled.store(true, Ordering::Relaxed);
        self
    }

    /// True if early data is fetched.
    pub fn fetches_early(&self) -> bool {
        self.early.enabled.load(Ordering::Relaxed)
    }

    /// Admits fetched early data against `marks` (the early book) from now on.
    pub(crate) fn share_early_marks(&self, marks: &Arc<Marks>) {
        if let Ok(mut m) = self.early.marks.lock() {
            *m = Some(Arc::clone(marks));
        }
    }

    /// Early fetch counters.
    pub fn early_stats(&self) -> EarlyStats {
        EarlyStats {
            failures: self.early.failures.load(Ordering::Relaxed),
            rollbacks: self.early.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Every key's early data held.
    pub fn early_snapshots(&self) -> Vec<EarlyInfo> {
        self.early
            .held
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, h)| EarlyInfo {
                        key: *k,
                        evaluation_number: h.verified.evaluation_number(),
                        standard_from: h.verified.standard_from(),
                        fetched_at: h.fetched_at,
                        valid_until: h.verified.valid_until(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The early data held for `key`; none noted as missing (for [`Self::fetch_missing`]).
    pub(super) fn early_of(&self, key: Key) -> Option<Arc<VerifiedEarly>> {
        if !self.fetches_early() {
            return None;
        }
        let held = self
            .early
            .held
            .read()
            .ok()
            .and_then(|m| m.get(&key).map(|h| Arc::clone(&h.verified)));
        if held.is_none() {
            if let Ok(mut m) = self.early.missing.lock() {
                if m.len() < MAX_MISSING {
                    m.insert(key);
                }
            }
        }
        held
    }

    /// Takes over the early data `older` holds that this cache has none for.
    pub(super) fn adopt_early(&self, older: &CollateralCache) {
        if !self.fetches_early() {
            return;
        }
        let (Ok(theirs), Ok(mut mine)) = (older.early.held.read(), self.early.held.write()) else {
            return;
        };
        for (key, h) in theirs.iter() {
            mine.entry(*key).or_insert_with(|| Held {
                verified: Arc::clone(&h.verified),
                fetched_at: h.fetched_at,
            });
        }
    }

    /// The raw early data of `key` from the source, when early data is fetched.
    pub(super) async fn fetch_early(
        &self,
        key: Key,
    ) -> Option<Result<EarlyCollateral, FetchError>> {
        if !self.fetches_early() {
            return None;
        }
        Some(self.endpoint.fetch_early(key.0, key.2).await)
    }

    /// Keys whose early data is missing and not backing off.
    pub(super) fn early_missing(&self, now: UnixTime) -> Vec<Key> {
        self.early
            .missing
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|k| self.early.backoff.until(k, now).is_none())
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fetches the early data of `key` (which has a standard snapshot) alone, once for all
    /// concurrent callers.
    pub(super) async fn ensure_early(&self, key: Key) {
        let Some(lock) = self
            .locks
            .lock()
            .ok()
            .map(|mut l| Arc::clone(l.entry(key).or_default()))
        else {
            return;
        };
        let _guard = lock.lock().await;
        let held = self.early.held.read().is_ok_and(|m| m.contains_key(&key));
        let Some((standard, _)) = self.snapshot(&key) else {
            return;
        };
        if held {
            return;
        }
        if let Some(fetched) = self.fetch_early(key).await {
            self.take_early(key, &standard, fetched).await;
        }
    }

    /// Verifies `fetched` against the standard snapshot `standard` of `key`, admits it against
    /// the early book and holds it; on any failure keeps what was held and backs off.
    pub(super) async fn take_early(
        &self,
        key: Key,
        standard: &VerifiedCollateral,
        fetched: Result<EarlyCollateral, FetchError>,
    ) {
        let verified = fetched
            .map_err(VerifyError::from)
            .and_then(|e| VerifiedEarly::verify(&e, standard));
        let admitted = match verified {
            Ok(v) => self.admit_early(Arc::new(v)).await,
            Err(e) => Err(e.to_string()),
        };
        match admitted {
            Ok(v) => {
                let changed = {
                    let Ok(mut held) = self.early.held.write() else {
                        return;
                    };
                    let changed = held
                        .get(&key)
                        .is_none_or(|h| h.verified.digests != v.digests);
                    held.insert(
                        key,
                        Held {
                            verified: Arc::clone(&v),
                            fetched_at: UnixTime::now(),
                        },
                    );
                    changed
                };
                if changed {
                    // Verdicts made before it are made again, with their early judgement.
                    self.changes.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = self.on_new_snapshot.get() {
                        f();
                    }
                    tracing::info!(fmspc = %key.0, tee = key.2.as_str(), evaluation = v.evaluation_number(), standard_from = ?v.standard_from().map(UnixTime::to_rfc3339), "early TCB data fetched and verified");
                }
                self.early.backoff.succeeded(&key);
                if let Ok(mut m) = self.early.missing.lock() {
                    m.remove(&key);
                }
            }
            Err(why) => {
                self.early.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(fmspc = %key.0, ca = key.1.as_str(), tee = key.2.as_str(), error = %why, "early TCB data not taken; the standard data and its verdicts are unaffected");
                self.early
                    .backoff
                    .failed(key, UnixTime::now(), &self.policy, ());
            }
        }
    }

    /// Admits verified early data against the early book (on the blocking pool: it may
    /// write and fsync its file).
    async fn admit_early(&self, v: Arc<VerifiedEarly>) -> Result<Arc<VerifiedEarly>, String> {
        let Some(marks) = self
            .early
            .marks
            .lock()
            .map_err(|_| "marks lock poisoned".to_owned())?
            .clone()
        else {
            // A cache of its own (`verify`): nothing kept across runs.
            return Ok(v);
        };
        let (anchor, held) = (self.anchor.sha256(), Arc::clone(&v));
        let admitted = tokio::task::spawn_blocking(move || marks.admit_early(&anchor, &held))
            .await
            .map_err(|e| format!("admitting early data: {e}"))?;
        match admitted {
            Ok(()) => Ok(v),
            Err(Refused::Rollback(detail)) => {
                self.early.rollbacks.fetch_add(1, Ordering::Relaxed);
                Err(format!(
                    "early data rollback refused: the source served early data older than already seen: {detail}"
                ))
            }
            Err(Refused::Full) => Err(format!(
                "no room for the early marks of another platform (at most {})",
                crate::source::marks::MAX_MARKS
            )),
        }
    }
}
