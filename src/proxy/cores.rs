//! Thread per core: client connections are served on one single-threaded runtime per core,
//! each owning its connections and its share of the upstream pool, the way nginx's and
//! haproxy's workers own theirs. A connection's server task, the upstream connection it
//! borrows and that connection's driver task then live on one thread: no cross-thread
//! wake-up and no work-stealing hand-off on the hot path (measured in docs/benchmarks.md,
//! "Issue 16, third part").
//!
//! Every core accepts on the one listening socket (registered with each core's reactor:
//! whichever core is free takes the next connection, and no second socket ever shares the
//! port), and a core serving clearly more connections than the least loaded one hands a new
//! one on, so a burst of keep-alive connections still spreads evenly. A connection counts
//! in its core's load until it closes, tunnel or upgrade included ([`CoreLoad`], held by the
//! connection's [`Admitted`](super::client::admit::Admitted)).
//!
//! Without [`start`] (the library in-process, as most tests use it) everything runs on the
//! ambient runtime and the pool has one shard, as before.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The connection runtimes, one per core, once started.
struct Cores {
    handles: Vec<Handle>,
    /// Client connections each core serves now.
    load: Box<[AtomicUsize]>,
}

static CORES: OnceLock<Cores> = OnceLock::new();

thread_local! {
    /// This thread's core index; 0 on any thread that is not a core's.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The default thread count (`limits.threads = 0`): one per CPU the process may use, at
/// most this many. More threads mean more pool shards, each dialing its own upstream
/// connections; past a handful, a proxy in front of a few enclaves gains nothing from them.
const DEFAULT_MAX_THREADS: usize = 8;

/// The thread count `limits.threads` asks for (0: the default).
pub(crate) fn resolve(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(DEFAULT_MAX_THREADS),
        n => n,
    }
}

