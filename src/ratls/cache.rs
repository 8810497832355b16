//! The verdict cache: accepted verdicts keyed by SHA-256 of the leaf DER, the policy (of
//! one generation) and the collateral snapshot they were made under.
//!
//! A failure is never cached. An entry lives until the earliest of: the collateral's
//! validity, the certificate's notAfter, and the configured maximum age; an entry past
//! its time is a miss. Counters let tests and metrics see hits and real verifications.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::certificate::AcceptedCert;
use crate::appraise::SnapshotId;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::metrics::Histogram;

/// Identifies a policy (and binding mode and trust root): verdicts under another policy never match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyId(pub [u8; 32]);

impl PolicyId {
    /// Derives the id from anything that describes the policy completely.
    pub fn of(description: &impl std::fmt::Debug) -> Self {
        Self(Sha256::digest(format!("{description:?}").as_bytes()).into())
    }
}

/// A configuration generation of the proxy: verdicts made under another one (another
/// policy or collateral source) are never reused, and the audit trail names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GenerationId(pub u64);

/// An accepted verdict and until when it may be reused.
#[derive(Debug)]
pub struct CachedVerdict {
    /// The accepted certificate.
    pub accepted: AcceptedCert,
    /// The last second it may be served.
    pub valid_until: UnixTime,
    /// The collateral snapshot it was made under ([`crate::appraise::CollateralSource::snapshot_id`]).
    pub snapshot: SnapshotId,
    /// The leaf certificate judged, so a connection it admitted can be judged again.
    pub leaf: Arc<[u8]>,
    /// Set once the verdict is in the audit trail: a cache hit is not a new verdict.
    pub audited: std::sync::atomic::AtomicBool,
    /// The destinations (host, port) whose use of this verdict the trail already records.
    hosts: std::sync::Mutex<Vec<(String, u16)>>,
}

/// Destinations remembered per verdict at most; beyond them every new use is recorded.
const MAX_HOSTS: usize = 256;

impl CachedVerdict {
    /// True if the audit trail already records this verdict's use for `host:port`.
    pub fn recorded_for(&self, host: &str, port: u16) -> bool {
        self.hosts
            .lock()
            .is_ok_and(|h| h.iter().any(|(n, p)| n == host && *p == port))
    }

    /// Remembers that the trail records this verdict's use for `host:port`.
    pub fn record_for(&self, host: &str, port: u16) {
        if let Ok(mut h) = self.hosts.lock() {
            if h.len() < MAX_HOSTS && !h.iter().any(|(n, p)| n == host && *p == port) {
                h.push((host.to_owned(), port));
            }
        }
    }
}

/// Cache counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to verify.
    pub misses: u64,
    /// Full quote verifications performed.
    pub verifications: u64,
}

/// Shared across connections and verifiers.
#[derive(Debug)]
pub struct VerdictCache {
    entries: moka::sync::Cache<(CertSha256, PolicyId, SnapshotId), Arc<CachedVerdict>>,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    verifications: AtomicU64,
    durations: Histogram,
}

impl VerdictCache {
    /// A cache holding up to `capacity` verdicts for at most `max_age` each.
    pub fn new(capacity: u64, max_age: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(max_age)
                .build(),
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
            durations: Histogram::default(),
        }
    }

    /// A fresh verdict for this certificate, policy and collateral snapshot, if any.
    pub fn get(
        &self,
        cert: CertSha256,
        policy: PolicyId,
        snapshot: SnapshotId,
        now: UnixTime,
    ) -> Option<Arc<CachedVerdict>> {
        let hit = self
            .entries
            .get(&(cert, policy, snapshot))
            .filter(|v| now <= v.valid_until);
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Records one full verification and how long it took.
    pub fn count_verification(&self, took: Duration) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.durations.observe(took);
    }

    /// Durations of full verifications.
    pub fn durations(&self) -> &Histogram {
        &self.durations
    }

    /// Stores an accepted certificate that holds until `valid_until` (the collateral's and
    /// the policy's limits; refusals are never cached: the caller holds them).
    pub fn insert_accepted(
        &self,
        key: (PolicyId, SnapshotId),
        leaf: &[u8],
        accepted: AcceptedCert,
        valid_until: UnixTime,
        now: UnixTime,
    ) -> Arc<CachedVerdict> {
        let (policy, snapshot) = key;
        let max = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        let mut until = UnixTime(now.0.saturating_add(max)).min(valid_until);
        let cert = accepted.appraisal();
        if let Some(not_after) = cert.cert_not_after {
            until = until.min(not_after);
        }
        let key = (cert.cert_sha256, policy, snapshot);
        let entry = Arc::new(CachedVerdict {
            accepted,
            valid_until: until,
            snapshot,
            leaf: Arc::from(leaf),
            audited: std::sync::atomic::AtomicBool::new(false),
            hosts: std::sync::Mutex::new(Vec::new()),
        });
        self.entries.insert(key, Arc::clone(&entry));
        entry
    }

    /// Drops every verdict (for example after a policy reload).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            verifications: self.verifications.load(Ordering::Relaxed),
        }
    }
}
