//! The client's TLS session inside an answered CONNECT, terminated with a leaf minted for
//! the host: shared by intercepted tunnels and the refusal page a browser gets.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http::Request;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::proxy::client::idle::Idle;

/// The proxy's TLS session with an intercepted client.
pub(crate) type ClientTls = tokio_rustls::server::TlsStream<ClientIo>;

/// The socket under the client's TLS session. Every TLS record read or written crosses it,
/// so the listener's own socket is taken back from hyper when it can be: hyper's upgraded
/// wrapper costs a boxed trait object, a rewind check and two buffer conversions per call.
pub(crate) enum ClientIo {
    /// The listener's socket, after the bytes hyper had read past the CONNECT head.
    Socket { early: Bytes, io: Idle<TcpStream> },
    /// Anything else hyper handed over (not expected from our listeners).
    Upgraded(TokioIo<Upgraded>),
}

impl ClientIo {
    fn from_upgraded(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<Idle<TcpStream>>>() {
            Ok(parts) => ClientIo::Socket {
                early: parts.read_buf,
                io: parts.io.into_inner(),
            },
            Err(upgraded) => ClientIo::Upgraded(TokioIo::new(upgraded)),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Socket { early, io } => {
                if early.is_empty() {
                    return Pin::new(io).poll_read(cx, buf);
                }
                let n = early.len().min(buf.remaining());
                buf.put_slice(&early[..n]);
                early.advance(n);
                Poll::Ready(Ok(()))
            }
            ClientIo::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Socket { io, .. } => Pin::new(io).poll_write(cx, buf),
            ClientIo::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Socket { io, .. } => Pin::new(io).poll_write_vectored(cx, bufs),
            ClientIo::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Socket { io, .. } => io.is_write_vectored(),
            ClientIo::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Socket { io, .. } => Pin::new(io).poll_flush(cx),
            ClientIo::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Socket { io, .. } => Pin::new(io).poll_shutdown(cx),
            ClientIo::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// The client's TLS session inside an answered CONNECT, within `timeout`; `None` (logged)
/// if the upgrade, the handshake or the deadline fails.
pub(crate) async fn accept_client_tls(
    req: Request<Incoming>,
    tls: Arc<rustls::ServerConfig>,
    timeout: Duration,
    client: SocketAddr,
    host: &str,
) -> Option<Box<ClientTls>> {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%client, error = %e, "CONNECT upgrade failed");
            return None;
        }
    };
    match tokio::time::timeout(
        timeout,
        TlsAcceptor::from(tls).accept(ClientIo::from_upgraded(upgraded)),
    )
    .await
    {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::info!(%client, %host, error = %e, "client TLS handshake failed (does the client trust the ratls-proxy CA?)");
            None
        }
        Err(_) => {
            tracing::info!(%client, %host, "client TLS handshake timed out");
            None
        }
    }
}
