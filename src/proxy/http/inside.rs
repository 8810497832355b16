//! One request inside a connection bound to one enclave, an intercepted tunnel or a sidecar
//! route: a WebSocket upgrade goes to `websocket::handshake`, anything else to `relay`;
//! either way it is logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HOST;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::addr::Authority;
use crate::proxy::body::ProxyBody;
use crate::proxy::client::admit::Admitted;
use crate::proxy::exchange::{Exchange, Reply};
use crate::proxy::http::relay::relay;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::target::Target;
use crate::proxy::websocket::handshake;

/// Where a request arrived: inside an intercepted tunnel (to the host it was opened for),
/// or on a sidecar route (to its one upstream, whatever `Host` says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inside {
    Tunnel,
    Route,
}

/// Why `req` is not relayed where it arrived, if so: a `CONNECT` other than an RFC 8441
/// WebSocket (405: the proxy would otherwise send it on as `CONNECT /`), or, in a tunnel, a
/// request whose `Host` or `:authority` (or absolute-form target) names another host or port
/// than the tunnel's (421, so the client opens a connection of its own for it). Names are
/// compared as [`Authority`] reads them (case, trailing dot, IP spellings, default port 443).
fn not_here(req: &Request<Incoming>, inside: Inside, target: &Target) -> Option<ProxyRefusal> {
    if req.method() == Method::CONNECT && req.extensions().get::<hyper::ext::Protocol>().is_none() {
        return Some(ProxyRefusal::MethodNotAllowed(
            "CONNECT is not relayed here: open a tunnel with the proxy itself".into(),
        ));
    }
    if inside == Inside::Route {
        return None;
    }
    let host = req.headers().get_all(HOST).into_iter().map(|v| v.to_str());
    let named = req
        .uri()
        .authority()
        .map(|a| Ok(a.as_str()))
        .into_iter()
        .chain(host);
    let tunnel = &target.dest;
    for name in named {
        // The tunnel's own spelling, byte for byte, is not parsed again: it was read back
        // as the tunnel's authority once, when the target was made (about 1,600
        // instructions per request; any other spelling is parsed and compared as before).
        if target.host_header_is_dest && name.as_ref().is_ok_and(|n| *n == target.host_header) {
            continue;
        }
        let other = match name.map(|n| Authority::parse(n, Some(443))) {
            Ok(Ok(a)) if a == *tunnel => continue,
            Ok(Ok(a)) => a.to_string(),
            _ => "an unreadable host".to_owned(),
        };
        return Some(ProxyRefusal::Misdirected(format!(
            "this tunnel is to {tunnel}, not {other}: open a connection for it"
        )));
    }
    None
}

/// One request inside an intercepted tunnel or on a sidecar route: relay and log it. A
/// WebSocket upgrade goes to [`handshake::attested`] (its relay logs at close); any other
/// `Upgrade` is refused, and so is what [`not_here`] refuses.
pub(crate) async fn serve(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    (target, inside): (&Arc<Target>, Inside),
    client: SocketAddr,
    admitted: &Arc<Admitted>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let exchange = Exchange::inside(client, &req);
    let asked = match not_here(&req, inside, target) {
        Some(refusal) => Err(refusal),
        None => handshake::requested(&req),
    };
    let reply = match asked {
        Ok(None) => relay(&proxy, &g, target, req, &exchange).await,
        // Boxed: the upgrade's state is large and rare; inline it would size every
        // request's future, which hyper allocates once per connection for its whole life
        // (DHAT: 21.9 KB per idle intercepted connection).
        Ok(Some(switch)) => {
            let admitted = Arc::clone(admitted);
            Box::pin(handshake::attested(
                &proxy, &g, target, &exchange, admitted, req, switch,
            ))
            .await
        }
        Err(refusal) => Reply::refused(refusal, target),
    };
    // A tunnel's or a route's destination is an enclave host.
    Ok(exchange.finish(&proxy, &g, reply.at_enclave()))
}
