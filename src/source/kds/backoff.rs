//! EDGE. When the KDS cache may ask again after a failed fetch: per product chain (its
//! `cert_chain` and CRL, asked for together) and per VCEK, the policy's first delay doubled on
//! each failure up to its longest. A KDS that is down, or a network answering errors, then
//! costs one request per delay, not one per handshake. The failure is kept until a fetch
//! succeeds: a handshake refused meanwhile is told why (a rollback is `collateral_rollback`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{KdsError, VcekKey};
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

/// When a failed fetch may be tried again, the delay that led there, and why it failed.
struct Failed {
    retry_at: UnixTime,
    delay: Duration,
    error: KdsError,
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

    /// Why the last fetch of `asked` failed, if it did and none succeeded since.
    pub(super) fn last_error(&self, asked: Asked) -> Option<KdsError> {
        let failed = self.failed.lock().ok()?;
        failed.get(&asked).map(|f| f.error.clone())
    }

    /// Records a failed fetch of `asked` at `now` and why: the first delay, or twice the
    /// last one up to the longest.
    pub(super) fn failed(&self, asked: Asked, now: UnixTime, error: &KdsError) {
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
        let error = error.clone();
        failed.insert(
            asked,
            Failed {
                retry_at,
                delay,
                error,
            },
        );
    }

    /// Forgets `asked`'s failures: it was fetched.
    pub(super) fn succeeded(&self, asked: Asked) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.remove(&asked);
        }
    }
}
