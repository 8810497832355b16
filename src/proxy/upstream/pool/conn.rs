//! One attested upstream connection as the pool holds it, and why none could be had.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::client::conn::{http1, http2};

use crate::dcap::time::UnixTime;
use crate::proxy::body::ProxyBody;
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;

pub(super) enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// One verified upstream connection.
pub(crate) struct Conn {
    pub(super) sender: Sender,
    pub(super) verdict: Arc<CachedVerdict>,
    /// Shared by the clones of one HTTP/2 connection.
    pub(super) id: u64,
    /// Held by HTTP/1.1 connections dialed for HTTP/1.1 clients, counted against the cap.
    pub(super) h1_ticket: Option<H1Ticket>,
    /// When it last carried or was given a request; idle ones are closed by the pool's sweep.
    pub(super) last_used: Instant,
    /// The pool shard (core) whose runtime drives it: it returns there after a request, so
    /// another core borrows it only when it has none of its own.
    pub(super) home: usize,
}

/// The HTTP version a client speaks to the proxy; upstream requests mirror it when they can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// HTTP/1.1: one request at a time per connection.
    Http1,
    /// HTTP/2: multiplexed.
    Http2,
}

/// One open HTTP/1.1 connection counted against the pool's HTTP/1.1 cap until it drops.
pub(super) struct H1Ticket(pub(super) Arc<AtomicUsize>);

impl Drop for H1Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// True if the upstream negotiated HTTP/2.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// An HTTP/1.1 connection ready for a request: one goes back to the pool with its
    /// response head, so while that response's body still streams it is not handed out (a
    /// request would queue behind the whole stream).
    pub(super) fn free_h1(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(_) => false,
        }
    }

    /// The verdict that admitted this connection.
    pub(crate) fn verdict(&self) -> &Arc<CachedVerdict> {
        &self.verdict
    }

    pub(super) fn usable(&self, now: UnixTime) -> bool {
        let open = match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        };
        open && now <= self.verdict.valid_until
    }

    /// Judged under the collateral snapshot `target`'s verifier has now: a
    /// snapshot that changed after `rejudge_stale` looked leaves an older connection in
    /// the pool for the next checkout to judge, never handed out.
    pub(super) fn current(&self, target: &Target) -> bool {
        self.verdict.snapshot == target.enclave.verifier.snapshot()
    }
}
