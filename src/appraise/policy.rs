//! PURE. Per-enclave policy: which verified identities and TCB states are acceptable.
//!
//! `evaluate` lists every violation; the headline code is the highest-ranked one
//! (the order of [`RefusalCode::ALL`]), so the same quote always gets the same code.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::app_identity::AppIdentityPolicy;
use super::td_policy::TdPolicy;
pub use super::violation::PolicyViolation;
use crate::appraise::refusal::Refusal;
use crate::dcap::identity::Identity;
use crate::dcap::ids::{IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::dcap::quote::{Body, TeeType};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::verify::{TcbVerdict, VerifiedQuote};

/// What an enclave (SGX) or a trust domain (TDX) must look like to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclavePolicy {
    /// The TEE the entry expects; a quote of the other kind is refused (`tee_mismatch`).
    /// `None`: the one its constraints imply (SGX fields: SGX, TD fields: TDX), else either.
    pub tee: Option<TeeType>,
    /// The TD allow-lists and minimums (TDX entries only).
    pub td: TdPolicy,
    /// The dstack app identity allow-lists (TDX entries only; judged on the certificate's
    /// replayed event log, see `app_identity`).
    pub app: AppIdentityPolicy,
    /// Allowed MRENCLAVE values; empty means any.
    pub mrenclave: Vec<MrEnclave>,
    /// Allowed MRSIGNER values; empty means any.
    pub mrsigner: Vec<MrSigner>,
    /// Required ISVPRODID.
    pub isv_prod_id: Option<IsvProdId>,
    /// Minimum ISVSVN.
    pub min_isv_svn: Option<IsvSvn>,
    /// Accept enclaves with the DEBUG attribute (their memory is readable by the host).
    pub allow_debug: bool,
    /// Accepted TCB statuses (`Revoked` is never accepted).
    pub tcb_statuses: Vec<TcbStatus>,
    /// If non-empty, every advisory of the TCB level must be listed here.
    pub allowed_advisories: Vec<String>,
    /// Refuse RA-TLS certificates issued (notBefore) longer ago than this many seconds.
    pub max_cert_age_secs: Option<u64>,
    /// Refuse collateral (TCB info, QE identity) issued longer ago than this many seconds.
    pub max_collateral_age_secs: Option<u64>,
    /// Refuse collateral (TCB info, QE identity) of a lower TCB evaluation data number.
    pub min_tcb_evaluation_data_number: Option<u32>,
    /// What Intel's early TCB data does to verdicts.
    pub early: EarlyMode,
}

impl Default for EnclavePolicy {
    /// The secure default: any identity, no DEBUG, `UpToDate` only.
    fn default() -> Self {
        Self {
            tee: None,
            td: TdPolicy::default(),
            app: AppIdentityPolicy::default(),
            mrenclave: Vec::new(),
            mrsigner: Vec::new(),
            isv_prod_id: None,
            min_isv_svn: None,
            allow_debug: false,
            tcb_statuses: vec![TcbStatus::UpToDate],
            allowed_advisories: Vec::new(),
            max_cert_age_secs: None,
            max_collateral_age_secs: None,
            min_tcb_evaluation_data_number: None,
            early: EarlyMode::Warn,
        }
    }
}

/// A verified quote that satisfies the policy. The only constructor is [`EnclavePolicy::evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The quote that was accepted.
    pub quote: VerifiedQuote,
}

impl EnclavePolicy {
    /// The cheap checks that run before any signature work: the quote is of the entry's
    /// TEE, and not a DEBUG enclave or TD. (A forged quote can only cause a refusal here,
    /// never an acceptance.)
    pub fn check_early(&self, body: &Body<'_>) -> Result<(), PolicyViolation> {
        self.check_tee(body.tee())?;
        match body {
            Body::Sgx(r) if r.attributes.is_debug() && !self.allow_debug => {
                Err(PolicyViolation::Debug(r.attributes))
            }
            Body::Td(t) if t.td_attributes.is_debug() && !self.allow_debug => {
                Err(PolicyViolation::DebugTd(t.td_attributes))
            }
            _ => Ok(()),
        }
    }

