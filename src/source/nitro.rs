//! EDGE. AWS Nitro Enclaves collateral: the pinned root (AWS Nitro Enclaves Root-G1, or a
//! PEM root for a test PKI), the verified-intermediates cache it owns, and AWS's CRLs for
//! the chain's intermediates, fetched from the distribution points the verified certificates
//! name (or a mirror serving AWS's paths, or an offline directory), checked and kept.
//!
//! A CRL is kept only once it is issued by the CA the point belongs to, signed by that CA's
//! key, current, and no older than any CRL of that CA admitted before (the high-water marks
//! of `source/marks/`, shared with Intel and AMD: a replay of an older, validly signed CRL
//! is refused, `collateral_rollback`). Bodies are bounded (`nitro::limits::MAX_CRL_LEN`),
//! each request has a timeout, one fetch runs at a time, a failed point is not asked again
//! before its backoff ends, and at most [`MAX_HELD_CRLS`] points are held (the expired, then
//! the least recently read, make room). Reads (the [`NitroCollateral`] trait the verifier
//! holds) never touch the network; a failed refresh keeps the held CRL until its own
//! nextUpdate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use self::held::HeldCrl;
use super::backoff::Backoff;
use super::fetch::RefreshPolicy;
use super::marks::{Marks, Refused};
use super::pcs::{base_url, http_get, tls_config, FetchError};
use super::{SetupError, SourceConfig};
use crate::dcap::time::UnixTime;
use crate::nitro::cache::IntermediatesCache;
use crate::nitro::collateral::{check_crl_for, CrlPoint, NitroCollateral};
use crate::nitro::error::NitroError;
use crate::nitro::limits::MAX_CRL_LEN;
use crate::nitro::revocation::{CheckedCrl, Revocation};
use crate::nitro::trust::NitroRoot;

pub(crate) use held::MAX_HELD_CRLS;
/// Verified CA bundles the intermediates cache remembers.
pub(crate) const INTERMEDIATES_CACHED: usize = 1024;
/// Points whose failed fetch is remembered at most.
const MAX_BACKOFF: usize = 256;
/// Points a handshake found without a CRL, remembered for the next fetch at most.
const MAX_PENDING: usize = 64;

/// Where AWS's CRLs come from: `[collateral] nitro_crls`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NitroCrlSpec {
    /// `"aws"`: the URL each verified certificate names (AWS's S3 buckets).
    #[default]
    Aws,
    /// A mirror at this `http(s)://` base URL serving the distribution points' paths.
    Mirror(String),
    /// A directory holding each CRL (DER) under its distribution point's file name, offline.
    Dir(PathBuf),
}

impl NitroCrlSpec {
    /// `aws`, an `http(s)://` base URL or a directory (`resolve` turns the text into a
    /// path). `Err` carries the resolved path that is not a directory.
    pub fn parse(text: &str, resolve: impl FnOnce(&str) -> PathBuf) -> Result<Self, PathBuf> {
        if text == "aws" {
            return Ok(Self::Aws);
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(Self::Mirror(text.to_owned()));
        }
        let path = resolve(text);
        if path.is_dir() {
            Ok(Self::Dir(path))
        } else {
            Err(path)
        }
    }
}

/// Why a CRL could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NitroCrlError {
    /// The source did not answer, or not with a 200 within the bounds.
    #[error("AWS Nitro CRL: {0}")]
    Fetch(#[from] FetchError),
    /// Nothing could be asked (backoff, a point with no file name).
    #[error("AWS Nitro CRL: {0}")]
    Unavailable(String),
    /// What was served is not the point's CRL, or not current.
    #[error("AWS Nitro CRL at {url} refused: {source}")]
    Invalid {
        /// Where it came from.
        url: String,
        /// Why.
        source: NitroError,
    },
    /// A CRL older than one already admitted from the same CA.
    #[error("AWS Nitro CRL rollback: {0}")]
    Rollback(String),
}

