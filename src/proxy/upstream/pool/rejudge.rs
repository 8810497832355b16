//! Judging pooled connections' certificates again: idle ones under a new collateral
//! snapshot before they are handed out, and any connection's (or exchange's) on demand, each
//! new verdict (or the refusal that cuts an exchange in flight) put into the audit trail
//! before the connection carries another byte.

use std::sync::Arc;

use super::{Conn, Pool};
use crate::audit::CutNote;
use crate::dcap::time::UnixTime;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::CertAppraisal;

impl Pool {
    /// Judges again, under the collateral snapshot in force, every idle connection to
    /// `target` whose verdict was made under an older one: re-appraising a known
    /// certificate is a verdict-cache lookup after the first. Accepted ones go back to the
    /// pool with their new verdict; on a refusal they are all closed and the refusal is
    /// what the request gets.
    pub(super) fn rejudge_stale(&self, target: &Target) -> Result<(), ProxyRefusal> {
        let verifier = &target.enclave.verifier;
        let snapshot = verifier.snapshot();
        let stale: Vec<Conn> = {
            let Ok(mut idle) = self.shard().lock() else {
                return Ok(());
            };
            let Some(conns) = idle.get_mut(target) else {
                return Ok(());
            };
            if conns.idle.iter().all(|c| c.verdict.snapshot == snapshot) {
                return Ok(());
            }
            let (stale, fresh) = std::mem::take(&mut conns.idle)
                .into_iter()
                .partition(|c| c.verdict.snapshot != snapshot);
            conns.idle = fresh;
            stale
        };
        let now = UnixTime::now();
        for mut conn in stale {
            match self.rejudge(target, &conn.verdict, now, None) {
                Ok(verdict) => {
                    conn.verdict = verdict;
                    self.checkin(target, conn);
                }
                Err(e) => {
                    tracing::warn!(host = %target.dest.host, error = %e, "a pooled connection is refused under the new collateral; closing it");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Judges the certificate behind `held` again under `target`'s verifier (this pool's
    /// generation) at `now`, and puts a new verdict (accepted or refused) into the audit
    /// trail before the connection carries another byte; a refusal that cuts an exchange in
    /// flight is recorded as that `cut` (`request`, `response`, `websocket`).
    pub(crate) fn rejudge(
        &self,
        target: &Target,
        held: &CachedVerdict,
        now: UnixTime,
        cut: Option<&str>,
    ) -> Result<Arc<CachedVerdict>, ProxyRefusal> {
        match target.enclave.verifier.verdict_for(&held.leaf, now) {
            Ok(verdict) => {
                self.saw(target, verdict.accepted.appraisal());
                self.audit
                    .record_verdict(target, self.generation, &verdict)
                    .map_err(ProxyRefusal::Internal)?;
                Ok(verdict)
            }
            Err(refused) => {
                self.saw(target, &refused.appraisal);
                let r = &refused.refusal;
                let written = match cut {
                    Some(what) => {
                        let note = CutNote {
                            what,
                            code: r.code.as_str(),
                            reasons: &r.reasons,
                        };
                        self.audit
                            .record_cut(target, self.generation, &refused.appraisal, note)
                    }
                    None => self
                        .audit
                        .record(target, self.generation, &refused.appraisal),
                };
                written.map_err(ProxyRefusal::Internal)?;
                Err(ProxyRefusal::Attestation(refused.refusal))
            }
        }
    }

    /// Records, under this pool's generation, an exchange in flight cut for a reason its
    /// certificate's appraisal `c` does not carry (its host is no longer an enclave host).
    pub(crate) fn record_cut(
        &self,
        target: &Target,
        c: &CertAppraisal,
        note: CutNote<'_>,
    ) -> Result<(), ProxyRefusal> {
        self.audit
            .record_cut(target, self.generation, c, note)
            .map_err(ProxyRefusal::Internal)
    }
}
