//! The backoff of failed CRL fetches, per distribution point: a point whose fetch failed is
//! not asked again before its delay ends (the policy's first delay, doubled up to its
//! longest), by handshakes and the refresher alike.

use super::{NitroCrlCache, MAX_BACKOFF};
use crate::dcap::time::UnixTime;

impl NitroCrlCache {
    /// When `url` may be asked again, if a fetch of it failed.
    pub(super) fn retry_at(&self, url: &str) -> Option<UnixTime> {
        let backoff = self.backoff.lock().ok()?;
        backoff.get(url).map(|(at, _)| *at)
    }

    /// Delays the next fetch of `url`: the policy's first delay, doubled on each failure up
    /// to its longest. Entries are bounded; the oldest makes room.
    pub(super) fn back_off(&self, url: &str, now: UnixTime) {
        let Ok(mut backoff) = self.backoff.lock() else {
            return;
        };
        let delay = backoff.get(url).map_or(self.policy.min_backoff, |(_, d)| {
            d.saturating_mul(2).min(self.policy.max_backoff)
        });
        if backoff.len() >= MAX_BACKOFF && !backoff.contains_key(url) {
            if let Some(oldest) = backoff
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                backoff.remove(&oldest);
            }
        }
        let secs = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
        backoff.insert(
            url.to_owned(),
            (UnixTime(now.0.saturating_add(secs)), delay),
        );
    }
}
