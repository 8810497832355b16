//! EDGE. SEV-SNP collateral from AMD's Key Distribution Service (KDS) or a server speaking
//! its paths: the product's `cert_chain` (ASK or ASVK, then the ARK) and CRL, and a chip's
//! VCEK for one reported TCB ("VCEK Certificate and KDS Interface Specification").
//!
//! Everything fetched is verified before it is kept (the chain to the pinned ARK, the CRL by
//! the ARK, the VCEK under the ASK and bound to the chip and TCB it was asked for: a VCEK
//! served for another chip never enters the cache under this one's key). A product CRL is
//! admitted against the same high-water marks as Intel's CRLs ([`Marks::admit_snp_crl`]):
//! a replay of an older, validly signed CRL is refused (`collateral_rollback`). A failed
//! refresh keeps serving the held chain until its own validity ends; reads never touch the
//! network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::fetch::RefreshPolicy;
use super::marks::{Marks, Refused};
use super::pcs::FetchError;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::snp::chain::VerifiedChain;
use crate::snp::report::SigningKey;
use crate::snp::verify::VerifiedVek;
use crate::snp::{Product, Report, SnpError, SnpTrust, Tcb};

/// AMD's KDS.
pub(crate) const AMD_KDS: &str = "https://kdsintf.amd.com";
/// Largest KDS answer accepted (a VCEK is about 1.4 KB, `cert_chain` about 4 KB, a CRL a
/// few KB).
pub(crate) const MAX_KDS_BODY: usize = 256 * 1024;
/// VCEK keys a handshake found missing remembered at most (until `fetch_missing`).
const MAX_MISSING: usize = 256;

pub use crate::appraise::snp_source::{SnpCollateralError as KdsError, SnpCollateralSource};
pub(crate) use endpoint::verify_vcek;
pub use endpoint::KdsEndpoint;

use backoff::{Asked, Backoff, NEW_CHIP_FAILURES};
use held::HeldVek;
use held::MAX_VCEKS;

mod backoff;
mod endpoint;
mod held;
mod refresh;

impl From<FetchError> for KdsError {
    fn from(e: FetchError) -> Self {
        Self::Fetch(e.to_string())
    }
}

/// The lookup key of a VCEK: product, CHIP_ID (64 bytes as the report has it) and TCB.
pub(crate) type VcekKey = (Product, [u8; 64], Tcb);

/// The key to look `report`'s VCEK up by, or why it has none.
pub(crate) fn vcek_key(report: &Report<'_>) -> Result<VcekKey, KdsError> {
    if report.signing_key != SigningKey::Vcek {
        return Err(KdsError::Unavailable(
            "a VLEK-signed report: the VLEK comes from the cloud provider with the evidence, KDS does not serve it".into(),
        ));
    }
    if report.chip_id.is_masked() {
        return Err(KdsError::Unavailable(
            "CHIP_ID is masked (all zeros): its VCEK cannot be asked for".into(),
        ));
    }
    let product = report
        .product()
        .map_err(|e| KdsError::Invalid(e.into()))?
        .ok_or_else(|| {
            KdsError::Unavailable(
                "a version 2 report names no product (no CPUID): give its VCEK offline".into(),
            )
        })?;
    let tcbs = report
        .tcbs(product)
        .map_err(|e| KdsError::Invalid(e.into()))?;
    Ok((product, report.chip_id.0, tcbs.reported))
}

/// The SHA-256 of `product`'s pinned ARK: the marks' root for its CRL.
fn ark_sha256(trust: &SnpTrust, product: Product) -> Option<CertSha256> {
    use sha2::Digest as _;
    let ark = trust.ark(product)?;
    Some(CertSha256(sha2::Sha256::digest(ark.der()).into()))
}

/// Admits `chain`'s CRL against `marks`.
pub(crate) fn admit_crl(
    marks: &Marks,
    trust: &SnpTrust,
    chain: &VerifiedChain,
) -> Result<(), KdsError> {
    match chain.crl_this_update() {
        Some(from) => admit_crl_issued(marks, trust, chain.product(), from),
        None => Ok(()),
    }
}

