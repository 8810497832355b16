//! Non-enclave destinations under `unmatched = "passthrough"`: a plain CONNECT tunnel
//! (bytes, not HTTP) and plain HTTP forwarding.

use std::net::{IpAddr, SocketAddr};
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
use super::pool::UpstreamOpen;
use super::refusal::{from_upstream, ProxyRefusal};
use super::relay::{refuse, Outcome, Verdict, ATTESTATION_HEADER};
use super::rewrite::strip_hop_by_hop;
use super::state::{Generation, Proxy};
use super::upgrade::{ask_websocket, Client};
use super::upgraded::Switched;
use super::{BodyError, ProxyBody};
use crate::addr::{Authority, Host};
use crate::appraise::refusal::RefusalCode;

/// Whether `ip` is one the default configuration never lets passthrough reach.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_multicast() || v6.is_unicast_link_local(),
    }
}

/// Whether `ip` is unspecified: `0.0.0.0/8` ("this host on this network", RFC 1122) or `::`.
/// Linux connects `0.0.0.0` (and `::`) to this host, on whatever local address a listener
/// has, so such a destination is refused whatever `allow_local_destinations` says: it is
/// never needed (name `127.0.0.1`), and reading it as loopback would still miss listeners on
/// other local addresses and depend on the kernel. (IPv4-mapped forms arrive as IPv4.)
fn is_unspecified(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// Why `addr` (one address `dest` resolved to) may not be reached by passthrough, if so.
fn forbidden(
    proxy: &Proxy,
    g: &Generation,
    dest: &Authority,
    addr: SocketAddr,
) -> Option<ProxyRefusal> {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if is_unspecified(ip) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::LocalDestinationDenied,
            format!("{dest} is an unspecified address (this host): never a destination"),
        ));
    }
    if g.is_enclave_address(&Host::Ip(ip), addr.port()) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::EnclaveAddressNotAttested,
            format!(
                "{dest} is an address of an enclave entry: it is reached only by name, attested"
            ),
        ));
    }
    // The proxy's own listeners are never a destination: a request looping back to the
    // admin listener would carry the admin's own Host.
    let own = proxy
        .own_addrs()
        .into_iter()
        .any(|o| o.port() == addr.port() && (o.ip() == ip || o.ip().is_unspecified()));
    if own || (is_local(ip) && !g.config.allow_local_destinations) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::LocalDestinationDenied,
            format!("{dest} is a local destination (loopback, link-local, unspecified, multicast or the proxy itself)"),
        ));
    }
    None
}

/// A plain TCP connection to a non-enclave destination, within the connect timeout: the
/// name is resolved once, every address is checked, and only a checked one is dialled.
async fn dial_plain(
    proxy: &Proxy,
    g: &Generation,
    dest: &Authority,
) -> Result<(TcpStream, UpstreamOpen), ProxyRefusal> {
    // A client decides how long a tunnel (or a plain exchange) lasts: a share, checked first.
    let held = g.pool.hold(dest).map_err(from_upstream)?;
    let permit = g.pool.upstream_permit(dest).await.map_err(from_upstream)?;
    let open = UpstreamOpen::new(&proxy.metrics, permit).holding(held);
    let timeout = g.config.limits.connect_timeout;
    let attempt = async {
        if let Host::Name(name) = &dest.host {
            if g.is_enclave_address(&dest.host, dest.port) {
                return Err(ProxyRefusal::Destination(
                    RefusalCode::EnclaveAddressNotAttested,
                    format!(
                        "{name} is the address of an enclave entry: it is reached only attested"
                    ),
                ));
            }
        }
        let addrs: Vec<SocketAddr> = match &dest.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, dest.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), dest.port))
                .await
                .map_err(|e| ProxyRefusal::Unreachable(format!("cannot resolve {dest}: {e}")))?
                .collect(),
        };
        let mut refusal = None;
        let mut last_error = None;
        for addr in addrs {
            if let Some(r) = forbidden(proxy, g, dest, addr) {
                refusal.get_or_insert(r);
                continue;
            }
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match (last_error, refusal) {
            (Some(e), _) => ProxyRefusal::Unreachable(format!("cannot connect to {dest}: {e}")),
            (None, Some(r)) => r,
            (None, None) => ProxyRefusal::Unreachable(format!("{dest} resolves to no address")),
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map(|tcp| (tcp, open)),
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
        enclave: false,
    }
}

