//! Attacks on the dial beside a borrowed upstream connection (`pool/beside.rs`), from the
//! session-7 review (R7).
//! The real binary, sim enclaves, a TCP gate in front of one of them that this test controls
//! (how many connections the enclave host takes and what it does with the rest), hyper
//! clients. Each test states its finding (two failed before `ada510a`), severity and what
//! the proxy does.
#![cfg(feature = "sim")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::Http;
use common::{
    audited, env, metrics_text, reload, start_sim_with, Binary, Env, Harness, Mode, Ports, OTHER,
    TRUSTED,
};
use ratls_proxy::dcap::ids::MrEnclave;
use ratls_proxy::sim::SimEnclave;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the gate does with connections past the first it forwards.
#[derive(Clone, Copy)]
enum Beyond {
    /// Accepts and never answers: a stalled TLS accept.
    Hold,
    /// Forwards, then closes it this long after it was accepted (a host that lets the
    /// handshake through and then drops the connection).
    CloseAfter(Duration),
    /// Forwards it to another enclave (the host now serves another enclave).
    To(SocketAddr),
    /// Forwards it after this long (a slow enclave host).
    Delay(Duration),
}

/// A TCP gate: forwards the first connection for good, the rest as `Beyond` says.
struct Gate {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Gate {
    async fn start(to: SocketAddr, beyond: Beyond) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let n = a.fetch_add(1, Ordering::SeqCst);
                let mut to = to;
                let mut delay = Duration::ZERO;
                let close_after = match (n, beyond) {
                    (0, _) => None,
                    (_, Beyond::Delay(d)) => {
                        delay = d;
                        None
                    }
                    (_, Beyond::To(other)) => {
                        to = other;
                        None
                    }
                    (_, Beyond::Hold) => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(120)).await;
                            drop(client);
                        });
                        continue;
                    }
                    (_, Beyond::CloseAfter(d)) => Some(d),
                };
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let Ok(mut enclave) = TcpStream::connect(to).await else {
                        return;
                    };
                    let relay = async {
                        let (mut from_proxy, mut to_proxy) = client.split();
                        let (mut from_enclave, mut to_enclave) = enclave.split();
                        let back = tokio::io::copy(&mut from_enclave, &mut to_proxy);
                        let forth = async {
                            let _ = tokio::io::copy(&mut from_proxy, &mut to_enclave).await;
                            let _ = to_enclave.shutdown().await;
                        };
                        let _ = tokio::join!(back, forth);
                    };
                    match close_after {
                        None => relay.await,
                        Some(d) => {
                            let _ = tokio::time::timeout(d, relay).await;
                        }
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The real binary with `limits`: `pool.enclave.test` behind the gate at `gated`, and
/// `other.enclave.test` straight at `direct` (another enclave entry), both trusted.
async fn proxy(
    env: &Env,
    ports: Ports,
    limits: &str,
    gated: SocketAddr,
    direct: SocketAddr,
    name: &str,
) -> Binary {
    let config = Harness::new(env)
        .ports(ports)
        .limits(limits)
        .enclave_with(&["pool.enclave.test"], gated, TRUSTED, "")
        .enclave_with(&["other.enclave.test"], direct, TRUSTED, "")
        .write(name);
    Binary::start(&config, ports.admin, &[], false).await
}

/// A gated `pool.enclave.test` (connections past the first go `beyond`) and a healthy
/// `other.enclave.test`, one sim behind both, and the proxy with `limits` (config `name`).
async fn gated(beyond: Beyond, limits: &str, name: &str) -> (Env, SimEnclave, Gate, Ports, Binary) {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), beyond).await;
    let ports = Ports::free();
    let bin = proxy(&env, ports, limits, gate.addr, sim.addr(), name).await;
    (env, sim, gate, ports, bin)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// `n` kept-alive originating clients to `pool.enclave.test`, after their first request.
async fn kept(env: &Env, ports: Ports, n: usize) -> Vec<Http> {
    let via = env.via(ports.proxy);
    let mut clients = Vec::new();
    for i in 0..n {
        let mut c = Http::open(&via, "pool.enclave.test", Mode::Originated).await;
        settle().await;
        assert_eq!(c.status(&format!("/c{i}/1")).await, 200, "client {i}");
        clients.push(c);
    }
    clients
}

/// Each client's request `round`, one after another: the ones not answered 200.
async fn round(clients: &mut [Http], round: u32) -> Vec<(usize, u16)> {
    let mut failed = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        settle().await;
        let status = c.status(&format!("/c{i}/{round}")).await;
        if status != 200 {
            failed.push((i, status));
        }
    }
    failed
}

