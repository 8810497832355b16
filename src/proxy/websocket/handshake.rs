//! WebSocket upgrades to enclave hosts: an HTTP/1.1 `Upgrade: websocket` (RFC 6455) or an
//! HTTP/2 extended CONNECT with `:protocol = websocket` (RFC 8441) goes upstream as an
//! HTTP/1.1 upgrade on an attested connection of its own, dialed and judged under the
//! generation in force like any other; nothing is sent to a refused enclave. On `101` the
//! client gets its switch (`101`, or `200` on HTTP/2) and [`super::pipe`] carries the
//! bytes. Any other `Upgrade` is refused (400), except `h2c`: a client offering it falls
//! back to HTTP/1.1 by design, so it is dropped with the hop-by-hop headers as before.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::metrics::Counting;
use crate::proxy::body::empty;
use crate::proxy::body::ProxyBody;
use crate::proxy::client::admit::Admitted;
use crate::proxy::exchange::{Exchange, Named, Outcome, Reply, Verdict};
use crate::proxy::judge::judged::Judged;
use crate::proxy::judge::{Checkpoint, Cut, Judge};
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::target::Target;
use crate::proxy::upstream::rewrite::prepare;
use crate::proxy::upstream::rewrite::speak_for;
use crate::proxy::websocket::pipe::Pipe;

/// What a request asks to switch to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// HTTP/1.1 `Connection: upgrade` with `Upgrade: websocket`.
    WebSocket,
    /// HTTP/2 extended CONNECT with `:protocol = websocket`, bridged to an HTTP/1.1 upgrade.
    ExtendedConnect,
}

