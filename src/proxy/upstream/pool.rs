//! Attested upstream connections and their pool.
//!
//! A connection enters the pool only after its own handshake was verified and accepted; it
//! is reused while it lives and while that verdict is fresh. HTTP/2 connections are shared
//! (multiplexed); HTTP/1.1 connections serve one exchange at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::OwnedSemaphorePermit;

mod attest;
mod beside;
mod cap;
mod conn;
mod rejudge;

pub(crate) use attest::UpstreamOpen;
use cap::Shards;
pub(crate) use cap::{Held, UpstreamCap};
pub(crate) use conn::{Conn, Version};
use conn::{H1Ticket, Sender};

use crate::addr::Authority;
use crate::appraise::refusal::RefusalCode;
use crate::dcap::time::UnixTime;
use crate::metrics::Metrics;
use crate::proxy::body::ProxyBody;
use crate::proxy::cores;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::target::Target;
use crate::proxy::upstream::auditor::Auditor;
use crate::proxy::upstream::rewrite::prepare;
use crate::ratls::client::Attested;
use crate::ratls::GenerationId;
use crate::source::fetch::CollateralCache;
use crate::tcb_watch::TcbWatch;

/// HTTP/2 connections kept per destination (requests are spread over them round-robin).
pub(crate) const H2_CONNECTIONS: usize = 4;

/// HTTP/1.1 connections per destination (idle or in use) for HTTP/1.1 clients; beyond it
/// their requests share the HTTP/2 connections, so upstream connections stay bounded.
pub(crate) const H1_CONNECTIONS: usize = 64;

/// A destination's idle connections and its count of HTTP/1.1 connections.
#[derive(Default)]
struct TargetConns {
    idle: Vec<Conn>,
    h1_open: Arc<AtomicUsize>,
    /// When an HTTP/1.1 dial last failed: an HTTP/2-only enclave is not asked again at once.
    h1_failed: Option<Instant>,
    /// The dial beside borrowed connections (see `beside`).
    beside: beside::Beside,
}

/// The pool's connections by destination. foldhash, not std's SipHash: the map is hashed several
/// times per request under the pool's lock (a fast hash with a per-process random seed).
type ByTarget = HashMap<Target, TargetConns, foldhash::fast::RandomState>;

/// The connections of `target`, created if new. The key is cloned only then: this runs under the
/// pool's lock on every HTTP/1.1 request.
// Target hashes and compares its entry by identity (`Arc::ptr_eq`), never by the verifier's
// interior state, so the key cannot change while it is in the map.
#[allow(clippy::mutable_key_type)]
fn conns_of<'a>(idle: &'a mut ByTarget, target: &Target) -> Option<&'a mut TargetConns> {
    if !idle.contains_key(target) {
        idle.insert(target.clone(), TargetConns::default());
    }
    idle.get_mut(target)
}

/// How long HTTP/1.1 clients share HTTP/2 after an HTTP/1.1 dial to the destination failed.
const H1_RETRY_AFTER: Duration = Duration::from_secs(60);

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(0);

/// How the pool's idle connections are split: one shard per connection runtime in the
/// proxy ([`Sharding::cores`]), so a core's requests use connections its own runtime drives;
/// any split a test pretends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sharding {
    /// How many shards (at least one).
    count: usize,
    /// The calling thread's shard, before the modulo.
    here: fn() -> usize,
}

impl Sharding {
    /// One shard per started core runtime (one when none were started).
    pub(crate) fn cores() -> Self {
        Self::new(cores::count(), cores::index)
    }

    /// `count` shards, the calling thread's given by `here`.
    pub(crate) fn new(count: usize, here: fn() -> usize) -> Self {
        Self {
            count: count.max(1),
            here,
        }
    }

    /// The calling thread's shard.
    fn here(&self) -> usize {
        (self.here)() % self.count
    }
}

