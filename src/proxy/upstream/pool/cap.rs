//! The upstream cap as every generation's pool shares it: permits under
//! `max_upstream_connections` (passthrough included, fixed at start); the idle pooled
//! connections of every live generation, so at the cap the one unused longest is closed
//! whichever generation holds it; and the share of the cap that connections a client keeps
//! open (WebSocket upgrades, passthrough tunnels and requests) may hold.
//!
//! The share is per destination, not per client: the proxy listens on loopback, where every
//! local client has the same address, so a per-client share would either throttle all of
//! them together or tell nobody apart; the destination is what the proxy knows for sure and
//! what such a connection holds. Connections a client keeps open hold at most half the cap
//! in all (the other half is always there for the pooled connections that carry requests),
//! and one destination at most half of that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{ByTarget, ProxyRefusal};
use crate::addr::Authority;

/// One pool's idle connections, one map per core.
pub(super) type Shards = [Mutex<ByTarget>];

/// The upstream cap, shared by every generation and by passthrough.
pub(crate) struct UpstreamCap {
    /// One permit per upstream connection.
    max_upstream_connections: Arc<Semaphore>,
    /// Every pool's idle connections (a retired generation's too, while it lives).
    pools: Mutex<Vec<Weak<Shards>>>,
    /// Places connections a client keeps open may hold in all.
    held: Arc<Semaphore>,
    /// How many of those one destination may hold.
    per_destination: usize,
    destinations: Mutex<HashMap<Authority, usize, foldhash::fast::RandomState>>,
    /// Woken when a connection goes back to a pool idle: a request waiting at the cap can
    /// then close it for its own (an idle connection keeps its place under the cap).
    idle: Notify,
    /// Requests waiting at the cap: a check-in (every request's) wakes only when there are
    /// some, so the common path never takes the `Notify`'s lock.
    waiting: AtomicUsize,
    /// Woken when a request starts waiting at the cap: dials beside give their places up.
    wanted: Notify,
}

impl UpstreamCap {
    /// `max_upstream_connections` upstream connections: half of them for connections a
    /// client keeps open, and a quarter (at least one each) for those to one destination.
    pub(crate) fn new(max_upstream_connections: usize) -> Self {
        let held = (max_upstream_connections / 2).max(1);
        Self {
            max_upstream_connections: Arc::new(Semaphore::new(max_upstream_connections)),
            pools: Mutex::new(Vec::new()),
            held: Arc::new(Semaphore::new(held)),
            per_destination: (held / 2).max(1),
            destinations: Mutex::new(HashMap::default()),
            idle: Notify::new(),
            waiting: AtomicUsize::new(0),
            wanted: Notify::new(),
        }
    }

