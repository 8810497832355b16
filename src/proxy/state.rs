//! The proxy's state: the generation in force (configuration, enclave entries with their
//! verifiers, collateral source, upstream pool), the verdict cache and metrics shared
//! across generations, and reload, which builds a new generation and swaps it in.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::audited::Auditor;
use super::cores;
use super::pool::{Capacity, Pool};
use super::target::{Enclave, Target};
use crate::addr::{Authority, Host};
use crate::appraise::CollateralSource;
use crate::ca::LocalCa;
use crate::config::{Config, ConfigErrors, HostIndex};
use crate::dcap::trust::TrustAnchor;
use crate::metrics::Metrics;
use crate::ratls::{CacheStats, RaTlsVerifier, VerdictCache};
use crate::source::marks::Books;
use crate::source::{trust_and_collateral, CollateralSetup, SetupError};
use crate::tcb_watch::TcbWatch;

/// Generation ids: each configuration in force gets a new one.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// How often fetched collateral is checked for refresh.
const REFRESH_TICK: Duration = Duration::from_secs(10);

/// One configuration's worth of state. A reload builds a new one and swaps it in; open
/// tunnels keep the generation they started with.
pub struct Generation {
    /// The configuration.
    pub config: Config,
    /// The collateral source verifiers read.
    pub collateral: Arc<CollateralSetup>,
    enclaves: Vec<Arc<Enclave>>,
    /// Destination to entry (a position in `enclaves`), built once for the generation.
    index: HostIndex,
    /// Each sidecar route's listen address and its target, resolved once for the generation
    /// (`None`: its upstream is no enclave host of this configuration).
    routes: Vec<(SocketAddr, Option<Arc<Target>>)>,
    pub(super) pool: Pool,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if let Ok(mut r) = self.refresher.lock() {
            if let Some(t) = r.take() {
                t.abort();
            }
        }
    }
}

