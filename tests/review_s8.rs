//! Session 8's adversarial review of the two performance branches (issue 30): `icpt` (the
//! intercepted client's TLS on the listener's socket taken back from hyper, with the bytes
//! hyper read past the CONNECT head replayed first) and `hot` (the shared request path:
//! clock reads, the judge, the access record). Each test states what must hold whatever
//! the optimisation: no client byte lost or reordered, the tunnel's timeouts kept, a
//! verdict cut at the second it expires (not earlier, not later), sane access timings.
#![cfg(feature = "sim")]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::{SimConfig, SimEnclave};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::http::Http;
use common::{env, start_sim, start_sim_with, tls_through, trusting, Binary, Env, Harness};
use common::{Mode, Ports, MODES};

const HOST: &str = "good.enclave.test";

/// The head of the response to the request in `plain` (up to its blank line).
fn head_of(plain: &[u8]) -> String {
    let text = String::from_utf8_lossy(plain);
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

/// Reads the CONNECT's answer head byte by byte from `tcp`, leaving what follows it.
fn connect_answer(tcp: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A client that writes its CONNECT head and its TLS ClientHello in ONE write (one segment
/// on loopback with Nagle off), then, once the server's flight is in, its Finished and its
/// first HTTP request in one more write: the bytes hyper reads past the CONNECT head are
/// the start of the handshake, and the first application data rides with the Finished.
/// Returns the CONNECT's answer and the plaintext answer read inside the tunnel.
fn eager_client(
    proxy: SocketAddr,
    host: &str,
    ca: &std::path::Path,
    extra: &str,
) -> (String, Vec<u8>) {
    let config = trusting(ca, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("name");
    let mut tls = rustls::ClientConnection::new(config, name).expect("client");
    let mut out =
        format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{extra}\r\n").into_bytes();
    tls.write_tls(&mut out).expect("hello");
    let mut tcp = std::net::TcpStream::connect(proxy).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(&out)
        .expect("write CONNECT and hello at once");
    let answer = connect_answer(&mut tcp);
    if !answer.starts_with("HTTP/1.1 200") {
        return (answer, Vec::new());
    }
    // The server's flight.
    while tls.is_handshaking() {
        if tls.wants_write() {
            break;
        }
        match tls.read_tls(&mut tcp) {
            Ok(0) | Err(_) => return (answer, b"closed during the handshake".to_vec()),
            Ok(_) => {}
        }
        if let Err(e) = tls.process_new_packets() {
            return (answer, format!("handshake failed: {e}").into_bytes());
        }
    }
    // The request joins the Finished in one write.
    tls.writer()
        .write_all(
            format!("GET /eager HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("queue request");
    let mut flight = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut flight).expect("flight");
    }
    tcp.write_all(&flight)
        .expect("write Finished and request at once");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let mut plain = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => plain.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (answer, plain)
}

/// icpt: the ClientHello in the CONNECT's segment (hyper reads it with the head) and the
/// first request in the Finished's segment are neither lost nor reordered: the intercepted
/// request is served by the enclave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_sent_with_the_connect_and_a_request_with_the_finished_are_served() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let running = Harness::new(&env).enclave(HOST, good.addr()).start().await;
    let (proxy, ca) = (running.addr, env.ca_pem());
    for _ in 0..3 {
        let ca = ca.clone();
        let (answer, plain) =
            tokio::task::spawn_blocking(move || eager_client(proxy, HOST, &ca, ""))
                .await
                .expect("join");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let head = head_of(&plain);
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "inside the tunnel: {head:?}"
        );
        assert!(
            String::from_utf8_lossy(&plain).contains("/eager"),
            "the enclave saw the request: {}",
            String::from_utf8_lossy(&plain)
        );
    }
    assert_eq!(good.request_count(), 3);
}

/// icpt: the refusal page's connection takes the same socket back (accept_client_tls is
/// shared): a browser whose ClientHello rides with the CONNECT still gets the page, and
/// nothing reaches the refused enclave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_sent_with_the_connect_still_gets_the_refusal_page() {
    let env = env();
    let refused = start_sim_with(&env, |c| c.spec.debug = true).await;
    let running = Harness::new(&env)
        .enclave(HOST, refused.addr())
        .start()
        .await;
    let (proxy, ca) = (running.addr, env.ca_pem());
    let ua = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36\r\n";
    let (answer, plain) = tokio::task::spawn_blocking(move || eager_client(proxy, HOST, &ca, ua))
        .await
        .expect("join");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = head_of(&plain).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 502"),
        "inside the tunnel: {head:?}"
    );
    assert!(head.contains("proxy-status"), "{head}");
    assert_eq!(refused.request_count(), 0);
}

/// True if the TLS session `tls` is closed (EOF or error) within `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(tls: &mut S, within: Duration) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(within, tls.read_to_end(&mut rest))
        .await
        .is_ok()
}

