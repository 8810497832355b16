//! The proxy's state: the generation in force (configuration, enclave entries with their
//! verifiers, collateral source, upstream pool), the verdict cache and metrics shared
//! across generations, and reload, which builds a new generation and swaps it in.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::ca::LocalCa;
use crate::config::{Config, ConfigErrors};
use crate::dcap::trust::TrustAnchor;
use crate::metrics::Metrics;
use crate::proxy::cores;
use crate::proxy::upstream::auditor::Auditor;
use crate::proxy::upstream::pool::UpstreamCap;
use crate::ratls::{CacheStats, VerdictCache};
use crate::source::marks::Books;
use crate::source::{snp_collateral, trust_and_collateral, CollateralSetup, SetupError, SnpSetup};
use crate::tcb_watch::TcbWatch;

mod drain;
mod generation;

pub(crate) use drain::{Drain, DrainGuard};
pub(crate) use generation::{Changes, Destination, Generation, Shared};

/// Why a reload was rejected (the old configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was started without a file.
    #[error("no configuration file to reload (started without --config)")]
    NoFile,
    /// The file does not validate.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Its trust root or collateral cannot be set up.
    #[error("{0}")]
    Setup(#[from] SetupError),
}

/// What a reload changed, and what it could not.
#[derive(Debug)]
pub struct Reloaded {
    /// Enclave entries now in force.
    pub enclaves: usize,
    /// Settings that need a restart to change.
    pub need_restart: Vec<&'static str>,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} enclave entries", self.enclaves)?;
        for note in &self.need_restart {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// Shared proxy state.
pub struct Proxy {
    current: RwLock<Arc<Generation>>,
    config_path: Option<PathBuf>,
    pub(crate) ca: LocalCa,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) drain: Arc<Drain>,
    pub(crate) listening: AtomicBool,
    /// The addresses the proxy itself listens on (proxy, routes, admin): never a
    /// passthrough destination.
    own: Mutex<Vec<SocketAddr>>,
    /// Generations replaced by a reload but still held by an open tunnel until its next
    /// request: their idle pooled connections are swept too.
    retired: Mutex<Vec<Weak<Generation>>>,
    /// What every generation shares (the marks replaced by [`Proxy::with_marks`]).
    pub(crate) shared: Shared,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the proxy from a validated config, a trust anchor and a collateral source.
    pub fn new(
        config: Config,
        anchor: &TrustAnchor,
        collateral: CollateralSetup,
        ca: LocalCa,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let shared = Shared {
            cache: Arc::new(VerdictCache::new(10_000, config.verdict_max_age)),
            upstream_cap: Arc::new(UpstreamCap::new(config.limits.max_upstream_connections)),
            audit: Arc::new(Auditor::new(config.audit.as_ref(), &metrics)),
            marks: Books::in_memory(),
            tcb: Arc::new(TcbWatch::default()),
            changes: Arc::new(Changes::new()),
        };
        let has_snp = config.enclaves.iter().any(|e| e.snp.is_some());
        // Fail closed: a source that cannot be set up refuses every SEV-SNP guest, saying why.
        let snp = snp_collateral(&config.source, has_snp).unwrap_or_else(|e| {
            tracing::error!("SEV-SNP collateral: {e}; every SEV-SNP guest is refused");
            Some(SnpSetup::failed(e.to_string()))
        });
        let generation = Generation::new(config, (anchor, collateral, snp), &shared);
        Self {
            current: RwLock::new(Arc::new(generation)),
            config_path: None,
            ca,
            metrics,
            drain: Arc::default(),
            listening: AtomicBool::new(false),
            own: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            shared,
        }
    }

    /// The collateral high-water marks, standard and early.
    pub(crate) fn marks(&self) -> &Books {
        &self.shared.marks
    }

    /// Each enclave host's TCB under the standard and the early data.
    pub(crate) fn tcb_watch(&self) -> &TcbWatch {
        &self.shared.tcb
    }

    /// Uses `marks` (standard and early, read from the state directory) from now on: call
    /// before `start`.
    pub(crate) fn with_marks(mut self, marks: Books) -> Self {
        for m in [&marks.standard, &marks.early] {
            if let Some(path) = m.path() {
                tracing::info!(path = %path.display(), "collateral high-water marks");
            }
        }
        if let Some(c) = self.current().collateral.cache() {
            c.share_marks(&marks.standard);
            c.share_early_marks(&marks.early);
        }
        // AMD's product CRLs are held to the same marks (keyed by their ARK).
        if let Some(kds) = self.current().snp.as_ref().and_then(SnpSetup::kds) {
            kds.share_marks(&marks.standard);
        }
        // So are AWS's Nitro CRLs (keyed by the Nitro root).
        if let Some(crls) = &self.current().nitro {
            crls.share_marks(&marks.standard);
        }
        self.shared.marks = marks;
        self
    }

    /// Remembers the file to re-read on reload.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    /// The generation in force.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Verdict cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// The verdict cache (its verification-time histogram feeds the metrics).
    pub fn verdict_cache(&self) -> &VerdictCache {
        &self.shared.cache
    }

    /// The local CA.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Reopens the audit trail's file (SIGUSR1: log rotation).
    pub fn reopen_audit(&self) {
        self.shared.audit.reopen();
    }

    /// Records an address the proxy listens on (the admin listener's, say).
    pub fn add_own_addr(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.own.lock() {
            own.push(addr);
        }
    }

    /// The addresses the proxy listens on.
    pub(crate) fn own_addrs(&self) -> Vec<SocketAddr> {
        self.own.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Every generation still alive: the one in force and those open tunnels still hold.
    pub(crate) fn generations(&self) -> Vec<Arc<Generation>> {
        let mut all = vec![self.current()];
        if let Ok(mut retired) = self.retired.lock() {
            retired.retain(|g| g.strong_count() > 0);
            all.extend(retired.iter().filter_map(Weak::upgrade));
        }
        all
    }

    /// True once the listeners are bound, until shutdown begins.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Re-reads the config file and swaps it in if valid; the old one stays otherwise.
    /// Listen addresses, routes and the CA directory need a restart to change.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.reload_inner();
        match &result {
            Ok(done) => {
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("configuration reloaded: {done}");
            }
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("configuration reload rejected, keeping the old one: {e}");
            }
        }
        result
    }

