//! Limits: a slow client is cut off at the header timeout while others are served, idle
//! keep-alive connections wait for the idle timeout instead, oversized headers get 431, the connection cap refuses the excess quickly and recovers (and
//! counts open tunnels and route connections),
//! an upstream that never completes its handshake gives 504, IPv6 literals are handled.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ratls_proxy::sim::{SimConfig, SimEnclave};
use ratls_proxy::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{ask_on, connect, env, exchange, start_sim, tls_through, Env, Harness};

async fn good_sim(env: &Env) -> SimEnclave {
    start_sim(env, SimConfig::default()).await
}

/// A TCP server on loopback that accepts and holds connections, never sending a byte.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let quiet = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = quiet.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = quiet.accept().await {
            conns.push(c);
        }
    });
    (port, held)
}

async fn proxy(env: &Env, limits: &str, enclaves: &[(&str, SocketAddr)]) -> Running {
    proxy_with(env, limits, enclaves, "").await
}

/// A proxy with `limits` under `[limits]`, one `[[enclave]]` per entry, then `tail`.
/// Passthrough may reach loopback here: these tests tunnel to local servers to test limits
/// (the default refusal of local destinations is tested in `tests/boundary.rs`).
async fn proxy_with(
    env: &Env,
    limits: &str,
    enclaves: &[(&str, SocketAddr)],
    tail: &str,
) -> Running {
    let mut h = Harness::new(env)
        .top("allow_local_destinations = true")
        .limits(limits)
        .tail(tail);
    for (host, addr) in enclaves {
        h = h.enclave(host, *addr);
    }
    h.start().await
}

