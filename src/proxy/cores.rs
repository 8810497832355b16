//! Thread per core: client connections are served on one single-threaded runtime per core,
//! each owning its connections and its share of the upstream pool, the way nginx's and
//! haproxy's workers own theirs. A connection's server task, the upstream connection it
//! borrows and that connection's driver task then live on one thread: no cross-thread
//! wake-up and no work-stealing hand-off on the hot path (measured in docs/benchmarks.md,
//! "Issue 16, third part").
//!
//! Without [`start`] (the library in-process, as the tests use it) connections are spawned
//! on the ambient runtime and the pool has one shard, as before.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// The connection runtimes, one per core, once started.
struct Cores {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static CORES: OnceLock<Cores> = OnceLock::new();

thread_local! {
    /// This thread's core index; 0 on any thread that is not a core's.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `n` (at least 1) connection runtimes on threads of their own, for the life of the
/// process. Called once, before the proxy is built; a second call fails.
pub fn start(n: usize) -> std::io::Result<()> {
    let n = n.max(1);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("ratls-core-{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // Serves its connections until the process exits.
                rt.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("a core thread ended before it started"))??;
        handles.push(handle);
    }
    CORES
        .set(Cores {
            handles,
            next: AtomicUsize::new(0),
        })
        .map_err(|_| std::io::Error::other("the core runtimes were already started"))
}

/// How many connection runtimes serve connections (1 when none were started): the pool's
/// shard count.
pub(super) fn count() -> usize {
    CORES.get().map_or(1, |c| c.handles.len())
}

/// The core the calling thread is (0 off the core threads): its shard of the pool.
pub(super) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Serves a newly accepted client connection with `serve` on the next core in turn (on the
/// ambient runtime when no cores were started). The socket moves to that core's reactor; a
/// socket that cannot move is closed (logged at debug).
pub(super) fn serve<F, Fut>(tcp: TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(c) = CORES.get() else {
        drop(tokio::spawn(serve(tcp)));
        return;
    };
    let std = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand a client connection to a core; closing it");
            return;
        }
    };
    let i = c.next.fetch_add(1, Ordering::Relaxed) % c.handles.len();
    drop(c.handles[i].spawn(async move {
        match TcpStream::from_std(std) {
            Ok(tcp) => serve(tcp).await,
            Err(e) => {
                tracing::debug!(error = %e, "cannot register a client connection on its core; closing it")
            }
        }
    }));
}