impl NitroCrlError {
    /// The refusal code a document whose CRL could not be had gets (with revocation
    /// required, `NitroError::RevocationUnknown` follows: `collateral_unavailable`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rollback(_) => "collateral_rollback",
            Self::Fetch(_) | Self::Unavailable(_) | Self::Invalid { .. } => {
                "collateral_unavailable"
            }
        }
    }
}

/// How CRL bytes are read.
enum CrlFrom {
    /// Over HTTP(S): from each point's URL, or from `mirror` + the point's path.
    Http {
        mirror: Option<String>,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    },
    /// From `dir/<the point's file name>`.
    Dir(PathBuf),
    /// Nowhere: the configured source could not be set up (why).
    Failed(String),
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NitroCrlStats {
    /// Completed reads (network or file), successful or not.
    pub fetches: u64,
    /// Failed reads (network, status, size, content, signature, window, rollback).
    pub failures: u64,
    /// CRLs refused as older than the high-water mark.
    pub rollbacks: u64,
}

/// The Nitro collateral in force: root, intermediates cache, CRLs held per point.
pub struct NitroCrlCache {
    root: NitroRoot,
    intermediates: IntermediatesCache,
    mode: Revocation,
    from: CrlFrom,
    policy: RefreshPolicy,
    marks: Mutex<Arc<Marks>>,
    held: RwLock<HashMap<String, HeldCrl>>,
    /// Points held at most ([`MAX_HELD_CRLS`]; smaller in tests).
    held_cap: usize,
    /// Reads of held CRLs so far: the eviction order.
    reads: AtomicU64,
    /// One fetch at a time: concurrent misses wait for it, then read what it stored.
    fetching: tokio::sync::Mutex<()>,
    /// Points (by URL) whose last fetch failed: when to ask again and the delay that led
    /// there.
    backoff: Backoff<String>,
    /// Points a read found without a CRL, for [`Self::fetch_missing`].
    pending: Mutex<Vec<CrlPoint>>,
    /// Bumped on every CRL stored: verdicts made before are not reused.
    snapshot: AtomicU64,
    /// Called after each CRL stored, wherever the fetch came from (a handshake's miss, the
    /// refresher): open exchanges judge their verdict again on it.
    on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    rollbacks: AtomicU64,
}

impl std::fmt::Debug for NitroCrlCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NitroCrlCache")
            .field("root", &self.root.sha256())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl NitroCrlCache {
    /// Collateral under `root`, CRLs from `crls`, revocation `mode`; high-water marks of its
    /// own in memory until [`Self::with_marks`] shares the proxy's.
    pub fn new(
        root: NitroRoot,
        crls: &NitroCrlSpec,
        mode: Revocation,
        policy: RefreshPolicy,
    ) -> Result<Self, FetchError> {
        let from = match crls {
            NitroCrlSpec::Aws => CrlFrom::Http {
                mirror: None,
                tls: tls_config(None)?,
                timeout: Duration::from_secs(10),
            },
            NitroCrlSpec::Mirror(url) => CrlFrom::Http {
                mirror: Some(base_url(url)?),
                tls: tls_config(None)?,
                timeout: Duration::from_secs(10),
            },
            NitroCrlSpec::Dir(dir) => CrlFrom::Dir(dir.clone()),
        };
        Ok(Self::with_source(root, from, mode, policy))
    }

    /// Collateral whose source could not be set up: revocation required, no CRL ever had,
    /// so every document is refused (`collateral_unavailable`) and every fetch says `why`.
    pub fn failed(root: NitroRoot, why: String) -> Self {
        Self::with_source(
            root,
            CrlFrom::Failed(why),
            Revocation::Required,
            RefreshPolicy::default(),
        )
    }

    fn with_source(
        root: NitroRoot,
        from: CrlFrom,
        mode: Revocation,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            root,
            intermediates: IntermediatesCache::new(INTERMEDIATES_CACHED),
            mode,
            from,
            policy,
            marks: Mutex::new(Arc::new(Marks::in_memory())),
            held: RwLock::new(HashMap::new()),
            held_cap: MAX_HELD_CRLS,
            reads: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            backoff: Backoff::new(MAX_BACKOFF),
            pending: Mutex::new(Vec::new()),
            snapshot: AtomicU64::new(0),
            on_change: std::sync::OnceLock::new(),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
        }
    }