/// Verified connections by destination, shared by intercept, origination and routes.
pub(crate) struct Pool {
    next: AtomicUsize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    collateral: Option<Arc<CollateralCache>>,
    /// The SEV-SNP keys fetched on a handshake's miss, when they come from a KDS.
    snp_kds: Option<Arc<crate::source::kds::KdsCache>>,
    /// AWS Nitro CRLs, fetched on a handshake's miss.
    nitro_crls: Option<Arc<crate::source::nitro::NitroCrlCache>>,
    /// The upstream cap, shared with passthrough and across generations.
    upstream_cap: Arc<UpstreamCap>,
    /// Set when a reload replaced this pool's generation: its idle connections were closed,
    /// and one coming back from a request is closed too.
    retired: Arc<AtomicBool>,
    /// The audit trail, and the generation whose verdicts this pool's connections carry.
    audit: Arc<Auditor>,
    generation: GenerationId,
    /// Where each verdict's TCB judgements go, per host (`GET /tcb`, the at-risk warning).
    tcb: Arc<TcbWatch>,
    /// One shard per core ([`Sharding`]): a core's connections borrow the upstream
    /// connections its own runtime drives. Keyed by [`Target`], whose entry hashes by
    /// identity (see `conns_of`).
    #[allow(clippy::mutable_key_type)]
    idle: Arc<Shards>,
    sharding: Sharding,
    /// [`H1_CONNECTIONS`] split between the shards.
    h1_cap: usize,
}

impl Pool {
    /// The same pool fetching SEV-SNP keys from `kds` on a handshake's miss.
    pub(crate) fn with_snp_kds(mut self, kds: Option<Arc<crate::source::kds::KdsCache>>) -> Self {
        self.snp_kds = kds;
        self
    }

    /// The same pool fetching AWS Nitro CRLs from `crls` on a handshake's miss.
    pub(crate) fn with_nitro_crls(
        mut self,
        crls: Option<Arc<crate::source::nitro::NitroCrlCache>>,
    ) -> Self {
        self.nitro_crls = crls;
        self
    }

    /// A pool dialing with each target's verifier, its idle connections split by
    /// `sharding`; connections idle for `idle_timeout` are closed by [`Pool::sweep`].
    pub(crate) fn new(
        (audit, tcb): (Arc<Auditor>, Arc<TcbWatch>),
        generation: GenerationId,
        upstream_cap: Arc<UpstreamCap>,
        collateral: Option<Arc<CollateralCache>>,
        (connect_timeout, idle_timeout): (Duration, Duration),
        sharding: Sharding,
    ) -> Self {
        let shards = sharding.count;
        let idle: Arc<Shards> = (0..shards).map(|_| Mutex::default()).collect();
        upstream_cap.register(&idle);
        Self {
            next: AtomicUsize::new(0),
            connect_timeout,
            idle_timeout,
            collateral,
            snp_kds: None,
            nitro_crls: None,
            upstream_cap,
            retired: Arc::new(AtomicBool::new(false)),
            audit,
            generation,
            tcb,
            idle,
            sharding,
            h1_cap: H1_CONNECTIONS.div_ceil(shards),
        }
    }

