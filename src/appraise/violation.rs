//! PURE. The ways a verified enclave or TD fails its policy, each with its refusal code.

use crate::appraise::refusal::RefusalCode;
use crate::dcap::ids::{
    Attributes, IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam, MrSigner,
    MrTd, Rtmr, TdAttributes, TeeTcbSvn, Xfam,
};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;

/// One way a verified enclave fails the policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// The quote is of another TEE than the entry's.
    #[error("the entry expects an {expected} quote, the quote is {actual}")]
    Tee {
        /// The entry's.
        expected: &'static str,
        /// The quote's.
        actual: &'static str,
    },
    /// DEBUG enclave, not allowed.
    #[error("the enclave runs in DEBUG mode (ATTRIBUTES.FLAGS bit 1 set: {0}) and the policy does not allow debug enclaves")]
    Debug(Attributes),
    /// DEBUG TD, not allowed.
    #[error("the TD runs in DEBUG mode (TD_ATTRIBUTES bit 0 set: {0}) and the policy does not allow debug TDs")]
    DebugTd(TdAttributes),
    /// TD attributes outside what is allowed.
    #[error("TD_ATTRIBUTES {actual}: {why}")]
    TdAttributes {
        /// From the quote.
        actual: TdAttributes,
        /// What is wrong.
        why: String,
    },
    /// XFAM not allowed.
    #[error("XFAM {actual} is not in the allow-list [{}]", join(.allowed))]
    Xfam {
        /// From the quote.
        actual: Xfam,
        /// The policy's list.
        allowed: Vec<Xfam>,
    },
    /// MRTD not allowed.
    #[error("MRTD {actual} is not in the allow-list [{}]", join(.allowed))]
    MrTd {
        /// From the quote.
        actual: MrTd,
        /// The policy's list.
        allowed: Vec<MrTd>,
    },
    /// An RTMR not allowed.
    #[error("RTMR{index} {actual} is not in the allow-list [{}]", join(.allowed))]
    Rtmr {
        /// Which register.
        index: usize,
        /// From the quote.
        actual: Rtmr,
        /// The policy's list.
        allowed: Vec<Rtmr>,
    },
    /// MRCONFIGID not allowed.
    #[error("MRCONFIGID {actual} is not in the allow-list [{}]", join(.allowed))]
    MrConfigId {
        /// From the quote.
        actual: MrConfigId,
        /// The policy's list.
        allowed: Vec<MrConfigId>,
    },
    /// MROWNER not allowed.
    #[error("MROWNER {actual} is not in the allow-list [{}]", join(.allowed))]
    MrOwner {
        /// From the quote.
        actual: MrOwner,
        /// The policy's list.
        allowed: Vec<MrOwner>,
    },
    /// MROWNERCONFIG not allowed.
    #[error("MROWNERCONFIG {actual} is not in the allow-list [{}]", join(.allowed))]
    MrOwnerConfig {
        /// From the quote.
        actual: MrOwnerConfig,
        /// The policy's list.
        allowed: Vec<MrOwnerConfig>,
    },
    /// MRSEAM not allowed.
    #[error("MRSEAM {actual} is not in the allow-list [{}]", join(.allowed))]
    MrSeam {
        /// From the quote.
        actual: MrSeam,
        /// The policy's list.
        allowed: Vec<MrSeam>,
    },
    /// A TEE_TCB_SVN (or, TD 1.5, TEE_TCB_SVN2) component below the minimum.
    #[error("{field} {actual} is below the policy minimum {min} (component-wise)")]
    TeeTcbSvn {
        /// `TEE_TCB_SVN` (the launch TCB) or `TEE_TCB_SVN2` (the current TCB, TD 1.5).
        field: &'static str,
        /// From the quote.
        actual: TeeTcbSvn,
        /// The policy's minimum.
        min: TeeTcbSvn,
    },
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
    /// Collateral issued too long ago.
    #[error("the collateral was issued {issued} ({age} s before the verification), more than max_age_secs = {max}")]
    CollateralAge {
        /// The older issue date of the TCB info and QE identity.
        issued: UnixTime,
        /// Its age at the verification time.
        age: i64,
        /// The limit.
        max: u64,
    },
    /// Collateral of a TCB evaluation data number below the policy's minimum.
    #[error("the collateral's TCB evaluation data number is {actual}, below min_tcb_evaluation_data_number = {min}")]
    EvaluationNumber {
        /// The lower of the TCB info's and the QE identity's.
        actual: u32,
        /// The policy's minimum.
        min: u32,
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

pub(crate) fn join<T: std::fmt::Display>(items: &[T]) -> String {
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
            Self::Tee { .. } => RefusalCode::TeeMismatch,
            Self::Debug(_) | Self::DebugTd(_) => RefusalCode::DebugEnclave,
            Self::TdAttributes { .. } => RefusalCode::TdAttributesNotAllowed,
            Self::Xfam { .. } => RefusalCode::XfamMismatch,
            Self::MrTd { .. } => RefusalCode::MrtdMismatch,
            Self::Rtmr { .. } => RefusalCode::RtmrMismatch,
            Self::MrConfigId { .. } => RefusalCode::MrconfigidMismatch,
            Self::MrOwner { .. } => RefusalCode::MrownerMismatch,
            Self::MrOwnerConfig { .. } => RefusalCode::MrownerconfigMismatch,
            Self::MrSeam { .. } => RefusalCode::MrseamMismatch,
            Self::TeeTcbSvn { .. } => RefusalCode::TeeTcbSvnTooLow,
            Self::MrEnclave { .. } => RefusalCode::MrenclaveMismatch,
            Self::MrSigner { .. } => RefusalCode::MrsignerMismatch,
            Self::IsvProdId { .. } => RefusalCode::IsvProdIdMismatch,
            Self::IsvSvn { .. } => RefusalCode::IsvSvnTooLow,
            Self::TcbStatus { .. } => RefusalCode::TcbStatusNotAllowed,
            Self::CollateralAge { .. } | Self::EvaluationNumber { .. } => {
                RefusalCode::CollateralTooOld
            }
            Self::Advisory { .. } => RefusalCode::AdvisoryNotAllowed,
        }
    }
}
