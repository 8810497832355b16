//! One generation: a configuration in force with its enclave entries (each with the
//! verifier built for it), collateral source, routes and upstream pool; what a destination
//! is under it; and the count of changes (reloads, new collateral snapshots) that open
//! exchanges judge their verdict again on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::addr::{Authority, Host};
use crate::appraise::CollateralSource;
use crate::config::{Config, HostIndex};
use crate::dcap::trust::TrustAnchor;
use crate::proxy::target::{Enclave, Target};
use crate::proxy::upstream::auditor::Auditor;
use crate::proxy::upstream::pool::{Pool, Sharding, UpstreamCap};
use crate::ratls::verifier::{NitroVerifier, SnpVerifier};
use crate::ratls::{GenerationId, RaTlsVerifier, VerdictCache};
use crate::source::marks::Books;
use crate::source::nitro::{nitro_collateral, NitroCrlCache};
use crate::source::{CollateralSetup, SnpSetup};
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
    /// The SEV-SNP trust and collateral, when some entry is `tee = "snp"`.
    pub(crate) snp: Option<SnpSetup>,
    /// The AWS Nitro root, intermediates and CRLs, when some entry is `tee = "nitro"`.
    pub(crate) nitro: Option<Arc<NitroCrlCache>>,
    /// Counted on each new Nitro CRL the refresher stores.
    changes: Arc<Changes>,
    enclaves: Vec<Arc<Enclave>>,
    /// Destination to entry (a position in `enclaves`), built once for the generation.
    index: HostIndex,
    /// Each sidecar route's listen address and its target, resolved once for the generation
    /// (`None`: its upstream is no enclave host of this configuration).
    routes: Vec<(SocketAddr, Option<Arc<Target>>)>,
    pub(crate) pool: Pool,
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

/// What every generation shares, fixed when the proxy starts: a reload keeps them.
pub(crate) struct Shared {
    /// Accepted verdicts (keyed by generation, among others: a reload clears it anyway).
    pub(crate) cache: Arc<VerdictCache>,
    /// The upstream cap, its shares and every generation's idle connections.
    pub(crate) upstream_cap: Arc<UpstreamCap>,
    /// The audit trail (its file and `required` are fixed at start).
    pub(crate) audit: Arc<Auditor>,
    /// The collateral high-water marks, standard and early, shared by every generation's
    /// collateral cache (in memory unless the proxy is given the ones kept in the state
    /// directory).
    pub(crate) marks: Books,
    /// Each enclave host's TCB under the standard and the early data.
    pub(crate) tcb: Arc<TcbWatch>,
    /// Bumped after each reload's swap and each new collateral snapshot, so exchanges in
    /// flight (bodies, WebSockets) judge their enclave again under what is in force.
    pub(crate) changes: Arc<Changes>,
}

