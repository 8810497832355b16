//! The upstream pool when the enclave host takes no new connection or stalls its handshakes
//! (review R6 of issue 30, which found a kept-alive client's own-core dial refusing or
//! stalling clients while a verified connection sat idle: that change was withdrawn), and the
//! dial beside a borrowed connection that replaced it (a kept-alive client's thread gets a
//! connection of its own without its requests waiting for it). The real binary, a sim enclave
//! behind a TCP gate this test controls (how many connections the enclave host takes, and
//! what it does with the rest), hyper clients.
#![cfg(feature = "sim")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::Http;
use common::{env, metrics, reload, start_sim_with, Binary, Env, Harness, Mode, Ports, TRUSTED};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the gate does with a connection beyond the ones it forwards.
#[derive(Clone, Copy)]
enum Beyond {
    /// Closes it at once (an enclave host at its connection limit, a restarting listener).
    Close,
    /// Accepts it and never answers (a stalled or overloaded enclave's TLS accept).
    Hold,
    /// Forwards it after this long (a slow enclave host).
    Delay(Duration),
}

/// A TCP gate in front of an enclave: forwards the first `allow` connections, counting
/// how many are open at once.
struct Gate {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Gate {
    async fn start(to: SocketAddr, allow: usize, beyond: Beyond) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, o, p) = (Arc::clone(&accepted), Arc::clone(&open), Arc::clone(&peak));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let n = a.fetch_add(1, Ordering::SeqCst);
                // The proxy closes an evicted connection before it dials the next (the
                // socket is dropped before its place under the cap): let this gate read
                // that close before counting the new one, or its count would lag.
                let mut wait = Duration::from_millis(50);
                if n >= allow {
                    match beyond {
                        Beyond::Close => {
                            drop(client);
                            continue;
                        }
                        Beyond::Hold => {
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_secs(120)).await;
                                drop(client);
                            });
                            continue;
                        }
                        Beyond::Delay(d) => wait = d,
                    }
                }
                let (o, p) = (Arc::clone(&o), Arc::clone(&p));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let Ok(mut enclave) = TcpStream::connect(to).await else {
                        return;
                    };
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    let (mut from_proxy, mut to_proxy) = client.split();
                    let (mut from_enclave, mut to_enclave) = enclave.split();
                    let back = tokio::io::copy(&mut from_enclave, &mut to_proxy);
                    let forth = async {
                        // Closed by the proxy: no longer one of its connections.
                        let _ = tokio::io::copy(&mut from_proxy, &mut to_enclave).await;
                        o.fetch_sub(1, Ordering::SeqCst);
                        let _ = to_enclave.shutdown().await;
                    };
                    let _ = tokio::join!(back, forth);
                });
            }
        });
        Self {
            addr,
            accepted,
            open,
            peak,
        }
    }

    /// Forwarded connections open now.
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// TCP connections the proxy opened to the enclave host (forwarded or not).
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The most forwarded connections open at once.
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// The real binary with `limits`, `pool.enclave.test` dialed at `at` under the trusted
/// policy, and a route to it.
async fn proxy(env: &Env, ports: Ports, limits: &str, at: SocketAddr, name: &str) -> Binary {
    let route = format!(
        "[[route]]\nlisten = \"127.0.0.1:{}\"\nupstream = \"https://pool.enclave.test\"",
        ports.route
    );
    let config = Harness::new(env)
        .ports(ports)
        .limits(limits)
        .enclave_with(&["pool.enclave.test"], at, TRUSTED, "")
        .tail(&route)
        .write(name);
    Binary::start(&config, ports.admin, &[], false).await
}

/// `n` keep-alive clients, half originating, half on the route, after their first request
/// (each 200).
async fn kept(env: &Env, ports: Ports, n: usize) -> Vec<Http> {
    let via = env.via(ports.proxy).route(ports.route);
    let mut clients = Vec::new();
    for i in 0..n {
        let mode = if i % 2 == 0 {
            Mode::Originated
        } else {
            Mode::Route
        };
        let mut c = Http::open(&via, "pool.enclave.test", mode).await;
        settle().await;
        assert_eq!(c.status(&format!("/c{i}/1")).await, 200, "client {i}");
        clients.push(c);
    }
    clients
}

