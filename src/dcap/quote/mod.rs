//! PURE. DCAP quotes (SGX v3/v4/v5, TDX v4/v5 with TD 1.0, 1.5 and 1.5ex bodies) parsed
//! into zero-copy typed views over the untrusted bytes, with a
//! bounded reader; a malformed or truncated quote is a `QuoteError`, never a panic.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod limits;
mod parse;
pub(crate) mod pck_extension;
pub(crate) mod reader;

pub use parse::{
    Body, Header, QeCertification, Quote, QuoteVersion, ReportBody, TdReport, TdReportKind,
    TeeType, INTEL_QE_VENDOR_ID,
};

/// A quote that cannot be parsed, or uses a format we do not support. Always `quote_malformed`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// A field runs past the end of the input.
    #[error("quote truncated: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The whole quote is above the size cap.
    #[error("quote is {len} bytes, above the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A declared length is above its cap.
    #[error("{what} declares {len} bytes, above the {max}-byte limit")]
    FieldTooLarge {
        /// The field.
        what: &'static str,
        /// Declared length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes left over where the format allows none.
    #[error("{extra} unexpected bytes after {what}")]
    TrailingBytes {
        /// What should have ended.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// Quote version other than 3, 4, 5.
    #[error("unsupported quote version {0} (supported: 3, 4, 5)")]
    UnsupportedVersion(u16),
    /// Attestation key type other than ECDSA P-256.
    #[error("unsupported attestation key type {0} (only 2, ECDSA-256-with-P-256)")]
    UnsupportedAttestationKeyType(u16),
    /// TEE type neither SGX nor TDX.
    #[error("unknown TEE type {0:#x}")]
    UnknownTeeType(u32),
    /// A v3 quote whose header says TDX (v3 is SGX only).
    #[error("a version 3 quote cannot be a TDX quote")]
    TdxInV3,
    /// The QE vendor is not Intel.
    #[error("unknown QE vendor ID {0} (expected Intel's 939a7233f79c4ca9940a0db3957f0607)")]
    UnknownQeVendor(String),
    /// A v5 body whose type and size do not agree, or do not fit the header's TEE.
    #[error("v5 body type {body_type} of {body_size} bytes does not fit the quote's TEE type")]
    BodyMismatch {
        /// Declared body type.
        body_type: u16,
        /// Declared body size.
        body_size: u32,
    },
    /// Certification data other than the full PCK chain (or, v4/v5, its type 6 wrapper).
    #[error(
        "certification data type {0} is not supported (need type 5, the PCK certificate chain)"
    )]
    UnsupportedCertificationData(u16),
}
