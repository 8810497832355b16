//! Collateral from Intel PCS v4 or a PCCS, and the cache that keeps it fresh.
//!
//! EDGE: it does network I/O. Snapshots are verified once when fetched
//! ([`VerifiedCollateral`]); the synchronous read path used inside TLS handshakes only
//! reads the snapshot map, so no request ever waits on the network in steady state.
//! Concurrent misses for one key are coalesced into one fetch; a failed refresh keeps
//! serving the old snapshot until its own expiry, after which verification refuses it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::appraise::CollateralSource;
use crate::dcap::collateral::pcs::{self, PckCa, Responses};
use crate::dcap::collateral::CollateralError;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::quote::Quote;
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::VerifiedCollateral;
use crate::dcap::verify::pck_platform;

/// Intel PCS v4 base URL.
pub(crate) const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the root CA CRL (DER).
pub(crate) const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// Largest response body accepted.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// A fetch failure.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Bad URL or configuration.
    #[error("{0}")]
    Config(String),
    /// Network or TLS failure.
    #[error("{url}: {detail}")]
    Network {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// A non-200 answer.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// A missing issuer-chain header.
    #[error("{url}: no {header} header")]
    MissingHeader {
        /// The URL.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// The answer does not parse.
    #[error(transparent)]
    Content(#[from] CollateralError),
}

impl From<FetchError> for VerifyError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Content(c) => VerifyError::Collateral(c),
            other => VerifyError::Collateral(CollateralError::Content {
                what: "collateral fetch",
                detail: other.to_string(),
            }),
        }
    }
}

