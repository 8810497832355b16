//! Judging an open exchange again. A relayed body (request or response) and an upgraded
//! connection (a WebSocket) stand on the verdict their upstream connection was admitted by;
//! before each chunk, and when a reload or a new collateral snapshot fires, that verdict is
//! checked against the generation and collateral snapshot in force: two integer compares
//! and a clock read while nothing changed ([`Checkpoint`]), the certificate judged again (a
//! verdict-cache lookup after the first, audited like any verdict) when something did. A
//! refusal cuts the exchange: it is recorded once per exchange, in the audit trail as a
//! refused verdict marked with what was cut.

pub(crate) mod judged;

use std::sync::{Arc, Mutex, Weak};

use crate::audit::CutNote;
use crate::dcap::time::UnixTime;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::RaTlsVerifier;

/// What a refusal cut, as the audit trail names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A request in flight: its body on its way to the enclave, or its answer awaited.
    Request,
    /// A response whose head went out: its body on its way to the client.
    Response,
    /// An upgraded connection's bytes, either way.
    WebSocket,
}

impl Cut {
    /// The audit record's `cut` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::WebSocket => "websocket",
        }
    }
}

/// The verdict an exchange stands on, the generation and verifier it was made under, and
/// the refusal once there is one (every later check gives it at once: one cut, one record).
struct Held {
    generation: Weak<Generation>,
    verifier: Arc<RaTlsVerifier>,
    verdict: Arc<CachedVerdict>,
    refused: Option<ProxyRefusal>,
}

/// When a check last passed: the proxy's change count then, and the verdict's last valid
/// second. While the count has not moved and the second has not passed, the verdict stands.
#[derive(Clone, Copy, Debug)]
struct Standing {
    seen: u64,
    until: UnixTime,
}

/// Judges one exchange's (or upgraded connection's) certificate again whenever the
/// generation in force, its collateral snapshot or the verdict's validity changed; shared by
/// the exchange's directions, each looking through its own [`Checkpoint`].
pub(crate) struct Judge {
    proxy: Arc<Proxy>,
    /// The destination and the entry that admitted the connection.
    target: Arc<Target>,
    held: Mutex<Held>,
    /// Where every checkpoint starts: the verdict stood at creation, unless it was made
    /// under another generation or snapshot than the one in force (then `None`: the first
    /// chunk is judged again).
    start: Option<Standing>,
}

impl Judge {
    /// The exchange with `target`, admitted by `verdict` under `g`.
    pub(crate) fn new(
        proxy: &Arc<Proxy>,
        g: &Arc<Generation>,
        target: &Arc<Target>,
        verdict: Arc<CachedVerdict>,
    ) -> Self {
        // The count first: a change after this read is seen by every checkpoint.
        let seen = proxy.shared.changes.count();
        let verifier = Arc::clone(&target.enclave.verifier);
        let current = Arc::ptr_eq(&proxy.current(), g) && verifier.snapshot() == verdict.snapshot;
        let start = current.then_some(Standing {
            seen,
            until: verdict.valid_until,
        });
        Self {
            proxy: Arc::clone(proxy),
            target: Arc::clone(target),
            held: Mutex::new(Held {
                generation: if current {
                    Arc::downgrade(g)
                } else {
                    Weak::new()
                },
                verifier,
                verdict,
                refused: None,
            }),
            start,
        }
    }

    /// The proxy this exchange goes through.
    pub(crate) fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The refusal that cut this exchange, if one did.
    pub(crate) fn refused(&self) -> Option<ProxyRefusal> {
        self.held.lock().ok().and_then(|h| h.refused.clone())
    }

