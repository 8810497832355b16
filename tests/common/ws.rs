//! A real WebSocket client (tokio-tungstenite's handshake and framing) through the proxy in
//! each [`Mode`]: an HTTP/1.1 upgrade inside a tunnel, RFC 8441's extended CONNECT over
//! HTTP/2, an absolute-form upgrade to the proxy, an upgrade on a sidecar route.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::client::{answer, tls_through, Addr, Mode, Via};
use super::http::{empty, Http};

/// Any client-side stream a WebSocket can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client WebSocket.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// A WebSocket to `host`'s `/ws` through `via` in `mode`; `Err` is the answer (or the
/// status) when there was no switch.
pub async fn open(via: &Via, host: &str, mode: Mode) -> Result<Ws, String> {
    match mode {
        Mode::Intercepted => {
            let tls = tls_through(via.proxy, host, &via.ca).await;
            handshake(format!("wss://{host}/ws"), Box::new(tls)).await
        }
        Mode::InterceptedH2 => extended_connect(via, host).await.map_err(|s| s.to_string()),
        Mode::Originated => upgrade(via.proxy, host, &format!("http://{host}/ws"), "").await,
        Mode::Route => {
            let tcp = TcpStream::connect(via.route).await.expect("connect");
            handshake(format!("ws://{}/ws", via.route), Box::new(tcp)).await
        }
    }
}

async fn handshake(url: String, io: Box<dyn Io>) -> Result<Ws, String> {
    tokio_tungstenite::client_async(url, io)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// An upgrade to `target` (absolute form to the proxy, origin form on a route) with `Host:
/// host` and `extra` header lines, written by hand to `addr`; answered `101` with the right
/// accept key, tungstenite's framing over the same socket. `Err` is the answer when there
/// was no switch.
pub async fn upgrade(addr: impl Addr, host: &str, target: &str, extra: &str) -> Result<Ws, String> {
    let mut tcp = TcpStream::connect(addr.socket()).await.expect("connect");
    let key = generate_key();
    tcp.write_all(
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let answer = answer(&mut tcp).await;
    if !answer.starts_with("HTTP/1.1 101") {
        return Err(answer);
    }
    let accept = derive_accept_key(key.as_bytes()).to_ascii_lowercase();
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("sec-websocket-accept: {accept}")),
        "{answer}"
    );
    let io: Box<dyn Io> = Box::new(tcp);
    Ok(WebSocketStream::from_raw_socket(io, Role::Client, None).await)
}

/// RFC 8441 from an HTTP/2 client: extended CONNECT with `:protocol = websocket`; `Err` is
/// the status when it was not 200.
async fn extended_connect(via: &Via, host: &str) -> Result<Ws, u16> {
    let mut h2 = Http::open(via, host, Mode::InterceptedH2).await;
    // One ordinary request first: the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) are
    // in by its answer.
    assert_eq!(h2.get("/hello").await.status(), 200);
    let mut req = h2.request("CONNECT", "/ws", empty());
    req.headers_mut().insert(
        "sec-websocket-version",
        hyper::header::HeaderValue::from_static("13"),
    );
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = h2.send(req).await.expect("extended CONNECT");
    if resp.status() != 200 {
        return Err(resp.status().as_u16());
    }
    let upgraded = hyper::upgrade::on(resp).await.expect("the stream switched");
    // The connection lives while its client does.
    tokio::spawn(async move {
        let _h2 = h2;
        std::future::pending::<()>().await;
    });
    let io: Box<dyn Io> = Box::new(TokioIo::new(upgraded));
    Ok(WebSocketStream::from_raw_socket(io, Role::Client, None).await)
}

/// Sends `text` and expects it back within 10 s.
pub async fn round_trip(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo in time")
        .expect("open")
        .expect("a message");
    assert_eq!(back, Message::text(text));
}

/// True if the socket is closed (by the other side) within `within`, without the client
/// sending.
pub async fn closed_within(ws: &mut Ws, within: Duration) -> bool {
    match tokio::time::timeout(within, ws.next()).await {
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
        Err(_) => false,
    }
}
