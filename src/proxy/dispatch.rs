//! One request on the proxy listener: parse its destination once into an [`Authority`],
//! then CONNECT → intercept (enclave host), tunnel or deny; absolute-form `http://` →
//! originate attested TLS (enclave host), forward or deny.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::admit::ClientSlot;
use super::intercept::intercept;
use super::passthrough::{plain_http, tunnel};
use super::refusal::ProxyRefusal;
use super::relay::{access_log, refuse, relay, Outcome};
use super::state::{Generation, Proxy};
use super::ProxyBody;
use crate::addr::Authority;
use crate::config::Unmatched;

/// Entry point for every request on the proxy listener.
pub(super) async fn handle(
    proxy: Arc<Proxy>,
    slot: Arc<ClientSlot>,
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
    let (resp, outcome) = if method == Method::CONNECT {
        connect(Arc::clone(&proxy), g, slot, client, req).await
    } else {
        forward(&proxy, &g, req).await
    };
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
    slot: Arc<ClientSlot>,
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
    match g.target(&dest) {
        Some(target) => intercept(proxy, g, slot, client, req, target).await,
        None => match g.config.unmatched {
            Unmatched::Deny => refuse(
                ProxyRefusal::DestinationDenied(format!(
                    "{dest} is not a configured enclave host and unmatched = \"deny\""
                )),
                &dest.host.to_string(),
            ),
            Unmatched::Passthrough => tunnel(&proxy, slot, req, &dest).await,
        },
    }
}

/// Absolute-form requests: originate attested TLS to enclave hosts; forward or deny the rest.
async fn forward(
    proxy: &Proxy,
    g: &Generation,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Outcome) {
    let uri = req.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return refuse(ProxyRefusal::BadRequest("this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT".into()),
            "-",
        );
    };
    if scheme != "http" {
        return refuse(
            ProxyRefusal::BadRequest(format!(
                "scheme `{scheme}` is not supported: use CONNECT for https"
            )),
            authority.as_str(),
        );
    }
    // An enclave host named over http:// gets attested TLS to the given port, 443 if none.
    let explicit_port = authority.port_u16();
    let dest = match Authority::parse(authority.as_str(), Some(443)) {
        Ok(dest) => dest,
        Err(e) => return refuse(ProxyRefusal::BadRequest(e), authority.as_str()),
    };
    if let Some(target) = g.target(&dest) {
        return relay(proxy, g, &target, req.map(BodyExt::boxed)).await;
    }
    match g.config.unmatched {
        Unmatched::Deny => refuse(
            ProxyRefusal::RequestDenied(format!(
                "{} is not a configured enclave host and unmatched = \"deny\"",
                dest.host
            )),
            &dest.host.to_string(),
        ),
        Unmatched::Passthrough => {
            let plain = Authority {
                port: explicit_port.unwrap_or(80),
                ..dest
            };
            plain_http(proxy, req, &plain).await
        }
    }
}
