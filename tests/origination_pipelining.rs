//! Review 5 (adversarial), through the real binary on a raw TCP connection: HTTP/1.1
//! pipelining of absolute-form requests to two enclave hosts on one client connection, so
//! the per-connection `LastTarget` memory (issue 30) is consulted on every request while the
//! authority changes under it: case, the default port spelled, a client `Host` naming the
//! other host. Each answer must come from the enclave its own request's authority names
//! (the sims' echoes name their MRENCLAVE), in order, never the previous request's.

#![cfg(feature = "sim")]

mod common;

use std::time::Duration;

use ratls_proxy::dcap::ids::MrEnclave;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{env, start_sim_with, Harness, Ports, TRUSTED};

const B: &str = "e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_each_reach_their_own_authoritys_enclave() {
    let env = env();
    let a = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe1; 32])).await;
    let b = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe2; 32])).await;
    let ports = Ports::free();
    let _proxy = Harness::new(&env)
        .ports(ports)
        .top("unmatched = \"deny\"")
        .enclave_with(&["a.test"], a.addr(), TRUSTED, "")
        .enclave_with(&["b.test"], b.addr(), B, "")
        .start_binary("origination-pipelining.toml")
        .await;

    // (authority in the request line, Host header sent, the enclave expected)
    let plan: [(&str, Option<&str>, &str); 8] = [
        ("a.test", Some("b.test"), TRUSTED),
        ("a.test", Some("a.test"), TRUSTED),
        ("b.test", Some("a.test"), B),
        ("B.TEST", None, B),
        ("a.test:443", Some("b.test"), TRUSTED),
        ("b.test:443", Some("b.test:443"), B),
        ("A.test", Some("b.test"), TRUSTED),
        ("b.test", Some("a.test"), B),
    ];
    let mut wire = String::new();
    for (i, (authority, host, _)) in plan.iter().enumerate() {
        wire.push_str(&format!("GET http://{authority}/r{i} HTTP/1.1\r\n"));
        if let Some(h) = host {
            wire.push_str(&format!("Host: {h}\r\n"));
        }
        if i + 1 == plan.len() {
            wire.push_str("Connection: close\r\n");
        }
        wire.push_str("\r\n");
    }
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", ports.proxy))
        .await
        .expect("connect");
    tcp.write_all(wire.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut got))
        .await
        .expect("answers within a minute")
        .expect("read");
    let text = String::from_utf8_lossy(&got);
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), plan.len(), "{text}");
    for (i, ((authority, host, want), answer)) in plan.iter().zip(&answers).enumerate() {
        assert!(
            answer.starts_with("200"),
            "#{i} {authority} (Host {host:?}): {answer}"
        );
        assert!(
            answer.contains(&format!("\"mrenclave\":\"{want}\"")),
            "#{i} {authority} (Host {host:?}) reached the wrong enclave: {answer}"
        );
        assert!(
            answer.contains(&format!("\"path\":\"/r{i}\"")),
            "#{i}: {answer}"
        );
        // What the enclave was told it is: never the client's other host.
        let own = authority
            .split(':')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if answer.contains("\"host\":") {
            assert!(
                answer.contains(&format!("\"host\":\"{own}\"")),
                "#{i} {authority}: upstream Host is not the verified target: {answer}"
            );
        }
    }
    assert_eq!(a.request_count() + b.request_count(), 8);
    assert_eq!(a.request_count(), 4);
}
