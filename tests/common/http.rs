//! hyper's HTTP/1.1 and HTTP/2 clients reaching an enclave host through the proxy in each
//! [`Mode`]: one connection, the requests written as that mode names the host.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::client::{tls_through_as, Mode, Via};

/// A request body: empty, a stream fed chunk by chunk, anything.
pub type Body = BoxBody<Bytes, Infallible>;

/// An empty request body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One client connection to `host` through the proxy, speaking as its [`Mode`] does.
pub struct Http {
    sender: Sender,
    mode: Mode,
    host: String,
}

impl Http {
    /// Connects to `host` through `via` in `mode` (HTTP/2 only for
    /// [`Mode::InterceptedH2`], where ALPN must have chosen it).
    pub async fn open(via: &Via, host: &str, mode: Mode) -> Self {
        let sender = match mode {
            Mode::InterceptedH2 => {
                let tls = tls_through_as(via.proxy, host, &via.ca, "", &[b"h2"]).await;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
                tokio::spawn(conn);
                Sender::H2(send)
            }
            Mode::Intercepted => {
                h1(TokioIo::new(
                    tls_through_as(via.proxy, host, &via.ca, "", &[]).await,
                ))
                .await
            }
            Mode::Originated => h1(TokioIo::new(tcp(via.proxy).await)).await,
            Mode::Route => h1(TokioIo::new(tcp(via.route).await)).await,
        };
        Self {
            sender,
            mode,
            host: host.to_owned(),
        }
    }

    /// `method path` to the host, as this connection's mode names it (`Host` on HTTP/1.1,
    /// `:authority` on HTTP/2).
    pub fn request(&self, method: &str, path: &str, body: Body) -> hyper::Request<Body> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(self.mode.target(&self.host, path));
        if self.mode != Mode::InterceptedH2 {
            b = b.header("host", &self.host);
        }
        b.body(body).expect("request")
    }

    /// Sends `req` once the connection is ready.
    pub async fn send(
        &mut self,
        req: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// `GET path`: the response, which must come.
    pub async fn get(&mut self, path: &str) -> hyper::Response<hyper::body::Incoming> {
        let req = self.request("GET", path, empty());
        self.send(req).await.expect("response")
    }

    /// `GET path`, the body read to its end: the status, or 0 when the connection failed.
    pub async fn status(&mut self, path: &str) -> u16 {
        let req = self.request("GET", path, empty());
        match self.send(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }
}

async fn tcp(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

async fn h1<T>(io: T) -> Sender
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (send, conn) = http1::handshake(io).await.expect("h1 handshake");
    tokio::spawn(conn);
    Sender::H1(send)
}