impl Generation {
    // What the proxy shares with every generation, passed one by one until the state is
    // regrouped (issue 25).
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: Config,
        anchor: &TrustAnchor,
        collateral: CollateralSetup,
        cache: &Arc<VerdictCache>,
        upstream: &Arc<Capacity>,
        audit: &Arc<Auditor>,
        (marks, tcb): (&Books, &Arc<TcbWatch>),
        changes: &Arc<Changes>,
    ) -> Self {
        let id = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = collateral.cache() {
            cache.share_marks(&marks.standard);
            cache.share_early_marks(&marks.early);
            // A new snapshot is a change open exchanges judge their verdict again on.
            let changes = Arc::clone(changes);
            cache.on_new_snapshot(move || changes.bump());
        }
        let collateral = Arc::new(collateral);
        let source: Arc<dyn CollateralSource + Send + Sync> = collateral.clone();
        let enclaves = config
            .enclaves
            .iter()
            .map(|e| {
                Arc::new(Enclave {
                    verifier: Arc::new(
                        RaTlsVerifier::new(
                            e.policy.clone(),
                            e.binding,
                            anchor.sha256(),
                            Arc::clone(&source),
                            Arc::clone(cache),
                        )
                        .in_generation(id),
                    ),
                    config: e.clone(),
                })
            })
            .collect();
        let mut g = Self {
            pool: Pool::new(
                (Arc::clone(audit), Arc::clone(tcb)),
                id,
                Arc::clone(upstream),
                collateral.cache().cloned(),
                config.limits.connect_timeout,
                config.limits.idle_timeout,
            ),
            enclaves,
            index: HostIndex::new(&config.enclaves),
            routes: Vec::new(),
            config,
            collateral,
            refresher: Mutex::new(None),
        };
        g.routes = g
            .config
            .routes
            .iter()
            .map(|r| (r.listen, g.target(&r.upstream).map(Arc::new)))
            .collect();
        g
    }

    /// The target of the sidecar route listening on `listen` under this generation, if the
    /// route is still configured and its upstream is an enclave host.
    pub(super) fn route_target(&self, listen: SocketAddr) -> Option<&Arc<Target>> {
        self.routes
            .iter()
            .find(|(l, _)| *l == listen)
            .and_then(|(_, t)| t.as_ref())
    }

    /// Starts prefetching and background refresh of fetched collateral (needs a runtime).
    pub(super) fn start_refresher(&self) {
        let Some(cache) = self.collateral.cache().cloned() else {
            return;
        };
        let prefetch = self.config.source.prefetch.clone();
        let task = tokio::spawn(async move {
            cache.prefetch(&prefetch).await;
            cache.refresh_loop(REFRESH_TICK).await;
        });
        if let Ok(mut r) = self.refresher.lock() {
            *r = Some(task);
        }
    }

    /// Stops refreshing this generation's collateral (it was replaced: the one in force
    /// refreshes, and judges every connection again before its next request).
    fn stop_refresher(&self) {
        if let Ok(mut r) = self.refresher.lock() {
            if let Some(t) = r.take() {
                t.abort();
            }
        }
    }

    /// What `dest` is under this generation's entries: the most specific entry covering
    /// it wins (an exact host beats a wildcard, a longer suffix a shorter one).
    pub(super) fn classify(&self, dest: &Authority) -> Destination {
        match self.index.find(dest).and_then(|i| self.enclaves.get(i)) {
            Some(e) => Destination::Enclave(Target::new(dest.clone(), e)),
            None if self.index.names_host(&dest.host) => Destination::EnclaveOtherPort,
            None => Destination::Other,
        }
    }

    /// True if `host:port` is where an enclave entry lives: an IP literal one of its
    /// `hosts` names (at any port: an enclave host is attested at every port or refused), or
    /// its `connect_to` address. Passthrough never reaches such an address.
    pub(super) fn is_enclave_address(&self, host: &Host, port: u16) -> bool {
        self.index.is_enclave_address(host, port)
    }

    /// The enclave destination `dest` is, if an entry covers it.
    pub(super) fn target(&self, dest: &Authority) -> Option<Target> {
        match self.classify(dest) {
            Destination::Enclave(t) => Some(t),
            Destination::EnclaveOtherPort | Destination::Other => None,
        }
    }
}

/// What a destination is to the proxy.
pub(super) enum Destination {
    /// Covered by an `[[enclave]]` entry: attested.
    Enclave(Target),
    /// A host an entry names, at a port no entry lists: refused, never tunnelled.
    EnclaveOtherPort,
    /// Not an enclave host: passthrough or deny.
    Other,
}

/// Reloads and new collateral snapshots, counted: what open exchanges judge their verdict
/// again on. Every relayed chunk reads the count (an integer compare); a body or an upgraded
/// connection waiting for its side subscribes to be woken by the next change.
#[derive(Debug)]
pub(super) struct Changes {
    count: AtomicU64,
    wake: watch::Sender<()>,
}

impl Changes {
    fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            wake: watch::Sender::new(()),
        }
    }

    /// Counts one change (after it took effect), then wakes whoever waits for one.
    pub(super) fn bump(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.wake.send_replace(());
    }

    /// Changes so far.
    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Woken by every change after this call (count first, then wake: a change counted
    /// before the subscription is seen by reading the count after it).
    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.wake.subscribe()
    }
}

/// Counts in-flight requests and tunnels so shutdown can wait for them.
#[derive(Debug, Default)]
pub(super) struct Drain {
    active: AtomicUsize,
    idle: Notify,
}

/// One in-flight request or tunnel, counted while it lives.
pub(super) struct DrainGuard(Arc<Drain>);

