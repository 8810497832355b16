//! One request on the proxy listener: parse its destination once into an [`Authority`],
//! then CONNECT → intercept (enclave host), tunnel or deny; absolute-form `http://` →
//! originate attested TLS (enclave host), forward or deny.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::client::admit::Admitted;
use super::connect::intercept::intercept;
use super::connect::refused::refused_connect;
use super::exchange::{Exchange, Named, Reply};
use super::http::relay::relay;
use super::passthrough::http::plain_http;
use super::passthrough::tunnel::tunnel;
use super::refusal::ProxyRefusal;
use super::state::{Destination, Generation, Proxy};
use super::target::Target;
use super::websocket::handshake;
use crate::addr::Authority;
use crate::appraise::refusal::RefusalCode;
use crate::config::Unmatched;

/// Entry point for every request on the proxy listener.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    admitted: Arc<Admitted>,
    last: &LastTarget,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let _inflight = proxy.drain.enter();
    let exchange = Exchange::on_listener(client, &req);
    let g = proxy.current();
    let reply = if req.method() == Method::CONNECT {
        connect(Arc::clone(&proxy), Arc::clone(&g), admitted, client, req).await
    } else {
        forward(&proxy, &g, &exchange, admitted, last, req).await
    };
    exchange.finish(&proxy, &g, reply)
}

/// CONNECT: intercept enclave hosts after attestation; pass through or deny the rest.
async fn connect(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    admitted: Arc<Admitted>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let Some(authority) = req.uri().authority().cloned() else {
        return Reply::refused(
            ProxyRefusal::BadRequest("CONNECT needs host:port".into()),
            Named::Nothing,
        );
    };
    let dest = match Authority::parse(authority.as_str(), None) {
        Ok(dest) => dest,
        Err(e) => {
            return Reply::refused(
                ProxyRefusal::BadRequest(format!("CONNECT {e}")),
                Named::Raw(authority.as_str().to_owned()),
            )
        }
    };
    match g.classify(&dest) {
        Destination::Enclave(target) => intercept(proxy, g, admitted, client, req, target)
            .await
            .at_enclave(),
        // An enclave host is refused here as after a failed attestation: a browser gets the
        // page inside the tunnel, under the leaf minted for the host it named.
        Destination::EnclaveOtherPort => {
            let refusal = port_refusal(&dest);
            refused_connect(&proxy, &g, admitted, client, req, refusal, &dest).at_enclave()
        }
        Destination::Other => match g.config.unmatched {
            Unmatched::Deny => Reply::refused(
                ProxyRefusal::DestinationDenied(format!(
                    "{dest} is not a configured enclave host and unmatched = \"deny\""
                )),
                &dest,
            ),
            Unmatched::Passthrough => tunnel(&proxy, &g, admitted, req, &dest).await,
        },
    }
}

/// Absolute-form requests: originate attested TLS to enclave hosts; forward or deny the rest.
/// A WebSocket upgrade is relayed the same way (its relay finishes the exchange at close).
async fn forward(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    exchange: &Exchange,
    admitted: Arc<Admitted>,
    last: &LastTarget,
    req: Request<Incoming>,
) -> Reply {
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Reply::refused(ProxyRefusal::BadRequest("this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT".into()),
            Named::Nothing,
        );
    };
    // `ws://` is `http://` on the wire (RFC 6455 3): clients send the handshake as http.
    if scheme != "http" {
        return Reply::refused(
            ProxyRefusal::BadRequest(format!(
                "scheme `{scheme}` is not supported: use CONNECT for https"
            )),
            Named::Raw(authority.as_str().to_owned()),
        );
    }
    let switch = match handshake::requested(&req) {
        Ok(switch) => switch,
        Err(refusal) => return Reply::refused(refusal, Named::Raw(authority.as_str().to_owned())),
    };
    if let Some(target) = last.get(g, authority.as_str()) {
        drop(uri); // Before the relay, as below.
        return originate(proxy, g, exchange, admitted, req, switch, &target).await;
    }
    // An enclave host named over http:// gets attested TLS to the given port, 443 if none.
    let explicit_port = authority.port_u16();
    let dest = match Authority::parse(authority.as_str(), Some(443)) {
        Ok(dest) => dest,
        Err(e) => {
            let named = Named::Raw(authority.as_str().to_owned());
            return Reply::refused(ProxyRefusal::BadRequest(e), named);
        }
    };
    let enclave = match g.classify(&dest) {
        Destination::Enclave(target) => {
            let target = Arc::new(target);
            last.set(g, authority.as_str(), &target);
            Some(target)
        }
        Destination::EnclaveOtherPort => return port_not_configured(&dest),
        Destination::Other => None,
    };
    // The URI's parts are slices of the client connection's read buffer: held across the
    // relay below, they made hyper allocate (and the allocator fault in) a fresh 8 KiB read
    // buffer for every request on the connection.
    drop(uri);
    if let Some(target) = enclave {
        return originate(proxy, g, exchange, admitted, req, switch, &target).await;
    }
    // Plain HTTP goes to the given port, 80 if none; an enclave host at that port is
    // still an enclave host.
    let plain = Authority {
        port: explicit_port.unwrap_or(80),
        ..dest
    };
    if !matches!(g.classify(&plain), Destination::Other) {
        return port_not_configured(&plain);
    }
    match g.config.unmatched {
        Unmatched::Deny => Reply::refused(
            ProxyRefusal::RequestDenied(format!(
                "{} is not a configured enclave host and unmatched = \"deny\"",
                plain.host
            )),
            &plain,
        ),
        Unmatched::Passthrough => {
            let switching = switch.map(|_| admitted);
            plain_http(proxy, g, req, &plain, switching).await
        }
    }
}