/// Where and how to fetch.
#[derive(Clone)]
pub struct PcsEndpoint {
    base: String,
    root_crl_url: String,
    api_key: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for PcsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("PcsEndpoint")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn tls_config(custom_ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    match custom_ca_pem {
        Some(pem) => {
            for der in crate::dcap::pki::pem_chain(pem, "PCCS CA")
                .map_err(|e| FetchError::Config(e.to_string()))?
            {
                roots
                    .add(der.into())
                    .map_err(|e| FetchError::Config(format!("PCCS CA: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| FetchError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl PcsEndpoint {
    /// Intel PCS v4 (WebPKI roots for its TLS).
    pub fn intel(api_key: Option<String>) -> Result<Self, FetchError> {
        Ok(Self {
            base: INTEL_PCS.to_owned(),
            root_crl_url: INTEL_ROOT_CA_CRL.to_owned(),
            api_key,
            tls: tls_config(None)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// A PCCS (or PCS) at `base_url`; `custom_ca_pem` replaces the WebPKI roots for its TLS.
    pub fn pccs(
        base_url: &str,
        custom_ca_pem: Option<&[u8]>,
        api_key: Option<String>,
    ) -> Result<Self, FetchError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .map_err(|_| FetchError::Config(format!("`{base_url}` is not a URL")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(FetchError::Config(format!(
                "`{base_url}`: expected http(s)://host[:port][/path]"
            )));
        }
        Ok(Self {
            root_crl_url: format!("{base}/sgx/certification/v4/rootcacrl"),
            base,
            api_key,
            tls: tls_config(custom_ca_pem)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fetches the four pieces of collateral for one platform.
    pub async fn fetch(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
    ) -> Result<crate::dcap::collateral::Collateral, FetchError> {
        let v4 = format!("{}/sgx/certification/v4", self.base);
        let tcb_url = format!("{v4}/tcb?fmspc={}", fmspc.to_string().to_uppercase());
        let qe_url = format!("{v4}/qe/identity");
        let crl_url = format!("{v4}/pckcrl?ca={}&encoding=der", ca.as_str());
        let (tcb, qe, crl, root) = tokio::join!(
            self.get(&tcb_url),
            self.get(&qe_url),
            self.get(&crl_url),
            self.get(&self.root_crl_url)
        );
        let (tcb, qe, crl, root) = (tcb?, qe?, crl?, root?);
        Responses {
            root_ca_crl: root.1.to_vec(),
            pck_crl: (
                crl.1.to_vec(),
                header(&crl.0, &pcs::PCK_CRL_ISSUER_CHAIN, &crl_url)?,
            ),
            tcb_info: (
                tcb.1.to_vec(),
                header(&tcb.0, &pcs::TCB_INFO_ISSUER_CHAIN, &tcb_url)?,
            ),
            qe_identity: (
                qe.1.to_vec(),
                header(&qe.0, &pcs::QE_IDENTITY_ISSUER_CHAIN, &qe_url)?,
            ),
        }
        .into_collateral()
        .map_err(FetchError::from)
    }

    async fn get(&self, url: &str) -> Result<(HeaderMap, Bytes), FetchError> {
        match tokio::time::timeout(self.timeout, self.get_inner(url)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Network {
                url: url.to_owned(),
                detail: format!("no answer within {}s", self.timeout.as_secs()),
            }),
        }
    }

    async fn get_inner(&self, url: &str) -> Result<(HeaderMap, Bytes), FetchError> {
        let net = |detail: String| FetchError::Network {
            url: url.to_owned(),
            detail,
        };
        let uri: http::Uri = url.parse().map_err(|_| net("not a URL".into()))?;
        let host = uri.host().ok_or_else(|| net("no host".into()))?.to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| net(e.to_string()))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = Request::get(path).header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        );
        if let Some(key) = &self.api_key {
            req = req.header("Ocp-Apim-Subscription-Key", key);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| net(e.to_string()))?;
        let resp = if https {
            let name =
                rustls::pki_types::ServerName::try_from(bare).map_err(|e| net(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| net(format!("TLS: {e}")))?;
            send(TokioIo::new(tls), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
        .map_err(net)?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: resp.status(),
            });
        }
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| net(format!("body: {e}")))?
            .to_bytes();
        Ok((parts.headers, body))
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn header(headers: &HeaderMap, names: &[&'static str], url: &str) -> Result<Vec<u8>, FetchError> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .map(|v| v.as_bytes().to_vec())
        .ok_or_else(|| FetchError::MissingHeader {
            url: url.to_owned(),
            header: names.first().copied().unwrap_or("issuer chain"),
        })
}

/// Collateral cache key: the platform model and its PCK CA.
pub(crate) type Key = (Fmspc, PckCa);

/// When to refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh a snapshot older than this.
    pub interval: Duration,
    /// Refresh a snapshot this close to its expiry.
    pub margin: Duration,
    /// First retry delay after a failed refresh (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(6 * 3600),
            margin: Duration::from_secs(24 * 3600),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}

struct Snapshot {
    verified: Arc<VerifiedCollateral>,
    fetched_at: UnixTime,
    /// Increases with every stored fetch: tells a waiter that someone else just fetched.
    generation: u64,
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Completed fetch attempts.
    pub fetches: u64,
    /// Failed attempts (network, status, content, verification).
    pub failures: u64,
    /// Lookups answered from a snapshot.
    pub hits: u64,
    /// Lookups with no snapshot.
    pub misses: u64,
}

/// One cached snapshot, for readiness and metrics.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// Its key.
    pub key: Key,
    /// When it was fetched.
    pub fetched_at: UnixTime,
    /// The last second it is valid.
    pub valid_until: UnixTime,
}

/// Verified collateral by platform, fetched on demand and refreshed in the background.
pub struct CollateralCache {
    endpoint: PcsEndpoint,
    anchor: TrustAnchor,
    policy: RefreshPolicy,
    snapshots: RwLock<HashMap<Key, Snapshot>>,
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    missing: Mutex<HashSet<Key>>,
    backoff: Mutex<HashMap<Key, (UnixTime, Duration)>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    generations: AtomicU64,
}

fn key_of(quote: &Quote<'_>) -> Option<Key> {
    let (fmspc, issuer) = pck_platform(quote)?;
    Some((fmspc, PckCa::from_issuer_cn(&issuer)?))
}

fn unavailable(detail: String) -> VerifyError {
    VerifyError::Collateral(CollateralError::Content {
        what: "collateral",
        detail,
    })
}

impl CollateralCache {
    /// An empty cache fetching from `endpoint`, verifying against `anchor`.
    pub fn new(endpoint: PcsEndpoint, anchor: TrustAnchor, policy: RefreshPolicy) -> Self {
        Self {
            endpoint,
            anchor,
            policy,
            snapshots: RwLock::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashSet::new()),
            backoff: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            generations: AtomicU64::new(0),
        }
    }

    /// Counters.
    pub fn stats(&self) -> FetchStats {
        FetchStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Every snapshot held.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.snapshots
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, s)| SnapshotInfo {
                        key: *k,
                        fetched_at: s.fetched_at,
                        valid_until: s.verified.valid_until(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn snapshot(&self, key: &Key) -> Option<(Arc<VerifiedCollateral>, u64)> {
        let map = self.snapshots.read().ok()?;
        map.get(key)
            .map(|s| (Arc::clone(&s.verified), s.generation))
    }

    /// The current snapshot for `key`, fetching it (once, for all concurrent callers) when
    /// absent or expired, or always when `force`.
    pub async fn ensure(
        &self,
        key: Key,
        force: bool,
    ) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .map_err(|_| unavailable("cache lock poisoned".into()))?;
            Arc::clone(locks.entry(key).or_default())
        };
        let seen = self.snapshot(&key).map(|(_, generation)| generation);
        let _guard = lock.lock().await;
        if let Some((v, generation)) = self.snapshot(&key) {
            // Somebody else fetched while we waited, or no refresh is needed.
            if Some(generation) != seen || (!force && v.check_fresh(UnixTime::now()).is_ok()) {
                return Ok(v);
            }
        }
        let result = self.fetch_and_verify(key).await;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(v) => {
                if let Ok(mut map) = self.snapshots.write() {
                    map.insert(
                        key,
                        Snapshot {
                            verified: Arc::clone(&v),
                            fetched_at: UnixTime::now(),
                            generation: self.generations.fetch_add(1, Ordering::Relaxed),
                        },
                    );
                }
                if let Ok(mut b) = self.backoff.lock() {
                    b.remove(&key);
                }
                if let Ok(mut m) = self.missing.lock() {
                    m.remove(&key);
                }
                tracing::info!(fmspc = %key.0, ca = key.1.as_str(), valid_until = %v.valid_until(), "collateral fetched and verified");
                Ok(v)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(fmspc = %key.0, ca = key.1.as_str(), error = %e, "collateral fetch failed; serving the previous snapshot until it expires");
                if let Ok(mut b) = self.backoff.lock() {
                    let delay = b.get(&key).map_or(self.policy.min_backoff, |(_, d)| {
                        d.saturating_mul(2).min(self.policy.max_backoff)
                    });
                    let next = UnixTime(
                        UnixTime::now()
                            .0
                            .saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX)),
                    );
                    b.insert(key, (next, delay));
                }
                Err(e)
            }
        }
    }

    async fn fetch_and_verify(&self, key: Key) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let collateral = self.endpoint.fetch(key.0, key.1).await?;
        let verified = VerifiedCollateral::verify(&collateral, &self.anchor)?;
        if verified.tcb_info.fmspc != key.0 {
            return Err(VerifyError::FmspcMismatch {
                pck: key.0,
                tcb_info: verified.tcb_info.fmspc,
            });
        }
        Ok(Arc::new(verified))
    }

    /// Fetches every key a quote asked for but found missing (after a refused handshake).
    pub async fn fetch_missing(&self) -> usize {
        let keys: Vec<Key> = self
            .missing
            .lock()
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        let mut fetched: usize = 0;
        for key in keys {
            if self.ensure(key, false).await.is_ok() {
                fetched = fetched.saturating_add(1);
            }
        }
        fetched
    }

    /// Fetches both PCK CA variants of each FMSPC (start-up prefetch).
    pub async fn prefetch(&self, fmspcs: &[Fmspc]) {
        for f in fmspcs {
            for ca in [PckCa::Platform, PckCa::Processor] {
                let _ = self.ensure((*f, ca), false).await;
            }
        }
    }

    /// Keys due for a refresh now (old, near expiry, and not backing off).
    pub fn due(&self, now: UnixTime) -> Vec<Key> {
        let backoff = self.backoff.lock().map(|b| b.clone()).unwrap_or_default();
        let Ok(map) = self.snapshots.read() else {
            return Vec::new();
        };
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        map.iter()
            .filter(|(key, s)| {
                let old = now.0 >= s.fetched_at.0.saturating_add(secs(self.policy.interval));
                let near_expiry = now.0
                    >= s.verified
                        .valid_until()
                        .0
                        .saturating_sub(secs(self.policy.margin));
                let waiting = backoff.get(key).is_some_and(|(next, _)| now < *next);
                (old || near_expiry) && !waiting
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Refreshes what is due, every `tick`, forever (run it as a task; abort to stop).
    pub async fn refresh_loop(self: Arc<Self>, tick: Duration) {
        loop {
            tokio::time::sleep(tick).await;
            for key in self.due(UnixTime::now()) {
                let _ = self.ensure(key, true).await;
            }
        }
    }

    /// Spawns [`Self::refresh_loop`].
    pub fn spawn_refresher(self: &Arc<Self>, tick: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::clone(self).refresh_loop(tick))
    }
}

impl CollateralSource for CollateralCache {
    fn verified_for(&self, quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let key = key_of(quote).ok_or_else(|| {
            unavailable("the quote's PCK certificate names no FMSPC or PCK CA".into())
        })?;
        match self.snapshot(&key) {
            Some((v, _)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut m) = self.missing.lock() {
                    m.insert(key);
                }
                Err(unavailable(format!(
                    "no collateral fetched yet for FMSPC {} ({} CA)",
                    key.0,
                    key.1.as_str()
                )))
            }
        }
    }
}
