//! Plain HTTP forwarding to a non-enclave destination under `unmatched = "passthrough"`
//! (a WebSocket upgrade included: its `101` switches the connection to a byte relay).

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::addr::Authority;
use crate::proxy::body::{empty, BodyError};
use crate::proxy::client::admit::Admitted;
use crate::proxy::exchange::{Outcome, Reply};
use crate::proxy::passthrough::dial::dial_plain;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::upstream::rewrite::{strip_hop_by_hop, ATTESTATION_HEADER};
use crate::proxy::websocket::handshake::ask_websocket;
use crate::proxy::websocket::pipe::Pipe;

/// Forwards a plain HTTP request to a non-enclave destination; with `switching` (the
/// client's admission, which the relay keeps), a WebSocket upgrade whose `101` switches the
/// connection to a byte relay (which finishes the exchange at close).
pub(crate) async fn plain_http(
    proxy: &Arc<Proxy>,
    g: &Generation,
    mut req: Request<Incoming>,
    dest: &Authority,
    switching: Option<Arc<Admitted>>,
) -> Reply {
    let refused = |refusal| Reply::refused(refusal, dest);
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
    let (Some(admitted), Some(from_client)) = (switching, from_client) else {
        return Reply::Answered(relayed(resp), Outcome::passed(dest, started));
    };
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Reply::Answered(relayed(resp), Outcome::passed(dest, started));
    }
    let mut answer = Response::new(empty());
    *answer.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = resp.headers().clone();
    ask_websocket(answer.headers_mut());
    admitted.phase.off();
    let pipe = Pipe {
        proxy: Arc::clone(proxy),
        admitted,
        from_client,
        from_upstream: hyper::upgrade::on(&mut resp),
        judge: None,
        open,
        outcome: Outcome::passed(dest, started),
        status: answer.status(),
    };
    Reply::Switched(answer, pipe.started())
}