async fn get_via(proxy: SocketAddr, host: &str) -> String {
    exchange(
        proxy,
        format!("GET http://{host}/ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_is_cut_off_while_other_clients_are_served() {
    let env = env();
    let good = good_sim(&env).await;
    let running = proxy(
        &env,
        "header_read_timeout_secs = 1",
        &[("good.test", good.addr())],
    )
    .await;
    let mut slow = TcpStream::connect(running.addr).await.expect("connect");
    slow.write_all(b"GET http://good.test/ HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let started = Instant::now();
    // Meanwhile a normal client is served.
    assert!(get_via(running.addr, "good.test")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the slow client was disconnected, not left hanging"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "cut at the timeout: {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let env = env();
    let running = proxy(&env, "max_header_bytes = 4096", &[]).await;
    let big = format!(
        "GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = exchange(running.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_the_excess_quickly_and_recovers() {
    let env = env();
    let good = good_sim(&env).await;
    let running = proxy(
        &env,
        "max_connections = 4\nheader_read_timeout_secs = 30",
        &[("good.test", good.addr())],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(running.addr).await.expect("connect");
        c.write_all(b"GET http://good.test/ HTTP/1.1\r\n")
            .await
            .expect("write"); // never finished
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = exchange(
        running.addr,
        b"GET http://good.test/ HTTP/1.1\r\nHost: good.test\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused quickly, not queued"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        get_via(running.addr, "good.test")
            .await
            .starts_with("HTTP/1.1 200"),
        "recovers once connections close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_finishes_its_handshake_gives_504() {
    let env = env();
    // Accepts TCP, never speaks TLS.
    let (mute_port, _keep) = silent_server().await;
    let mute_addr = SocketAddr::from(([127, 0, 0, 1], mute_port));
    let running = proxy(
        &env,
        "connect_timeout_secs = 1",
        &[("mute.test", mute_addr)],
    )
    .await;
    let started = Instant::now();
    let answer = get_via(running.addr, "mute.test").await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        answer.to_lowercase().contains("error=connection_timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_literals_with_and_without_brackets() {
    let env = env();
    let running = proxy(&env, "", &[]).await;
    for bad in [
        &b"CONNECT ::1:443 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let answer = exchange(running.addr, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // A bracketed literal is tunnelled when something listens there (skipped without IPv6).
    let Ok(v6) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("NOTICE: no IPv6 loopback here; skipping the bracketed-literal tunnel");
        return;
    };
    let port = v6.local_addr().expect("addr").port();
    let echo = tokio::spawn(async move {
        if let Ok((mut c, _)) = v6.accept().await {
            let _ = c.write_all(b"hello over v6").await;
        }
    });
    let text = exchange(
        running.addr,
        format!("CONNECT [::1]:{port} HTTP/1.1\r\nHost: [::1]:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello over v6"),
        "{text}"
    );
    let _ = echo.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_and_idle_tunnels_are_closed() {
    let env = env();
    let good = good_sim(&env).await;
    let running = proxy(&env, "idle_timeout_secs = 1", &[("good.test", good.addr())]).await;

    // A keep-alive connection: served, then closed after 1 s without traffic.
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.write_all(b"GET http://good.test/a HTTP/1.1\r\nHost: good.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "closed, not held");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // A passthrough tunnel with no traffic is closed too.
    let (port, _held) = silent_server().await;
    let (head, mut tcp) = connect(running.addr, &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "idle tunnel closed");

    // The pooled upstream connection that served the first request is closed once idle too.
    let upstream = &running.proxy.metrics().upstream_connections;
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        upstream.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "idle pooled upstream connections are closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tunnels_count_against_the_connection_cap() {
    let env = env();
    let good = good_sim(&env).await;
    let running = proxy(&env, "max_connections = 2", &[("good.test", good.addr())]).await;
    let (port, _held) = silent_server().await;
    // One intercepted tunnel and one passthrough tunnel, both answered and then held open.
    let mut tunnels = Vec::new();
    for authority in ["good.test:443".to_owned(), format!("127.0.0.1:{port}")] {
        let (head, tcp) = connect(running.addr, &authority).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{authority}: {head}");
        tunnels.push(tcp);
    }
    let answer = get_via(running.addr, "good.test").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(tunnels);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        get_via(running.addr, "good.test")
            .await
            .starts_with("HTTP/1.1 200"),
        "recovers once the tunnels close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_listeners_share_the_connection_cap() {
    let env = env();
    let good = good_sim(&env).await;
    let running = proxy_with(
        &env,
        "max_connections = 1",
        &[("good.test", good.addr())],
        "[[route]]\nlisten = \"127.0.0.1:0\"\nupstream = \"https://good.test\"\n",
    )
    .await;
    let route = *running.route_addrs.first().expect("route bound");
    // One connection held open on the proxy listener takes the only slot.
    let mut held = TcpStream::connect(running.addr).await.expect("connect");
    held.write_all(b"GET http://good.test/ HTTP/1.1\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(
        route,
        b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = exchange(
        route,
        b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_with_traffic_outlives_the_idle_and_header_timeouts() {
    let env = env();
    // The header timeout times HTTP request heads; a passthrough tunnel carries bytes.
    let running = proxy(
        &env,
        "idle_timeout_secs = 1\nheader_read_timeout_secs = 1",
        &[],
    )
    .await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = echo.local_addr().expect("addr").port();
    let _echo = tokio::spawn(async move {
        while let Ok((mut c, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let (head, mut tcp) = connect(running.addr, &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A byte each 300 ms for 2.4 s: more than twice the idle timeout, never idle for one.
    for i in 0..8u8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(&[i]).await.expect("still open");
        let mut one = [0u8; 1];
        tcp.read_exact(&mut one).await.expect("echoed");
        assert_eq!(one[0], i);
    }
    // Then silence: closed within a few seconds.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "idle tunnel closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_waits_for_the_idle_timeout_while_heads_keep_the_header_timeout() {
    let env = env();
    let good = good_sim(&env).await;
    let route_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let running = proxy_with(
        &env,
        "header_read_timeout_secs = 1\nidle_timeout_secs = 30",
        &[("good.test", good.addr())],
        &format!(
            "[[route]]\nlisten = \"127.0.0.1:{route_port}\"\nupstream = \"https://good.test\"\n"
        ),
    )
    .await;
    let route: SocketAddr = format!("127.0.0.1:{route_port}").parse().expect("addr");
    let pause = Duration::from_millis(1600);
    let timed_close = |what: &'static str, started: Instant, closed: bool| {
        let waited = started.elapsed();
        assert!(closed, "{what}: closed, not held");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{what}: cut at the 1 s header timeout, not the 30 s idle one: {waited:?}"
        );
    };

    // Origination on the proxy listener: a second request after more than the header timeout
    // of silence is served; then a second head that stalls is cut at the header timeout.
    let plain = async {
        let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
        for path in ["a", "b"] {
            let request =
                format!("GET http://good.test/{path} HTTP/1.1\r\nHost: good.test\r\n\r\n");
            let answer = ask_on(&mut tcp, &request).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
            tokio::time::sleep(pause).await;
        }
        tcp.write_all(b"GET http://good.test/c HTTP/1.1\r\nHo")
            .await
            .expect("write");
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        timed_close("slow second head", started, closed.is_ok());
    };
    // A sidecar route: the same.
    let sidecar = async {
        let mut tcp = TcpStream::connect(route).await.expect("connect");
        for path in ["a", "b"] {
            let answer = ask_on(
                &mut tcp,
                &format!("GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n"),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 200"), "route {path}: {answer}");
            tokio::time::sleep(pause).await;
        }
    };
    // HTTP/1.1 inside an intercepted tunnel: the same.
    let tunnel = async {
        let mut tls = tls_through(running.addr, "good.test", &env.ca_pem()).await;
        for path in ["a", "b"] {
            let request = format!("GET /{path} HTTP/1.1\r\nHost: good.test\r\n\r\n");
            let answer = ask_on(&mut tls, &request).await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "tunnel {path}: {answer}"
            );
            tokio::time::sleep(pause).await;
        }
    };
    // A connection that never sends a byte is cut at the header timeout.
    let silent = async {
        let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        timed_close("silent connection", started, closed.is_ok());
    };
    tokio::join!(plain, sidecar, tunnel, silent);
}
