//! The client's TLS session inside an answered CONNECT, terminated with a leaf minted for
//! the host: shared by intercepted tunnels and the refusal page a browser gets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

/// The proxy's TLS session with an intercepted client.
pub(crate) type ClientTls = tokio_rustls::server::TlsStream<TokioIo<hyper::upgrade::Upgraded>>;

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
        TlsAcceptor::from(tls).accept(TokioIo::new(upgraded)),
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
