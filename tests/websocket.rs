//! WebSockets through the proxy with a real client (tokio-tungstenite's framing) against the
//! sim's `/ws` echo: intercepted over HTTP/1.1 (upgrade) and HTTP/2 (extended CONNECT,
//! RFC 8441), originated (`ws://` as an absolute-form upgrade) and on a sidecar route; and
//! the boundary around them: a refused enclave receives nothing, only `websocket` upgrades
//! switch, passthrough keeps its rules, a reload that refuses the enclave closes an open
//! socket, the connection slot, idle timeout, byte counters and the access line at close.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ratls_proxy::sim::{SimConfig, SimEnclave};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use common::ws::{closed_within, open, round_trip, upgrade, Ws};
use common::{
    access_lines, ask, ask_on, curl_text, env, free_port, reload, start_sim, tls_through, Binary,
    Env, Harness, Mode, Via, MODES, OTHER, TRUSTED,
};

const HOST: &str = "good.enclave.test";

/// The `[[route]]` table of a route to [`HOST`] on `port`.
fn route(port: u16) -> String {
    format!("[[route]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"https://{HOST}\"\n")
}

/// An upgrade of `target` written by hand to `addr` with `Host: HOST` (and `extra` lines).
async fn upgrade_by_hand(addr: SocketAddr, target: &str, extra: &str) -> Result<Ws, String> {
    upgrade(addr, HOST, target, extra).await
}

async fn good_sim(env: &Env) -> SimEnclave {
    start_sim(env, SimConfig::default()).await
}

/// The same WebSocket conversation works in every mode, text and binary, small and large
/// frames, and the client's close is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_work_in_every_mode_over_http1_and_http2() {
    let env = env();
    let sim = good_sim(&env).await;
    let route_port = free_port();
    let running = Harness::new(&env)
        .enclave(HOST, sim.addr())
        .tail(&route(route_port))
        .start()
        .await;
    let via = Via::running(&running, &env.ca_pem());
    let metrics = Arc::clone(running.proxy.metrics());
    for mode in MODES {
        let frames = sim.websocket_frames();
        let (up, down) = (
            metrics.bytes_to_upstreams.load(Ordering::Relaxed),
            metrics.bytes_to_clients.load(Ordering::Relaxed),
        );
        let mut ws = open(&via, HOST, mode)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        round_trip(&mut ws, &format!("hello over {mode:?}")).await;
        let big = vec![7u8; 300 * 1024];
        ws.send(Message::binary(big.clone())).await.expect("send");
        let back = ws.next().await.expect("open").expect("message");
        assert_eq!(back, Message::binary(big), "{mode:?}");
        round_trip(&mut ws, "after the big one").await;
        ws.close(None).await.expect("close");
        // The close is echoed and the connection ends.
        assert!(
            closed_within(&mut ws, Duration::from_secs(5)).await,
            "{mode:?}"
        );
        assert_eq!(sim.websocket_frames(), frames + 3, "{mode:?}");
        // The relayed bytes are counted both ways.
        assert!(
            metrics.bytes_to_upstreams.load(Ordering::Relaxed) > up + 300 * 1024,
            "{mode:?}"
        );
        assert!(
            metrics.bytes_to_clients.load(Ordering::Relaxed) > down + 300 * 1024,
            "{mode:?}"
        );
    }
}

/// A refused enclave's upgrade gets the refusal (502 and its code) and the enclave
/// receives nothing, originated and on a route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_enclaves_upgrade_gets_the_refusal_and_nothing_is_sent() {
    let env = env();
    let sim = good_sim(&env).await;
    let route_port = free_port();
    let running = Harness::new(&env)
        .enclave_with(&[HOST], sim.addr(), OTHER, "")
        .tail(&route(route_port))
        .start()
        .await;
    let originated = upgrade_by_hand(running.addr, &format!("http://{HOST}/ws"), "")
        .await
        .err()
        .expect("no switch");
    let routed = upgrade_by_hand(running.route_addrs[0], "/ws", "")
        .await
        .err()
        .expect("no switch");
    for answer in [originated, routed] {
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains("\"code\":\"mrenclave_mismatch\""),
            "{answer}"
        );
    }
    assert_eq!(
        sim.request_count(),
        0,
        "the refused enclave received nothing"
    );
}