/// Starts `n` (at least 1) connection runtimes on threads of their own, for the life of the
/// process: called once, before the proxy is built (a second call fails). Connections served
/// there are not stopped by `Running::shutdown`, which waits for them: the process is
/// expected to exit after it.
pub(crate) fn start(n: usize) -> io::Result<()> {
    let n = n.max(1);
    // tokio's default of 512 blocking threads (DNS lookups) is per runtime: split it.
    let blocking = (512 / n).max(8);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("ratls-core-{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(blocking)
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
            .map_err(|_| io::Error::other("a core thread ended before it started"))??;
        handles.push(handle);
    }
    CORES
        .set(Cores {
            handles,
            load: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
        .map_err(|_| io::Error::other("the core runtimes were already started"))
}

/// How many connection runtimes serve connections (1 when none were started): the pool's
/// shard count.
pub(crate) fn count() -> usize {
    CORES.get().map_or(1, |c| c.handles.len())
}

/// Client connections each connection thread serves now, by thread (empty when none were
/// started): the `ratls_thread_client_connections` gauge, to see the spread.
pub(crate) fn loads() -> Vec<usize> {
    CORES.get().map_or_else(Vec::new, |c| {
        c.load.iter().map(|l| l.load(Ordering::Relaxed)).collect()
    })
}

/// Returns once every core has finished what it was doing when called (a no-op task run on
/// each): after shutdown's drain, a response whose last byte was just counted out is written
/// before the process exits.
pub(crate) async fn barrier() {
    let Some(c) = CORES.get() else {
        return;
    };
    for h in &c.handles {
        let _ = h.spawn(async {}).await;
    }
}

/// True once [`start`] ran: `limits.threads` is in force (in-process it has no effect).
pub(crate) fn started() -> bool {
    CORES.get().is_some()
}

/// The core the calling thread is (0 off the core threads): its shard of the pool.
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Binds `addr` and runs `accept` on every core, each with its own registration of the one
/// listening socket (on the ambient runtime when no cores were started); returns the bound
/// address. One socket, not one per core with `SO_REUSEPORT`: that option would let any
/// process of the same user bind the port too (a more specific address even takes every
/// loopback connection) and silently share the proxy's traffic. The tasks stop when aborted.
pub(crate) fn listen_on_each<F, Fut>(
    addr: SocketAddr,
    accept: F,
) -> io::Result<(SocketAddr, Vec<JoinHandle<()>>)>
where
    F: Fn(TcpListener) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    let addr = socket.local_addr()?;
    let Some(c) = CORES.get() else {
        return Ok((
            addr,
            vec![tokio::spawn(accept(TcpListener::from_std(socket)?))],
        ));
    };
    let tasks = c
        .handles
        .iter()
        .map(|h| {
            let mine = socket.try_clone()?;
            let accept = accept.clone();
            Ok(h.spawn(async move {
                match TcpListener::from_std(mine) {
                    Ok(l) => accept(l).await,
                    Err(e) => {
                        tracing::error!(error = %e, "a core cannot listen; the others accept")
                    }
                }
            }))
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok((addr, tasks))
}

/// A client connection counted in its core's load while held (by the connection's admission,
/// which a tunnel or upgraded connection keeps until it closes).
pub(crate) struct CoreLoad(Option<&'static AtomicUsize>);

impl CoreLoad {
    fn new(load: &'static AtomicUsize) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        Self(Some(load))
    }
}

impl Drop for CoreLoad {
    fn drop(&mut self) {
        if let Some(load) = self.0 {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves a client connection the calling core accepted: on this core, or on the least
/// loaded one when this one serves clearly more (the socket then moves to that core's
/// reactor; one that cannot move is closed, logged at debug). `serve` gets the connection's
/// [`CoreLoad`] to hold for as long as the connection lives.
pub(crate) fn serve<F, Fut>(tcp: TcpStream, serve: F)
where
    F: FnOnce(TcpStream, CoreLoad) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(c) = CORES.get() else {
        drop(tokio::spawn(serve(tcp, CoreLoad(None))));
        return;
    };
    let here = index() % c.load.len();
    let to = pick(here, c.load.iter().map(|l| l.load(Ordering::Relaxed)));
    let Some(counter) = c.load.get(to) else {
        return;
    };
    let load = CoreLoad::new(counter);
    if to == here {
        drop(tokio::spawn(serve(tcp, load)));
        return;
    }
    let std = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand a client connection to another core; closing it");
            return;
        }
    };
    let Some(h) = c.handles.get(to) else {
        return;
    };
    drop(h.spawn(async move {
        match TcpStream::from_std(std) {
            Ok(tcp) => serve(tcp, load).await,
            Err(e) => {
                tracing::debug!(error = %e, "cannot register a client connection on its core; closing it")
            }
        }
    }));
}

/// The core that serves a connection core `here` accepted, given every core's load: `here`,
/// unless it serves clearly more than the least loaded core. The slack keeps connections
/// opened and closed at a high rate where they were accepted, while a burst of keep-alive
/// connections ends up spread within a few of even.
fn pick(here: usize, loads: impl Iterator<Item = usize>) -> usize {
    let mut mine = None;
    let mut least = (here, usize::MAX);
    for (i, n) in loads.enumerate() {
        if i == here {
            mine = Some(n);
        }
        if n < least.1 {
            least = (i, n);
        }
    }
    match mine {
        Some(mine) if mine > least.1 + least.1 / 8 + 2 => least.0,
        _ => here,
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn a_connection_stays_where_it_was_accepted_unless_that_core_serves_clearly_more() {
        let at = |here, loads: &[usize]| pick(here, loads.iter().copied());
        assert_eq!(at(0, &[0, 0, 0]), 0);
        assert_eq!(at(1, &[2, 4, 2]), 1, "within the slack of 2");
        assert_eq!(at(1, &[2, 5, 3]), 0, "three more than the least loaded");
        assert_eq!(at(2, &[9, 7, 9]), 2);
        assert_eq!(at(2, &[9, 7, 10]), 1);
        assert_eq!(
            at(0, &[20, 16, 18]),
            0,
            "the slack grows by an eighth of the load"
        );
        assert_eq!(at(0, &[21, 16, 18]), 1);
        assert_eq!(at(5, &[0, 0]), 5, "an unknown core keeps it (no panic)");
        // A burst of keep-alive connections all accepted by core 0 ends up even within the
        // slack, whatever the number of cores.
        for cores in 1..=8 {
            let mut loads = vec![0usize; cores];
            for _ in 0..200 {
                let to = pick(0, loads.iter().copied());
                loads[to] += 1;
            }
            let (min, max) = (loads.iter().min(), loads.iter().max());
            let (Some(&min), Some(&max)) = (min, max) else {
                panic!("no cores")
            };
            assert!(max <= min + min / 8 + 3, "{cores} cores: {loads:?}");
        }
    }
}
