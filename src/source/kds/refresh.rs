//! EDGE. The background refresh of held chains: each fetched again when old or near its end,
//! under the same backoff as handshakes, a failure keeping the held chain.

use super::backoff::Asked;
use super::KdsCache;
use crate::dcap::time::UnixTime;

impl KdsCache {
    /// Fetches again every held chain older than the refresh interval or within the margin
    /// of its validity's end, unless its backoff runs; a failure (or a rollback) keeps the
    /// held chain. Returns how many chains were replaced.
    pub async fn refresh(&self, now: UnixTime) -> usize {
        let interval = i64::try_from(self.policy.interval.as_secs()).unwrap_or(i64::MAX);
        let margin = i64::try_from(self.policy.margin.as_secs()).unwrap_or(i64::MAX);
        let due: Vec<_> = match self.chains.read() {
            Ok(chains) => chains
                .iter()
                .filter(|(_, h)| {
                    now.0.saturating_sub(h.fetched_at.0) >= interval
                        || h.chain.valid_until().0.saturating_sub(now.0) <= margin
                })
                .map(|(k, _)| *k)
                .collect(),
            Err(_) => return 0,
        };
        let _one = self.fetching.lock().await;
        let mut replaced = 0;
        for (product, kind) in due {
            // A chain whose last fetch failed waits for its backoff, as handshakes do: a KDS
            // that is down costs one request per delay, not one per tick.
            if self
                .backoff
                .until(Asked::Chain(product, kind), now)
                .is_some()
            {
                continue;
            }
            match self.fetch_chain(product, kind, now).await {
                Ok(_) => replaced += 1,
                Err(e) => {
                    tracing::warn!(%product, "SEV-SNP chain refresh failed, the held one stays until it expires: {e}")
                }
            }
        }
        replaced
    }
}