/// The proxy checks an upstream connection back in just after its client has the whole
/// response: a pause lets that happen, so the next client in turn finds it idle (without it
/// a request can, rarely, find none idle, dial, and meet the gate).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Each client's request `round`, one after another: the ones not answered 200, and the
/// longest any took.
async fn round(clients: &mut [Http], round: u32) -> (Vec<(usize, u16)>, Duration) {
    let mut failed = Vec::new();
    let mut slowest = Duration::ZERO;
    for (i, c) in clients.iter_mut().enumerate() {
        settle().await;
        let started = Instant::now();
        let status = c.status(&format!("/c{i}/{round}")).await;
        slowest = slowest.max(started.elapsed());
        if status != 200 {
            failed.push((i, status));
        }
    }
    (failed, slowest)
}

/// Each client's requests of `rounds`, one after another, each answered 200.
async fn all_answered(clients: &mut [Http], rounds: std::ops::RangeInclusive<u32>) {
    for r in rounds {
        let (failed, _) = round(clients, r).await;
        assert!(failed.is_empty(), "round {r}: {failed:?}");
    }
}

/// Review R6 (MEDIUM; failed on the withdrawn own-core dial, passes without it). The enclave host takes one connection (a connection limit, or
/// a listener that is restarting): the proxy's one verified upstream connection serves
/// every client's first request, borrowed across threads. A kept-alive client's second
/// request on another thread now skips the borrow to dial a connection of its own; the dial
/// fails, the failure marks the destination HTTP/1.1-less on that thread (`h1_failed`), the
/// shared path borrows only ticketless connections, dials again, and the client gets 502,
/// while the verified connection it used a moment ago sits idle. On fbb5cad it was borrowed
/// and the request answered 200. Should: a failed own-thread dial falls back to borrowing an
/// idle, current connection (as a first request does).
/// The dial beside a borrowed connection meets the same closed door: it fails, only logged,
/// no request fails with it, and a thread that failed does not dial again for a while (not
/// on every request: at most one dial per thread that borrowed, three rounds on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_client_is_still_served_when_the_enclave_takes_no_new_connection() {
    let (failed, dialed, _) = rounds_behind(Beyond::Close, "threads = 3", 12, "r6-close").await;
    assert!(
        failed.is_empty(),
        "kept-alive clients refused while a verified upstream connection was idle: {failed:?} \
         (the proxy dialed {dialed} times)"
    );
    assert!(
        dialed <= 3,
        "{dialed} upstream dials: a refused dial beside was tried again per request"
    );
}

/// Review R6 (MEDIUM, the stall form; failed on the withdrawn own-core dial). The enclave host accepts new TCP
/// connections but its TLS never answers (overloaded): a kept-alive client's second request
/// on another thread waits the whole connect timeout for a dial, then gets 504, though the
/// verified connection that answered its first request is idle. On fbb5cad it was borrowed
/// at once. Should: borrow (or fall back to borrowing) rather than stake the request on a
/// new handshake. The dial beside a borrowed connection stalls the same way: no request
/// waits for it (each well under the 2 s connect timeout), and never two in flight on a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_client_is_not_stalled_by_a_handshake_it_did_not_need() {
    let limits = "threads = 3\nconnect_timeout_secs = 2";
    let (failed, dialed, slowest) = rounds_behind(Beyond::Hold, limits, 6, "r6-hold").await;
    assert!(
        failed.is_empty(),
        "kept-alive clients timed out on a dial while a verified upstream connection was idle: \
         {failed:?} (the proxy dialed {dialed} times)"
    );
    assert!(
        slowest < Duration::from_millis(1000),
        "a request waited {slowest:?} behind a stalled dial"
    );
    assert!(dialed <= 3, "{dialed} upstream dials");
}

