//! A core with no upstream connection of its own lends a client another core's idle one,
//! whose driver stays on that core: every request then crosses threads there and back. A
//! client that keeps coming back (the same client connection borrowing again) gets one this
//! core drives, dialed *beside* its request: the request borrows as before and never waits
//! for that dial or fails because of it. The dial is bounded (one in flight per core and
//! destination, a spare place under `max_upstream_connections` or none, none while a request
//! waits at the cap, at most one per [`RETRY_AFTER`], given up the moment a request waits at
//! the cap) and judged exactly as any (the same attested handshake and audit, the
//! generation checked when it is checked in).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::Id;

use super::{conns_of, H1Ticket, Pool};
use crate::metrics::Metrics;
use crate::proxy::target::Target;

/// How long a core does not dial beside borrowed connections to a destination after it
/// started one, whatever became of it: a refusing or stalled enclave, or one that closes
/// each new connection, is not asked again on every request (review R7).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How many client connections (their tasks) a core remembers as having borrowed.
const REMEMBERED: usize = 8;

/// One core's dial beside borrowed connections to one destination.
#[derive(Default)]
pub(super) struct Beside {
    /// The client connections (tasks: hyper serves an HTTP/1.1 connection's requests in
    /// one) that borrowed here lately.
    borrowers: [Option<Id>; REMEMBERED],
    next: usize,
    /// A dial is in flight.
    in_flight: bool,
    /// When the last one started.
    started: Option<Instant>,
}

impl Beside {
    /// A dial is in flight, or one started lately: forgetting it would let another start.
    pub(super) fn busy(&self) -> bool {
        self.in_flight || self.started.is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }

    /// Notes that `task` borrowed; true if it had borrowed here before (a client that came
    /// back). A client opening a connection per request is a new task each time: it keeps
    /// being served by the one connection it borrows, and no connection is dialed for it.
    fn came_back(&mut self, task: Id) -> bool {
        if self.borrowers.contains(&Some(task)) {
            return true;
        }
        if let Some(slot) = self.borrowers.get_mut(self.next % REMEMBERED) {
            *slot = Some(task);
        }
        self.next = self.next.wrapping_add(1);
        false
    }
}

impl Pool {
    /// Called when this core lent a client another core's connection to `target`: if that
    /// client came back, dials one this core drives, in a task of its own, checked into
    /// this core's shard when ready. Never waits, never fails the caller.
    pub(super) fn dial_beside(&self, target: &Target, metrics: &Arc<Metrics>) {
        let Some(task) = tokio::task::try_id() else {
            return;
        };
        let home = self.sharding.here();
        {
            let Some(Ok(mut idle)) = self.idle.get(home).map(|s| s.lock()) else {
                return;
            };
            let Some(conns) = conns_of(&mut idle, target) else {
                return;
            };
            let no_h1 = conns
                .h1_failed
                .is_some_and(|at| at.elapsed() < super::H1_RETRY_AFTER);
            if !conns.beside.came_back(task)
                || conns.beside.busy()
                || no_h1
                || self.retired.load(Ordering::SeqCst)
            {
                return;
            }
            conns.beside.in_flight = true;
        }
        let Some(permit) = self.upstream_cap.spare_permit() else {
            // No dial started: a later borrow tries again.
            self.end_beside(home, target, None);
            return;
        };
        let done = InFlight {
            pool: self.share(),
            home,
            target: target.clone(),
            started: Instant::now(),
        };
        let metrics = Arc::clone(metrics);
        drop(tokio::spawn(async move {
            let (pool, target) = (&done.pool, &done.target);
            let dial = async {
                let (attested, permit) = pool.attest_under(target, &[b"http/1.1"], permit).await?;
                pool.handshake(target, &metrics, attested, permit).await
            };
            tokio::select! {
                dialed = dial => match dialed {
                    Ok(conn) if !conn.is_h2() => {
                        pool.check_in_beside(target, conn);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // WARN: a refusal here is an enclave the policy no longer accepts,
                        // found before any request met it (held back RETRY_AFTER: no flood).
                        tracing::warn!(host = %target.dest.host, error = %e, "a dial beside a borrowed upstream connection failed; requests go on borrowing");
                    }
                },
                // The dial (and its place) dropped: the request waiting takes the place.
                () = pool.upstream_cap.wanted() => {
                    tracing::info!(host = %target.dest.host, "a dial beside a borrowed upstream connection gave its place to a request waiting at max_upstream_connections");
                }
            }
            drop(done);
        }));
    }

