//! An intercepted client that sends its TLS ClientHello right behind its CONNECT, before the
//! proxy's 200: the bytes hyper read past the CONNECT head must reach the client's TLS session,
//! whatever carries that session's I/O (a guard for attempts to bypass hyper's upgrade wrapper).

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::{env, start_sim_with, trusting, Harness};

/// The whole exchange on a blocking socket: CONNECT and ClientHello in one write, the 200 read
/// a byte at a time (so no TLS byte is taken with it), then a request through the session.
fn pipelined_hello(proxy: std::net::SocketAddr, ca: &std::path::Path) -> (String, String) {
    let host = "good.enclave.test";
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("name");
    let mut tls = rustls::ClientConnection::new(trusting(ca, &[b"http/1.1"]), name).expect("tls");
    let mut first = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").into_bytes();
    tls.write_tls(&mut first).expect("client hello");
    let mut tcp = std::net::TcpStream::connect(proxy).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(&first).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("the CONNECT's answer");
        head.push(byte[0]);
    }
    let mut session = rustls::Stream::new(&mut tls, &mut tcp);
    session
        .write_all(
            format!("GET /early HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("request");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("/early") {
        match session.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    (
        String::from_utf8_lossy(&head).into_owned(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_sent_behind_the_connect_head_is_not_lost() {
    let env = env();
    let good = start_sim_with(&env, |_| {}).await;
    let running = Harness::new(&env)
        .listen(0)
        .enclave("good.enclave.test", good.addr())
        .start()
        .await;
    let (proxy, ca) = (running.addr, env.ca_pem());
    let (head, answer) = tokio::task::spawn_blocking(move || pipelined_hello(proxy, &ca))
        .await
        .expect("client");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("/early"), "{answer}");
}
