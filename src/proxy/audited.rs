//! Putting verdicts into the audit trail from the proxy: once per verdict (a cache hit is
//! not a new verdict), before the judged connection carries a byte; a failed write is
//! logged and counted and, with `[audit] required = true`, refuses the connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::target::Target;
use crate::audit::{AuditLog, Judged};
use crate::config::AuditConfig;
use crate::dcap::time::UnixTime;
use crate::metrics::Metrics;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::CertAppraisal;

/// The audit trail as the proxy uses it (disabled when not configured).
#[derive(Debug, Default)]
pub(super) struct Auditor {
    log: Mutex<Option<AuditLog>>,
    required: bool,
    enabled: bool,
    metrics: Option<Arc<Metrics>>,
}

impl Auditor {
    /// Opens the configured trail; a file that cannot be opened makes every record fail
    /// (counted, and refusing connections when required) rather than stopping the proxy.
    pub(super) fn new(config: Option<&AuditConfig>, metrics: &Arc<Metrics>) -> Self {
        let Some(c) = config else {
            return Self::default();
        };
        let log = match AuditLog::open(&c.path) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(path = %c.path.display(), error = %e, "cannot open the audit trail");
                None
            }
        };
        Self {
            log: Mutex::new(log),
            required: c.required,
            enabled: true,
            metrics: Some(Arc::clone(metrics)),
        }
    }

    /// Reopens the file (SIGHUP, after log rotation).
    pub(super) fn reopen(&self) {
        if let Ok(log) = self.log.lock() {
            if let Some(l) = log.as_ref() {
                if let Err(e) = l.reopen() {
                    tracing::error!(error = %e, "cannot reopen the audit trail");
                }
            }
        }
    }

    /// Records `c` for `target`; `Err` only when the write failed and the trail is required.
    pub(super) fn record(
        &self,
        target: &Target,
        generation: u64,
        c: &CertAppraisal,
    ) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let host = target.dest.host.to_string();
        let judged = Judged {
            host: &host,
            port: target.dest.port,
            generation,
            policy: &target.enclave.config.policy,
        };
        let written = match self.log.lock() {
            Ok(log) => match log.as_ref() {
                Some(l) => l
                    .record(judged, c, UnixTime::now())
                    .map_err(|e| e.to_string()),
                None => Err("the audit trail is not open".to_owned()),
            },
            Err(_) => Err("audit lock poisoned".to_owned()),
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(host, error = %e, "audit record not written");
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
    }

    /// Records an accepted verdict the first time it admits a connection.
    pub(super) fn record_verdict(
        &self,
        target: &Target,
        generation: u64,
        v: &CachedVerdict,
    ) -> Result<(), String> {
        if !self.enabled || v.audited.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.record(target, generation, &v.appraisal);
        if result.is_err() {
            // Not in the trail: the next connection it admits tries again.
            v.audited.store(false, Ordering::Release);
        }
        result
    }
}
