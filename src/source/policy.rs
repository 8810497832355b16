//! EDGE. When every collateral source refreshes what it holds and how long it waits after a
//! failed fetch: one policy for Intel's PCS, AMD's KDS and AWS's CRLs.

use std::time::Duration;

/// When to refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh a snapshot older than this.
    pub interval: Duration,
    /// Refresh a snapshot this close to its expiry.
    pub margin: Duration,
    /// First retry delay after a failed refresh (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(6 * 3600),
            margin: Duration::from_secs(24 * 3600),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}