    /// Every violation of the policy by a verified quote.
    pub fn violations(&self, q: &VerifiedQuote) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        if let Err(v) = self.check_tee(q.identity.tee()) {
            // The other fields describe another kind of TEE: nothing else applies.
            out.push(v);
            return out;
        }
        match &q.identity {
            Identity::Sgx(id) => self.sgx_violations(id, &mut out),
            Identity::Td(td) => self.td.violations(td, self.allow_debug, &mut out),
        }
        if let Some(max) = self.max_collateral_age_secs {
            let age = q.verified_at.0.saturating_sub(q.collateral_issued.0);
            if age > i64::try_from(max).unwrap_or(i64::MAX) {
                out.push(PolicyViolation::CollateralAge {
                    issued: q.collateral_issued,
                    age,
                    max,
                });
            }
        }
        if let Some(min) = self.min_tcb_evaluation_data_number {
            if q.collateral_evaluation < min {
                out.push(PolicyViolation::EvaluationNumber {
                    actual: q.collateral_evaluation,
                    min,
                });
            }
        }
        out.extend(self.tcb_violations(&q.tcb));
        out
    }

    /// The violations of the policy's TCB rules (accepted statuses, allowed advisories) by a
    /// TCB verdict: the standard one, or one under Intel's early data.
    pub fn tcb_violations(&self, tcb: &TcbVerdict) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        let status = tcb.status;
        if status == TcbStatus::Revoked || !self.tcb_statuses.contains(&status) {
            out.push(PolicyViolation::TcbStatus {
                actual: status,
                accepted: self.tcb_statuses.clone(),
            });
        }
        if !self.allowed_advisories.is_empty() {
            let not_allowed: Vec<String> = tcb
                .advisory_ids
                .iter()
                .filter(|a| !self.allowed_advisories.contains(a))
                .cloned()
                .collect();
            if !not_allowed.is_empty() {
                out.push(PolicyViolation::Advisory {
                    not_allowed,
                    allowed: self.allowed_advisories.clone(),
                });
            }
        }
        out
    }

    /// The TEE this policy expects: the one it names, else the one its constraints imply.
    /// (A policy pinning MRENCLAVE must never wave a TD through because TDs have none.)
    pub fn expected_tee(&self) -> Option<TeeType> {
        let sgx = !self.mrenclave.is_empty()
            || !self.mrsigner.is_empty()
            || self.isv_prod_id.is_some()
            || self.min_isv_svn.is_some();
        let td = self.td != TdPolicy::default() || self.app.is_pinned();
        self.tee.or(match (sgx, td) {
            (true, _) => Some(TeeType::Sgx),
            (false, true) => Some(TeeType::Tdx),
            (false, false) => None,
        })
    }

    fn check_tee(&self, actual: TeeType) -> Result<(), PolicyViolation> {
        match self.expected_tee() {
            Some(expected) if expected != actual => Err(PolicyViolation::Tee {
                expected: expected.as_str(),
                actual: actual.as_str(),
            }),
            _ => Ok(()),
        }
    }

    fn sgx_violations(
        &self,
        id: &crate::dcap::identity::EnclaveIdentity,
        out: &mut Vec<PolicyViolation>,
    ) {
        if id.attributes.is_debug() && !self.allow_debug {
            out.push(PolicyViolation::Debug(id.attributes));
        }
        if !self.mrenclave.is_empty() && !self.mrenclave.contains(&id.mrenclave) {
            out.push(PolicyViolation::MrEnclave {
                actual: id.mrenclave,
                allowed: self.mrenclave.clone(),
            });
        }
        if !self.mrsigner.is_empty() && !self.mrsigner.contains(&id.mrsigner) {
            out.push(PolicyViolation::MrSigner {
                actual: id.mrsigner,
                allowed: self.mrsigner.clone(),
            });
        }
        if let Some(expected) = self.isv_prod_id {
            if id.isv_prod_id != expected {
                out.push(PolicyViolation::IsvProdId {
                    actual: id.isv_prod_id,
                    expected,
                });
            }
        }
        if let Some(min) = self.min_isv_svn {
            if id.isv_svn < min {
                out.push(PolicyViolation::IsvSvn {
                    actual: id.isv_svn,
                    min,
                });
            }
        }
    }

    /// The refusal the identity fields alone earn (allow-lists, product ID, minimum SVNs,
    /// TD attributes), if any: what can be decided without collateral.
    pub fn identity_refusal(&self, identity: &Identity) -> Option<Refusal> {
        let mut out = Vec::new();
        if let Err(v) = self.check_tee(identity.tee()) {
            out.push(v);
        } else {
            match identity {
                Identity::Sgx(id) => self.sgx_violations(id, &mut out),
                Identity::Td(td) => self.td.violations(td, self.allow_debug, &mut out),
            }
        }
        let code = out.iter().map(PolicyViolation::code).min()?;
        Some(Refusal {
            code,
            reasons: out.iter().map(ToString::to_string).collect(),
        })
    }

    /// Accepts the quote, or refuses it with every violation and the top-ranked code.
    pub fn evaluate(&self, quote: VerifiedQuote) -> Result<Accepted, Refusal> {
        let violations = self.violations(&quote);
        match violations.iter().map(PolicyViolation::code).min() {
            None => Ok(Accepted { quote }),
            Some(code) => Err(Refusal {
                code,
                reasons: violations.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}

/// What the early data does to verdicts (`[collateral] early`, or an entry's `early`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EarlyMode {
    /// Not fetched, not judged.
    Off,
    /// Judged and reported (metrics, log, audit, `/tcb`); verdicts unchanged.
    #[default]
    Warn,
    /// Judged, and what the early data refuses is refused now (`tcb_at_risk`).
    Enforce,
}

impl EarlyMode {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::Enforce => "enforce",
        }
    }
}

impl std::str::FromStr for EarlyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "warn" => Ok(Self::Warn),
            "enforce" => Ok(Self::Enforce),
            other => Err(format!(
                "early = `{other}`: expected \"off\", \"warn\" or \"enforce\""
            )),
        }
    }
}