/// Admits a CRL of `product` issued at `from` against `marks`, raising its mark.
fn admit_crl_issued(
    marks: &Marks,
    trust: &SnpTrust,
    product: Product,
    from: UnixTime,
) -> Result<(), KdsError> {
    let Some(ark) = ark_sha256(trust, product) else {
        return Ok(());
    };
    marks
        .admit_snp_crl(&ark, product, from)
        .map_err(|r| match r {
            Refused::Rollback(why) => KdsError::Rollback(why),
            Refused::Full => KdsError::Unavailable("the high-water marks are full".into()),
        })
}

struct HeldChain {
    chain: Arc<VerifiedChain>,
    fetched_at: UnixTime,
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KdsStats {
    /// Completed fetches (a chain with its CRL counts once, a VCEK once).
    pub fetches: u64,
    /// Failed fetches (network, status, content, verification, rollback).
    pub failures: u64,
    /// Fetched CRLs refused as older than the high-water mark.
    pub rollbacks: u64,
}

/// Verified SEV-SNP collateral fetched from a KDS, by product and by chip and TCB.
pub struct KdsCache {
    endpoint: KdsEndpoint,
    trust: SnpTrust,
    policy: RefreshPolicy,
    marks: Mutex<Arc<Marks>>,
    chains: RwLock<HashMap<(Product, SigningKey), HeldChain>>,
    /// The VCEKs by chip and TCB, bounded per chip and in all (`held`).
    veks: RwLock<HashMap<VcekKey, HeldVek>>,
    /// One fetch at a time: concurrent misses wait for it, then read what it stored.
    fetching: tokio::sync::Mutex<()>,
    /// Chains and VCEKs whose last fetch failed, not asked for again before their delay
    /// ends (a KDS down, or a peer presenting made-up CHIP_IDs, must not turn each
    /// handshake into KDS requests).
    backoff: Backoff,
    fetches: AtomicU64,
    failures: AtomicU64,
    rollbacks: AtomicU64,
    /// Bumped each time a chain (and its CRL) or a VCEK is stored: the snapshot id.
    changes: AtomicU64,
    /// Products whose fetched CRL revokes their ASK/ASVK (until a chain verifies again):
    /// their reports are refused `revoked`.
    revoked: RwLock<HashMap<(Product, SigningKey), SnpError>>,
    /// Called after a refresh replaced a held chain or a CRL revoked one: open exchanges
    /// judge their verdict again.
    on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// VCEK keys a handshake asked for and found no key under (bounded; `fetch_missing`
    /// fetches them).
    missing: Mutex<Vec<VcekKey>>,
}

impl KdsCache {
    /// An empty cache fetching from `endpoint`, verifying to `trust`'s ARKs, with marks of
    /// its own in memory (the proxy's wiring will share its on-disk marks, as for PCS).
    pub fn new(endpoint: KdsEndpoint, trust: SnpTrust, policy: RefreshPolicy) -> Self {
        Self {
            endpoint,
            trust,
            policy,
            marks: Mutex::new(Arc::new(Marks::in_memory())),
            chains: RwLock::new(HashMap::new()),
            veks: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            backoff: Backoff::new(policy),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            revoked: RwLock::new(HashMap::new()),
            on_change: std::sync::OnceLock::new(),
            missing: Mutex::new(Vec::new()),
        }
    }

    /// Calls `f` after each change to what verdicts already made rest on (a held chain
    /// replaced, a chain revoked); set once.
    pub(crate) fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_change.set(Box::new(f));
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    /// Admits fetched CRLs against `marks` from now on (the proxy's, shared by every
    /// generation and kept in its state directory when it has one).
    pub(crate) fn share_marks(&self, marks: &Arc<Marks>) {
        if let Ok(mut m) = self.marks.lock() {
            *m = Arc::clone(marks);
        }
    }

