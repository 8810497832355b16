//! EDGE. One backoff for every collateral source (Intel's PCS and its early data, AMD's KDS,
//! AWS's Nitro CRLs): a key whose fetch failed is not asked again before its delay ends (the
//! policy's first delay, doubled on each failure in a row up to its longest), so a source that
//! is down costs one request per delay, not one per handshake; why it failed is kept until a
//! fetch succeeds. At most `cap` keys are remembered: the one whose retry comes first makes
//! room (forgetting it only lets it be asked again sooner).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::dcap::time::UnixTime;
use crate::source::policy::RefreshPolicy;

/// Keys remembered at most when a source does not say.
pub(crate) const DEFAULT_CAP: usize = 256;

/// When a failed fetch may be tried again, the delay that led there, and why it failed.
struct Failed<E> {
    retry_at: UnixTime,
    delay: Duration,
    error: E,
}

/// The failed fetches not to repeat yet, by key; `E` is what a source keeps of the failure.
pub(crate) struct Backoff<K, E = ()> {
    cap: usize,
    failed: Mutex<HashMap<K, Failed<E>>>,
}

impl<K, E> Default for Backoff<K, E> {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

impl<K, E> Backoff<K, E> {
    /// Nothing failed yet; at most `cap` keys remembered.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            failed: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, E: Clone> Backoff<K, E> {
    /// When `key` may be fetched again, if its last fetch failed and that time is after `now`.
    pub(crate) fn until(&self, key: &K, now: UnixTime) -> Option<UnixTime> {
        let failed = self.failed.lock().ok()?;
        failed.get(key).map(|f| f.retry_at).filter(|at| now < *at)
    }

    /// Why the last fetch of `key` failed, if it did and none succeeded since.
    pub(crate) fn last_error(&self, key: &K) -> Option<E> {
        let failed = self.failed.lock().ok()?;
        failed.get(key).map(|f| f.error.clone())
    }

    /// True when `key` failed before and has not been fetched since.
    pub(crate) fn remembers(&self, key: &K) -> bool {
        self.failed.lock().is_ok_and(|f| f.contains_key(key))
    }

    /// Records a failed fetch of `key` at `now` and why: `policy`'s first delay, or twice
    /// the last one up to its longest.
    pub(crate) fn failed(&self, key: K, now: UnixTime, policy: &RefreshPolicy, error: E) {
        let Ok(mut failed) = self.failed.lock() else {
            return;
        };
        let delay = failed.get(&key).map_or(policy.min_backoff, |f| {
            f.delay.saturating_mul(2).min(policy.max_backoff)
        });
        if failed.len() >= self.cap && !failed.contains_key(&key) {
            if let Some(first) = failed
                .iter()
                .min_by_key(|(_, f)| f.retry_at)
                .map(|(k, _)| k.clone())
            {
                failed.remove(&first);
            }
        }
        let secs = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
        let retry_at = UnixTime(now.0.saturating_add(secs));
        failed.insert(
            key,
            Failed {
                retry_at,
                delay,
                error,
            },
        );
    }

    /// Forgets `key`'s failures: it was fetched.
    pub(crate) fn succeeded(&self, key: &K) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.remove(key);
        }
    }

    /// Keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.failed.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            ..RefreshPolicy::default()
        }
    }

    #[test]
    fn delays_double_up_to_the_longest_and_a_success_forgets() {
        let b: Backoff<&str, String> = Backoff::default();
        let p = policy();
        let mut now = UnixTime(1_000);
        assert_eq!(b.until(&"k", now), None);
        let mut want = 5;
        for _ in 0..10 {
            b.failed("k", now, &p, "down".into());
            assert_eq!(b.until(&"k", now), Some(UnixTime(now.0 + want)));
            assert_eq!(
                b.until(&"k", UnixTime(now.0 + want)),
                None,
                "due at the end"
            );
            now = UnixTime(now.0 + want);
            want = (want * 2).min(300);
        }
        assert_eq!(b.last_error(&"k").as_deref(), Some("down"));
        assert!(b.remembers(&"k"));
        b.succeeded(&"k");
        assert!(!b.remembers(&"k"));
        b.failed("k", now, &p, "again".into());
        assert_eq!(b.until(&"k", now), Some(UnixTime(now.0 + 5)), "starts over");
    }

    #[test]
    fn bounded_the_first_due_makes_room() {
        let b: Backoff<u32> = Backoff::new(3);
        let p = policy();
        for k in 0..3u32 {
            b.failed(k, UnixTime(100 + i64::from(k)), &p, ());
        }
        b.failed(7, UnixTime(200), &p, ());
        assert_eq!(b.len(), 3);
        assert!(!b.remembers(&0), "the first due went");
        assert!(b.remembers(&1) && b.remembers(&2) && b.remembers(&7));
        // A key already remembered takes no room.
        b.failed(7, UnixTime(210), &p, ());
        assert_eq!(b.len(), 3);
        assert!(b.remembers(&1));
    }
}
