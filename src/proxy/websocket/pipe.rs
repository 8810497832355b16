//! An upgraded connection (a WebSocket) relayed as bytes both ways until either side
//! closes, under the client's admission, the idle timeout of the client's socket, the
//! upstream connection cap and the byte counters; logged once, at close.
//!
//! To an enclave, every chunk goes out only while the upstream's certificate is accepted
//! under the generation in force ([`crate::proxy::judge`]): after a reload (or a new collateral
//! snapshot, or when its verdict ages out) the certificate is judged again before the next
//! chunk either way, and a change that refuses it closes both sides at once, idle or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proxy::client::admit::Admitted;
use crate::proxy::exchange::{Closed, Exchange, Outcome, Relay};
use crate::proxy::judge::{Checkpoint, Cut, Judge};
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::Proxy;
use crate::proxy::upstream::pool::UpstreamOpen;

/// Bytes read at a time in each direction (what `tokio::io::copy` uses).
const CHUNK: usize = 8 * 1024;

/// How a relay ended.
enum End {
    /// Both sides closed.
    Closed,
    /// The enclave's certificate is no longer accepted.
    Refused(ProxyRefusal),
    /// A side failed (reset, the idle timeout, ...): which, and how.
    Failed(String),
}

/// An upgrade the client and the upstream both switched, and all the relay needs.
pub(crate) struct Pipe {
    pub(crate) proxy: Arc<Proxy>,
    /// The client's place under `max_connections`, kept until the relay ends.
    pub(crate) admitted: Arc<Admitted>,
    pub(crate) from_client: OnUpgrade,
    pub(crate) from_upstream: OnUpgrade,
    /// `None` for a non-enclave destination (passthrough).
    pub(crate) judge: Option<Arc<Judge>>,
    /// The upstream's place under `max_upstream_connections`, kept until the relay ends.
    pub(crate) open: Arc<UpstreamOpen>,
    pub(crate) outcome: Outcome,
    /// What the client got for the switch (101, or 200 for HTTP/2).
    pub(crate) status: StatusCode,
}

impl Pipe {
    /// The relay, spawned with the exchange it finishes at close.
    pub(crate) fn started(self) -> Relay {
        Box::new(move |exchange| {
            tokio::spawn(self.run(exchange));
        })
    }

    /// Relays until either side closes (or a reload refuses the enclave), then finishes
    /// `exchange`.
    async fn run(self, exchange: Exchange) {
        let _admitted = &self.admitted;
        let _open = &self.open;
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let end = match tokio::try_join!(self.from_client, self.from_upstream) {
            Ok((client, upstream)) => {
                relay(
                    &self.proxy,
                    client,
                    upstream,
                    self.judge.as_ref(),
                    &up,
                    &down,
                )
                .await
            }
            Err(e) => End::Failed(format!("upgrade: {e}")),
        };
        let end = match &end {
            End::Closed => "closed".to_owned(),
            End::Refused(r) => {
                tracing::warn!(host = %self.outcome.host, code = r.code(), reasons = ?r.reasons(), "an open WebSocket's enclave is refused under the generation in force; closed both sides");
                format!("refused: {}", r.code())
            }
            End::Failed(e) => e.clone(),
        };
        let closed = Closed {
            up: up.load(Ordering::Relaxed),
            down: down.load(Ordering::Relaxed),
            end: &end,
        };
        exchange.closed(&self.proxy, &self.outcome, self.status, &closed);
    }
}

/// Copies both ways until both sides closed, one fails, or the judge refuses; returning
/// drops (closes) both connections.
async fn relay(
    proxy: &Proxy,
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    judge: Option<&Arc<Judge>>,
    up: &AtomicU64,
    down: &AtomicU64,
) -> End {
    let (mut client_rx, mut client_tx) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(TokioIo::new(upstream));
    let metrics = &proxy.metrics;
    let checkpoint = || judge.map(|j| Checkpoint::new(Arc::clone(j), Cut::WebSocket));
    let both = async {
        tokio::try_join!(
            pump(
                (&mut client_rx, "client"),
                (&mut upstream_tx, "upstream"),
                checkpoint(),
                (metrics.bytes_to_upstreams.as_ref(), up)
            ),
            pump(
                (&mut upstream_rx, "upstream"),
                (&mut client_tx, "client"),
                checkpoint(),
                (metrics.bytes_to_clients.as_ref(), down)
            ),
        )
    };
    let reload = async {
        match judge {
            Some(j) => j.refused_by_change(Cut::WebSocket).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        done = both => match done {
            Ok(_) => End::Closed,
            Err(end) => end,
        },
        refusal = reload => End::Refused(refusal),
    }
}

/// One direction: each chunk read is judged (for an enclave), written, flushed and counted;
/// the end of `from` is passed on as a half-close. Reading only after the last write went
/// out is the back-pressure: a side that stops reading stops the other from being read.
async fn pump<R, W>(
    (from, source): (&mut R, &str),
    (to, sink): (&mut W, &str),
    mut checkpoint: Option<Checkpoint>,
    (total, moved): (&AtomicU64, &AtomicU64),
) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| End::Failed(format!("{source}: {}", reason(&e))))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            let _ = to.shutdown().await;
            return Ok(());
        };
        if let Some(checkpoint) = &mut checkpoint {
            checkpoint.pass().map_err(End::Refused)?;
        }
        let failed = |e: std::io::Error| End::Failed(format!("{sink}: {}", reason(&e)));
        to.write_all(chunk).await.map_err(failed)?;
        to.flush().await.map_err(failed)?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        total.fetch_add(n, Ordering::Relaxed);
        moved.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why a side failed, in a few words for the access log.
fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        // rustls' own text for this links to its manual.
        std::io::ErrorKind::UnexpectedEof => "closed without TLS close_notify".into(),
        _ => e.to_string(),
    }
}