/// icpt: the socket taken back from hyper keeps the listener's idle and header timeouts
/// inside an intercepted HTTP/1.1 tunnel: a stalled head is cut at the header timeout, an
/// idle keep-alive tunnel at the idle timeout (and not at the header timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_tunnel_keeps_the_header_and_idle_timeouts() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let running = Harness::new(&env)
        .limits("header_read_timeout_secs = 1\nidle_timeout_secs = 3")
        .enclave(HOST, good.addr())
        .start()
        .await;
    let stalled = async {
        let mut tls = tls_through(running.addr, HOST, &env.ca_pem()).await;
        tls.write_all(b"GET /a HTTP/1.1\r\nHo")
            .await
            .expect("write");
        tls.flush().await.expect("flush");
        let started = Instant::now();
        let closed = closed_within(&mut tls, Duration::from_secs(8)).await;
        let waited = started.elapsed();
        assert!(closed, "a stalled head inside the tunnel is cut, not held");
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_millis(2900),
            "cut at the 1 s header timeout: {waited:?}"
        );
    };
    let idle = async {
        let mut tls = tls_through(running.addr, HOST, &env.ca_pem()).await;
        let answer = common::ask_on(
            &mut tls,
            &format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let started = Instant::now();
        let closed = closed_within(&mut tls, Duration::from_secs(10)).await;
        let waited = started.elapsed();
        assert!(closed, "an idle tunnel is closed, not held");
        assert!(
            waited >= Duration::from_millis(2500) && waited < Duration::from_secs(7),
            "closed at the 3 s idle timeout: {waited:?}"
        );
    };
    tokio::join!(stalled, idle);
}

/// A sim whose RA-TLS certificate's notAfter is `secs` seconds from now (its certificate is
/// issued two days before that), and that notAfter.
async fn expiring_sim(env: &Env, secs: i64) -> (SimEnclave, i64) {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("secs");
    let not_after = now + secs;
    let sim = SimEnclave::start(
        &env.pki,
        SimConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
        UnixTime(not_after - 2 * 86_400),
    )
    .await
    .expect("sim starts");
    (sim, not_after)
}

/// The instant the wall clock reaches the unix second `at` (its start).
fn instant_at(at: i64) -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let at = Duration::from_secs(u64::try_from(at).expect("positive"));
    match at.checked_sub(now) {
        Some(ahead) => Instant::now() + ahead,
        None => Instant::now() - (now - at),
    }
}

/// How a response body went on, each data frame with when it arrived.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Went {
    Ended,
    Cut,
    Open,
}

/// hot (the judge's clock): a verdict whose certificate expires mid-stream is cut at the
/// second it expires, in every mode: chunks flow while the certificate is valid (no clock
/// ahead of time cuts early) and stop within the second after its notAfter (no stale clock
/// lets the enclave's words through later); the cut is audited once per stream; the access
/// lines' timings are sane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_certificate_cuts_streams_at_its_second_in_every_mode() {
    use http_body_util::BodyExt;
    let env = env();
    let (sim, not_after) = expiring_sim(&env, 12).await;
    let ports = Ports::free();
    let trail = env.dir.join("expiry.jsonl");
    let config = Harness::new(&env)
        .listen(ports.proxy)
        .admin(ports.admin)
        .enclave(HOST, sim.addr())
        .tail(&format!(
            "[[route]]\nlisten = \"127.0.0.1:{}\"\nupstream = \"https://{HOST}\"\n\n[audit]\npath = \"{}\"\n",
            ports.route,
            trail.display()
        ))
        .write("expiry.toml");
    let mut p = Binary::start(&config, ports.admin, &[], true).await;
    let logs = p.log_lines();
    let mut readers = Vec::new();
    for mode in MODES {
        let mut client = Http::open(&env.via(ports.proxy).route(ports.route), HOST, mode).await;
        let resp = client.get("/stream?n=1000&ms=100").await;
        assert_eq!(resp.status(), 200, "{mode:?}");
        let mut body = resp.into_body();
        readers.push((
            mode,
            tokio::spawn(async move {
                let _client = client;
                let mut frames = Vec::new();
                let went = loop {
                    match tokio::time::timeout(Duration::from_secs(20), body.frame()).await {
                        Err(_) => break Went::Open,
                        Ok(None) => break Went::Ended,
                        Ok(Some(Err(_))) => break Went::Cut,
                        Ok(Some(Ok(f))) if f.is_data() => frames.push(Instant::now()),
                        Ok(Some(Ok(_))) => {}
                    }
                };
                (frames, went, Instant::now())
            }),
        ));
    }
    let expires = instant_at(not_after);
    assert!(
        Instant::now() + Duration::from_secs(2) < expires,
        "the streams were opened before the certificate's last seconds (machine too slow)"
    );
    for (mode, reader) in readers {
        let (frames, went, ended) = reader.await.expect("join");
        assert_eq!(went, Went::Cut, "{mode:?}: the stream is cut, not {went:?}");
        let last = frames.last().copied().expect("frames");
        // Valid through its notAfter second: chunks still flow in that second's start.
        assert!(
            last + Duration::from_millis(900) >= expires,
            "{mode:?}: cut {:?} before the certificate expired",
            expires.saturating_duration_since(last)
        );
        // Refused from the next second on: nothing later than its end (plus a loaded box's
        // scheduling slack).
        let limit = expires + Duration::from_millis(2500);
        assert!(
            ended <= limit && last <= limit,
            "{mode:?}: chunks flowed {:?} past the certificate's notAfter",
            last.saturating_duration_since(expires)
        );
    }
    let cuts = common::audited_cuts(&trail, HOST);
    assert_eq!(
        cuts.len(),
        MODES.len(),
        "one audit record per cut: {cuts:#?}"
    );
    for r in &cuts {
        assert_eq!(r["verdict"], "refused", "{r}");
        assert_eq!(r["cut"], "response", "{r}");
        assert!(
            r["code"].as_str().is_some_and(|c| c.contains("expired")),
            "{r}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines: Vec<serde_json::Value> = logs
        .lock()
        .expect("lines")
        .iter()
        .filter(|v| v["target"] == "ratls_proxy::access" && v["path"] == "/stream")
        .cloned()
        .collect();
    let heads: Vec<_> = lines
        .iter()
        .filter(|l| l.get("end").is_none() || l["end"].is_null())
        .collect();
    assert_eq!(
        heads.len(),
        MODES.len(),
        "one head line per stream: {lines:#?}"
    );
    for l in heads {
        let up = l["upstream_ms"].as_f64().expect("upstream_ms");
        let total = l["total_ms"].as_f64().expect("total_ms");
        assert!(up >= 0.0 && total >= up && total < 10_000.0, "timings: {l}");
    }
    let cut_lines = lines
        .iter()
        .filter(|l| l["end"].as_str().is_some_and(|e| e.starts_with("cut")))
        .count();
    assert_eq!(
        cut_lines,
        MODES.len(),
        "one cut line per stream: {lines:#?}"
    );
    // And nothing new goes to the expired enclave.
    let mut client = Http::open(
        &env.via(ports.proxy).route(ports.route),
        HOST,
        Mode::Originated,
    )
    .await;
    assert_eq!(client.get("/").await.status(), 502);
}

/// Reads one HTTP/1.1 response with a `content-length` body from `io`: its head and body.
async fn response_with_body<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = io.read(&mut byte).await.expect("read head");
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.expect("read body");
    (head, body)
}

