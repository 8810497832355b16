//! Shutdown's drain: requests and tunnels in flight, counted so shutdown can wait for them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Counts in-flight requests and tunnels so shutdown can wait for them.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    active: AtomicUsize,
    idle: Notify,
}

/// One in-flight request or tunnel, counted while it lives.
pub(crate) struct DrainGuard(Arc<Drain>);

impl Drain {
    pub(crate) fn enter(self: &Arc<Self>) -> DrainGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        DrainGuard(Arc::clone(self))
    }

    /// Waits up to `grace` until nothing is in flight; how many still were.
    pub(crate) async fn wait(&self, grace: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