impl Generation {
    /// The generation of `config`, judged against `anchor` and `collateral`, with what
    /// every generation shares.
    pub(crate) fn new(
        config: Config,
        (anchor, collateral, snp): (&TrustAnchor, CollateralSetup, Option<SnpSetup>),
        shared: &Shared,
    ) -> Self {
        let id = GenerationId(NEXT_GENERATION.fetch_add(1, Ordering::Relaxed));
        if let Some(cache) = collateral.cache() {
            cache.share_marks(&shared.marks.standard);
            cache.share_early_marks(&shared.marks.early);
            // A new snapshot is a change open exchanges judge their verdict again on.
            let changes = Arc::clone(&shared.changes);
            cache.on_new_snapshot(move || changes.bump());
        }
        if let Some(kds) = snp.as_ref().and_then(SnpSetup::kds) {
            kds.share_marks(&shared.marks.standard);
            let changes = Arc::clone(&shared.changes);
            kds.on_change(move || changes.bump());
        }
        let nitro = nitro_setup(&config, shared);
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
                            Arc::clone(&shared.cache),
                        )
                        .with_snp(e.snp.clone().map(|policy| {
                            let setup = snp.as_ref().map_or_else(
                                || SnpSetup::failed("no SEV-SNP collateral was set up".into()),
                                |s| SnpSetup {
                                    trust: Arc::clone(&s.trust),
                                    source: Arc::clone(&s.source),
                                },
                            );
                            SnpVerifier {
                                policy,
                                source: setup.source,
                                trust: setup.trust,
                            }
                        }))
                        .with_nitro(
                            e.nitro
                                .clone()
                                .zip(nitro.clone())
                                .map(|(policy, collateral)| NitroVerifier { policy, collateral }),
                        )
                        .in_generation(id),
                    ),
                    config: e.clone(),
                })
            })
            .collect();
        let mut g = Self {
            pool: Pool::new(
                (Arc::clone(&shared.audit), Arc::clone(&shared.tcb)),
                id,
                Arc::clone(&shared.upstream_cap),
                collateral.cache().cloned(),
                (config.limits.connect_timeout, config.limits.idle_timeout),
                Sharding::cores(),
            )
            .with_snp_kds(snp.as_ref().and_then(SnpSetup::kds).cloned())
            .with_nitro_crls(nitro.clone()),
            enclaves,
            index: HostIndex::new(&config.enclaves),
            routes: Vec::new(),
            config,
            collateral,
            snp,
            nitro,
            changes: Arc::clone(&shared.changes),
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
    pub(crate) fn route_target(&self, listen: SocketAddr) -> Option<&Arc<Target>> {
        self.routes
            .iter()
            .find(|(l, _)| *l == listen)
            .and_then(|(_, t)| t.as_ref())
    }

    /// Starts prefetching and background refresh of fetched collateral (needs a runtime).
    pub(crate) fn start_refresher(&self) {
        let intel = self.collateral.cache().cloned();
        let kds = self.snp.as_ref().and_then(SnpSetup::kds).cloned();
        let nitro = self.nitro.clone();
        if intel.is_none() && kds.is_none() && nitro.is_none() {
            return;
        }
        let changes = Arc::clone(&self.changes);
        let prefetch = self.config.source.prefetch.clone();
        let task = tokio::spawn(async move {
            let intel = async {
                if let Some(cache) = intel {
                    cache.prefetch(&prefetch).await;
                    cache.refresh_loop(REFRESH_TICK).await;
                }
            };
            let snp = async {
                if let Some(kds) = kds {
                    kds.refresh_loop(REFRESH_TICK).await;
                }
            };
            let nitro = async {
                if let Some(crls) = nitro {
                    crls.refresh_loop(REFRESH_TICK, || changes.bump()).await;
                }
            };
            tokio::join!(intel, snp, nitro);
        });
        if let Ok(mut r) = self.refresher.lock() {
            *r = Some(task);
        }
    }

    /// Stops refreshing this generation's collateral (it was replaced: the one in force
    /// refreshes, and judges every connection again before its next request).
    pub(crate) fn stop_refresher(&self) {
        if let Ok(mut r) = self.refresher.lock() {
            if let Some(t) = r.take() {
                t.abort();
            }
        }
    }

    /// What `dest` is under this generation's entries: the most specific entry covering
    /// it wins (an exact host beats a wildcard, a longer suffix a shorter one).
    pub(crate) fn classify(&self, dest: &Authority) -> Destination {
        match self.index.find(dest).and_then(|i| self.enclaves.get(i)) {
            Some(e) => Destination::Enclave(Target::new(dest.clone(), e)),
            None if self.index.names_host(&dest.host) => Destination::EnclaveOtherPort,
            None => Destination::Other,
        }
    }

    /// True if `host:port` is where an enclave entry lives: an IP literal one of its
    /// `hosts` names (at any port: an enclave host is attested at every port or refused), or
    /// its `connect_to` address. Passthrough never reaches such an address.
    pub(crate) fn is_enclave_address(&self, host: &Host, port: u16) -> bool {
        self.index.is_enclave_address(host, port)
    }

    /// The enclave destination `dest` is, if an entry covers it.
    pub(crate) fn target(&self, dest: &Authority) -> Option<Target> {
        match self.classify(dest) {
            Destination::Enclave(t) => Some(t),
            Destination::EnclaveOtherPort | Destination::Other => None,
        }
    }
}

/// The Nitro collateral `config` names, when some entry is `tee = "nitro"`, admitting CRLs
/// against the proxy's marks. Fail closed: a source that cannot be set up (the root was
/// checked with the configuration) refuses every Nitro enclave, saying why.
fn nitro_setup(config: &Config, shared: &Shared) -> Option<Arc<NitroCrlCache>> {
    if !config.enclaves.iter().any(|e| e.nitro.is_some()) {
        return None;
    }
    let cache = nitro_collateral(&config.source).unwrap_or_else(|e| {
        tracing::error!("AWS Nitro collateral: {e}; every Nitro enclave is refused");
        NitroCrlCache::failed(crate::nitro::NitroRoot::aws(), e.to_string())
    });
    cache.share_marks(&shared.marks.standard);
    // A CRL stored on a handshake's miss is a change too, not only the refresher's.
    let changes = Arc::clone(&shared.changes);
    cache.on_change(move || changes.bump());
    Some(Arc::new(cache))
}

/// What a destination is to the proxy.
// Not boxed: a destination is classified for every CONNECT and absolute-form request and
// lives only until its handler takes the `Target`; a box would be an allocation each time.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Destination {
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
pub(crate) struct Changes {
    count: AtomicU64,
    /// A `Notify` rather than a `watch`: every request awaiting its head waits here, and a
    /// watch's subscribe, sharded wait and budget cost about twice as much per wait.
    wake: Notify,
}

impl Changes {
    pub(crate) fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    /// Counts one change (after it took effect), then wakes whoever waits for one.
    pub(crate) fn bump(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    /// Changes so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves at the first change after this call, polled or not (count first, then wake:
    /// a change counted before the call is seen by reading the count after it).
    pub(crate) fn next(&self) -> Notified<'_> {
        self.wake.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::Changes;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    /// What `Judge::refused_by_change` and a judged body rely on: a wait made before the
    /// count is read is woken by a change after it, polled or not; a wait made after a change
    /// waits for the next one.
    #[test]
    fn a_wait_is_woken_by_every_change_after_it_was_made() {
        let changes = Changes::new();
        let mut cx = Context::from_waker(Waker::noop());
        let made = changes.next();
        changes.bump();
        assert!(pin!(made).poll(&mut cx).is_ready(), "made, not polled");
        let mut later = pin!(changes.next());
        assert!(
            later.as_mut().poll(&mut cx).is_pending(),
            "the change before it"
        );
        let mut other = pin!(changes.next());
        assert!(other.as_mut().poll(&mut cx).is_pending());
        changes.bump();
        assert!(later.as_mut().poll(&mut cx).is_ready());
        assert!(other.as_mut().poll(&mut cx).is_ready(), "every waiter");
        assert_eq!(changes.count(), 2);
    }
}
