//! `VerifyError`: every way quote or collateral verification can fail, each mapped to
//! exactly one stable refusal code (the mapping lives with the codes, in
//! `appraise::refusal`, so the core depends on nothing above it).

use crate::dcap::collateral::CollateralError;
use crate::dcap::collateral::CollateralItem;
use crate::dcap::ids::{Fmspc, PceId};
use crate::dcap::pki::PkiError;
use crate::dcap::quote::QuoteError;
use crate::dcap::time::UnixTime;

/// A quote or its collateral failed verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The quote does not parse.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The collateral does not parse.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
    /// A certificate or CRL chain is broken, unpinned or does not cover the certificate.
    #[error("{what}: {detail}")]
    Chain {
        /// Which chain.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A signature over quote data or signed collateral does not verify.
    #[error("{0} signature does not verify")]
    Signature(&'static str),
    /// The QE report does not commit to the attestation key and auth data.
    #[error("QE report data does not match SHA-256(attestation key ‖ QE auth data): the attestation key is not certified by the QE")]
    QeReportData,
    /// A certificate is listed in its issuer's CRL.
    #[error("{what} (serial {serial}) is revoked")]
    Revoked {
        /// Which certificate.
        what: &'static str,
        /// Its serial, hex.
        serial: String,
    },
    /// The platform's TCB level is revoked.
    #[error("the platform TCB level is Revoked")]
    TcbRevoked,
    /// A collateral item is not yet valid.
    #[error("{item} is not valid before {from} (verification time {now})")]
    NotYetValid {
        /// The item.
        item: CollateralItem,
        /// Start of its validity.
        from: UnixTime,
        /// Verification time.
        now: UnixTime,
    },
    /// A collateral item has expired.
    #[error("{item} expired after {until} (verification time {now})")]
    Expired {
        /// The item.
        item: CollateralItem,
        /// Last valid second.
        until: UnixTime,
        /// Verification time.
        now: UnixTime,
    },
    /// The TCB info is for another FMSPC.
    #[error("TCB info is for FMSPC {tcb_info}, the PCK certificate says {pck}")]
    FmspcMismatch {
        /// From the PCK certificate.
        pck: Fmspc,
        /// From the TCB info.
        tcb_info: Fmspc,
    },
    /// The TCB info is for another PCE.
    #[error("TCB info is for PCE ID {tcb_info}, the PCK certificate says {pck}")]
    PceIdMismatch {
        /// From the PCK certificate.
        pck: PceId,
        /// From the TCB info.
        tcb_info: PceId,
    },
    /// The TCB info describes another TEE.
    #[error("TCB info is for {tcb_info}, the quote is {quote}")]
    TcbInfoTee {
        /// The TCB info's TEE.
        tcb_info: &'static str,
        /// The quote's TEE.
        quote: &'static str,
    },
    /// The TDX module is not the one the TCB info describes, or has no TCB level.
    #[error("TDX module: {0}")]
    TdxModule(String),
    /// The QE does not match Intel's QE identity.
    #[error("quoting enclave does not match the QE identity: {0}")]
    QeIdentity(String),
    /// No TCB level matches the platform.
    #[error("no TCB level in the TCB info matches the platform's PCK TCB (TCB not supported)")]
    TcbNotSupported,
}

impl VerifyError {
    /// A chain error from a PKI failure.
    pub(crate) fn chain(what: &'static str, e: PkiError) -> Self {
        Self::Chain {
            what,
            detail: e.to_string(),
        }
    }
}