    /// Calls `f` after each CRL stored (set once).
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_change.set(Box::new(f));
    }

    /// Sets the per-request timeout (HTTP forms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        if let CrlFrom::Http { timeout: t, .. } = &mut self.from {
            *t = timeout;
        }
        self
    }

    /// Admits CRLs against `marks` (the proxy's, kept in its state directory).
    #[cfg_attr(not(all(test, feature = "sim")), allow(dead_code))]
    pub(crate) fn with_marks(self, marks: Arc<Marks>) -> Self {
        self.share_marks(&marks);
        self
    }

    /// Admits CRLs against `marks` from now on (the proxy's, shared by every generation).
    pub(crate) fn share_marks(&self, marks: &Arc<Marks>) {
        if let Ok(mut m) = self.marks.lock() {
            *m = Arc::clone(marks);
        }
    }

    /// Counters.
    pub fn stats(&self) -> NitroCrlStats {
        NitroCrlStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Takes over the CRLs `held` kept (a reload keeping the same source and root), so a
    /// reload does not make every enclave wait for a fetch again.
    pub(crate) fn adopt(&self, held: &NitroCrlCache) {
        if held.root.sha256() != self.root.sha256() {
            return;
        }
        let (Ok(from), Ok(mut to)) = (held.held.read(), self.held.write()) else {
            return;
        };
        for (url, h) in from.iter() {
            to.entry(url.clone()).or_insert_with(|| h.clone());
        }
    }

    /// Why the configured source could not be set up, if it could not.
    pub fn failure(&self) -> Option<&str> {
        match &self.from {
            CrlFrom::Failed(why) => Some(why),
            CrlFrom::Http { .. } | CrlFrom::Dir(_) => None,
        }
    }

    /// The same cache holding at most `cap` points (tests of the eviction).
    #[cfg(test)]
    fn with_held_cap(mut self, cap: usize) -> Self {
        self.held_cap = cap.max(1);
        self
    }

    /// Points held.
    pub fn held(&self) -> usize {
        self.held.read().map_or(0, |h| h.len())
    }

    fn count<T>(&self, r: Result<T, NitroCrlError>) -> Result<T, NitroCrlError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &r {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if matches!(e, NitroCrlError::Rollback(_)) {
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// Whether `point` has a CRL that is current at `now`.
    fn holds_current(&self, point: &CrlPoint, now: UnixTime) -> bool {
        self.held.read().is_ok_and(|h| {
            h.get(&point.url)
                .is_some_and(|c| c.point == *point && now <= c.crl.until())
        })
    }

    /// Fetches the CRL of every point in `points` (from a verified chain:
    /// [`crate::nitro::collateral::crl_points`]) that holds none current at `now`, checks
    /// and keeps it. `Ok`: how many were stored; `Err`: the first failure (the others were
    /// still tried).
    pub async fn fetch_for(
        &self,
        points: &[CrlPoint],
        now: UnixTime,
    ) -> Result<usize, NitroCrlError> {
        let _one = self.fetching.lock().await;
        let mut stored = 0;
        let mut first_error = None;
        for point in points {
            if self.holds_current(point, now) {
                continue;
            }
            // A point skipped or failed stays wanted: its backoff, not a lost list, decides
            // when it is asked again (an `if_available` chain accepted unchecked must become
            // checked once the CRL is back, even if no handshake misses it again).
            if let Some(at) = self.backoff.until(&point.url, now) {
                self.want(&[point]);
                first_error.get_or_insert(NitroCrlError::Unavailable(format!(
                    "the last fetch of {} failed; not asked again before {at}",
                    point.url
                )));
                continue;
            }
            match self.fetch_one(point, now).await {
                Ok(()) => stored += 1,
                Err(e) => {
                    self.backoff
                        .failed(point.url.clone(), now, &self.policy, ());
                    self.want(&[point]);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(stored),
            Some(e) => Err(e),
        }
    }

    /// Reads, checks, admits and stores the CRL of one point.
    async fn fetch_one(&self, point: &CrlPoint, now: UnixTime) -> Result<(), NitroCrlError> {
        let fetched = async {
            let der = self.read(point).await?;
            let invalid = |source| NitroCrlError::Invalid {
                url: point.url.clone(),
                source,
            };
            let checked = check_crl_for(&der, point, now).map_err(invalid)?;
            let marks = self
                .marks
                .lock()
                .map(|m| Arc::clone(&m))
                .map_err(|_| NitroCrlError::Unavailable("marks lock poisoned".into()))?;
            marks
                .admit_nitro_crl(&self.root.sha256(), checked.issuer(), checked.this_update())
                .map_err(|r| match r {
                    Refused::Rollback(why) => NitroCrlError::Rollback(why),
                    Refused::Full => {
                        NitroCrlError::Unavailable("the high-water marks are full".into())
                    }
                })?;
            Ok(checked)
        }
        .await;
        let checked = self.count(fetched)?;
        let mut held = self
            .held
            .write()
            .map_err(|_| NitroCrlError::Unavailable("cache lock poisoned".into()))?;
        let read = self.reads.fetch_add(1, Ordering::Relaxed);
        held::store(&mut held, self.held_cap, point, checked, now, read);
        drop(held);
        self.snapshot.fetch_add(1, Ordering::AcqRel);
        if let Some(f) = self.on_change.get() {
            f();
        }
        self.backoff.succeeded(&point.url);
        Ok(())
    }

    /// Fetches the CRLs of the points reads found without one (a handshake's miss, or an
    /// `if_available` chain checked without them); how many were stored. The caller bounds
    /// the time it waits (each request has its own timeout, but there may be many points).
    pub async fn fetch_missing(&self, now: UnixTime) -> usize {
        let points = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return 0,
        };
        if points.is_empty() {
            return 0;
        }
        let before = self.snapshot.load(Ordering::Acquire);
        if let Err(e) = self.fetch_for(&points, now).await {
            tracing::warn!("AWS Nitro CRL fetch: {e}");
        }
        let after = self.snapshot.load(Ordering::Acquire);
        usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX)
    }

    /// Refreshes held CRLs and fetches missing ones every `tick`, forever (the generation
    /// aborts it); `changed` is called after a pass that stored any.
    pub async fn refresh_loop(&self, tick: Duration, changed: impl Fn()) {
        loop {
            tokio::time::sleep(tick).await;
            let now = UnixTime::now();
            if self.refresh(now).await + self.fetch_missing(now).await > 0 {
                changed();
            }
        }
    }

    /// Remembers `points` that have no CRL held, for the next fetch.
    fn want(&self, points: &[&CrlPoint]) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        for p in points {
            if pending.len() < MAX_PENDING && !pending.contains(p) {
                pending.push((*p).clone());
            }
        }
    }

    /// The bytes at `point`: over HTTP (bounded, timed) or from the directory (bounded).
    async fn read(&self, point: &CrlPoint) -> Result<Vec<u8>, NitroCrlError> {
        match &self.from {
            CrlFrom::Http {
                mirror,
                tls,
                timeout,
            } => {
                let url = match mirror {
                    Some(base) => format!("{base}{}", point.path()),
                    None => point.url.clone(),
                };
                let (_, body) = http_get(&url, tls, None, (*timeout, MAX_CRL_LEN)).await?;
                Ok(body.to_vec())
            }
            CrlFrom::Dir(dir) => file::read_file(dir, point),
            CrlFrom::Failed(why) => Err(NitroCrlError::Unavailable(why.clone())),
        }
    }

    /// Fetches again every held CRL older than the refresh interval or within the margin of
    /// its nextUpdate; a failure (or a rollback) keeps the held one. Returns how many were
    /// replaced.
    pub async fn refresh(&self, now: UnixTime) -> usize {
        let interval = i64::try_from(self.policy.interval.as_secs()).unwrap_or(i64::MAX);
        let margin = i64::try_from(self.policy.margin.as_secs()).unwrap_or(i64::MAX);
        let due: Vec<CrlPoint> = match self.held.read() {
            Ok(held) => held
                .values()
                .filter(|h| {
                    now.0.saturating_sub(h.fetched_at.0) >= interval
                        || h.crl.until().0.saturating_sub(now.0) <= margin
                })
                .map(|h| h.point.clone())
                .collect(),
            Err(_) => return 0,
        };
        let _one = self.fetching.lock().await;
        let mut replaced = 0;
        for point in due {
            if self.backoff.until(&point.url, now).is_some() {
                continue;
            }
            match self.fetch_one(&point, now).await {
                Ok(()) => replaced += 1,
                Err(e) => {
                    self.backoff
                        .failed(point.url.clone(), now, &self.policy, ());
                    tracing::warn!(url = %point.url, "AWS Nitro CRL refresh failed, the held one stays until its nextUpdate: {e}");
                }
            }
        }
        replaced
    }
}

impl NitroCollateral for NitroCrlCache {
    fn root(&self) -> &NitroRoot {
        &self.root
    }

    fn intermediates(&self) -> &IntermediatesCache {
        &self.intermediates
    }

    fn revocation_mode(&self) -> Revocation {
        self.mode
    }

    fn held_crls(&self, points: &[CrlPoint]) -> Vec<Arc<CheckedCrl>> {
        let Ok(held) = self.held.read() else {
            return Vec::new();
        };
        let mut missing = Vec::new();
        let mut out = Vec::new();
        for p in points {
            match held.get(&p.url).filter(|h| h.point == *p) {
                Some(h) => {
                    h.read(self.reads.fetch_add(1, Ordering::Relaxed));
                    out.push(Arc::clone(&h.crl));
                }
                None => missing.push(p),
            }
        }
        drop(held);
        if !missing.is_empty() {
            self.want(&missing);
        }
        out
    }

    fn snapshot_id(&self) -> u64 {
        self.snapshot.load(Ordering::Acquire)
    }
}

/// The Nitro root `config` names: AWS Nitro Enclaves Root-G1 compiled in, or the first
/// certificate of `[collateral] nitro_trust_root` (a test PKI; warned).
pub(crate) fn nitro_root(config: &SourceConfig) -> Result<NitroRoot, SetupError> {
    let Some(path) = &config.nitro_trust_root else {
        return Ok(NitroRoot::aws());
    };
    let bad = |detail: String| SetupError::TrustRoot {
        path: path.display().to_string(),
        detail,
    };
    let pem = super::read(path, "Nitro trust root")?;
    let der = crate::dcap::pki::pem_chain(&pem, "Nitro trust root")
        .map_err(|e| bad(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| bad("no certificate".into()))?;
    let root = NitroRoot::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !root.is_aws() {
        tracing::warn!(path = %path.display(), sha256 = %root.sha256(), "[collateral] nitro_trust_root replaces AWS Nitro Enclaves Root-G1: only a test PKI (the simulated enclaves') should be trusted this way");
    }
    Ok(root)
}

/// The Nitro collateral `config` names (root, CRL source, revocation requirement).
pub fn nitro_collateral(config: &SourceConfig) -> Result<NitroCrlCache, SetupError> {
    let root = nitro_root(config)?;
    Ok(NitroCrlCache::new(
        root,
        &config.nitro_crls,
        config.nitro_revocation,
        config.refresh,
    )?)
}

mod file;
mod held;

// The test needs the sim Nitro PKI.
#[cfg(all(test, feature = "sim"))]
mod tests;
