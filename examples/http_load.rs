//! A small closed-loop HTTP/1.1 load generator for `bench/entries.sh` where `oha` is not
//! installed: CONNS keep-alive connections to the proxy, each sending `GET http://HOST/`
//! (origination) one after another for SECS seconds; prints requests/s and the status counts.
//!
//! `cargo run --release --example http_load -- PROXY_ADDR HOST [CONNS] [SECS]`

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One connection's answered requests: (2xx, other).
async fn connection(proxy: String, host: String, until: Instant) -> (u64, u64) {
    let (mut ok, mut other) = (0u64, 0u64);
    // A connection the proxy closed is opened again: every request counts until the end.
    while Instant::now() < until {
        let Ok(tcp) = TcpStream::connect(&proxy).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            let Ok(req) = hyper::Request::get(format!("http://{host}/"))
                .header(hyper::header::HOST, &host)
                .body(Empty::<Bytes>::new())
            else {
                return (ok, other);
            };
            let Ok(resp) = send.send_request(req).await else {
                break;
            };
            let good = resp.status().is_success();
            if resp.into_body().collect().await.is_err() {
                break;
            }
            if good {
                ok += 1;
            } else {
                other += 1;
            }
        }
    }
    (ok, other)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(proxy), Some(host)) = (args.first(), args.get(1)) else {
        eprintln!("usage: http_load PROXY_ADDR HOST [CONNS] [SECS]");
        std::process::exit(2);
    };
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection(proxy.clone(), host.clone(), until)))
        .collect();
    let (mut ok, mut other) = (0u64, 0u64);
    for t in tasks {
        if let Ok((o, x)) = t.await {
            ok += o;
            other += x;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{:.0}\t{ok}\t{other}",
        f64::from(u32::try_from(ok).unwrap_or(u32::MAX)) / elapsed
    );
}