/// `n` kept-alive clients (their first requests over one upstream connection) through a
/// gate that forwards only that connection and treats the rest as `beyond` says; then three
/// more rounds of each client's requests: the ones not answered 200, how often the proxy
/// dialed, and the longest a request took.
async fn rounds_behind(
    beyond: Beyond,
    limits: &str,
    n: usize,
    name: &str,
) -> (Vec<(usize, u16)>, usize, Duration) {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), 1, beyond).await;
    let ports = Ports::free();
    let _bin = proxy(&env, ports, limits, gate.addr, &format!("{name}.toml")).await;
    let mut clients = kept(&env, ports, n).await;
    assert_eq!(
        gate.accepted(),
        1,
        "first requests share one upstream connection"
    );
    let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
    for r in 2..=4 {
        let (f, s) = round(&mut clients, r).await;
        failed.extend(f);
        slowest = slowest.max(s);
    }
    (failed, gate.accepted(), slowest)
}

/// Each client's request `round` (answered after `ms` milliseconds when not 0), all sent
/// at once: (client, status) for every one. A client answered other than 200 is dropped
/// (the proxy closes a connection after a refusal).
async fn at_once(clients: &mut [Option<Http>], round: u32, ms: u32) -> Vec<(usize, u16)> {
    let mut tasks = Vec::new();
    for (i, slot) in clients.iter_mut().enumerate() {
        let Some(mut c) = slot.take() else {
            continue;
        };
        tasks.push(tokio::spawn(async move {
            let path = if ms == 0 {
                format!("/c{i}/{round}")
            } else {
                format!("/slow?ms={ms}")
            };
            let s = c.status(&path).await;
            (i, s, c)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (i, s, c) = t.await.expect("join");
        statuses.push((i, s));
        if s == 200 {
            clients[i] = Some(c);
        }
    }
    statuses
}

/// Held on main (the cap is honoured under races): twelve kept-alive clients over three
/// threads, each round's requests sent at once, `max_upstream_connections = 2`: never more
/// than two upstream connections open at the enclave host, and nothing but 200 or the
/// cap's own 503 answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_kept_alive_clients_never_exceed_the_upstream_cap() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), usize::MAX, Beyond::Close).await;
    let ports = Ports::free();
    let limits = "threads = 3\nmax_upstream_connections = 2\nconnect_timeout_secs = 3";
    let _bin = proxy(&env, ports, limits, gate.addr, "r6-cap.toml").await;
    let mut clients: Vec<Option<Http>> =
        kept(&env, ports, 12).await.into_iter().map(Some).collect();
    let mut statuses = Vec::new();
    for r in 2..=4 {
        statuses.extend(at_once(&mut clients, r, 0).await);
    }
    let ok = statuses.iter().filter(|(_, s)| *s == 200).count();
    eprintln!(
        "cap 2: {} upstream TCP connections in all, peak {} open, {ok} of {} requests 200",
        gate.accepted(),
        gate.peak(),
        statuses.len()
    );
    assert!(
        gate.peak() <= 2,
        "peak {} upstream connections",
        gate.peak()
    );
    assert!(
        statuses.iter().all(|(_, s)| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}

/// Review R6 (MEDIUM, there before issue 30; failed until `UpstreamCap::permit` woke on an idle connection). At
/// `max_upstream_connections = 2`, four kept-alive clients send a request at once, each
/// answered by the enclave in 300 ms: two are served, the other two find both connections
/// busy, evict nothing (nothing is idle yet) and wait for a place under the cap. The two
/// connections go back to the pool idle 300 ms later, but an idle pooled connection keeps
/// its place, so nothing wakes the waiters: they get 503 `upstream_capacity` after the
/// whole connect timeout (3 s here, 10 s by default).
/// Now a request waiting at the cap closes a connection that goes idle for its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_upstream_cap_a_waiting_request_gets_a_connection_that_went_idle() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let ports = Ports::free();
    let limits = "threads = 2\nmax_upstream_connections = 2\nconnect_timeout_secs = 3";
    let _bin = proxy(&env, ports, limits, sim.addr(), "r6-wait.toml").await;
    let mut clients: Vec<Option<Http>> = kept(&env, ports, 4).await.into_iter().map(Some).collect();
    let mut statuses = Vec::new();
    for r in 2..=3 {
        statuses.extend(at_once(&mut clients, r, 300).await);
    }
    let refused: Vec<_> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        refused.is_empty(),
        "refused at the cap though each request takes milliseconds: {refused:?} of {statuses:?}"
    );
}

/// A kept-alive client on a thread with no upstream connection of its own borrows another
/// thread's for each request (its driver stays there: every request crossed threads). Now,
/// from a client's second borrow, its thread dials one of its own beside the request: three
/// threads, six kept-alive clients, their first requests over one upstream connection, three
/// rounds later exactly one connection per thread that serves clients (how the clients
/// spread is read from `ratls_thread_client_connections`), and no dial per request.
/// Without the dial beside: one connection in all (fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_client_gets_a_connection_its_own_thread_drives() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), usize::MAX, Beyond::Close).await;
    let ports = Ports::free();
    let _bin = proxy(&env, ports, "threads = 3", gate.addr, "beside-own.toml").await;
    let mut clients = kept(&env, ports, 6).await;
    assert_eq!(
        gate.accepted(),
        1,
        "first requests share one upstream connection"
    );
    all_answered(&mut clients, 2..=4).await;
    let dialed = gate.accepted();
    let serving = metrics(ports.admin)
        .await
        .iter()
        .filter(|(k, v)| k.starts_with("ratls_thread_client_connections{") && **v >= 1.0)
        .count();
    assert!(
        serving >= 2,
        "the clients all landed on one thread: nothing to show"
    );
    assert_eq!(
        dialed, serving,
        "upstream connections for six kept-alive clients on {serving} threads"
    );
    all_answered(&mut clients, 5..=7).await;
    assert_eq!(
        gate.accepted(),
        dialed,
        "dialed again once each thread had its own"
    );
    assert_eq!(gate.peak(), dialed);
}

/// The dial beside never takes the last place under `max_upstream_connections` (a request
/// that needs a connection must not find it taken by one nobody waits for): at a cap of two
/// with one connection open, kept-alive clients on three threads go on borrowing that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_beside_never_takes_the_last_place_under_the_cap() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), usize::MAX, Beyond::Close).await;
    let ports = Ports::free();
    let limits = "threads = 3\nmax_upstream_connections = 2";
    let _bin = proxy(&env, ports, limits, gate.addr, "beside-cap.toml").await;
    let mut clients = kept(&env, ports, 6).await;
    all_answered(&mut clients, 2..=4).await;
    assert_eq!(
        gate.accepted(),
        1,
        "a dial beside took the last place under the cap"
    );
}

/// A reload while a dial beside is in its (slow) handshake: the connection it makes belongs
/// to the retired generation and is closed when it is checked in, never pooled. The enclave
/// host forwards new connections after 1.5 s; the test reloads at once and then reads, 3 s
/// later, that the dial happened and that nothing is open at the enclave host (the retired
/// generation's idle connection closed at the reload, the late one when it came in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_dial_beside_drops_its_connection() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let delay = Beyond::Delay(Duration::from_millis(1500));
    let gate = Gate::start(sim.addr(), 1, delay).await;
    let ports = Ports::free();
    let limits = "threads = 3\nconnect_timeout_secs = 10";
    let _bin = proxy(&env, ports, limits, gate.addr, "beside-reload.toml").await;
    let mut clients = kept(&env, ports, 6).await;
    let (failed, slowest) = round(&mut clients, 2).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(slowest < Duration::from_millis(1000), "{slowest:?}");
    reload(ports.admin).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(gate.accepted() >= 2, "no dial beside was made");
    assert_eq!(
        gate.open(),
        0,
        "a retired generation's connection stayed open"
    );
}