impl Drain {
    pub(super) fn enter(self: &Arc<Self>) -> DrainGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        DrainGuard(Arc::clone(self))
    }

    /// Waits up to `grace` until nothing is in flight; how many still were.
    pub(super) async fn wait(&self, grace: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

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
    pub(super) ca: LocalCa,
    cache: Arc<VerdictCache>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) drain: Arc<Drain>,
    pub(super) listening: AtomicBool,
    /// The addresses the proxy itself listens on (proxy, routes, admin): never a
    /// passthrough destination.
    own: Mutex<Vec<SocketAddr>>,
    /// The upstream cap, its shares and every generation's idle connections (fixed at
    /// start; a reload does not resize it).
    upstream: Arc<Capacity>,
    /// Generations replaced by a reload but still held by an open tunnel until its next
    /// request: their idle pooled connections are swept too.
    retired: Mutex<Vec<Weak<Generation>>>,
    /// The audit trail (its file and `required` are fixed at start).
    audit: Arc<Auditor>,
    /// The collateral high-water marks, standard and early, shared by every generation's
    /// collateral cache (in memory unless [`Proxy::with_marks`] gives the ones kept in the
    /// state directory).
    marks: Books,
    /// Each enclave host's TCB under the standard and the early data.
    tcb: Arc<TcbWatch>,
    /// Bumped after each reload's swap and each new collateral snapshot, so exchanges in
    /// flight (bodies, WebSockets) judge their enclave again under what is in force.
    pub(super) changes: Arc<Changes>,
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
        let cache = Arc::new(VerdictCache::new(10_000, config.verdict_max_age));
        let upstream = Arc::new(Capacity::new(config.limits.max_upstream_connections));
        let metrics = Arc::new(Metrics::default());
        let audit = Arc::new(Auditor::new(config.audit.as_ref(), &metrics));
        let marks = Books::in_memory();
        let tcb = Arc::new(TcbWatch::default());
        let changes = Arc::new(Changes::new());
        let generation = Generation::new(
            config,
            anchor,
            collateral,
            &cache,
            &upstream,
            &audit,
            (&marks, &tcb),
            &changes,
        );
        Self {
            current: RwLock::new(Arc::new(generation)),
            config_path: None,
            ca,
            cache,
            metrics,
            drain: Arc::default(),
            listening: AtomicBool::new(false),
            own: Mutex::new(Vec::new()),
            upstream,
            retired: Mutex::new(Vec::new()),
            audit,
            marks,
            tcb,
            changes,
        }
    }

    /// The collateral high-water marks, standard and early.
    pub(crate) fn marks(&self) -> &Books {
        &self.marks
    }

    /// Each enclave host's TCB under the standard and the early data.
    pub(crate) fn tcb_watch(&self) -> &TcbWatch {
        &self.tcb
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
        self.marks = marks;
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
        self.cache.stats()
    }

    /// The verdict cache (its verification-time histogram feeds the metrics).
    pub fn verdict_cache(&self) -> &VerdictCache {
        &self.cache
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
        self.audit.reopen();
    }

    /// Records an address the proxy listens on (the admin listener's, say).
    pub fn add_own_addr(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.own.lock() {
            own.push(addr);
        }
    }

    /// The addresses the proxy listens on.
    pub(super) fn own_addrs(&self) -> Vec<SocketAddr> {
        self.own.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Every generation still alive: the one in force and those open tunnels still hold.
    pub(super) fn generations(&self) -> Vec<Arc<Generation>> {
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
        let generation = Generation::new(
            config,
            &anchor,
            collateral,
            &self.cache,
            &self.upstream,
            &self.audit,
            (&self.marks, &self.tcb),
            &self.changes,
        );
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
            self.changes.bump();
        }
        if let Ok(mut retired) = self.retired.lock() {
            retired.retain(|g| g.strong_count() > 0);
            retired.push(Arc::downgrade(&old));
        }
        // Its idle connections give their places back now, not at the idle sweep.
        old.pool.retire();
        // Verdicts were made under the old policies: drop them all.
        self.cache.clear();
        Ok(Reloaded {
            enclaves,
            need_restart,
        })
    }
}
