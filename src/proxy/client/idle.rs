//! An I/O wrapper that closes client connections that stall: once no byte has moved in
//! either direction for the idle timeout, or, on an HTTP/1 connection, once a request head
//! has been arriving for longer than the header timeout. It wraps client sockets before hyper
//! sees them, so CONNECT tunnels (which upgrade the same socket) inherit it.
//!
//! The head deadline is ours rather than hyper's: hyper starts its header timer as soon as a
//! keep-alive connection begins waiting for its next request, so an idle keep-alive
//! connection was closed after the header timeout (15 s) instead of the idle timeout. Here
//! the deadline starts at a connection's opening and at the first byte of each later
//! request, and stops when the request is being served ([`Phase::serving`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a client connection's HTTP/1 exchange stands, shared by its I/O wrapper and the
/// services that answer it (the connection's own, then its tunnel's).
#[derive(Debug, Default)]
pub(crate) struct Phase {
    state: AtomicU8,
    /// Requests that reached a service: a head deadline set before the count moved was for
    /// a head that has arrived, even if the request was answered before the wrapper looked.
    heads: AtomicU64,
}

/// The next request head is due; its deadline runs from its first byte.
const WAITING: u8 = 0;
/// A request is being served: no head is due.
const SERVING: u8 = 1;
/// Not HTTP/1 (a passthrough tunnel, HTTP/2 in a tunnel): no head deadline at all.
const OFF: u8 = 2;

impl Phase {
    /// Marks a request as being served until the returned guard drops.
    pub(crate) fn serving(self: &Arc<Self>) -> Serving {
        self.heads.fetch_add(1, Ordering::AcqRel);
        let _ = self
            .state
            .compare_exchange(WAITING, SERVING, Ordering::AcqRel, Ordering::Acquire);
        Serving(Arc::clone(self))
    }

    /// No more request heads on this connection: it carries something other than HTTP/1.
    pub(crate) fn off(&self) {
        self.state.store(OFF, Ordering::Release);
    }

    /// The state, and the count of heads served so far.
    fn get(&self) -> (u8, u64) {
        (
            self.state.load(Ordering::Acquire),
            self.heads.load(Ordering::Acquire),
        )
    }
}

/// A request being served; when it is answered, the connection waits for the next head.
pub(crate) struct Serving(Arc<Phase>);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ =
            self.0
                .state
                .compare_exchange(SERVING, WAITING, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The head deadline of an HTTP/1 connection.
struct Head {
    phase: Arc<Phase>,
    timeout: Duration,
    /// Set while a head is due and has begun (or the connection is new).
    deadline: Option<Instant>,
    /// [`Phase`]'s head count when the deadline was set.
    heads: u64,
}

impl Head {
    /// True while the deadline times a head that has not reached a service yet, given the
    /// phase's current state and head count.
    fn pending(&self, (state, heads): (u8, u64)) -> bool {
        self.deadline.is_some() && state == WAITING && heads == self.heads
    }
}

/// An HTTP/1 client connection, closed with `TimedOut` after `timeout` without traffic, or
/// after a request head took longer than the header timeout.
pub(crate) struct Idle<T> {
    inner: T,
    timeout: Duration,
    /// When the connection counts as idle, from its last byte.
    idle_at: Instant,
    head: Head,
    /// Set to the earlier of `idle_at` and the head deadline, or earlier: a deadline that
    /// moves later leaves the timer where it is (resetting it on every read and write was
    /// per-request work), and [`Idle::expired`] moves it on when it fires early.
    sleep: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    /// Wraps `inner`; the head deadline of `header_timeout` runs from now for the first
    /// request.
    pub(crate) fn http1(
        inner: T,
        timeout: Duration,
        header_timeout: Duration,
        phase: Arc<Phase>,
    ) -> Self {
        let now = Instant::now();
        let (_, heads) = phase.get();
        let head = Head {
            phase,
            timeout: header_timeout,
            deadline: Some(now + header_timeout),
            heads,
        };
        let idle_at = now + timeout;
        let at = idle_at.min(now + header_timeout);
        Self {
            inner,
            timeout,
            idle_at,
            head,
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Bytes moved (`read`: from the client): the idle deadline moves on, and the head
    /// deadline starts, stays or ends with the phase.
    fn touch(&mut self, read: bool) {
        let now = Instant::now();
        self.idle_at = now + self.timeout;
        let phase = self.head.phase.get();
        if !self.head.pending(phase) {
            self.head.deadline = None;
        }
        // The first byte from the client while a head is due starts that head's clock.
        if read && self.head.deadline.is_none() && phase.0 == WAITING {
            self.head.deadline = Some(now + self.head.timeout);
            self.head.heads = phase.1;
        }
        self.rearm();
    }

    /// The earlier of the idle deadline and the head deadline.
    fn deadline(&self) -> Instant {
        match self.head.deadline {
            Some(head) => head.min(self.idle_at),
            None => self.idle_at,
        }
    }

    /// Moves the timer earlier if the deadline now is; a later deadline is left to
    /// [`Idle::expired`].
    fn rearm(&mut self) {
        let at = self.deadline();
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// True once a deadline has passed. A head deadline whose request started being served
    /// meanwhile is dropped; a timer that fired before the deadline in force is set to it.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.head.deadline.is_some() && !self.head.pending(self.head.phase.get()) {
            self.head.deadline = None;
        }
        let at = self.deadline();
        if at <= Instant::now() {
            return true;
        }
        self.sleep.as_mut().reset(at);
        // Registers the waker for the deadline in force (or reports it already passed).
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// Common tail of the write paths: bytes written count as traffic.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch(false);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle or header timeout")
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch(true);
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
