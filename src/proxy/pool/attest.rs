//! Attested upstream connections before they are HTTP: a place under
//! `max_upstream_connections` and the TLS handshake judged by the target's verifier (with
//! one collateral fetch for a platform seen first).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::{Pool, UpstreamError};
use crate::appraise::refusal::RefusalCode;
use crate::metrics::Metrics;
use crate::proxy::target::Target;
use crate::ratls::client::{connect, Attested, ConnectError};

impl Pool {
    /// An attested connection (see [`Pool::attest`]); the first connection to a platform
    /// names collateral nobody fetched yet: it is fetched (coalesced with concurrent dials)
    /// and the dial tried once more. No byte was sent upstream.
    pub(super) async fn attest_fetching(
        &self,
        target: &Target,
        alpn: &[&[u8]],
    ) -> Result<(Attested, OwnedSemaphorePermit), UpstreamError> {
        match self.attest(target, alpn).await {
            Err(UpstreamError::Refused(r)) if r.code == RefusalCode::CollateralUnavailable => {
                // A request never waits longer than the connect timeout for collateral.
                let fetched = match &self.collateral {
                    Some(cache) => {
                        tokio::time::timeout(self.connect_timeout, cache.fetch_missing())
                            .await
                            .unwrap_or(0)
                    }
                    None => 0,
                };
                if fetched > 0 {
                    self.attest(target, alpn).await
                } else {
                    Err(UpstreamError::Refused(r))
                }
            }
            other => other,
        }
    }

    /// A TLS connection to `target` whose verdict is accepted under the target's verifier
    /// (the generation it belongs to), holding a place under `max_upstream_connections`.
    pub(super) async fn attest(
        &self,
        target: &Target,
        alpn: &[&[u8]],
    ) -> Result<(Attested, OwnedSemaphorePermit), UpstreamError> {
        let permit = self.upstream_permit(&target.dest).await?;
        let verifier = Arc::clone(&target.enclave.verifier);
        let (dial, host) = (target.dial.to_string(), target.dest.host.to_string());
        let dest = &target.dest;
        let attempt = connect(&dial, &host, verifier, alpn, None);
        // Client-facing messages name the destination as the client did, never the
        // `connect_to` address; the log has both.
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err(UpstreamError::Timeout(format!(
                "no attested connection to {dest} within {}s",
                self.connect_timeout.as_secs()
            ))),
            Ok(Err(ConnectError::Refused(r))) => Err(UpstreamError::Refused(r.refusal)),
            Ok(Err(e)) => {
                tracing::info!(%dest, dial, error = %e, "upstream connection failed");
                Err(UpstreamError::Unreachable(match e {
                    ConnectError::Connect { source, .. } => {
                        format!("cannot connect to {dest}: {source}")
                    }
                    ConnectError::Tls { source, .. } => {
                        format!("TLS handshake with {dest} failed: {source}")
                    }
                    other => other.to_string(),
                }))
            }
            Ok(Ok(a)) => Ok((a, permit)),
        }
    }
}

/// Counts an open upstream connection, and holds its place under
/// `max_upstream_connections`, while its driver task lives.
pub(crate) struct UpstreamOpen {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl UpstreamOpen {
    pub(crate) fn new(metrics: &Arc<Metrics>, permit: OwnedSemaphorePermit) -> Self {
        metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
        Self {
            metrics: Arc::clone(metrics),
            _permit: permit,
        }
    }
}

impl Drop for UpstreamOpen {
    fn drop(&mut self) {
        self.metrics
            .upstream_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}