    /// Takes over the chains and VCEKs `older` holds that this cache has none for: a reload
    /// that keeps the source keeps serving what was fetched, even with KDS unreachable at
    /// that moment (they were admitted against the same marks). Nothing is taken from a
    /// cache pinning other ARKs.
    pub(crate) fn adopt(&self, older: &KdsCache) {
        let same_roots = self.trust.arks().len() == older.trust.arks().len()
            && self
                .trust
                .arks()
                .iter()
                .zip(older.trust.arks())
                .all(|(a, b)| a.der() == b.der());
        if !same_roots {
            return;
        }
        if let (Ok(held), Ok(mut mine)) = (older.chains.read(), self.chains.write()) {
            for (k, h) in held.iter() {
                mine.entry(*k).or_insert_with(|| HeldChain {
                    chain: Arc::clone(&h.chain),
                    fetched_at: h.fetched_at,
                });
            }
        }
        if let (Ok(held), Ok(mut mine)) = (older.veks.read(), self.veks.write()) {
            for (k, h) in held.iter() {
                if mine.len() < MAX_VCEKS {
                    mine.entry(*k).or_insert_with(|| HeldVek {
                        der: h.der.clone(),
                        vek: Arc::clone(&h.vek),
                        stored: h.stored,
                    });
                }
            }
        }
        if let (Ok(held), Ok(mut mine)) = (older.revoked.read(), self.revoked.write()) {
            for (k, e) in held.iter() {
                mine.entry(*k).or_insert_with(|| e.clone());
            }
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Fetches the VCEKs (and chains) handshakes found missing, one at a time, each under
    /// its backoff; returns how many were asked for (failed or not, the answer is known: a
    /// handshake judged again gets the key, or the reason there is none).
    pub async fn fetch_missing(&self) -> usize {
        let keys: Vec<VcekKey> = self
            .missing
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        let now = UnixTime::now();
        let mut asked = 0;
        for key in keys {
            if self.backed_off(&key, now).is_some() {
                continue;
            }
            asked += 1;
            if let Err(e) = self.fetch_key(key, now).await {
                tracing::warn!(product = %key.0, "SEV-SNP collateral fetch failed: {e}");
            }
        }
        asked
    }

    /// Refreshes held chains every `tick`, and fetches what handshakes found missing.
    pub async fn refresh_loop(self: Arc<Self>, tick: Duration) {
        loop {
            tokio::time::sleep(tick).await;
            self.refresh(UnixTime::now()).await;
            self.fetch_missing().await;
        }
    }

    /// The chains and VCEKs held.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.chains.read().map_or(0, |c| c.len()),
            self.veks.read().map_or(0, |v| v.len()),
        )
    }

