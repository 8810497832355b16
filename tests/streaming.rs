//! Bodies stream through the proxy in both directions, as produced and with back-pressure:
//! a slow chunked response reaches the client chunk by chunk before the enclave has written
//! its last (intercepted over HTTP/1.1 and HTTP/2, originated, on a route), and a large
//! upload goes through the real binary without its peak memory growing with the body, the
//! client held back while the enclave does not read.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use ratls_proxy::sim::{SimConfig, SimEnclave};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::http::Http;
use common::{ask_on, env, free_port, read_response, start_sim, tls_through, Harness, Via, MODES};

const HOST: &str = "good.enclave.test";

/// `/stream` chunks reach the client as the enclave writes them: the first is in hand while
/// the enclave has not yet written its last, in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_reaches_the_client_as_it_is_produced() {
    let env = env();
    let sim: SimEnclave = start_sim(&env, SimConfig::default()).await;
    let route_port = free_port();
    let running = Harness::new(&env)
        .enclave(HOST, sim.addr())
        .tail(&format!(
            "[[route]]\nlisten = \"127.0.0.1:{route_port}\"\nupstream = \"https://{HOST}\"\n"
        ))
        .start()
        .await;
    let (n, ms) = (4u64, 400u64);
    let via = Via::running(&running, &env.ca_pem());
    for (i, mode) in (0u64..).zip(MODES) {
        let mut client = Http::open(&via, HOST, mode).await;
        let resp = client.get(&format!("/stream?n={n}&ms={ms}")).await;
        assert_eq!(resp.status(), 200, "{mode:?}");
        let mut body = resp.into_body();
        let first = body
            .frame()
            .await
            .expect("a first chunk")
            .expect("data")
            .into_data()
            .expect("data");
        assert_eq!(&first[..], b"data: chunk 1 of 4\n\n", "{mode:?}");
        // The enclave has not written its last chunk yet (it does so (n-1)*ms after the first).
        assert_eq!(
            sim.streams_done(),
            i,
            "{mode:?}: first chunk before the last was written"
        );
        let mut chunks = vec![first];
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                chunks.push(data);
            }
        }
        let all: Vec<u8> = chunks.concat();
        let expected: String = (1..=n)
            .map(|c| format!("data: chunk {c} of {n}\n\n"))
            .collect();
        assert_eq!(String::from_utf8_lossy(&all), expected, "{mode:?}");
        assert_eq!(sim.streams_done(), i + 1);
    }
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

const UPLOAD: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

/// POSTs `UPLOAD` bytes to the sim's `/upload?ms=2000` over `io` (a socket to the proxy or
/// a TLS session inside a tunnel) in 64 KiB writes; returns the bytes written 1.2 s in,
/// while the enclave is not reading yet, and the answer.
async fn upload<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: T,
    target: &str,
) -> (u64, String) {
    let (mut rx, mut tx) = tokio::io::split(io);
    let head = format!(
        "POST {target}/upload?ms=2000 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {UPLOAD}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let written = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&written);
    let writer = tokio::spawn(async move {
        tx.write_all(head.as_bytes()).await.expect("head");
        const CHUNK: u64 = 64 * 1024;
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0u64;
        while sent < UPLOAD {
            tx.write_all(&chunk).await.expect("body");
            sent += CHUNK;
            count.store(sent, Ordering::Relaxed);
        }
        tx.flush().await.expect("flush");
        tx
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stalled = written.load(Ordering::Relaxed);
    let _tx = writer.await.expect("writer");
    let answer = tokio::time::timeout(Duration::from_secs(60), read_response(&mut rx))
        .await
        .expect("an answer");
    (stalled, answer)
}

/// A 64 MiB upload, originated and intercepted, goes through the real binary as a stream:
/// while the enclave does not read, the client is held back (back-pressure, not a buffer),
/// all of it arrives, and the proxy's peak RSS grows by far less than the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_with_back_pressure_and_flat_memory() {
    let env = env();
    let sim = start_sim(&env, SimConfig::default()).await;
    let proxy = free_port();
    let p = Harness::new(&env)
        .listen(proxy)
        .enclave(HOST, sim.addr())
        .start_binary("upload.toml")
        .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy));
    let pid = p.child.id();
    // Warm up: an attested connection, a tunnel and the minted leaf exist before measuring.
    let mut warm = TcpStream::connect(addr).await.expect("connect");
    let answer = ask_on(
        &mut warm,
        &format!("GET http://{HOST}/warm HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut tls = tls_through(addr, HOST, &env.ca_pem()).await;
    let answer = ask_on(
        &mut tls,
        &format!("GET /warm HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let before = peak_rss(pid);
    let originated = upload(warm, &format!("http://{HOST}")).await;
    let intercepted = upload(tls, "").await;
    let after = peak_rss(pid);
    for (mode, (stalled, answer)) in [("originated", originated), ("intercepted", intercepted)] {
        assert!(answer.starts_with("HTTP/1.1 200"), "{mode}: {answer}");
        assert!(
            answer.contains(&format!("{{\"bytes\":{UPLOAD}}}")),
            "{mode}: {answer}"
        );
        eprintln!(
            "{mode}: {} MiB accepted from the client while the enclave did not read",
            stalled / MIB
        );
        assert!(
            stalled < UPLOAD / 2,
            "{mode}: {stalled} bytes taken while the enclave did not read: no back-pressure"
        );
    }
    eprintln!(
        "proxy peak RSS {} MiB before, {} MiB after two {} MiB uploads",
        before / MIB,
        after / MIB,
        UPLOAD / MIB
    );
    assert!(
        after.saturating_sub(before) < 20 * MIB,
        "peak RSS grew from {before} to {after} bytes"
    );
}
