//! Non-enclave destinations under `unmatched = "passthrough"`: a plain CONNECT tunnel
//! (bytes, not HTTP) and plain HTTP forwarding.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::admit::ClientSlot;
use super::empty;
use super::refusal::ProxyRefusal;
use super::relay::{refuse, Outcome, Verdict};
use super::rewrite::strip_hop_by_hop;
use super::state::Proxy;
use super::ProxyBody;
use crate::addr::Authority;

/// A plain TCP connection to a non-enclave destination, within the connect timeout.
async fn dial_plain(proxy: &Proxy, dest: &Authority) -> Result<TcpStream, ProxyRefusal> {
    let timeout = proxy.current().config.limits.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect(dest.to_string())).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ProxyRefusal::Unreachable(format!(
            "cannot connect to {dest}: {e}"
        ))),
        Err(_) => Err(ProxyRefusal::Timeout(format!(
            "no connection to {dest} within {}s",
            timeout.as_secs()
        ))),
    }
}

fn passed(host: String, started: Instant) -> Outcome {
    Outcome {
        host,
        verdict: Verdict::Passthrough,
        upstream: Some(started.elapsed()),
    }
}

/// A plain CONNECT tunnel to a non-enclave destination.
pub(super) async fn tunnel(
    proxy: &Arc<Proxy>,
    slot: Arc<ClientSlot>,
    req: Request<Incoming>,
    dest: &Authority,
) -> (Response<ProxyBody>, Outcome) {
    let host = dest.host.to_string();
    let started = Instant::now();
    let mut upstream = match dial_plain(proxy, dest).await {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal, &host),
    };
    let _ = upstream.set_nodelay(true);
    // Bytes, not HTTP, from here on: no request head to time.
    slot.phase.off();
    let p = Arc::clone(proxy);
    tokio::spawn(async move {
        let _slot = slot;
        let _tunnel = p.drain.enter();
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            if let Ok((up, down)) =
                tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await
            {
                p.metrics
                    .bytes_to_upstreams
                    .fetch_add(up, Ordering::Relaxed);
                p.metrics
                    .bytes_to_clients
                    .fetch_add(down, Ordering::Relaxed);
            }
        }
    });
    (Response::new(empty()), passed(host, started))
}

/// Forwards a plain HTTP request to a non-enclave destination.
pub(super) async fn plain_http(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    dest: &Authority,
) -> (Response<ProxyBody>, Outcome) {
    let host = dest.host.to_string();
    let started = Instant::now();
    let tcp = match dial_plain(proxy, dest).await {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal, &host),
    };
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => return refuse(ProxyRefusal::Unreachable(format!("{dest}: {e}")), &host),
    };
    tokio::spawn(conn);
    strip_hop_by_hop(req.headers_mut());
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(p) = path.parse() {
        *req.uri_mut() = p;
    }
    *req.version_mut() = http::Version::HTTP_11;
    match send.send_request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            (resp.map(BodyExt::boxed), passed(host, started))
        }
        Err(e) => refuse(ProxyRefusal::Unreachable(format!("{dest}: {e}")), &host),
    }
}