/// `GET path` on `addr` asking to upgrade to `upgrade`; the answer.
async fn ask_upgrade(addr: SocketAddr, path: &str, upgrade: &str) -> String {
    ask(addr, &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n")).await
}

/// Only `websocket` switches: another `Upgrade` gets 400 and reaches nobody, in every
/// HTTP/1.1 mode; `h2c` (which clients offer and fall back from) is dropped as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_upgrades_are_relayed() {
    let env = env();
    let sim = good_sim(&env).await;
    let route_port = free_port();
    let running = Harness::new(&env)
        .enclave(HOST, sim.addr())
        .tail(&route(route_port))
        .start()
        .await;
    let originated = (running.addr, format!("http://{HOST}/hello"));
    let routed = (running.route_addrs[0], "/hello".to_owned());
    for (addr, path) in [&originated, &routed] {
        for upgrade in ["TLS/1.0", "websocket, h2c", "IRC/6.9"] {
            let answer = ask_upgrade(*addr, path, upgrade).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{upgrade}: {answer}");
            assert!(answer.contains("only websocket"), "{answer}");
        }
    }
    // Inside an intercepted tunnel too.
    let mut tls = tls_through(running.addr, HOST, &env.ca_pem()).await;
    let answer = ask_on(
        &mut tls,
        &format!("GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: TLS/1.0\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        sim.request_count(),
        0,
        "no refused upgrade reached the enclave"
    );
    // h2c is no switch: the request is served as HTTP/1.1.
    let answer = ask_upgrade(originated.0, &originated.1, "h2c").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("\"upgrade\""), "{answer}");
    assert_eq!(sim.request_count(), 1);
}

/// A plain WebSocket echo server (not an enclave) on loopback: its address and how many
/// connections it accepted.
async fn plain_ws_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() || m.is_binary() {
                            let _ = ws.send(m).await;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// An upgrade to a non-enclave host follows the passthrough rules: a local destination is
/// refused by default (and reached by nothing); allowed, it is relayed in plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_upgrades_follow_the_passthrough_rules() {
    let env = env();
    let (server, accepted) = plain_ws_server().await;
    let target = format!("http://{server}/chat");
    let running = Harness::new(&env).start().await;
    let answer = upgrade_by_hand(running.addr, &target, "")
        .await
        .err()
        .expect("refused");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("\"code\":\"local_destination_denied\""),
        "{answer}"
    );
    assert_eq!(accepted.load(Ordering::Relaxed), 0);
    drop(running);
    let running = Harness::new(&env)
        .top("allow_local_destinations = true")
        .start()
        .await;
    let mut ws = upgrade_by_hand(running.addr, &target, "")
        .await
        .expect("switched");
    round_trip(&mut ws, "plain but allowed").await;
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

