//! One request on the proxy listener: parse its destination once into an [`Authority`],
//! then CONNECT → intercept (enclave host), tunnel or deny; absolute-form `http://` →
//! originate attested TLS (enclave host), forward or deny.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::client::admit::Admitted;
use super::connect::intercept::intercept;
use super::connect::refused::refused_connect;
use super::exchange::{access_log, as_configured, at_enclave, refuse, Asked, Outcome};
use super::http::relay::relay;
use super::passthrough::http::plain_http;
use super::passthrough::tunnel::tunnel;
use super::refusal::{Format, ProxyRefusal};
use super::state::{Destination, Generation, Proxy};
use super::websocket::handshake::{self, Client};
use crate::addr::Authority;
use crate::appraise::refusal::RefusalCode;
use crate::config::Unmatched;

/// Entry point for every request on the proxy listener.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    admitted: Arc<Admitted>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let _inflight = proxy.drain.enter();
    let start = Instant::now();
    let method = req.method().clone();
    let path = if method == Method::CONNECT {
        String::new()
    } else {
        req.uri().path().to_owned()
    };
    let g = proxy.current();
    // A CONNECT's refusal stays JSON (or becomes the page inside its tunnel): a browser never
    // shows a failed CONNECT's body, and other clients keep today's answer.
    let format = if method == Method::CONNECT {
        Format::Json
    } else {
        Format::of(req.headers())
    };
    let (resp, outcome) = if method == Method::CONNECT {
        let (resp, outcome) =
            connect(Arc::clone(&proxy), Arc::clone(&g), admitted, client, req).await;
        (resp, Some(outcome))
    } else {
        let from = Client {
            addr: client,
            admitted,
            start,
        };
        forward(&proxy, &g, from, req, &path).await
    };
    // A switched connection (WebSocket) is logged by its relay when it closes.
    let Some(outcome) = outcome else {
        return resp;
    };
    let resp = as_configured(&g, resp, &outcome, format);
    access_log(
        &proxy,
        client,
        &outcome,
        &method,
        &path,
        resp.status(),
        start,
    );
    resp
}

/// CONNECT: intercept enclave hosts after attestation; pass through or deny the rest.
async fn connect(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    admitted: Arc<Admitted>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Outcome) {
    let Some(authority) = req.uri().authority().cloned() else {
        return refuse(
            ProxyRefusal::BadRequest("CONNECT needs host:port".into()),
            "-",
        );
    };
    let dest = match Authority::parse(authority.as_str(), None) {
        Ok(dest) => dest,
        Err(e) => {
            return refuse(
                ProxyRefusal::BadRequest(format!("CONNECT {e}")),
                authority.as_str(),
            )
        }
    };
    match g.classify(&dest) {
        Destination::Enclave(target) => {
            at_enclave(intercept(proxy, g, admitted, client, req, target).await)
        }
        // An enclave host is refused here as after a failed attestation: a browser gets the
        // page inside the tunnel, under the leaf minted for the host it named.
        Destination::EnclaveOtherPort => {
            let host = dest.host.to_string();
            let refusal = port_refusal(&dest);
            at_enclave(refused_connect(
                &proxy, &g, admitted, client, req, refusal, &host,
            ))
        }
        Destination::Other => match g.config.unmatched {
            Unmatched::Deny => refuse(
                ProxyRefusal::DestinationDenied(format!(
                    "{dest} is not a configured enclave host and unmatched = \"deny\""
                )),
                &dest.host.to_string(),
            ),
            Unmatched::Passthrough => tunnel(&proxy, &g, admitted, req, &dest).await,
        },
    }
}

/// Absolute-form requests: originate attested TLS to enclave hosts; forward or deny the rest.
/// A WebSocket upgrade is relayed the same way (its outcome is then logged at close: `None`).
async fn forward(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    client: Client,
    req: Request<Incoming>,
    path: &str,
) -> (Response<ProxyBody>, Option<Outcome>) {
    let now = |(resp, outcome)| (resp, Some(outcome));
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return now(refuse(ProxyRefusal::BadRequest("this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT".into()),
            "-",
        ));
    };
    // `ws://` is `http://` on the wire (RFC 6455 3): clients send the handshake as http.
    if scheme != "http" {
        return now(refuse(
            ProxyRefusal::BadRequest(format!(
                "scheme `{scheme}` is not supported: use CONNECT for https"
            )),
            authority.as_str(),
        ));
    }
    let switch = match handshake::requested(&req) {
        Ok(switch) => switch,
        Err(refusal) => return now(refuse(refusal, authority.as_str())),
    };
    // An enclave host named over http:// gets attested TLS to the given port, 443 if none.
    let explicit_port = authority.port_u16();
    let dest = match Authority::parse(authority.as_str(), Some(443)) {
        Ok(dest) => dest,
        Err(e) => return now(refuse(ProxyRefusal::BadRequest(e), authority.as_str())),
    };
    // The URI's parts are slices of the client connection's read buffer: held across the
    // relay below, they made hyper allocate (and the allocator fault in) a fresh 8 KiB read
    // buffer for every request on the connection.
    drop(uri);
    match g.classify(&dest) {
        Destination::Enclave(target) => {
            let target = Arc::new(target);
            return match switch {
                // Boxed, as in a tunnel: rare, and large inline in every request's future.
                Some(switch) => {
                    let (resp, outcome) =
                        Box::pin(handshake::attested(proxy, g, &target, client, req, switch)).await;
                    (resp, outcome.map(Outcome::at_enclave))
                }
                None => {
                    let method = req.method().clone();
                    let asked = Asked {
                        client: client.addr,
                        method: &method,
                        path,
                        start: client.start,
                    };
                    now(at_enclave(relay(proxy, g, &target, req, asked).await))
                }
            };
        }
        Destination::EnclaveOtherPort => return now(port_not_configured(&dest)),
        Destination::Other => {}
    }
    // Plain HTTP goes to the given port, 80 if none; an enclave host at that port is
    // still an enclave host.
    let plain = Authority {
        port: explicit_port.unwrap_or(80),
        ..dest
    };
    if !matches!(g.classify(&plain), Destination::Other) {
        return now(port_not_configured(&plain));
    }
    match g.config.unmatched {
        Unmatched::Deny => now(refuse(
            ProxyRefusal::RequestDenied(format!(
                "{} is not a configured enclave host and unmatched = \"deny\"",
                plain.host
            )),
            &plain.host.to_string(),
        )),
        Unmatched::Passthrough => {
            let switching = switch.map(|_| client);
            plain_http(proxy, g, req, &plain, switching).await
        }
    }
}

/// A host an enclave entry names, at a port no entry lists: refused, never tunnelled.
fn port_not_configured(dest: &Authority) -> (Response<ProxyBody>, Outcome) {
    at_enclave(refuse(port_refusal(dest), &dest.host.to_string()))
}

fn port_refusal(dest: &Authority) -> ProxyRefusal {
    ProxyRefusal::Destination(
        RefusalCode::EnclavePortNotConfigured,
        format!("{} is an enclave host, but no [[enclave]] entry lists port {}: it is attested at its configured ports or refused", dest.host, dest.port),
    )
}