/// R7 finding (MEDIUM): a dial beside that stalls holds a place under
/// `max_upstream_connections` for the whole connect timeout, and a request to another
/// enclave that needs that place waits for it. "Never while a request waits at the cap" is
/// only checked when the dial starts; a request that comes to the cap a moment later is not
/// given the place of a dial nobody waits for.
///
/// Two threads, cap 3, connect timeout 10 s. `pool.enclave.test`'s host takes its first
/// connection and stalls every later TLS accept; kept-alive clients on the other thread
/// borrow that connection, and their second borrow starts a dial beside (place 2 of 3),
/// which stalls. Then three requests to `other.enclave.test` (a healthy enclave), sent at
/// once, each answered in 4 s: one takes place 3, one closes the idle borrowed connection
/// for its place, and the third waits for a place until one of those two is done (~4 s
/// later, ~8 s in all) before `ada510a`. Without a dial beside all three are served
/// together (places 2 and 3, and the idle one closed), in ~4 s; since `ada510a` a request
/// waiting at the cap makes the dial beside give its place up, and so it is again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_dial_beside_gives_its_place_to_a_request_waiting_at_the_cap() {
    let (env, _sim, gate, ports, _bin) = gated(
        Beyond::Hold,
        "threads = 2\nmax_upstream_connections = 3\nconnect_timeout_secs = 10",
        "r7-stall-cap.toml",
    )
    .await;
    let mut clients = kept(&env, ports, 6).await;
    assert_eq!(gate.accepted(), 1, "first requests share one connection");
    let failed = round(&mut clients, 2).await;
    assert!(failed.is_empty(), "{failed:?}");
    settle().await;
    assert!(
        gate.accepted() >= 2,
        "no dial beside started (all clients on one thread?): nothing to show"
    );

    let via = env.via(ports.proxy);
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(Http::open(&via, "other.enclave.test", Mode::Originated).await);
    }
    let tasks: Vec<_> = others
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let started = Instant::now();
                let status = c.status("/slow?ms=4000").await;
                (status, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert!(
        results.iter().all(|(s, _)| *s == 200) && slowest < Duration::from_secs(6),
        "requests to a healthy enclave waited behind a stalled dial beside that no request \
         needed: {results:?}"
    );
}

/// R7 finding (LOW, failed before `ada510a`): the 30 s hold followed only a dial beside
/// that *failed*. An enclave host that lets each new connection's handshake through and
/// closes it a moment later made every returning borrow dial again: a full attested
/// handshake (and an audit record) per round, driven by the host, where borrowing the one
/// good connection dials nothing. Now the hold runs from when a dial beside starts.
///
/// Two threads, four kept-alive clients, the first upstream connection kept for good, every
/// later one closed by its host 400 ms after it opened; six rounds 700 ms apart: at most two
/// dials beside (was about six).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_closing_each_new_connection_does_not_drive_a_dial_beside_per_round() {
    let (env, _sim, gate, ports, _bin) = gated(
        Beyond::CloseAfter(Duration::from_millis(400)),
        "threads = 2",
        "r7-close-after.toml",
    )
    .await;
    let mut clients = kept(&env, ports, 4).await;
    assert_eq!(gate.accepted(), 1, "first requests share one connection");
    let mut failed = Vec::new();
    for r in 2..=7 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        failed.extend(round(&mut clients, r).await);
    }
    let dialed = gate.accepted() - 1;
    eprintln!("dials beside: {dialed}; requests not 200: {failed:?}");
    assert!(
        dialed <= 2,
        "{dialed} dials beside in six rounds for four kept-alive clients on two threads \
         (requests not 200: {failed:?})"
    );
}

/// R7, held: shutdown does not wait for a dial beside stalled in its handshake (the task
/// holds no drain guard, and the process ends when the accepting runtime returns). A
/// 60 s connect timeout, the host stalling every TLS accept after the first; SIGTERM while
/// the dial beside is stalled: the process is gone well before the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_stalled_dial_beside() {
    let (env, _sim, gate, ports, mut bin) = gated(
        Beyond::Hold,
        "threads = 2\nconnect_timeout_secs = 60",
        "r7-stall-shutdown.toml",
    )
    .await;
    let mut clients = kept(&env, ports, 6).await;
    let failed = round(&mut clients, 2).await;
    assert!(failed.is_empty(), "{failed:?}");
    settle().await;
    assert!(
        gate.accepted() >= 2,
        "no dial beside started (all clients on one thread?): nothing to show"
    );
    drop(clients);
    let asked = Instant::now();
    bin.signal("-TERM");
    let exited = loop {
        if let Ok(Some(status)) = bin.child.try_wait() {
            break Some(status);
        }
        if asked.elapsed() > Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        exited.is_some(),
        "the proxy still ran 20 s after SIGTERM with a dial beside stalled"
    );
    eprintln!("exited {:?} after SIGTERM", asked.elapsed());
}

