//! EDGE. Each enclave host's TCB under Intel's standard and early TCB data: the latest verdict
//! that admitted (or refused) a connection to it, kept for `GET /tcb`, the readiness detail
//! and the metrics, and a warning in the log once per host and collateral snapshot when the
//! early data would refuse it. Fed where verdicts are used, never per request.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::appraise::early::EarlyOutcome;
use crate::appraise::refusal::RefusalCode;
use crate::dcap::early::EarlyDigests;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::dcap::verify::TcbVerdict;
use crate::metrics::MAX_HOST_LABELS;
use crate::ratls::CertAppraisal;

/// What was judged that a warning was given for: the certificate, the standard TCB info and
/// the early data. Another of any is another snapshot, warned about again.
type Warned = (CertSha256, Option<[u8; 32]>, EarlyDigests);

/// One enclave host's latest judgement.
#[derive(Clone, Debug)]
pub(crate) struct HostTcb {
    /// The host as clients name it.
    pub(crate) host: String,
    /// The port of its latest connection.
    pub(crate) port: u16,
    /// `sgx` or `tdx`, when the quote parsed.
    pub(crate) tee: Option<&'static str>,
    /// The refusal code, when refused.
    pub(crate) code: Option<RefusalCode>,
    /// The TCB verdict under the standard data, when verification got that far.
    pub(crate) standard: Option<TcbVerdict>,
    /// The judgement under the early data (accepted enclaves only).
    pub(crate) early: Option<EarlyOutcome>,
    /// When it was judged.
    pub(crate) judged_at: UnixTime,
    warned: Option<Warned>,
}

impl HostTcb {
    /// True when the early data would refuse it.
    pub(crate) fn at_risk(&self) -> bool {
        self.early.as_ref().is_some_and(EarlyOutcome::at_risk)
            || self.code == Some(RefusalCode::TcbAtRisk)
    }

    /// When the early data becomes standard, if judged and dated.
    pub(crate) fn standard_from(&self) -> Option<UnixTime> {
        self.early
            .as_ref()
            .and_then(EarlyOutcome::judgement)
            .and_then(|j| j.standard_from)
    }
}

/// Every enclave host's latest judgement (at most [`MAX_HOST_LABELS`] hosts).
#[derive(Debug, Default)]
pub(crate) struct TcbWatch {
    hosts: Mutex<HashMap<String, HostTcb>>,
}

/// Whole days from `now` to `then` (negative once past), rounded down.
pub(crate) fn days_left(then: UnixTime, now: UnixTime) -> i64 {
    then.0.saturating_sub(now.0).div_euclid(86_400)
}

impl TcbWatch {
    /// Notes the verdict `c` for `host:port` at `now`; warns once per host and snapshot if
    /// the early data would refuse it.
    pub(crate) fn saw(&self, host: &str, port: u16, c: &CertAppraisal, now: UnixTime) {
        // Intel's TCB data (standard and early) says nothing of an SEV-SNP guest or a Nitro
        // enclave.
        if c.snp.is_some() || c.nitro.is_some() {
            return;
        }
        let a = &c.appraisal;
        let Ok(mut hosts) = self.hosts.lock() else {
            return;
        };
        if !hosts.contains_key(host) && hosts.len() >= MAX_HOST_LABELS {
            return;
        }
        let entry = hosts.entry(host.to_owned()).or_insert_with(|| HostTcb {
            host: host.to_owned(),
            port,
            tee: None,
            code: None,
            standard: None,
            early: None,
            judged_at: now,
            warned: None,
        });
        entry.port = port;
        entry.tee = a.quote.as_ref().map(|q| q.tee.as_str());
        entry.code = a.outcome.as_ref().err().map(|r| r.code);
        entry.standard = a.tcb.clone();
        entry.early = a.early.clone();
        entry.judged_at = now;
        let Some(j) = a.early.as_ref().and_then(EarlyOutcome::judgement) else {
            return;
        };
        let Some(refusal) = j.refusal.as_ref() else {
            return;
        };
        let key = (c.cert_sha256, a.collateral.map(|d| d.tcb_info), j.digests);
        if entry.warned == Some(key) {
            return;
        }
        entry.warned = Some(key);
        let standard_from = j.standard_from.map(UnixTime::to_rfc3339);
        let days = j.standard_from.map(|t| days_left(t, now));
        let refused_now = entry.code == Some(RefusalCode::TcbAtRisk);
        tracing::warn!(
            host,
            tee = entry.tee.unwrap_or("-"),
            standard_status = ?a.tcb.as_ref().map(|t| t.status.as_str()),
            early_status = ?j.tcb.as_ref().map(|t| t.status.as_str()),
            early_evaluation = j.tcb_evaluation_data_number,
            early_code = refusal.code.as_str(),
            reasons = %refusal.reasons.join("; "),
            standard_from = standard_from.as_deref().unwrap_or("unknown"),
            days_left = ?days,
            refused_now,
            "enclave host at risk: Intel's early TCB data (the next TCB recovery) refuses it; once that data is the standard data its connections are refused, unless its platform is updated"
        );
    }

    /// Every host's latest judgement, by host name.
    pub(crate) fn hosts(&self) -> Vec<HostTcb> {
        let mut all: Vec<HostTcb> = self
            .hosts
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.host.cmp(&b.host));
        all
    }
}