    fn note_missing(&self, key: VcekKey) {
        if let Ok(mut m) = self.missing.lock() {
            if m.len() < MAX_MISSING && !m.contains(&key) {
                m.push(key);
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> KdsStats {
        KdsStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
        }
    }

    fn count<T>(&self, r: Result<T, KdsError>) -> Result<T, KdsError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &r {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if matches!(e, KdsError::Rollback(_)) {
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    fn marks(&self) -> Result<Arc<Marks>, KdsError> {
        self.marks
            .lock()
            .map(|m| Arc::clone(&m))
            .map_err(|_| KdsError::Unavailable("marks lock poisoned".into()))
    }

    fn held_chain(&self, product: Product, kind: SigningKey) -> Option<Arc<VerifiedChain>> {
        let chains = self.chains.read().ok()?;
        chains.get(&(product, kind)).map(|h| Arc::clone(&h.chain))
    }

    /// Fetches, verifies and admits the chain for `product`, then stores it and verifies the
    /// held VCEKs of that product again under it (they carry the new CRL from then on).
    async fn fetch_chain(
        &self,
        product: Product,
        kind: SigningKey,
        now: UnixTime,
    ) -> Result<Arc<VerifiedChain>, KdsError> {
        let fetched = self
            .endpoint
            .fetch_chain(product, kind, &self.trust)
            .await
            .and_then(|chain| {
                let marks = self.marks()?;
                admit_crl(&marks, &self.trust, &chain)?;
                Ok(Arc::new(chain))
            });
        let asked = Asked::Chain(product, kind);
        let chain = match self.count(fetched) {
            Ok(chain) => {
                self.backoff.succeeded(asked);
                chain
            }
            Err(e) => {
                self.backoff.failed(asked, now, &e);
                if let KdsError::Invalid(r @ SnpError::Revoked { crl_issued, .. }) = &e {
                    // The revoking CRL raises the mark before anything else: a CRL issued
                    // before the revocation is a rollback from now on, after a restart or
                    // in another generation too (the `revoked` entry lives in memory only).
                    // Revoked whatever the marks say: a revocation is never undone here.
                    if let Err(why) = self
                        .marks()
                        .and_then(|m| admit_crl_issued(&m, &self.trust, product, *crl_issued))
                    {
                        tracing::warn!(%product, "the revoking SEV-SNP CRL did not raise the rollback mark: {why}");
                    }
                    if let Ok(mut revoked) = self.revoked.write() {
                        revoked.insert((product, kind), r.clone());
                    }
                    // Held keys of a revoked chain are never served again.
                    if let Ok(mut chains) = self.chains.write() {
                        chains.remove(&(product, kind));
                    }
                    if let Ok(mut veks) = self.veks.write() {
                        veks.retain(|k, _| k.0 != product || kind != SigningKey::Vcek);
                    }
                    self.changed();
                }
                return Err(e);
            }
        };
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.remove(&(product, kind));
        }
        let replaced = self.chains.write().is_ok_and(|mut chains| {
            chains
                .insert(
                    (product, kind),
                    HeldChain {
                        chain: Arc::clone(&chain),
                        fetched_at: now,
                    },
                )
                .is_some()
        });
        if kind == SigningKey::Vcek {
            if let Ok(mut veks) = self.veks.write() {
                veks.retain(|key, held| {
                    if key.0 != product {
                        return true;
                    }
                    match verify_vcek(&held.der, Arc::clone(&chain), key) {
                        Ok(v) => {
                            held.vek = Arc::new(v);
                            true
                        }
                        Err(e) => {
                            tracing::warn!(%product, "a held VCEK does not verify under the refreshed chain: {e}");
                            false
                        }
                    }
                });
            }
        }
        // Verdicts made under the chain it replaces are judged again (a new CRL may revoke).
        if replaced {
            self.changed();
        } else {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(chain)
    }

    /// Fetches what `report` needs that is not held (its product's chain and CRL, its VCEK),
    /// verified before it is stored; `now` dates the fetch for refreshing.
    pub async fn fetch_for(
        &self,
        report: &Report<'_>,
        now: UnixTime,
    ) -> Result<Arc<VerifiedVek>, KdsError> {
        self.fetch_key(vcek_key(report)?, now).await
    }

    /// [`Self::fetch_for`] by the VCEK's key.
    async fn fetch_key(&self, key: VcekKey, now: UnixTime) -> Result<Arc<VerifiedVek>, KdsError> {
        let _one = self.fetching.lock().await;
        if let Some(vek) = self.lookup(&key) {
            return Ok(vek);
        }
        if let Some(e) = self.backed_off(&key, now) {
            return Err(e);
        }
        let chain = match self.held_chain(key.0, SigningKey::Vcek) {
            Some(chain) => chain,
            None => self.fetch_chain(key.0, SigningKey::Vcek, now).await?,
        };
        let fetched = self.endpoint.fetch_vcek(&key, chain).await;
        let (der, vek) = match self.count(fetched) {
            Ok(ok) => ok,
            Err(e) => {
                if self.new_chip(&key) {
                    self.backoff.new_chip_failed(now);
                }
                self.backoff.failed(Asked::Vcek(key), now, &e);
                return Err(e);
            }
        };
        let vek = Arc::new(vek);
        let mut veks = self
            .veks
            .write()
            .map_err(|_| KdsError::Unavailable("cache lock poisoned".into()))?;
        let held = HeldVek {
            der,
            vek: Arc::clone(&vek),
            stored: self.changes.fetch_add(1, Ordering::Relaxed),
        };
        held::store(&mut veks, key, held, now);
        self.backoff.succeeded(Asked::Vcek(key));
        Ok(vek)
    }

    /// Why the last fetch for `key` failed: its VCEK's, or (with no chain held) its product
    /// chain's (a rollback stays `collateral_rollback`, not "nothing fetched yet").
    fn last_error(&self, key: &VcekKey) -> Option<KdsError> {
        self.backoff.last_error(Asked::Vcek(*key)).or_else(|| {
            self.held_chain(key.0, SigningKey::Vcek)
                .is_none()
                .then(|| {
                    self.backoff
                        .last_error(Asked::Chain(key.0, SigningKey::Vcek))
                })
                .flatten()
        })
    }

    /// Why `key` is not fetched at `now`: its VCEK's last fetch failed, or (with no chain
    /// held) its product chain's did, and the delay has not ended.
    fn backed_off(&self, key: &VcekKey, now: UnixTime) -> Option<KdsError> {
        if let Some(at) = self.backoff.until(Asked::Vcek(*key), now) {
            return Some(KdsError::Unavailable(format!(
                "the last fetch of this chip's VCEK failed; not asked again before {at}"
            )));
        }
        let chain = Asked::Chain(key.0, SigningKey::Vcek);
        if self.held_chain(key.0, SigningKey::Vcek).is_none() {
            if let Some(at) = self.backoff.until(chain, now) {
                return Some(KdsError::Unavailable(format!(
                    "the last fetch of the {} chain and CRL failed; not asked again before {at}",
                    key.0
                )));
            }
        }
        if self.new_chip(key) {
            if let Some(at) = self.backoff.new_chips_until(now) {
                return Some(KdsError::Unavailable(format!(
                    "{NEW_CHIP_FAILURES} fetches for chips never seen failed lately; no new chip is asked for before {at}"
                )));
            }
        }
        None
    }

    /// True when no VCEK of `key`'s chip is held and `key` never failed before (a repeat is
    /// held back by its own backoff): its fetch spends the budget for new chips.
    fn new_chip(&self, key: &VcekKey) -> bool {
        let held = self
            .veks
            .read()
            .is_ok_and(|v| v.keys().any(|k| k.0 == key.0 && k.1 == key.1));
        !held && !self.backoff.remembers(Asked::Vcek(*key))
    }

    fn lookup(&self, key: &VcekKey) -> Option<Arc<VerifiedVek>> {
        let veks = self.veks.read().ok()?;
        veks.get(key).map(|h| Arc::clone(&h.vek))
    }
}

impl SnpCollateralSource for KdsCache {
    fn chain_for(&self, product: Product, kind: SigningKey) -> Option<Arc<VerifiedChain>> {
        self.held_chain(product, kind)
    }

    fn snapshot_id(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    fn vek_for(&self, report: &Report<'_>) -> Result<Arc<VerifiedVek>, KdsError> {
        let key = vcek_key(report)?;
        if let Some(e) = self
            .revoked
            .read()
            .ok()
            .and_then(|r| r.get(&(key.0, SigningKey::Vcek)).cloned())
        {
            return Err(KdsError::Invalid(e));
        }
        self.lookup(&key).ok_or_else(|| {
            self.note_missing(key);
            self.last_error(&key).unwrap_or_else(|| {
                KdsError::Unavailable(format!(
                    "no VCEK fetched yet for this {} chip at its reported TCB",
                    key.0
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests;
