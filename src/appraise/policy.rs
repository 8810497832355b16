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

use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::ids::{Attributes, IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::verify::VerifiedQuote;

/// What an enclave must look like to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclavePolicy {
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
}

impl Default for EnclavePolicy {
    /// The secure default: any identity, no DEBUG, `UpToDate` only.
    fn default() -> Self {
        Self {
            mrenclave: Vec::new(),
            mrsigner: Vec::new(),
            isv_prod_id: None,
            min_isv_svn: None,
            allow_debug: false,
            tcb_statuses: vec![TcbStatus::UpToDate],
            allowed_advisories: Vec::new(),
        }
    }
}

/// One way a verified enclave fails the policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// DEBUG enclave, not allowed.
    #[error("the enclave runs in DEBUG mode (ATTRIBUTES.FLAGS bit 1 set: {0}) and the policy does not allow debug enclaves")]
    Debug(Attributes),
    /// MRENCLAVE not allowed.
    #[error("MRENCLAVE {actual} is not in the allow-list [{}]", join(.allowed))]
    MrEnclave {
        /// From the quote.
        actual: MrEnclave,
        /// The policy's list.
        allowed: Vec<MrEnclave>,
    },
    /// MRSIGNER not allowed.
    #[error("MRSIGNER {actual} is not in the allow-list [{}]", join(.allowed))]
    MrSigner {
        /// From the quote.
        actual: MrSigner,
        /// The policy's list.
        allowed: Vec<MrSigner>,
    },
    /// ISVPRODID differs.
    #[error("ISVPRODID is {actual}, the policy requires {expected}")]
    IsvProdId {
        /// From the quote.
        actual: IsvProdId,
        /// The policy's.
        expected: IsvProdId,
    },
    /// ISVSVN too low.
    #[error("ISVSVN {actual} is below the policy minimum {min}")]
    IsvSvn {
        /// From the quote.
        actual: IsvSvn,
        /// The policy's minimum.
        min: IsvSvn,
    },
    /// TCB status not accepted.
    #[error("TCB status {actual} is not accepted (accepted: {})", join(.accepted))]
    TcbStatus {
        /// From verification.
        actual: TcbStatus,
        /// The policy's list.
        accepted: Vec<TcbStatus>,
    },
    /// Advisories not listed.
    #[error("advisories {} are not in the allowed list [{}]", .not_allowed.join(", "), .allowed.join(", "))]
    Advisory {
        /// The unlisted advisories.
        not_allowed: Vec<String>,
        /// The policy's list.
        allowed: Vec<String>,
    },
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PolicyViolation {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            Self::Debug(_) => RefusalCode::DebugEnclave,
            Self::MrEnclave { .. } => RefusalCode::MrenclaveMismatch,
            Self::MrSigner { .. } => RefusalCode::MrsignerMismatch,
            Self::IsvProdId { .. } => RefusalCode::IsvProdIdMismatch,
            Self::IsvSvn { .. } => RefusalCode::IsvSvnTooLow,
            Self::TcbStatus { .. } => RefusalCode::TcbStatusNotAllowed,
            Self::Advisory { .. } => RefusalCode::AdvisoryNotAllowed,
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
    /// The cheap check that runs before any signature work: refuse DEBUG enclaves early.
    /// (A forged DEBUG bit can only cause a refusal, never an acceptance.)
    pub fn check_debug(&self, attributes: &Attributes) -> Result<(), PolicyViolation> {
        if attributes.is_debug() && !self.allow_debug {
            Err(PolicyViolation::Debug(*attributes))
        } else {
            Ok(())
        }
    }

    /// Every violation of the policy by a verified quote.
    pub fn violations(&self, q: &VerifiedQuote) -> Vec<PolicyViolation> {
        let id = &q.identity;
        let mut out = Vec::new();
        if let Err(v) = self.check_debug(&id.attributes) {
            out.push(v);
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
        let status = q.tcb.status;
        if status == TcbStatus::Revoked || !self.tcb_statuses.contains(&status) {
            out.push(PolicyViolation::TcbStatus {
                actual: status,
                accepted: self.tcb_statuses.clone(),
            });
        }
        if !self.allowed_advisories.is_empty() {
            let not_allowed: Vec<String> = q
                .tcb
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