/// icpt (the tunnel's HTTP/1 server writes flattened, `writev(false)`): requests pipelined
/// in one TLS write inside an intercepted tunnel get their answers whole and in order, a
/// multi-megabyte body among them (flattening copies bodies into hyper's buffer: no byte
/// lost, duplicated or reordered), read by a slow client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_a_large_body_inside_a_tunnel_arrive_whole_and_in_order() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let running = Harness::new(&env).enclave(HOST, good.addr()).start().await;
    let mut tls = tls_through(running.addr, HOST, &env.ca_pem()).await;
    let big = 5 * 1024 * 1024 + 123;
    let requests = format!(
        "GET /first HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /bytes?n={big} HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /third HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    tls.write_all(requests.as_bytes()).await.expect("write");
    tls.flush().await.expect("flush");
    let (head, body) = response_with_body(&mut tls).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("/first"),
        "first answered first"
    );
    // A slow reader: the proxy must hold back, not lose, what the client has not read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (head, body) = response_with_body(&mut tls).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body.len(), big);
    assert!(
        body.iter().all(|b| *b == b'x'),
        "the body arrives as the enclave sent it"
    );
    let (head, body) = response_with_body(&mut tls).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("/third"),
        "third answered third"
    );
}

/// Both branches leave the client TLS's versions, suites and ALPN alone: a TLS 1.2-only
/// client is still intercepted and served over HTTP/1.1 and HTTP/2, and a TLS 1.3 client
/// still negotiates TLS 1.3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_clients_are_still_intercepted_and_served() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let running = Harness::new(&env).enclave(HOST, good.addr()).start().await;
    for (version, alpn) in [
        (&rustls::version::TLS12, &b"http/1.1"[..]),
        (&rustls::version::TLS12, b"h2"),
        (&rustls::version::TLS13, b"http/1.1"),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(env.ca_pem()).expect("ca");
        let der = ratls_proxy::dcap::pki::pem_chain(&pem, "ca").expect("pem");
        roots.add(der[0].clone().into()).expect("root");
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let (head, tcp) = common::connect(running.addr, &format!("{HOST}:443")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let name = rustls::pki_types::ServerName::try_from(HOST.to_owned()).expect("name");
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{version:?} {alpn:?}: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let status = if alpn == b"h2" {
            use http_body_util::BodyExt;
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await
            .expect("h2");
            tokio::spawn(conn);
            let resp = send
                .send_request(
                    hyper::Request::get(format!("https://{HOST}/v12h2"))
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .expect("request"),
                )
                .await
                .expect("response");
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        } else {
            let mut tls = tls;
            let answer = common::ask_on(
                &mut tls,
                &format!("GET /v HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            if answer.starts_with("HTTP/1.1 200") {
                200
            } else {
                0
            }
        };
        assert_eq!(status, 200, "{version:?} {alpn:?}");
    }
}
