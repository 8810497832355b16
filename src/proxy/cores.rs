//! Thread per core: client connections are served on one single-threaded runtime per core,
//! each owning its connections and its share of the upstream pool, the way nginx's and
//! haproxy's workers own theirs. A connection's server task, the upstream connection it
//! borrows and that connection's driver task then live on one thread: no cross-thread
//! wake-up and no work-stealing hand-off on the hot path (measured in docs/benchmarks.md,
//! "Issue 16, third part").
//!
//! Every core accepts on a listening socket of its own bound to the same port
//! (`SO_REUSEPORT`: the kernel spreads new connections, a new connection costs no hand-off
//! and wakes one core), and a core holding more connections than the least loaded one
//! passes a new connection on to it, so keep-alive connections opened in a burst still
//! spread evenly over the cores.
//!
//! Without [`start`] (the library in-process, as the tests use it) everything runs on the
//! ambient runtime and the pool has one shard, as before.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
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

/// Starts `n` (at least 1) connection runtimes on threads of their own, for the life of the
/// process. Called once, before the proxy is built; a second call fails.
pub fn start(n: usize) -> io::Result<()> {
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
pub(super) fn count() -> usize {
    CORES.get().map_or(1, |c| c.handles.len())
}

/// The core the calling thread is (0 off the core threads): its shard of the pool.
pub(super) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Binds `addr` and runs `accept` on every core with a listening socket of its own (on
/// the ambient runtime when no cores were started); returns the bound address. The
/// sockets share the port with `SO_REUSEPORT`, so the kernel spreads new connections
/// over the cores and no core is woken for a connection another one takes. The tasks
/// stop when aborted.
pub(super) fn listen_on_each<F, Fut>(
    addr: SocketAddr,
    accept: F,
) -> io::Result<(SocketAddr, Vec<JoinHandle<()>>)>
where
    F: Fn(TcpListener) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(c) = CORES.get() else {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let l = TcpListener::from_std(l)?;
        return Ok((l.local_addr()?, vec![tokio::spawn(accept(l))]));
    };
    // A plain bind first: the port must be free. SO_REUSEPORT alone would let a second
    // proxy (an old one still running, say) bind it too and silently take half the
    // connections; a port someone listens on fails here as it always did.
    let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    let sockets = c
        .handles
        .iter()
        .map(|_| {
            let s = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            s.set_reuseaddr(true)?;
            s.set_reuseport(true)?;
            s.bind(addr)?;
            s.listen(1024)?.into_std()
        })
        .collect::<io::Result<Vec<_>>>()?;
    let tasks = c
        .handles
        .iter()
        .zip(sockets)
        .map(|(h, mine)| {
            let accept = accept.clone();
            h.spawn(async move {
                match TcpListener::from_std(mine) {
                    Ok(l) => accept(l).await,
                    Err(e) => {
                        tracing::error!(error = %e, "a core cannot listen; the others accept")
                    }
                }
            })
        })
        .collect();
    Ok((addr, tasks))
}

/// A connection counted in its core's load while it is served.
struct Counted(&'static AtomicUsize);

impl Counted {
    fn new(load: &'static AtomicUsize) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        Self(load)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a client connection the calling core accepted: on this core, or on the least
/// loaded one when this one serves clearly more (the socket then moves to that core's
/// reactor; one that cannot move is closed, logged at debug).
pub(super) fn serve<F, Fut>(tcp: TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(c) = CORES.get() else {
        drop(tokio::spawn(serve(tcp)));
        return;
    };
    let here = index() % c.load.len();
    let to = pick(here, c.load.iter().map(|l| l.load(Ordering::Relaxed)));
    if to == here {
        let counted = Counted::new(&c.load[here]);
        drop(tokio::spawn(async move {
            let _counted = counted;
            serve(tcp).await;
        }));
        return;
    }
    let std = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand a client connection to another core; closing it");
            return;
        }
    };
    let counted = Counted::new(&c.load[to]);
    drop(c.handles[to].spawn(async move {
        let _counted = counted;
        match TcpStream::from_std(std) {
            Ok(tcp) => serve(tcp).await,
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