/// A reload that refuses the enclave closes every open WebSocket to it, in every mode,
/// before it carries another message (the enclave receives nothing more); a reload that
/// keeps accepting it leaves them open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_refuses_the_enclave_closes_open_websockets() {
    let env = env();
    let sim = good_sim(&env).await;
    let (proxy, admin, route_port) = (free_port(), free_port(), free_port());
    let config = |mrenclave: &str| {
        Harness::new(&env)
            .listen(proxy)
            .admin(admin)
            .enclave_with(&[HOST], sim.addr(), mrenclave, "")
            .tail(&route(route_port))
    };
    let _p = config(TRUSTED).start_binary("ws-reload.toml").await;
    let via = env.via(proxy).route(route_port);
    // Per mode, one socket that will try to talk after the revocation and one that stays
    // silent (closed by the reload itself, not by a message).
    let mut open_sockets = Vec::new();
    let mut silent = Vec::new();
    for mode in MODES {
        for list in [&mut open_sockets, &mut silent] {
            let mut ws = open(&via, HOST, mode)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            round_trip(&mut ws, "before").await;
            list.push((mode, ws));
        }
    }
    // The same policy again: a new generation that still accepts the enclave.
    config(TRUSTED).write("ws-reload.toml");
    reload(admin).await;
    for (mode, ws) in open_sockets.iter_mut().chain(silent.iter_mut()) {
        round_trip(ws, &format!("{mode:?} after a reload that keeps it")).await;
    }
    let frames = sim.websocket_frames();
    config(OTHER).write("ws-reload.toml");
    reload(admin).await;
    for (mode, ws) in &mut open_sockets {
        // Try to slip one through, then the socket must be closed without an echo.
        let _ = ws.send(Message::text("after the revocation")).await;
        assert!(
            closed_within(ws, Duration::from_secs(5)).await,
            "{mode:?}: closed by the reload"
        );
    }
    for (mode, ws) in &mut silent {
        assert!(
            closed_within(ws, Duration::from_secs(5)).await,
            "{mode:?}: a silent socket is closed by the reload"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.websocket_frames(),
        frames,
        "nothing reached the enclave after the reload refused it"
    );
    // And a new upgrade is refused.
    let answer = upgrade_by_hand(via.proxy, &format!("http://{HOST}/ws"), "")
        .await
        .err()
        .expect("refused");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}

/// Judging an open WebSocket again is a verdict like any other: the refusal a reload brings
/// is in the audit trail, under the new generation, when the socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judging_an_open_websocket_again_is_audited() {
    let env = env();
    let sim = good_sim(&env).await;
    let (proxy, admin, route_port) = (free_port(), free_port(), free_port());
    let trail = env.dir.join("ws-verdicts.jsonl");
    let config = |mrenclave: &str| {
        Harness::new(&env)
            .listen(proxy)
            .admin(admin)
            .enclave_with(&[HOST], sim.addr(), mrenclave, "")
            .tail(&format!(
                "{}\n[audit]\npath = \"{}\"\n",
                route(route_port),
                trail.display()
            ))
    };
    let _p = config(TRUSTED).start_binary("ws-audit.toml").await;
    let via = env.via(proxy).route(route_port);
    let mut ws = open(&via, HOST, Mode::Intercepted).await.expect("upgraded");
    round_trip(&mut ws, "before").await;
    let before = common::audited(&trail, HOST);
    assert!(
        before.iter().all(|r| r["verdict"] == "accepted") && !before.is_empty(),
        "{before:#?}"
    );
    config(OTHER).write("ws-audit.toml");
    reload(admin).await;
    assert!(closed_within(&mut ws, Duration::from_secs(5)).await);
    let after = common::audited(&trail, HOST);
    let refused: Vec<_> = after[before.len()..]
        .iter()
        .filter(|r| r["verdict"] == "refused")
        .collect();
    assert!(!refused.is_empty(), "{after:#?}");
    assert_eq!(refused[0]["code"], "mrenclave_mismatch");
    assert_ne!(refused[0]["generation"], before[0]["generation"]);
}

/// An open WebSocket keeps its client connection's place under `max_connections` until it
/// closes, and the idle timeout closes a silent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_holds_its_connection_slot_and_idles_out() {
    let env = env();
    let sim = good_sim(&env).await;
    let running = Harness::new(&env)
        .limits("max_connections = 2\nidle_timeout_secs = 2")
        .enclave(HOST, sim.addr())
        .start()
        .await;
    let via = env.via(running.addr);
    let metrics = Arc::clone(running.proxy.metrics());
    let mut first = open(&via, HOST, Mode::Originated).await.expect("first");
    let mut second = open(&via, HOST, Mode::Intercepted).await.expect("second");
    round_trip(&mut first, "one").await;
    round_trip(&mut second, "two").await;
    assert_eq!(metrics.client_connections.load(Ordering::Relaxed), 2);
    let third = upgrade_by_hand(running.addr, &format!("http://{HOST}/ws"), "")
        .await
        .err()
        .expect("over the cap");
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    // Keep the first busy past the idle timeout; the second says nothing and is closed.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        round_trip(&mut first, &format!("still here {i}")).await;
    }
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metrics.client_connections.load(Ordering::Relaxed), 1);
    let mut again = open(&via, HOST, Mode::Originated)
        .await
        .expect("a place again");
    round_trip(&mut again, "three").await;
}