    /// Retires this pool (a reload replaced its generation): its idle connections close at
    /// once, giving their places under the cap back, and every connection that comes back
    /// from a request in flight closes too. They used to hold their places until the idle
    /// sweep (300 s by default), so a reload at the cap made new requests wait and get 503.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for shard in self.idle.iter() {
            if let Ok(mut idle) = shard.lock() {
                for conns in idle.values_mut() {
                    conns.idle.clear();
                }
            }
        }
    }

    /// A share for one connection a client keeps open to `dest` (see [`Capacity::hold`]).
    pub(crate) fn hold(&self, dest: &Authority) -> Result<Held, ProxyRefusal> {
        self.upstream_cap.hold(dest)
    }

    /// The calling core's shard of the idle connections.
    fn shard(&self) -> &Mutex<ByTarget> {
        &self.idle[self.sharding.here()]
    }

    /// A usable idle connection, or a newly dialed and attested one, judged under the
    /// collateral in force.
    pub(crate) async fn checkout(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
    ) -> Result<Conn, ProxyRefusal> {
        self.rejudge_stale(target)?;
        self.checkout_judged(target, metrics).await
    }

    /// Hands the verdict `c` on a connection to `target` to the TCB watch.
    pub(super) fn saw(&self, target: &Target, c: &crate::ratls::CertAppraisal) {
        let host = target.dest.host.to_string();
        self.tcb.saw(&host, target.dest.port, c, UnixTime::now());
    }

    async fn checkout_judged(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
    ) -> Result<Conn, ProxyRefusal> {
        let now = UnixTime::now();
        if let Ok(mut idle) = self.shard().lock() {
            if let Some(TargetConns { idle: list, .. }) = idle.get_mut(target) {
                list.retain(|c| c.usable(now));
                // HTTP/2: share up to H2_CONNECTIONS connections round-robin, so the work of one
                // destination is not funnelled through a single connection task.
                let h2_count = list
                    .iter()
                    .filter(|c| c.is_h2() && c.current(target))
                    .count();
                if h2_count >= H2_CONNECTIONS {
                    let pick = self.next.fetch_add(1, Ordering::Relaxed) % h2_count;
                    if let Some(Conn {
                        sender: Sender::H2(s),
                        verdict,
                        id,
                        last_used,
                        home,
                        ..
                    }) = list
                        .iter_mut()
                        .filter(|c| c.is_h2() && c.current(target))
                        .nth(pick)
                    {
                        *last_used = Instant::now();
                        return Ok(Conn {
                            sender: Sender::H2(s.clone()),
                            verdict: Arc::clone(verdict),
                            id: *id,
                            h1_ticket: None,
                            last_used: *last_used,
                            home: *home,
                        });
                    }
                }
                // HTTP/1.1: take an idle connection out while it is in use.
                if h2_count == 0 {
                    if let Some(at) = list.iter().rposition(|c| c.free_h1() && c.current(target)) {
                        return Ok(list.swap_remove(at));
                    }
                }
            }
        }
        // With no connection of its own, another core's HTTP/1.1 connection dialed on this path
        // (an enclave without HTTP/2); those of HTTP/1.1 clients stay theirs, so an HTTP/2
        // client still gets HTTP/2.
        if !self.has_own(target) {
            if let Some(conn) = self.borrow_h1(target, now, |c| c.h1_ticket.is_none()) {
                return Ok(conn);
            }
        }
        // Boxed: dialing (TCP, TLS, attestation, HTTP handshake) is the cold path, and inline
        // its state would make every request's future, held per connection, tens of KiB.
        Box::pin(self.dial(target, metrics)).await
    }

    /// Closes pooled connections idle for longer than the idle timeout (an HTTP/2
    /// connection still carrying requests lives on with them) and forgets destinations
    /// left with nothing, so neither sockets nor map entries pile up.
    pub(crate) fn sweep(&self) {
        let timeout = self.idle_timeout;
        for shard in self.idle.iter() {
            let Ok(mut idle) = shard.lock() else {
                continue;
            };
            idle.retain(|_, conns| {
                conns.idle.retain(|c| c.last_used.elapsed() < timeout);
                !conns.idle.is_empty()
                    || conns.h1_open.load(Ordering::Relaxed) > 0
                    || conns
                        .h1_failed
                        .is_some_and(|at| at.elapsed() < H1_RETRY_AFTER)
                    || conns.beside.busy()
            });
        }
    }

    /// An idle or new HTTP/1.1 connection for an HTTP/1.1 client, or `None` if the cap is
    /// reached or the destination would not speak HTTP/1.1 (the caller then shares HTTP/2).
    async fn checkout_h1(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Conn>, ProxyRefusal> {
        let now = UnixTime::now();
        let ticketed = |c: &Conn| c.h1_ticket.is_some();
        if let Some(conn) = self.take_h1(self.shard(), target, now, ticketed) {
            return Ok(Some(conn));
        }
        // This core has no connection to `target` at all (idle or busy): another core's idle
        // one beats a new attested handshake. A core with connections of its own dials more
        // rather than borrow, so under load each core keeps driving its own.
        if !self.has_own(target) {
            if let Some(conn) = self.borrow_h1(target, now, ticketed) {
                // A client that keeps coming back gets one this core drives, dialed beside
                // its request (which never waits for that dial): see `beside`.
                self.dial_beside(target, metrics);
                return Ok(Some(conn));
            }
        }
        let ticket = {
            let Ok(mut idle) = self.shard().lock() else {
                return Ok(None);
            };
            let Some(conns) = conns_of(&mut idle, target) else {
                return Ok(None);
            };
            if conns
                .h1_failed
                .is_some_and(|at| at.elapsed() < H1_RETRY_AFTER)
            {
                return Ok(None);
            }
            let open = conns.h1_open.fetch_add(1, Ordering::Relaxed);
            let ticket = H1Ticket(Arc::clone(&conns.h1_open));
            if open >= self.h1_cap {
                return Ok(None);
            }
            ticket
        };
        match Box::pin(self.dial_once(target, metrics, &[b"http/1.1"])).await {
            Ok(mut conn) if !conn.is_h2() => {
                conn.h1_ticket = Some(ticket);
                Ok(Some(conn))
            }
            Ok(_) => Ok(None),
            // Missing collateral: the shared path fetches it and dials again.
            Err(ProxyRefusal::Attestation(r)) if r.code == RefusalCode::CollateralUnavailable => {
                Ok(None)
            }
            // A refusal stands (verifying again would not change it); waiting the connect
            // timeout twice would only double the client's wait.
            Err(
                e @ (ProxyRefusal::Attestation(_)
                | ProxyRefusal::Timeout(_)
                | ProxyRefusal::Capacity(_)
                | ProxyRefusal::Internal(_)),
            ) => Err(e),
            // No HTTP/1.1 (an HTTP/2-only enclave) or a TLS failure: the shared path dials
            // with its own ALPN and reports its own error.
            Err(_) => {
                if let Ok(mut idle) = self.shard().lock() {
                    idle.entry(target.clone()).or_default().h1_failed = Some(Instant::now());
                }
                Ok(None)
            }
        }
    }

    /// An idle, usable HTTP/1.1 connection to `target` judged under the collateral in force
    /// and passing `which`, taken out of `shard` (unusable ones there are dropped).
    fn take_h1(
        &self,
        shard: &Mutex<ByTarget>,
        target: &Target,
        now: UnixTime,
        which: impl Fn(&Conn) -> bool,
    ) -> Option<Conn> {
        let mut idle = shard.lock().ok()?;
        let conns = idle.get_mut(target)?;
        conns.idle.retain(|c| c.usable(now));
        let at = conns
            .idle
            .iter()
            .rposition(|c| c.free_h1() && c.current(target) && which(c))?;
        Some(conns.idle.swap_remove(at))
    }

    /// True if this core's shard holds or has out any connection to `target`.
    fn has_own(&self, target: &Target) -> bool {
        self.shard().lock().is_ok_and(|idle| {
            idle.get(target).is_some_and(|conns| {
                !conns.idle.is_empty() || conns.h1_open.load(Ordering::Relaxed) > 0
            })
        })
    }

    /// [`Pool::take_h1`] from the other cores' shards, for a core with none of its own: the
    /// connection's driver stays on its home core and it returns there after the request.
    fn borrow_h1(
        &self,
        target: &Target,
        now: UnixTime,
        which: impl Fn(&Conn) -> bool + Copy,
    ) -> Option<Conn> {
        let here = self.sharding.here();
        self.idle
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != here)
            .find_map(|(_, shard)| self.take_h1(shard, target, now, which))
    }

    /// Returns a connection for reuse, to its home shard.
    pub(crate) fn checkin(&self, target: &Target, mut conn: Conn) {
        conn.last_used = Instant::now();
        let Some(shard) = self.idle.get(conn.home) else {
            return;
        };
        if let Ok(mut idle) = shard.lock() {
            // Under the shard's lock: `retire` sets the flag before it empties the shards.
            if self.retired.load(Ordering::SeqCst) {
                return;
            }
            let Some(TargetConns { idle: list, .. }) = conns_of(&mut idle, target) else {
                return;
            };
            if conn.is_h2() {
                // A clone of a shared connection is already listed; a new one joins the set.
                let shared = list.iter().any(|c| c.id == conn.id);
                if shared || list.iter().filter(|c| c.is_h2()).count() >= H2_CONNECTIONS {
                    return;
                }
            }
            // HTTP/1.1 connections of HTTP/1.1 clients are already bounded by their cap.
            if conn.h1_ticket.is_some() || list.len() < 32 {
                list.push(conn);
                self.upstream_cap.went_idle();
            }
        }
    }

    async fn dial(&self, target: &Target, metrics: &Arc<Metrics>) -> Result<Conn, ProxyRefusal> {
        let (attested, permit) = self.attest_fetching(target, &[b"h2", b"http/1.1"]).await?;
        self.handshake(target, metrics, attested, permit).await
    }

    /// A place under `max_upstream_connections` for a new connection to `dest`: at the cap,
    /// an idle pooled connection is closed for it, now or as soon as one goes idle, within
    /// the connect timeout ([`UpstreamCap::permit`]).
    pub(crate) async fn upstream_permit(
        &self,
        dest: &Authority,
    ) -> Result<OwnedSemaphorePermit, ProxyRefusal> {
        self.upstream_cap.permit(dest, self.connect_timeout).await
    }

    async fn dial_once(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
        alpn: &[&[u8]],
    ) -> Result<Conn, ProxyRefusal> {
        let (attested, permit) = self.attest(target, alpn).await?;
        self.handshake(target, metrics, attested, permit).await
    }

    /// The HTTP handshake (by ALPN) on an attested connection, whose driver task holds the
    /// connection's place under the cap.
    async fn handshake(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
        attested: Attested,
        permit: OwnedSemaphorePermit,
    ) -> Result<Conn, ProxyRefusal> {
        let dest = &target.dest;
        let h2 = attested.stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(attested.stream);
        let open = UpstreamOpen::new(metrics, permit);
        let sender = if h2 {
            let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| {
                    ProxyRefusal::Unreachable(format!("HTTP/2 handshake with {dest}: {e}"))
                })?;
            tokio::spawn(async move {
                let _open = open;
                let _ = conn.await;
            });
            Sender::H2(s)
        } else {
            let (s, conn) = http1::handshake(io).await.map_err(|e| {
                ProxyRefusal::Unreachable(format!("HTTP/1.1 handshake with {dest}: {e}"))
            })?;
            tokio::spawn(async move {
                let _open = open;
                let _ = conn.await;
            });
            Sender::H1(s)
        };
        Ok(Conn {
            sender,
            verdict: attested.verdict,
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            h1_ticket: None,
            last_used: Instant::now(),
            home: self.sharding.here(),
        })
    }

    /// An attested connection to `target` for one request of a client speaking `version`,
    /// judged under the collateral in force.
    ///
    /// An HTTP/1.1 client's request goes over an HTTP/1.1 connection of its own while there
    /// are fewer than [`H1_CONNECTIONS`]: measured, that costs the proxy and the enclave less
    /// per request than multiplexing it onto HTTP/2 (see docs/benchmarks.md).
    pub(crate) async fn checkout_for(
        &self,
        target: &Target,
        metrics: &Arc<Metrics>,
        version: Version,
    ) -> Result<Conn, ProxyRefusal> {
        self.rejudge_stale(target)?;
        let h1 = match version {
            Version::Http1 => self.checkout_h1(target, metrics).await?,
            Version::Http2 => None,
        };
        match h1 {
            Some(c) => Ok(c),
            None => self.checkout_judged(target, metrics).await,
        }
    }

    /// Sends `req` over `conn` (from [`Pool::checkout_for`]), rewritten for the connection's
    /// HTTP version; the connection goes back to the pool once the response head is in.
    pub(crate) async fn send_on(
        &self,
        target: &Target,
        mut conn: Conn,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyRefusal> {
        let req = prepare(req, target, conn.is_h2());
        let result = match &mut conn.sender {
            Sender::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            Sender::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(resp) => {
                self.checkin(target, conn);
                Ok(resp)
            }
            Err(e) => Err(ProxyRefusal::Unreachable(format!(
                "upstream {}: {e}",
                target.dest
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