/// A plain CONNECT tunnel to a non-enclave destination.
pub(super) async fn tunnel(
    proxy: &Arc<Proxy>,
    g: &Generation,
    slot: Arc<ClientSlot>,
    req: Request<Incoming>,
    dest: &Authority,
) -> (Response<ProxyBody>, Outcome) {
    let host = dest.host.to_string();
    let started = Instant::now();
    let (mut upstream, open) = match dial_plain(proxy, g, dest).await {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal, &host),
    };
    let _ = upstream.set_nodelay(true);
    // Bytes, not HTTP, from here on: no request head to time.
    slot.phase.off();
    let p = Arc::clone(proxy);
    tokio::spawn(async move {
        let _slot = slot;
        let _open = open;
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

/// Forwards a plain HTTP request to a non-enclave destination; with `switching`, a
/// WebSocket upgrade whose `101` switches the connection to a byte relay (logged at close:
/// the outcome is then `None`).
pub(super) async fn plain_http(
    proxy: &Arc<Proxy>,
    g: &Generation,
    mut req: Request<Incoming>,
    dest: &Authority,
    switching: Option<Client>,
) -> (Response<ProxyBody>, Option<Outcome>) {
    let host = dest.host.to_string();
    let refused = |refusal| {
        let (resp, outcome) = refuse(refusal, &host);
        (resp, Some(outcome))
    };
    let started = Instant::now();
    let (tcp, open) = match dial_plain(proxy, g, dest).await {
        Ok(s) => s,
        Err(refusal) => return refused(refusal),
    };
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => return refused(ProxyRefusal::Unreachable(format!("{dest}: {e}"))),
    };
    // Shared by the HTTP driver and, after a switch, the relay of the upgraded bytes.
    let open = Arc::new(open);
    let held = Arc::clone(&open);
    tokio::spawn(async move {
        let _open = held;
        let _ = conn.with_upgrades().await;
    });
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let from_client = switching.as_ref().map(|_| hyper::upgrade::on(&mut req));
    strip_hop_by_hop(req.headers_mut());
    if switching.is_some() {
        ask_websocket(req.headers_mut());
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(p) = target.parse() {
        *req.uri_mut() = p;
    }
    *req.version_mut() = http::Version::HTTP_11;
    let mut resp = match send.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => return refused(ProxyRefusal::Unreachable(format!("{dest}: {e}"))),
    };
    strip_hop_by_hop(resp.headers_mut());
    // A plain server does not get to speak for an enclave.
    resp.headers_mut().remove(ATTESTATION_HEADER);
    let relayed = |resp: Response<Incoming>| resp.map(|b| b.map_err(BodyError::from).boxed());
    let (Some(client), Some(from_client)) = (switching, from_client) else {
        return (relayed(resp), Some(passed(host, started)));
    };
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return (relayed(resp), Some(passed(host, started)));
    }
    let mut answer = Response::new(empty());
    *answer.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = resp.headers().clone();
    ask_websocket(answer.headers_mut());
    client.slot.phase.off();
    let relay = Switched {
        proxy: Arc::clone(proxy),
        client: client.addr,
        slot: client.slot,
        from_client,
        from_upstream: hyper::upgrade::on(&mut resp),
        judge: None,
        open,
        outcome: passed(host, started),
        method,
        path,
        status: answer.status(),
        start: client.start,
    };
    tokio::spawn(relay.run());
    (answer, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Authority;

    #[test]
    fn every_spelling_of_an_unspecified_address_is_unspecified() {
        for spelling in [
            "0",
            "0x0",
            "00",
            "0.0",
            "0.0.0.0",
            "0.0.0.1",
            "0.255.255.255",
            "[::]",
            "[0:0:0:0:0:0:0:0]",
            "[::ffff:0.0.0.0]",
            "[::ffff:0:0]",
        ] {
            let dest = Authority::parse(&format!("{spelling}:80"), None).expect(spelling);
            let Host::Ip(ip) = dest.host else {
                panic!("{spelling} is an address");
            };
            assert!(is_unspecified(ip), "{spelling}");
        }
        for other in ["1.0.0.0", "127.0.0.1", "[::1]", "10.0.0.1"] {
            let dest = Authority::parse(&format!("{other}:80"), None).expect(other);
            let Host::Ip(ip) = dest.host else {
                panic!("{other} is an address");
            };
            assert!(!is_unspecified(ip), "{other}");
        }
    }
}
