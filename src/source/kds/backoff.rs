//! EDGE. When the KDS cache may ask again after a failed fetch: per product chain (its
//! `cert_chain` and CRL, asked for together) and per VCEK, the policy's first delay doubled on
//! each failure up to its longest. A KDS that is down, or a network answering errors, then
//! costs one request per delay, not one per handshake. The failure is kept until a fetch
//! succeeds: a handshake refused meanwhile is told why (a rollback is `collateral_rollback`).
//!
//! The CHIP_ID is read from the report before its signature is checked, so a peer can name a
//! new chip on every handshake: fetches for chips no VCEK is held for share a budget of
//! [`NEW_CHIP_FAILURES`] failures per longest delay, after which no new chip is asked for
//! until the oldest of them leaves the window (chips already held are not affected).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{KdsError, VcekKey};
use crate::dcap::time::UnixTime;
use crate::snp::report::SigningKey;
use crate::snp::Product;
use crate::source;
use crate::source::fetch::RefreshPolicy;

/// Failed fetches remembered at most; the one whose retry comes first makes room.
const MAX_REMEMBERED: usize = 256;
/// Failed first fetches for chips never held, per `max_backoff`, before new chips wait.
pub(crate) const NEW_CHIP_FAILURES: usize = 4;

/// What one fetch asks KDS for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Asked {
    /// A product's `cert_chain` and CRL.
    Chain(Product, SigningKey),
    /// One chip's VCEK at one TCB.
    Vcek(VcekKey),
}

/// The failed fetches not to repeat yet, and the budget of failures for new chips.
pub(super) struct Backoff {
    policy: RefreshPolicy,
    failed: source::backoff::Backoff<Asked, KdsError>,
    /// When first fetches for chips never held failed, oldest first (the last
    /// [`NEW_CHIP_FAILURES`] within `max_backoff`).
    new_chips: Mutex<VecDeque<UnixTime>>,
}

impl Backoff {
    /// Nothing failed yet; delays from `policy`.
    pub(super) fn new(policy: RefreshPolicy) -> Self {
        Self {
            policy,
            failed: source::backoff::Backoff::new(MAX_REMEMBERED),
            new_chips: Mutex::new(VecDeque::new()),
        }
    }

    /// When `asked` may be fetched again, if its last fetch failed and that time is after
    /// `now`.
    pub(super) fn until(&self, asked: Asked, now: UnixTime) -> Option<UnixTime> {
        self.failed.until(&asked, now)
    }

    /// Why the last fetch of `asked` failed, if it did and none succeeded since.
    pub(super) fn last_error(&self, asked: Asked) -> Option<KdsError> {
        self.failed.last_error(&asked)
    }

    /// Records a failed fetch of `asked` at `now` and why.
    pub(super) fn failed(&self, asked: Asked, now: UnixTime, error: &KdsError) {
        self.failed.failed(asked, now, &self.policy, error.clone());
    }

    /// True when `asked` failed before and has not been fetched since.
    pub(super) fn remembers(&self, asked: Asked) -> bool {
        self.failed.remembers(&asked)
    }

    /// When a chip never held may be asked for, if the budget of failures for such chips is
    /// spent at `now`.
    pub(super) fn new_chips_until(&self, now: UnixTime) -> Option<UnixTime> {
        let window = i64::try_from(self.policy.max_backoff.as_secs()).unwrap_or(i64::MAX);
        let mut failures = self.new_chips.lock().ok()?;
        while failures
            .front()
            .is_some_and(|at| at.0.saturating_add(window) <= now.0)
        {
            failures.pop_front();
        }
        (failures.len() >= NEW_CHIP_FAILURES)
            .then(|| {
                failures
                    .front()
                    .map(|at| UnixTime(at.0.saturating_add(window)))
            })
            .flatten()
    }

    /// Records a failed first fetch for a chip never held, at `now`.
    pub(super) fn new_chip_failed(&self, now: UnixTime) {
        if let Ok(mut failures) = self.new_chips.lock() {
            if failures.len() >= NEW_CHIP_FAILURES {
                failures.pop_front();
            }
            failures.push_back(now);
        }
    }

    /// Forgets `asked`'s failures: it was fetched.
    pub(super) fn succeeded(&self, asked: Asked) {
        self.failed.succeeded(&asked);
    }
}
