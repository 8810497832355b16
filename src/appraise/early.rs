//! PURE. An accepted enclave judged under Intel's early TCB data too: would the next TCB
//! recovery's data refuse it under its entry's policy (its platform or TDX module out of
//! date, an advisory the policy does not allow, its QE out of date), and from when. Made once
//! per verdict, never per request; time and collateral are parameters.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fmt;

pub use super::policy::EarlyMode;
use super::policy::{EnclavePolicy, PolicyViolation};
use super::refusal::{Refusal, RefusalCode};
use crate::dcap::collateral::CollateralError;
use crate::dcap::early::{self, EarlyDigests, VerifiedEarly};
use crate::dcap::error::VerifyError;
use crate::dcap::time::UnixTime;
use crate::dcap::verify::{TcbVerdict, VerifiedQuote};

/// The judgement of an accepted enclave under the early data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlyJudgement {
    /// The early data's TCB evaluation data number.
    pub tcb_evaluation_data_number: u32,
    /// The TCB verdict under the early data (none when the early data knows no TCB level for
    /// the platform, or another QE or TDX module).
    pub tcb: Option<TcbVerdict>,
    /// What the early data would refuse the enclave with: it is at risk.
    pub refusal: Option<Refusal>,
    /// When the early data becomes Intel's standard data, if the evaluation data numbers
    /// list dates it.
    pub standard_from: Option<UnixTime>,
    /// Which early data.
    pub digests: EarlyDigests,
}

impl EarlyJudgement {
    /// True when the early data would refuse the enclave.
    pub fn at_risk(&self) -> bool {
        self.refusal.is_some()
    }
}

/// Why no early judgement was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No early data is held for the platform.
    NotHeld,
    /// The early data held is not valid at the verification time.
    Stale(VerifyError),
    /// The standard data is newer than the early data held (Intel has made it standard, and
    /// the early data held predates that): the standard verdict says it all.
    Superseded {
        /// The standard data's evaluation data number.
        standard: u32,
        /// The early data's.
        early: u32,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHeld => f.write_str("no early TCB data is held for this platform"),
            Self::Stale(e) => write!(f, "the early TCB data is not valid now: {e}"),
            Self::Superseded { standard, early } => write!(
                f,
                "the standard TCB data ({standard}) is newer than the early data held ({early})"
            ),
        }
    }
}

/// The early data's say on an accepted enclave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EarlyOutcome {
    /// Judged.
    Judged(EarlyJudgement),
    /// Not judged, and why.
    Unavailable(Unavailable),
}

impl EarlyOutcome {
    /// The judgement, if made.
    pub fn judgement(&self) -> Option<&EarlyJudgement> {
        match self {
            Self::Judged(j) => Some(j),
            Self::Unavailable(_) => None,
        }
    }

    /// True when the early data would refuse the enclave.
    pub fn at_risk(&self) -> bool {
        self.judgement().is_some_and(EarlyJudgement::at_risk)
    }

    /// The JSON the audit trail, `verify --json` and `GET /tcb` show: `status`, `at_risk`,
    /// `standard_from` (RFC 3339 or null), `tcb_evaluation_data_number`, `advisory_ids`,
    /// `code` and `reasons` (what the early data would refuse it with); or `at_risk: false`
    /// and why it was `unavailable`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Judged(j) => serde_json::json!({
                "tcb_evaluation_data_number": j.tcb_evaluation_data_number,
                "status": j.tcb.as_ref().map(|t| t.status.as_str()),
                "advisory_ids": j.tcb.as_ref().map(|t| t.advisory_ids.clone()).unwrap_or_default(),
                "at_risk": j.at_risk(),
                "code": j.refusal.as_ref().map(|r| r.code.as_str()),
                "reasons": j.refusal.as_ref().map(|r| r.reasons.clone()).unwrap_or_default(),
                "standard_from": j.standard_from.map(UnixTime::to_rfc3339),
            }),
            Self::Unavailable(why) => serde_json::json!({
                "at_risk": false,
                "unavailable": why.to_string(),
            }),
        }
    }
}

/// Judges `quote` (accepted under the standard data) under `early` at `now`, with `policy`'s
/// TCB rules (accepted statuses, allowed advisories).
pub fn judge(
    quote: &VerifiedQuote,
    early: Option<&VerifiedEarly>,
    policy: &EnclavePolicy,
    now: UnixTime,
) -> EarlyOutcome {
    let Some(early) = early else {
        return EarlyOutcome::Unavailable(Unavailable::NotHeld);
    };
    let (standard, number) = (
        quote.tcb.tcb_evaluation_data_number,
        early.evaluation_number(),
    );
    if number < standard {
        return EarlyOutcome::Unavailable(Unavailable::Superseded {
            standard,
            early: number,
        });
    }
    if let Err(e) = early.check_fresh(now) {
        return EarlyOutcome::Unavailable(Unavailable::Stale(e));
    }
    let (tcb, refusal) = match early::judge(quote, early, now) {
        Ok(tcb) => {
            let violations = policy.tcb_violations(&tcb);
            let refusal = violations
                .iter()
                .map(PolicyViolation::code)
                .min()
                .map(|code| Refusal {
                    code,
                    reasons: violations.iter().map(ToString::to_string).collect(),
                });
            (Some(tcb), refusal)
        }
        Err(e) => (None, Some(Refusal::from(e))),
    };
    EarlyOutcome::Judged(EarlyJudgement {
        tcb_evaluation_data_number: number,
        tcb,
        refusal,
        standard_from: early.standard_from(),
        digests: early.digests,
    })
}

/// Under `early = "enforce"`, the refusal of an enclave the early data would refuse, or that
/// cannot be judged under it (fail closed); `None` otherwise.
pub fn enforced(mode: EarlyMode, outcome: Option<&EarlyOutcome>) -> Option<Refusal> {
    if mode != EarlyMode::Enforce {
        return None;
    }
    match outcome {
        Some(EarlyOutcome::Judged(j)) => j.refusal.as_ref().map(|r| {
            let from = j
                .standard_from
                .map_or_else(|| "an undated day".to_owned(), |t| t.to_rfc3339());
            Refusal {
                code: RefusalCode::TcbAtRisk,
                reasons: r
                    .reasons
                    .iter()
                    .map(|why| {
                        format!(
                            "under Intel's early TCB data (evaluation data number {}, standard from {from}), with early = \"enforce\": {why}",
                            j.tcb_evaluation_data_number
                        )
                    })
                    .collect(),
            }
        }),
        Some(EarlyOutcome::Unavailable(Unavailable::Superseded { .. })) => None,
        Some(EarlyOutcome::Unavailable(Unavailable::Stale(e))) => Some(Refusal::new(
            e.code(),
            format!("early = \"enforce\" and the early TCB data is not valid now: {e}"),
        )),
        Some(EarlyOutcome::Unavailable(Unavailable::NotHeld)) | None => {
            let e = VerifyError::Collateral(CollateralError::Unavailable(
                "early = \"enforce\" and no early TCB data is held for this platform".into(),
            ));
            Some(Refusal::from(e))
        }
    }
}