    /// The verdict's last valid second while the certificate is accepted under the
    /// generation in force, judged again (and audited) when anything it stands on changed;
    /// the refusal otherwise, recorded once, as a cut of `cut`.
    fn check(&self, cut: Cut) -> Result<UnixTime, ProxyRefusal> {
        let g = self.proxy.current();
        let now = UnixTime::now();
        let Ok(mut held) = self.held.lock() else {
            return Err(ProxyRefusal::Internal("exchange state poisoned".into()));
        };
        if let Some(refused) = &held.refused {
            return Err(refused.clone());
        }
        if std::ptr::eq(held.generation.as_ptr(), Arc::as_ptr(&g))
            && held.verifier.snapshot() == held.verdict.snapshot
            && now <= held.verdict.valid_until
        {
            return Ok(held.verdict.valid_until);
        }
        match self.judge_again(&g, &held.verdict, now, cut) {
            Ok((verifier, verdict)) => {
                let until = verdict.valid_until;
                *held = Held {
                    generation: Arc::downgrade(&g),
                    verifier,
                    verdict,
                    refused: None,
                };
                Ok(until)
            }
            Err(refusal) => {
                held.refused = Some(refusal.clone());
                Err(refusal)
            }
        }
    }

    /// The certificate behind `verdict` judged under `g`, through its pool so the new
    /// verdict is in the audit trail before another byte moves; a refusal is recorded there
    /// as a cut.
    fn judge_again(
        &self,
        g: &Generation,
        verdict: &CachedVerdict,
        now: UnixTime,
        cut: Cut,
    ) -> Result<(Arc<RaTlsVerifier>, Arc<CachedVerdict>), ProxyRefusal> {
        let dest = &self.target.dest;
        let Some(target) = g.target(dest) else {
            let refusal = ProxyRefusal::RequestDenied(format!(
                "{dest} is no longer a configured enclave host (the configuration was reloaded)"
            ));
            let reasons = refusal.reasons();
            let note = CutNote {
                what: cut.as_str(),
                code: refusal.code(),
                reasons: &reasons,
            };
            g.pool
                .record_cut(&self.target, verdict.accepted.appraisal(), note)?;
            return Err(refusal);
        };
        let verifier = Arc::clone(&target.enclave.verifier);
        let verdict = g.pool.rejudge(&target, verdict, now, Some(cut.as_str()))?;
        Ok((verifier, verdict))
    }

    /// Resolves with the refusal once a change (a reload, a new collateral snapshot) makes
    /// the certificate refused; never otherwise.
    pub(crate) async fn refused_by_change(self: &Arc<Self>, cut: Cut) -> ProxyRefusal {
        let mut checkpoint = Checkpoint::new(Arc::clone(self), cut);
        loop {
            // Waiting before looking: a change after the look wakes the wait below.
            let next = self.proxy.shared.changes.next();
            if checkpoint.changed() {
                if let Err(refusal) = checkpoint.pass() {
                    return refusal;
                }
            }
            next.await;
        }
    }
}

/// One direction's view of a [`Judge`]: a chunk passes on two integer compares and a clock
/// read while nothing changed since the last check; anything else is judged again.
pub(crate) struct Checkpoint {
    judge: Arc<Judge>,
    cut: Cut,
    standing: Option<Standing>,
}

impl Checkpoint {
    /// A checkpoint cutting `cut` when `judge` refuses.
    pub(crate) fn new(judge: Arc<Judge>, cut: Cut) -> Self {
        let standing = judge.start;
        Self {
            judge,
            cut,
            standing,
        }
    }

    /// The same view, cutting `cut` from now on (a request's checkpoint once its response
    /// head went out).
    pub(crate) fn cutting(mut self, cut: Cut) -> Self {
        self.cut = cut;
        self
    }

    /// The judge behind it.
    pub(crate) fn judge(&self) -> &Arc<Judge> {
        &self.judge
    }

    /// True if the generation or a collateral snapshot changed since the last check (or
    /// nothing was checked yet).
    pub(crate) fn changed(&self) -> bool {
        self.standing
            .is_none_or(|s| s.seen != self.judge.proxy.shared.changes.count())
    }

    /// `Ok(false)` while the verdict stands as last checked, `Ok(true)` when it was judged
    /// again and accepted, the refusal otherwise (the caller cuts the exchange).
    pub(crate) fn pass(&mut self) -> Result<bool, ProxyRefusal> {
        let count = self.judge.proxy.shared.changes.count();
        if let Some(s) = self.standing {
            if s.seen == count && UnixTime::now() <= s.until {
                return Ok(false);
            }
        }
        self.standing = None;
        let until = self.judge.check(self.cut)?;
        self.standing = Some(Standing { seen: count, until });
        Ok(true)
    }
}
