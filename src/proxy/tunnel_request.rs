//! One request inside an intercepted tunnel or on a sidecar route: a WebSocket upgrade goes
//! to `upgrade`, anything else to `relay`; either way it is logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use super::admit::ClientSlot;
use super::refusal::Format;
use super::relay::{access_log, as_configured, refuse, relay, Asked};
use super::state::{Generation, Proxy};
use super::target::Target;
use super::upgrade;
use super::ProxyBody;

/// One request inside an intercepted tunnel or on a sidecar route: relay and log it. A
/// WebSocket upgrade goes to [`upgrade::attested`] (its relay logs at close); any other
/// `Upgrade` is refused.
pub(super) async fn relay_logged(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    target: &Arc<Target>,
    client: SocketAddr,
    slot: &Arc<ClientSlot>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let format = Format::of(req.headers());
    let (resp, outcome) = match upgrade::requested(&req) {
        Ok(None) => {
            let asked = Asked {
                client,
                method: &method,
                path: &path,
                start,
            };
            let (resp, outcome) = relay(&proxy, &g, target, req, asked).await;
            (resp, Some(outcome))
        }
        Ok(Some(switch)) => {
            let from = upgrade::Client {
                addr: client,
                slot: Arc::clone(slot),
                start,
            };
            // Boxed: the upgrade's state is large and rare; inline it would size every
            // request's future, which hyper allocates once per connection for its whole life
            // (DHAT: 21.9 KB per idle intercepted connection).
            Box::pin(upgrade::attested(&proxy, &g, target, from, req, switch)).await
        }
        Err(refusal) => {
            let (resp, outcome) = refuse(refusal, &target.dest.host.to_string());
            (resp, Some(outcome))
        }
    };
    let Some(outcome) = outcome else {
        return Ok(resp);
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
    Ok(resp)
}
