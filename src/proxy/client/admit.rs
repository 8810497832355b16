//! Client connections: admission under `max_connections` (a connection's [`Admitted`], shared by
//! the proxy and route listeners and carried into the tunnel a CONNECT becomes; the
//! immediate 503 for the excess) and the HTTP/1 server every client connection gets.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::proxy::client::idle::{Idle, Phase};
use crate::proxy::cores::CoreLoad;

/// The answer to a connection beyond `max_connections`: immediate, then closed.
fn overloaded() -> Vec<u8> {
    let body = r#"{"error":"proxy_internal_error","code":"too_many_connections","reasons":["too many client connections"]}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nproxy-status: ratls-proxy; error=proxy_internal_error; details=\"too_many_connections\"\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A client connection's place under `max_connections`, shared by the connection's task and
/// the tunnel it may become: hyper ends the first when a CONNECT is upgraded, so the tunnel
/// must hold it (and the open-connections gauge) until it closes. It also carries
/// where the connection's HTTP/1 exchange stands, which its [`Idle`] wrapper times.
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    /// Counts the connection in its core's load for as long as it lives.
    _load: CoreLoad,
    metrics: Arc<Metrics>,
    pub(crate) phase: Arc<Phase>,
}

impl Admitted {
    pub(crate) fn new(
        permit: OwnedSemaphorePermit,
        load: CoreLoad,
        metrics: &Arc<Metrics>,
    ) -> Self {
        metrics.client_connections.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            _load: load,
            metrics: Arc::clone(metrics),
            phase: Arc::default(),
        }
    }

    /// The client's socket, timed by this connection's phase.
    pub(crate) fn io(&self, tcp: TcpStream, limits: &Limits) -> Idle<TcpStream> {
        let phase = Arc::clone(&self.phase);
        Idle::http1(tcp, limits.idle_timeout, limits.header_read_timeout, phase)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics
            .client_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The next client connection admitted under `admission` (`max_connections`, or the admin
/// listener's own cap). Accept errors (out of file descriptors, say) are logged and retried
/// after a pause; excess connections get 503 and are closed.
pub(crate) async fn next_client(
    listener: &TcpListener,
    admission: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        match listener.accept().await {
            Ok((tcp, client)) => {
                if let Some((tcp, admitted)) = admit(admission, tcp, client) {
                    return (tcp, client, admitted);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A place under `max_connections` for a new client connection, or `None` once the excess
/// connection was answered 503 and is being closed (in the background, within 1 s).
fn admit(
    admission: &Arc<Semaphore>,
    tcp: TcpStream,
    client: SocketAddr,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let Ok(admitted) = Arc::clone(admission).try_acquire_owned() else {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut tcp = tcp;
            let _ =
                tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&overloaded())).await;
            let _ = tcp.shutdown().await;
        });
        tracing::warn!(%client, "connection refused: its listener's connection cap is reached");
        return None;
    };
    let _ = tcp.set_nodelay(true);
    Some((tcp, admitted))
}

/// The HTTP/1 server of every client-facing connection (proxy listener, routes, HTTP/1.1
/// inside intercepted tunnels), with the configured header size limit. The header read
/// timeout is `Idle`'s: hyper's would also close idle keep-alive connections.
pub(crate) fn http1_server(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    b
}