    /// Checks a connection dialed beside a borrowed one into its home shard as an HTTP/1.1
    /// client's (counted under this core's HTTP/1.1 cap; over it, it is closed). False if
    /// it could not be counted.
    fn check_in_beside(&self, target: &Target, mut conn: super::Conn) -> bool {
        let ticket = {
            let Some(Ok(mut idle)) = self.idle.get(conn.home).map(|s| s.lock()) else {
                return false;
            };
            let Some(conns) = conns_of(&mut idle, target) else {
                return false;
            };
            let open = conns.h1_open.fetch_add(1, Ordering::Relaxed);
            let ticket = H1Ticket(Arc::clone(&conns.h1_open));
            if open >= self.h1_cap {
                return false;
            }
            ticket
        };
        conn.h1_ticket = Some(ticket);
        // Retired meanwhile (a reload): `checkin` closes it.
        self.checkin(target, conn);
        true
    }

    /// The dial beside to `target` from core `home` ended, or never started (`started`
    /// None): the next may start [`RETRY_AFTER`] after this one started.
    fn end_beside(&self, home: usize, target: &Target, started: Option<Instant>) {
        let Some(Ok(mut idle)) = self.idle.get(home).map(|s| s.lock()) else {
            return;
        };
        if let Some(conns) = idle.get_mut(target) {
            conns.beside.in_flight = false;
            if started.is_some() {
                conns.beside.started = started;
            }
        }
    }

    /// This pool's state for a task of its own (a dial beside a request): the same
    /// connections, cap, trail and generation, retired with it.
    fn share(&self) -> Pool {
        Pool {
            next: AtomicUsize::new(0),
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            collateral: self.collateral.clone(),
            snp_kds: self.snp_kds.clone(),
            nitro_crls: self.nitro_crls.clone(),
            upstream_cap: Arc::clone(&self.upstream_cap),
            retired: Arc::clone(&self.retired),
            audit: Arc::clone(&self.audit),
            generation: self.generation,
            tcb: Arc::clone(&self.tcb),
            idle: Arc::clone(&self.idle),
            sharding: self.sharding,
            h1_cap: self.h1_cap,
        }
    }
}

/// A dial beside in flight: when it ends (or its task is dropped), the next may start
/// [`RETRY_AFTER`] after this one did.
struct InFlight {
    pool: Pool,
    home: usize,
    target: Target,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool
            .end_beside(self.home, &self.target, Some(self.started));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` task ids, each of a task of its own.
    async fn tasks(n: usize) -> Vec<Id> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(
                tokio::spawn(async { tokio::task::id() })
                    .await
                    .expect("join"),
            );
        }
        ids
    }

    #[tokio::test]
    async fn a_client_came_back_only_when_its_own_connection_borrowed_before() {
        let ids = tasks(REMEMBERED + 1).await;
        let mut b = Beside::default();
        // A client opening a connection per request: a new task each time, never back.
        for id in &ids[..REMEMBERED] {
            assert!(!b.came_back(*id));
        }
        // Each of the last REMEMBERED borrowers is known again.
        for id in &ids[..REMEMBERED] {
            assert!(b.came_back(*id));
        }
        // One more pushes the oldest out.
        assert!(!b.came_back(ids[REMEMBERED]));
        assert!(!b.came_back(ids[0]));
    }

    #[test]
    fn a_dial_in_flight_or_started_lately_holds_the_next_back() {
        let mut b = Beside::default();
        assert!(!b.busy());
        b.in_flight = true;
        assert!(b.busy());
        b.in_flight = false;
        b.started = Some(Instant::now());
        assert!(b.busy());
        b.started = Instant::now().checked_sub(RETRY_AFTER + Duration::from_secs(1));
        assert!(!b.busy());
    }
}
