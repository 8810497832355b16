//! Putting verdicts into the audit trail from the proxy: once per verdict (a cache hit is
//! not a new verdict) and once more for each further host a cached verdict admits, before
//! the judged connection carries a byte; a failed write is logged and counted and, with
//! `[audit] required = true`, refuses the connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::audit::{AuditKey, AuditLog, CutNote, Judged, Use};
use crate::config::AuditConfig;
use crate::dcap::time::UnixTime;
use crate::metrics::Metrics;
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::{CertAppraisal, GenerationId};

/// The audit trail as the proxy uses it (disabled when not configured).
#[derive(Debug, Default)]
pub(crate) struct Auditor {
    log: Mutex<Option<AuditLog>>,
    required: bool,
    enabled: bool,
    metrics: Option<Arc<Metrics>>,
}

impl Auditor {
    /// Opens the configured trail; a file that cannot be opened makes every record fail
    /// (counted, and refusing connections when required) rather than stopping the proxy.
    pub(crate) fn new(config: Option<&AuditConfig>, metrics: &Arc<Metrics>) -> Self {
        let Some(c) = config else {
            return Self::default();
        };
        let key = match c.key_file.as_deref().map(AuditKey::read).transpose() {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit key");
                None
            }
        };
        let log = match key.map(|k| AuditLog::open(&c.path, k)) {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                tracing::error!(path = %c.path.display(), error = %e, "cannot open the audit trail");
                None
            }
            None => None,
        };
        Self {
            log: Mutex::new(log),
            required: c.required,
            enabled: true,
            metrics: Some(Arc::clone(metrics)),
        }
    }

    /// Reopens the file (SIGUSR1, after log rotation).
    pub(crate) fn reopen(&self) {
        if let Ok(log) = self.log.lock() {
            if let Some(l) = log.as_ref() {
                if let Err(e) = l.reopen() {
                    tracing::error!(error = %e, "cannot reopen the audit trail");
                }
            }
        }
    }

    /// Records `c` for `target`; `Err` only when the write failed and the trail is required.
    pub(crate) fn record(
        &self,
        target: &Target,
        generation: GenerationId,
        c: &CertAppraisal,
    ) -> Result<(), String> {
        self.record_as(target, generation, c, None)
    }

    /// Records the refusal that cut an exchange in flight, on `c` (the certificate's last
    /// appraisal); `Err` only when the write failed and the trail is required.
    pub(crate) fn record_cut(
        &self,
        target: &Target,
        generation: GenerationId,
        c: &CertAppraisal,
        cut: CutNote<'_>,
    ) -> Result<(), String> {
        self.record_as(target, generation, c, Some(cut))
    }

    fn record_as(
        &self,
        target: &Target,
        generation: GenerationId,
        c: &CertAppraisal,
        cut: Option<CutNote<'_>>,
    ) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let written = match self.log.lock() {
            Ok(log) => write(log.as_ref(), target, generation, c, Use::Verdict, cut),
            Err(_) => Err("audit lock poisoned".to_owned()),
        };
        self.outcome(target, written)
    }

    /// Records an accepted verdict the first time it admits a connection, and the first
    /// time it admits one to each further host (a wildcard entry's hosts served by one
    /// enclave: the trail says which hosts it served).
    pub(crate) fn record_verdict(
        &self,
        target: &Target,
        generation: GenerationId,
        v: &CachedVerdict,
    ) -> Result<(), String> {
        let (host, port) = (target.dest.host.to_string(), target.dest.port);
        let recorded = || v.audited.load(Ordering::Acquire) && v.recorded_for(&host, port);
        // Set only after a successful write: a use already in the trail takes no trail lock.
        if !self.enabled || recorded() {
            return Ok(());
        }
        // Checked again, written and marked under the trail's lock: a second connection the
        // same verdict admits meanwhile waits for the write instead of going ahead of it.
        let written = match self.log.lock() {
            Ok(log) => {
                if recorded() {
                    return Ok(());
                }
                let used = if v.audited.load(Ordering::Acquire) {
                    Use::Cached
                } else {
                    Use::Verdict
                };
                let w = write(
                    log.as_ref(),
                    target,
                    generation,
                    v.accepted.appraisal(),
                    used,
                    None,
                );
                if w.is_ok() {
                    v.record_for(&host, port);
                    v.audited.store(true, Ordering::Release);
                }
                w
            }
            Err(_) => Err("audit lock poisoned".to_owned()),
        };
        self.outcome(target, written)
    }

    /// Logs and counts a failed write; `Err` only when the trail is required.
    fn outcome(&self, target: &Target, written: Result<(), String>) -> Result<(), String> {
        let Err(e) = written else {
            return Ok(());
        };
        tracing::error!(host = %target.dest.host, error = %e, "audit record not written");
        if let Some(m) = &self.metrics {
            m.audit_write_failures.fetch_add(1, Ordering::Relaxed);
        }
        if self.required {
            Err(format!(
                "the audit trail cannot be written ({e}) and [audit] required = true"
            ))
        } else {
            Ok(())
        }
    }
}

/// One record of `c` for `target` into `log` (the caller holds the trail's lock).
fn write(
    log: Option<&AuditLog>,
    target: &Target,
    generation: GenerationId,
    c: &CertAppraisal,
    used: Use,
    cut: Option<CutNote<'_>>,
) -> Result<(), String> {
    let Some(l) = log else {
        return Err("the audit trail is not open".to_owned());
    };
    let host = target.dest.host.to_string();
    let judged = Judged {
        host: &host,
        port: target.dest.port,
        generation,
        policy: &target.enclave.config.policy,
        snp: target.enclave.config.snp.as_ref(),
        nitro: target.enclave.config.nitro.as_ref(),
        cut,
    };
    l.record(judged, c, used, UnixTime::now())
        .map_err(|e| e.to_string())
}