/// The comma-separated tokens of every `name` header, lower-cased.
fn tokens(headers: &HeaderMap, name: http::header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `req` asks to switch protocols: `Ok(None)` for an ordinary request (or one
/// offering only `h2c`), the switch for a WebSocket upgrade, a 400 for anything else.
pub(crate) fn requested<B>(req: &Request<B>) -> Result<Option<Switch>, ProxyRefusal> {
    if let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() {
        let protocol = protocol.as_str();
        return if req.method() == Method::CONNECT && protocol.eq_ignore_ascii_case("websocket") {
            Ok(Some(Switch::ExtendedConnect))
        } else {
            Err(ProxyRefusal::BadRequest(format!(
                "extended CONNECT to `{protocol}` is not relayed: only websocket is"
            )))
        };
    }
    let offered = tokens(req.headers(), UPGRADE);
    match offered.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["h2c"] => Ok(None),
        ["websocket"] => {
            if req.method() != Method::GET || req.version() != http::Version::HTTP_11 {
                return Err(ProxyRefusal::BadRequest(
                    "a WebSocket upgrade is an HTTP/1.1 GET (RFC 6455 4.1)".into(),
                ));
            }
            if !tokens(req.headers(), CONNECTION)
                .iter()
                .any(|t| t == "upgrade")
            {
                return Err(ProxyRefusal::BadRequest(
                    "`Upgrade: websocket` needs `Connection: upgrade`".into(),
                ));
            }
            Ok(Some(Switch::WebSocket))
        }
        _ => Err(ProxyRefusal::BadRequest(format!(
            "`Upgrade: {}` is not relayed: only websocket is",
            offered.join(", ")
        ))),
    }
}

/// Puts back the two hop-by-hop headers a WebSocket upgrade needs on its next hop.
pub(crate) fn ask_websocket(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// RFC 6455 4.2.2: the `Sec-WebSocket-Accept` that answers `key`.
fn accept_for(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A fresh `Sec-WebSocket-Key` (16 random bytes, base64).
fn new_key() -> Result<String, ProxyRefusal> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ProxyRefusal::Internal("no randomness for a WebSocket key".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(nonce))
}

/// The HTTP/1.1 upgrade request for the enclave, and the key the proxy chose when it
/// bridges an extended CONNECT (to check the enclave's answer against).
fn upstream_request(
    req: Request<Incoming>,
    target: &Target,
    switch: Switch,
) -> Result<(Request<ProxyBody>, Option<String>), ProxyRefusal> {
    // A WebSocket handshake has no body (RFC 6455 4.1); whatever the client sent with it
    // is not relayed.
    let (mut parts, _body) = req.into_parts();
    parts.extensions = http::Extensions::new();
    let key = match switch {
        Switch::WebSocket => None,
        Switch::ExtendedConnect => {
            parts.method = Method::GET;
            let key = new_key()?;
            parts.headers.insert(
                "sec-websocket-key",
                HeaderValue::from_str(&key).map_err(|e| ProxyRefusal::Internal(e.to_string()))?,
            );
            parts
                .headers
                .entry("sec-websocket-version")
                .or_insert(HeaderValue::from_static("13"));
            Some(key)
        }
    };
    let mut req = prepare(Request::from_parts(parts, empty()), target, false);
    ask_websocket(req.headers_mut());
    Ok((req, key))
}

/// The client's answer to the enclave's `101`: `101` with the enclave's WebSocket headers on
/// HTTP/1.1, `200` on HTTP/2 (RFC 8441 5), after checking the enclave switched to WebSocket
/// (and answered the proxy's key, when the proxy chose it).
fn switched(
    g: &Generation,
    upstream: &Response<Incoming>,
    switch: Switch,
    key: Option<&str>,
    verdict: &crate::ratls::cache::CachedVerdict,
) -> Result<Response<ProxyBody>, String> {
    if tokens(upstream.headers(), UPGRADE) != ["websocket"] {
        return Err("the enclave switched protocols, but not to websocket".into());
    }
    let mut headers = upstream.headers().clone();
    speak_for(&mut headers, verdict, g.config.attestation_header);
    let status = match (switch, key) {
        (Switch::WebSocket, _) => {
            ask_websocket(&mut headers);
            StatusCode::SWITCHING_PROTOCOLS
        }
        (Switch::ExtendedConnect, Some(key)) => {
            let accept = headers.remove("sec-websocket-accept");
            if accept.as_ref().map(HeaderValue::as_bytes) != Some(accept_for(key).as_bytes()) {
                return Err("the enclave's Sec-WebSocket-Accept does not answer the key".into());
            }
            StatusCode::OK
        }
        (Switch::ExtendedConnect, None) => return Err("no key for an extended CONNECT".into()),
    };
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A WebSocket upgrade to the enclave `target`, asked for in `exchange` by a client
/// admitted as `admitted`: the answer, or the switch and the relay that finishes the
/// exchange when the switched connection closes.
pub(crate) async fn attested(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    target: &Arc<Target>,
    exchange: &Exchange,
    admitted: Arc<Admitted>,
    mut req: Request<Incoming>,
    switch: Switch,
) -> Reply {
    let refused = |refusal| Reply::refused(refusal, target).at_enclave();
    let started = Instant::now();
    // Its own attested connection: an upgraded connection cannot go back to the pool.
    let conn = match g.pool.dial_upgrade(target, &proxy.metrics).await {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let from_client: OnUpgrade = hyper::upgrade::on(&mut req);
    let (upstream_req, key) = match upstream_request(req, target, switch) {
        Ok(r) => r,
        Err(refusal) => return refused(refusal),
    };
    let mut sender = conn.sender;
    let sent = match sender.ready().await {
        Ok(()) => sender.send_request(upstream_req).await,
        Err(e) => Err(e),
    };
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return refused(ProxyRefusal::Unreachable(format!(
                "upstream {}: {e}",
                target.dest
            )))
        }
    };
    let verdict = conn.verdict;
    let judge = Arc::new(Judge::new(proxy, g, target, Arc::clone(&verdict)));
    // The answer passes the checkpoint like a chunk (a change while it was on its way).
    let mut checkpoint = Checkpoint::new(Arc::clone(&judge), Cut::Request);
    if let Err(refusal) = checkpoint.pass() {
        return refused(refusal);
    }
    let outcome = Outcome {
        host: Named::from(target),
        verdict: Verdict::Accepted(Arc::clone(&verdict)),
        upstream: Some(started.elapsed()),
        enclave: true,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The enclave declined: its answer is relayed like any response, judged as one.
        speak_for(resp.headers_mut(), &verdict, g.config.attestation_header);
        let on_cut = exchange.on_cut(proxy, target, resp.status());
        let counter = Arc::clone(&proxy.metrics.bytes_to_clients);
        let checkpoint = checkpoint.cutting(Cut::Response);
        let resp =
            resp.map(|b| Counting::new(Judged::new(b, checkpoint, Some(on_cut)), counter).boxed());
        return Reply::Answered(resp, outcome);
    }
    let answer = match switched(g, &resp, switch, key.as_deref(), &verdict) {
        Ok(a) => a,
        Err(reason) => {
            let host = &target.dest.host;
            return refused(ProxyRefusal::Unreachable(format!("{host}: {reason}")));
        }
    };
    let from_upstream = hyper::upgrade::on(&mut resp);
    // Bytes, not HTTP, from here on: no request head to time, only the idle timeout.
    admitted.phase.off();
    let pipe = Pipe {
        proxy: Arc::clone(proxy),
        admitted,
        from_client,
        from_upstream,
        judge: Some(judge),
        open: conn.open,
        outcome,
        status: answer.status(),
    };
    Reply::Switched(answer, pipe.started())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn the_rfc_6455_example_key_is_answered() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_websocket_upgrades_switch() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert_eq!(
            requested(&request(Method::GET, &ws)),
            Ok(Some(Switch::WebSocket))
        );
        assert_eq!(requested(&request(Method::GET, &[])), Ok(None));
        let h2c = [
            ("connection", "upgrade, http2-settings"),
            ("upgrade", "h2c"),
        ];
        assert_eq!(requested(&request(Method::GET, &h2c)), Ok(None));
        for bad in [
            vec![("connection", "upgrade"), ("upgrade", "TLS/1.0")],
            vec![("connection", "upgrade"), ("upgrade", "websocket, h2c")],
            vec![("upgrade", "websocket")],
        ] {
            assert!(
                matches!(
                    requested(&request(Method::GET, &bad)),
                    Err(ProxyRefusal::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
        assert!(requested(&request(Method::POST, &ws)).is_err());
    }
}
