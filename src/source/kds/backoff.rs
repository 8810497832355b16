//! EDGE. When the KDS cache may ask again after a failed fetch: per product chain (its
//! `cert_chain` and CRL, asked for together) and per VCEK, the policy's first delay doubled on
//! each failure up to its longest. A KDS that is down, or a network answering errors, then
//! costs one request per delay, not one per handshake.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::VcekKey;
use crate::dcap::time::UnixTime;
use crate::snp::report::SigningKey;
use crate::snp::Product;
use crate::source::fetch::RefreshPolicy;

/// Failed fetches remembered at most; the one whose retry comes first makes room.
const MAX_REMEMBERED: usize = 256;

/// What one fetch asks KDS for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Asked {
    /// A product's `cert_chain` and CRL.
    Chain(Product, SigningKey),
    /// One chip's VCEK at one TCB.
    Vcek(VcekKey),
}

/// When a failed fetch may be tried again, and the delay that led there.
#[derive(Clone, Copy)]
struct Failed {
    retry_at: UnixTime,
    delay: Duration,
}

/// The failed fetches not to repeat yet.
pub(super) struct Backoff {
    policy: RefreshPolicy,
    failed: Mutex<HashMap<Asked, Failed>>,
}

impl Backoff {
    /// Nothing failed yet; delays from `policy`.
    pub(super) fn new(policy: RefreshPolicy) -> Self {
        Self {
            policy,
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// When `asked` may be fetched again, if its last fetch failed and that time is after
    /// `now`.
    pub(super) fn until(&self, asked: Asked, now: UnixTime) -> Option<UnixTime> {
        let failed = self.failed.lock().ok()?;
        failed
            .get(&asked)
            .map(|f| f.retry_at)
            .filter(|at| now < *at)
    }

    /// Records a failed fetch of `asked` at `now`: the first delay, or twice the last one
    /// up to the longest.
    pub(super) fn failed(&self, asked: Asked, now: UnixTime) {
        let Ok(mut failed) = self.failed.lock() else {
            return;
        };
        let delay = failed.get(&asked).map_or(self.policy.min_backoff, |f| {
            f.delay.saturating_mul(2).min(self.policy.max_backoff)
        });
        if failed.len() >= MAX_REMEMBERED && !failed.contains_key(&asked) {
            if let Some(first) = failed
                .iter()
                .min_by_key(|(_, f)| f.retry_at)
                .map(|(k, _)| *k)
            {
                failed.remove(&first);
            }
        }
        let secs = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
        let retry_at = UnixTime(now.0.saturating_add(secs));
        failed.insert(asked, Failed { retry_at, delay });
    }

    /// Forgets `asked`'s failures: it was fetched.
    pub(super) fn succeeded(&self, asked: Asked) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.remove(&asked);
        }
    }
}