/// R7, observed: what the trail, the metrics and the log say when a dial beside is refused.
/// The host serves the trusted enclave on its first connection and another enclave (another
/// MRENCLAVE) on every later one: the dial beside is refused. Every request is answered 200
/// over the connection that was verified; the audit trail records the refusal (the host
/// serves something the policy refuses); `ratls_requests_total` counts no refused request
/// (none was); the log says so at warn, and nothing is dialed again per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dial_beside_is_in_the_trail_and_refuses_no_request() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let impostor = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe2; 32])).await;
    let gate = Gate::start(sim.addr(), Beyond::To(impostor.addr())).await;
    let ports = Ports::free();
    let trail = env.dir.join("r7-beside-trail.jsonl");
    let config = Harness::new(&env)
        .ports(ports)
        .limits("threads = 2")
        .enclave_with(&["pool.enclave.test"], gate.addr, TRUSTED, "")
        .tail(&format!("[audit]\npath = \"{}\"\n", trail.display()))
        .write("r7-beside-refused.toml");
    let mut bin = Binary::start(&config, ports.admin, &[], true).await;
    let logs = bin.log_lines();
    let mut clients = kept(&env, ports, 6).await;
    let mut failed = Vec::new();
    for r in 2..=4 {
        failed.extend(round(&mut clients, r).await);
    }
    assert!(failed.is_empty(), "{failed:?}");
    settle().await;
    let dialed = gate.accepted();
    assert!(dialed >= 2, "no dial beside (all clients on one thread?)");
    assert!(
        dialed <= 3,
        "{dialed} dials: a refused dial beside was retried"
    );
    let records = audited(&trail, "pool.enclave.test");
    let verdicts: Vec<_> = records
        .iter()
        .map(|r| (r["verdict"].clone(), r["code"].clone()))
        .collect();
    eprintln!("trail: {verdicts:?}");
    assert!(
        records.iter().any(|r| r["verdict"] == "refused"),
        "the trail does not show the refused dial beside: {verdicts:?}"
    );
    let text = metrics_text(ports.admin).await;
    let requests: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("ratls_requests_total{"))
        .collect();
    eprintln!("metrics: {requests:?}");
    assert!(
        !requests.iter().any(|l| l.contains("verdict=\"refused\"")),
        "{requests:?}"
    );
    let said: Vec<String> = logs
        .lock()
        .map(|l| {
            l.iter()
                .filter(|v| {
                    v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("dial beside"))
                })
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    eprintln!("log: {said:?}");
    assert!(
        !said.is_empty(),
        "the log says nothing of the refused dial beside"
    );
}

/// R7, attacked: a reload that refuses the enclave while a dial beside is in its (slow)
/// handshake. The dial was started under the old generation, whose policy accepts the
/// enclave; it ends after the reload, accepted under the old rules. Its connection must
/// never carry a request of the new generation, whose policy refuses the enclave: every
/// kept-alive client's next request is refused (not 200), and the enclave sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_refuses_the_enclave_during_a_dial_beside_serves_nothing_over_it() {
    let env = env();
    let sim = start_sim_with(&env, |_| {}).await;
    let gate = Gate::start(sim.addr(), Beyond::Delay(Duration::from_millis(1500))).await;
    let ports = Ports::free();
    let write = |mrenclave: &str| {
        Harness::new(&env)
            .ports(ports)
            .limits("threads = 2\nconnect_timeout_secs = 10")
            .enclave_with(&["pool.enclave.test"], gate.addr, mrenclave, "")
            .write("r7-beside-reload-refuses.toml")
    };
    let config = write(TRUSTED);
    let _bin = Binary::start(&config, ports.admin, &[], false).await;
    let mut clients = kept(&env, ports, 6).await;
    let failed = round(&mut clients, 2).await;
    assert!(failed.is_empty(), "{failed:?}");
    let _ = write(OTHER);
    reload(ports.admin).await;
    // The dial beside ends (1.5 s at the gate) under the old generation.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        gate.accepted() >= 2,
        "no dial beside (all clients on one thread?)"
    );
    let mut served = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        settle().await;
        let status = c.status(&format!("/after/{i}")).await;
        if status == 200 {
            served.push(i);
        }
    }
    assert!(
        served.is_empty(),
        "clients {served:?} answered 200 after a reload that refuses the enclave"
    );
}