    fn reload_inner(&self) -> Result<Reloaded, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let (anchor, collateral) =
            trust_and_collateral(&config.source, !config.enclaves.is_empty())?;
        let snp = snp_collateral(
            &config.source,
            config.enclaves.iter().any(|e| e.snp.is_some()),
        )?;
        let old = self.current();
        let mut need_restart = Vec::new();
        if config.listen != old.config.listen || config.admin_listen != old.config.admin_listen {
            need_restart.push("listen addresses need a restart to change");
        }
        if config
            .routes
            .iter()
            .map(|r| r.listen)
            .ne(old.config.routes.iter().map(|r| r.listen))
        {
            need_restart.push("route listeners need a restart to change");
        }
        // Against what runs, not the previous file: a second reload must say it again.
        if cores::started() && cores::resolve(config.limits.threads) != cores::count() {
            need_restart.push("limits.threads needs a restart to change");
        }
        if config.ca_dir != old.config.ca_dir {
            need_restart.push("the CA directory needs a restart to change");
        }
        if config.state_dir != old.config.state_dir {
            need_restart.push("state_dir needs a restart to change");
        }
        // The same source keeps what it fetched: with PCS or the PCCS unreachable right now,
        // the snapshots still serve until their own nextUpdate.
        if let (Some(new), Some(held)) = (collateral.cache(), old.collateral.cache()) {
            if config.source.same_origin(&old.config.source) {
                new.adopt(held);
            }
        }
        let kds = |s: &Option<SnpSetup>| s.as_ref().and_then(SnpSetup::kds).cloned();
        if let (Some(new), Some(held)) = (kds(&snp), kds(&old.snp)) {
            if config.source.same_origin(&old.config.source) {
                new.adopt(&held);
            }
        }
        let same_origin = config.source.same_origin(&old.config.source);
        let generation = Generation::new(config, (&anchor, collateral, snp), &self.shared);
        if let (Some(new), Some(held)) = (&generation.nitro, &old.nitro) {
            if same_origin {
                new.adopt(held);
            }
        }
        generation.start_refresher();
        old.stop_refresher();
        let enclaves = generation.config.enclaves.len();
        {
            let mut current = match self.current.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            *current = Arc::new(generation);
            // Counted as the swap takes effect (chunks check the count, not the lock): a
            // chunk checked after this point is judged under the new generation. Whoever
            // wakes up finds it in force once the lock is released.
            self.shared.changes.bump();
        }
        if let Ok(mut retired) = self.retired.lock() {
            retired.retain(|g| g.strong_count() > 0);
            retired.push(Arc::downgrade(&old));
        }
        // Its idle connections give their places back now, not at the idle sweep.
        old.pool.retire();
        // Verdicts were made under the old policies: drop them all.
        self.shared.cache.clear();
        Ok(Reloaded {
            enclaves,
            need_restart,
        })
    }
}