    /// Counts a pool's idle connections in at-the-cap eviction while it lives.
    pub(super) fn register(&self, shards: &Arc<Shards>) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(shards));
        }
    }

    /// A connection went back to a pool idle (called after it is in its shard: a waiter
    /// counted after this look then finds it when it evicts).
    pub(super) fn went_idle(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.idle.notify_waiters();
        }
    }

    /// A place under the cap for a new connection to `dest`: at the cap, the idle pooled
    /// connection unused for longest (of any generation) is closed for it, now or each time
    /// one goes idle, until a place frees up or `timeout` passes.
    pub(super) async fn permit(
        &self,
        dest: &Authority,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, ProxyRefusal> {
        if let Ok(p) = Arc::clone(&self.max_upstream_connections).try_acquire_owned() {
            return Ok(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let _waiting = Waiting::count(&self.waiting);
        self.wanted.notify_waiters();
        loop {
            // Made before evicting: a connection that goes idle after the look wakes it.
            let went_idle = self.idle.notified();
            self.evict_oldest_idle();
            tokio::select! {
                p = Arc::clone(&self.max_upstream_connections).acquire_owned() => {
                    if let Ok(p) = p {
                        return Ok(p);
                    }
                    break;
                }
                () = went_idle => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        Err(ProxyRefusal::Capacity(format!(
            "no upstream connection for {dest} within {}s: max_upstream_connections reached",
            timeout.as_secs()
        )))
    }

    /// A place under the cap for a connection no request waits for (one dialed beside a
    /// borrowed one), at once or not at all: never the last free place, never while a
    /// request waits at the cap, and no idle connection is closed for it.
    pub(super) fn spare_permit(&self) -> Option<OwnedSemaphorePermit> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        // Two places taken in one step, one given back: at that step two were free, so the
        // one kept was not the last, whatever other cores take meanwhile (a look at the
        // count, then an acquire, let two cores both take one of the last two).
        let mut two = Arc::clone(&self.max_upstream_connections)
            .try_acquire_many_owned(2)
            .ok()?;
        two.split(1)
    }

    /// Returns once a request waits at the cap: a dial beside gives its place up then (a
    /// connection no request needs never makes one wait).
    pub(super) async fn wanted(&self) {
        loop {
            // Made before the look: a request counted after it wakes this wait.
            let asked = self.wanted.notified();
            if self.waiting.load(Ordering::SeqCst) > 0 {
                return;
            }
            asked.await;
        }
    }

    /// Closes the idle pooled connection unused for longest, of any live generation.
    pub(super) fn evict_oldest_idle(&self) {
        let pools: Vec<Arc<Shards>> = match self.pools.lock() {
            Ok(p) => p.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        // Each shard's oldest, then the oldest of those: one shard locked at a time.
        let oldest = pools
            .iter()
            .flat_map(|p| p.iter())
            .filter_map(|shard| {
                shard
                    .lock()
                    .ok()?
                    .values()
                    .flat_map(|s| s.idle.iter().map(|c| c.last_used))
                    .min()
                    .map(|used| (shard, used))
            })
            .min_by_key(|(_, used)| *used);
        let Some((shard, used)) = oldest else {
            return;
        };
        let Ok(mut idle) = shard.lock() else {
            return;
        };
        // Found again under the lock: it may have been taken meanwhile.
        for conns in idle.values_mut() {
            if let Some(i) = conns.idle.iter().position(|c| c.last_used == used) {
                drop(conns.idle.swap_remove(i));
                return;
            }
        }
    }

    /// A share for one connection a client keeps open to `dest`, or why there is none (at
    /// once: a client that holds its share is not kept waiting for another's).
    pub(super) fn hold(self: &Arc<Self>, dest: &Authority) -> Result<Held, ProxyRefusal> {
        let Ok(mut destinations) = self.destinations.lock() else {
            return Err(ProxyRefusal::Capacity("upstream shares poisoned".into()));
        };
        let held = destinations.get(dest).copied().unwrap_or(0);
        if held >= self.per_destination {
            return Err(ProxyRefusal::Capacity(format!(
                "{dest} already holds {held} upstream connections kept open by clients (WebSockets, tunnels): its share of max_upstream_connections"
            )));
        }
        let Ok(permit) = Arc::clone(&self.held).try_acquire_owned() else {
            return Err(ProxyRefusal::Capacity(format!(
                "no upstream connection for {dest}: connections kept open by clients (WebSockets, tunnels) hold their half of max_upstream_connections"
            )));
        };
        destinations.insert(dest.clone(), held + 1);
        Ok(Held {
            _permit: permit,
            dest: dest.clone(),
            cap: Arc::clone(self),
        })
    }
}

/// One request counted as waiting at the cap while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection a client keeps open, counted in its destination's share until it drops.
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
    dest: Authority,
    cap: Arc<UpstreamCap>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut destinations) = self.cap.destinations.lock() {
            if let Some(n) = destinations.get_mut(&self.dest) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    destinations.remove(&self.dest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_half_in_all_and_a_quarter_per_destination() {
        let c = Arc::new(UpstreamCap::new(8));
        let a = Authority::parse("a.test:443", None).expect("a");
        let b = Authority::parse("b.test:443", None).expect("b");
        let x = Authority::parse("x.test:443", None).expect("x");
        let a1 = c.hold(&a).expect("a 1");
        let a2 = c.hold(&a).expect("a 2");
        assert!(c.hold(&a).is_err(), "a quarter of 8 per destination");
        let _b1 = c.hold(&b).expect("b 1");
        let _b2 = c.hold(&b).expect("b 2");
        assert!(c.hold(&x).is_err(), "half of 8 in all");
        drop(a1);
        assert!(c.hold(&a).is_ok(), "a dropped share comes back");
        drop(a2);
        let tiny = Arc::new(UpstreamCap::new(1));
        assert!(tiny.hold(&a).is_ok(), "at least one");
    }
}