/// An absolute-form request to the enclave `target`: relayed over attested TLS, or a
/// WebSocket handshake.
async fn originate(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    exchange: &Exchange,
    admitted: Arc<Admitted>,
    req: Request<Incoming>,
    switch: Option<handshake::Switch>,
    target: &Arc<Target>,
) -> Reply {
    match switch {
        // Boxed, as in a tunnel: rare, and large inline in every request's future.
        Some(switch) => Box::pin(handshake::attested(
            proxy, g, target, exchange, admitted, req, switch,
        ))
        .await
        .at_enclave(),
        None => relay(proxy, g, target, req, exchange).await.at_enclave(),
    }
}

/// A host an enclave entry names, at a port no entry lists: refused, never tunnelled.
fn port_not_configured(dest: &Authority) -> Reply {
    Reply::refused(port_refusal(dest), dest).at_enclave()
}

fn port_refusal(dest: &Authority) -> ProxyRefusal {
    ProxyRefusal::Destination(
        RefusalCode::EnclavePortNotConfigured,
        format!("{} is an enclave host, but no [[enclave]] entry lists port {}: it is attested at its configured ports or refused", dest.host, dest.port),
    )
}

/// The enclave target a client connection's last absolute-form request resolved to, and
/// under which generation: a keep-alive client originating to one host names the same
/// authority on every request, and resolving it again (parse, entry lookup, a new
/// [`Target`] with three strings) was per-request work the sidecar route does not do. Only
/// the same authority bytes under the same generation reuse it: a target carries its
/// generation's entry and verifier, which the pool and the judge trust, so one from before
/// a reload would be judged by the old policy (tests/origination_keepalive.rs).
#[derive(Default)]
pub(crate) struct LastTarget(Mutex<Option<Resolved>>);

struct Resolved {
    /// Held weakly: a connection does not keep a replaced generation alive, and while the
    /// weak reference lives its address is not reused by a newer one.
    generation: Weak<Generation>,
    /// The request's authority as the client wrote it (owned: a slice of the request would
    /// pin the connection's read buffer).
    authority: Box<str>,
    target: Arc<Target>,
}

impl LastTarget {
    /// The target `authority` resolved to under `g`, if it was the last one resolved here.
    pub(crate) fn get(&self, g: &Arc<Generation>, authority: &str) -> Option<Arc<Target>> {
        let last = self.0.lock().ok()?;
        let r = last.as_ref()?;
        (std::ptr::eq(r.generation.as_ptr(), Arc::as_ptr(g)) && *r.authority == *authority)
            .then(|| Arc::clone(&r.target))
    }

    /// Remembers that `authority` resolved to `target` under `g`.
    pub(crate) fn set(&self, g: &Arc<Generation>, authority: &str, target: &Arc<Target>) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(Resolved {
                generation: Arc::downgrade(g),
                authority: authority.into(),
                target: Arc::clone(target),
            });
        }
    }
}