/// An open WebSocket holds its upstream's place under `max_upstream_connections`: at the
/// cap the next upgrade gets 503 `upstream_capacity`; once it closes, the place is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_holds_its_upstream_place() {
    let env = env();
    let sim = good_sim(&env).await;
    let running = Harness::new(&env)
        .limits("max_upstream_connections = 1\nconnect_timeout_secs = 1")
        .enclave(HOST, sim.addr())
        .start()
        .await;
    let via = env.via(running.addr);
    let upstream = Arc::clone(running.proxy.metrics());
    let mut first = open(&via, HOST, Mode::Originated).await.expect("first");
    round_trip(&mut first, "one").await;
    assert_eq!(upstream.upstream_connections.load(Ordering::Relaxed), 1);
    let second = upgrade_by_hand(running.addr, &format!("http://{HOST}/ws"), "")
        .await
        .err()
        .expect("at the cap");
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.contains("\"code\":\"upstream_capacity\""),
        "{second}"
    );
    first.close(None).await.expect("close");
    assert!(closed_within(&mut first, Duration::from_secs(5)).await);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.upstream_connections.load(Ordering::Relaxed), 0);
    let mut third = open(&via, HOST, Mode::Originated)
        .await
        .expect("a place again");
    round_trip(&mut third, "three").await;
}

/// The access log records the upgrade when it closes: status 101, the bytes each way, the
/// whole duration, the verdict and MRENCLAVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_records_the_upgrade_at_close() {
    let env = env();
    let sim = good_sim(&env).await;
    let proxy = free_port();
    let config = Harness::new(&env)
        .listen(proxy)
        .enclave(HOST, sim.addr())
        .write("ws-log.toml");
    let mut p = Binary::start(&config, proxy, &[], true).await;
    let via = env.via(proxy);
    let mut ws = open(&via, HOST, Mode::Originated).await.expect("open");
    round_trip(&mut ws, &"x".repeat(1000)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.close(None).await.expect("close");
    assert!(closed_within(&mut ws, Duration::from_secs(5)).await);
    // The client's side closes too (the relay keeps a half-closed connection open).
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = p.stop("-TERM").await;
    let access = access_lines(&lines);
    assert_eq!(access.len(), 1, "one line per upgrade: {lines:?}");
    let line = &access[0];
    assert_eq!(line["status"], 101, "{line}");
    assert_eq!(line["path"], "/ws", "{line}");
    assert_eq!(line["verdict"], "accepted", "{line}");
    assert_eq!(line["mrenclave"], TRUSTED, "{line}");
    assert_eq!(line["upgrade"], "websocket", "{line}");
    assert_eq!(line["end"], "closed", "{line}");
    // A masked 1000-byte frame up (1008 bytes) and its echo down (1004), plus the closes.
    assert!(line["bytes_up"].as_u64().unwrap_or(0) >= 1008, "{line}");
    assert!(line["bytes_down"].as_u64().unwrap_or(0) >= 1004, "{line}");
    assert!(line["total_ms"].as_f64().unwrap_or(0.0) >= 300.0, "{line}");
}

/// curl, as a user would type it: the upgrade through the proxy gets `101` and the
/// enclave's accept key (curl 7.88 has no `ws://` of its own, so it stops after the head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_switch_through_the_proxy() {
    let env = env();
    let sim = good_sim(&env).await;
    let running = Harness::new(&env).enclave(HOST, sim.addr()).start().await;
    let text = curl_text(&[
        "-i",
        "--max-time",
        "2",
        "-x",
        &format!("http://{}", running.addr),
        &format!("http://{HOST}/ws"),
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ])
    .await
    .to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text}");
    assert!(
        text.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    assert_eq!(sim.request_count(), 1);
}
