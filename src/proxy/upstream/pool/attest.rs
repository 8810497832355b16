//! Attested upstream connections before they are HTTP: a place under
//! `max_upstream_connections`, the TLS handshake judged by the target's verifier (with one
//! collateral fetch for a platform seen first), and the connection an HTTP/1.1 upgrade
//! (WebSocket) gets to itself, which never enters the pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;

use super::{Held, Pool};
use crate::appraise::refusal::RefusalCode;
use crate::metrics::Metrics;
use crate::proxy::body::ProxyBody;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::client::{connect, Attested, ConnectError};

/// An attested HTTP/1.1 connection of one upgrade's own: it carries the upgrade request,
/// then (after `101`) the relayed bytes, and is never reused.
pub(crate) struct UpgradeConn {
    /// Sends the one upgrade request.
    pub(crate) sender: http1::SendRequest<ProxyBody>,
    /// The verdict that admitted this connection (its leaf, to judge it again).
    pub(crate) verdict: Arc<CachedVerdict>,
    /// Its place under the cap, shared by the HTTP driver and the relay of the upgraded
    /// bytes: the place is freed when both are done.
    pub(crate) open: Arc<UpstreamOpen>,
}

impl Pool {
    /// An attested connection (see [`Pool::attest`]); the first connection to a platform
    /// names collateral nobody fetched yet: it is fetched (coalesced with concurrent dials)
    /// and the dial tried once more. No byte was sent upstream.
    pub(super) async fn attest_fetching(
        &self,
        target: &Target,
        alpn: &[&[u8]],
    ) -> Result<(Attested, OwnedSemaphorePermit), ProxyRefusal> {
        match self.attest(target, alpn).await {
            Err(ProxyRefusal::Attestation(r)) if r.code == RefusalCode::CollateralUnavailable => {
                // A request never waits longer than the connect timeout for collateral.
                let intel = async {
                    match &self.collateral {
                        Some(cache) => cache.fetch_missing().await,
                        None => 0,
                    }
                };
                let snp = async {
                    match &self.snp_kds {
                        Some(kds) => kds.fetch_missing().await,
                        None => 0,
                    }
                };
                let nitro = async {
                    match &self.nitro_crls {
                        Some(crls) => crls.fetch_missing(crate::dcap::time::UnixTime::now()).await,
                        None => 0,
                    }
                };
                // The whole wait, however many CRL points (each fetch has its own timeout,
                // and one fetch runs at a time): a handshake never waits longer than this.
                let fetched = tokio::time::timeout(self.connect_timeout, async {
                    let (i, s, n) = tokio::join!(intel, snp, nitro);
                    i + s + n
                })
                .await
                .unwrap_or(0);
                if fetched > 0 {
                    self.attest(target, alpn).await
                } else {
                    Err(ProxyRefusal::Attestation(r))
                }
            }
            other => other,
        }
    }

    /// A fresh attested connection for one HTTP/1.1 upgrade, judged under `target`'s
    /// verifier (the generation in force when the caller classified the request), ALPN
    /// `http/1.1` only, counted under `max_upstream_connections` but never pooled: an
    /// upgraded connection is bytes, it cannot carry another request.
    pub(crate) async fn dial_upgrade(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
    ) -> Result<UpgradeConn, ProxyRefusal> {
        // Held for as long as the client keeps the upgrade open: a share, checked first.
        let held = self.hold(&target.dial)?;
        let (attested, permit) = self.attest_fetching(target, &[b"http/1.1"]).await?;
        let dest = &target.dest;
        if attested.stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            return Err(ProxyRefusal::Unreachable(format!(
                "{dest} negotiated HTTP/2 where only HTTP/1.1 was offered"
            )));
        }
        let open = Arc::new(UpstreamOpen::new(metrics, permit).holding(held));
        let (sender, conn) = http1::handshake(TokioIo::new(attested.stream))
            .await
            .map_err(|e| {
                ProxyRefusal::Unreachable(format!("HTTP/1.1 handshake with {dest}: {e}"))
            })?;
        let held = Arc::clone(&open);
        tokio::spawn(async move {
            // Ends when the connection closes or hands its bytes over to the upgrade.
            let _open = held;
            let _ = conn.with_upgrades().await;
        });
        Ok(UpgradeConn {
            sender,
            verdict: attested.verdict,
            open,
        })
    }

    /// A TLS connection to `target` whose verdict is accepted under the target's verifier
    /// (the generation it belongs to), holding a place under `max_upstream_connections`.
    pub(super) async fn attest(
        &self,
        target: &Target,
        alpn: &[&[u8]],
    ) -> Result<(Attested, OwnedSemaphorePermit), ProxyRefusal> {
        let permit = self.upstream_permit(&target.dest).await?;
        self.attest_under(target, alpn, permit).await
    }

    /// [`Pool::attest`] in the place under the cap `permit` holds.
    pub(super) async fn attest_under(
        &self,
        target: &Target,
        alpn: &[&[u8]],
        permit: OwnedSemaphorePermit,
    ) -> Result<(Attested, OwnedSemaphorePermit), ProxyRefusal> {
        let verifier = Arc::clone(&target.enclave.verifier);
        let (dial, host) = (target.dial.to_string(), target.dest.host.to_string());
        let dest = &target.dest;
        let attempt = connect(&dial, &host, verifier, alpn, None);
        // Client-facing messages name the destination as the client did, never the
        // `connect_to` address; the log has both.
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err(ProxyRefusal::Timeout(format!(
                "no attested connection to {dest} within {}s",
                self.connect_timeout.as_secs()
            ))),
            Ok(Err(ConnectError::Refused(r))) => {
                self.saw(target, &r.appraisal);
                self.audit
                    .record(target, self.generation, &r.appraisal)
                    .map_err(ProxyRefusal::Internal)?;
                Err(ProxyRefusal::Attestation(r.refusal))
            }
            Ok(Err(e)) => {
                tracing::info!(%dest, dial, error = %e, "upstream connection failed");
                Err(ProxyRefusal::Unreachable(match e {
                    ConnectError::Connect { source, .. } => {
                        format!("cannot connect to {dest}: {source}")
                    }
                    ConnectError::Tls { source, .. } => {
                        format!("TLS handshake with {dest} failed: {source}")
                    }
                    other => other.to_string(),
                }))
            }
            Ok(Ok(a)) => {
                self.saw(target, a.verdict.accepted.appraisal());
                // Into the trail before the connection carries a byte (the HTTP/2 preface
                // and an upgrade request included).
                self.audit
                    .record_verdict(target, self.generation, &a.verdict)
                    .map_err(ProxyRefusal::Internal)?;
                Ok((a, permit))
            }
        }
    }
}

/// Counts an open upstream connection, and holds its place under
/// `max_upstream_connections` (and, for one a client keeps open, its share), while its
/// driver task lives.
pub(crate) struct UpstreamOpen {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
    held: Option<Held>,
}

impl UpstreamOpen {
    pub(crate) fn new(metrics: &Arc<Metrics>, permit: OwnedSemaphorePermit) -> Self {
        metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
        Self {
            metrics: Arc::clone(metrics),
            _permit: permit,
            held: None,
        }
    }

    /// This connection, counted in a client-held share too.
    pub(crate) fn holding(mut self, held: Held) -> Self {
        self.held = Some(held);
        self
    }
}

impl Drop for UpstreamOpen {
    fn drop(&mut self) {
        self.metrics
            .upstream_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}
