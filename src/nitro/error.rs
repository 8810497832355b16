//! Every way a Nitro attestation document can fail, each variant destined for exactly one
//! refusal code (the mapping is `appraise::nitro_policy::error_code`, so the core depends on
//! nothing above it; phase 2 folds it into `RefusalCode`).

use crate::cbor::CborError;
use crate::dcap::time::UnixTime;

/// Bytes that are not a well-formed Nitro attestation document (`quote_malformed`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Above a size cap.
    #[error("{what} is {len} bytes, above the {max}-byte limit")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not CBOR, or not the CBOR expected where it was read.
    #[error("{what}: {error}")]
    Cbor {
        /// Where.
        what: &'static str,
        /// The reader's complaint.
        error: CborError,
    },
    /// Not a COSE_Sign1 as AWS and RFC 9052 define it.
    #[error("COSE_Sign1: {0}")]
    Cose(&'static str),
    /// The protected header names another algorithm than ES384, or something critical we
    /// do not understand.
    #[error("COSE protected header: {0}")]
    Algorithm(String),
    /// A mandatory document field is absent.
    #[error("attestation document: `{0}` is missing")]
    MissingField(&'static str),
    /// A field the specification does not define.
    #[error("attestation document: unknown field `{0}`")]
    UnknownField(String),
    /// A map key seen twice.
    #[error("attestation document: `{0}` appears twice")]
    DuplicateField(String),
    /// A field's value is outside what the specification allows.
    #[error("attestation document: `{field}` {why}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Bytes after the item that should end the input.
    #[error("{extra} unexpected bytes after {what}")]
    TrailingBytes {
        /// What should have ended.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
}

impl DocumentError {
    /// A CBOR error found while reading `what`.
    pub(crate) fn cbor(what: &'static str) -> impl Fn(CborError) -> Self {
        move |error| Self::Cbor { what, error }
    }

    /// A field whose value breaks the specification.
    pub(crate) fn field(field: &'static str, why: impl Into<String>) -> Self {
        Self::Field {
            field,
            why: why.into(),
        }
    }
}

/// A Nitro attestation document that fails verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NitroError {
    /// It does not parse (`quote_malformed`).
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The chain does not lead from the pinned root to the signing certificate, or a
    /// certificate in it is not fit for its place (`chain_invalid`).
    #[error("certificate chain: {what}: {detail}")]
    Chain {
        /// Which certificate.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A certificate of the chain is outside its validity at the verification time
    /// (`certificate_expired`).
    #[error("{what} is valid {from} .. {until}, not at {now}")]
    Expired {
        /// Which certificate.
        what: String,
        /// First valid second.
        from: UnixTime,
        /// Last valid second.
        until: UnixTime,
        /// The verification time.
        now: UnixTime,
    },
    /// The document's timestamp lies outside its signing certificate's validity: it was not
    /// signed while that certificate was valid (`chain_invalid`).
    #[error("the document's timestamp {timestamp_ms} ms is outside its signing certificate's validity {from} .. {until}")]
    TimestampOutsideLeaf {
        /// The document's timestamp, milliseconds since the epoch.
        timestamp_ms: u64,
        /// The signing certificate's first valid second.
        from: UnixTime,
        /// Its last valid second.
        until: UnixTime,
    },
    /// The ES384 signature over the COSE `Sig_structure` does not verify under the
    /// signing certificate's key (`signature_invalid`).
    #[error("the COSE_Sign1 signature does not verify under the signing certificate's key")]
    Signature,
    /// A certificate of the chain is listed in its issuer's CRL (`revoked`).
    #[error("{what} (serial {serial}) is revoked")]
    Revoked {
        /// Which certificate.
        what: String,
        /// Its serial, hex.
        serial: String,
    },
    /// Revocation is required and no CRL covers a certificate that names a CRL
    /// distribution point (`collateral_unavailable`).
    #[error("revocation status of {what} unknown: no CRL from its issuer was supplied")]
    RevocationUnknown {
        /// Which certificate.
        what: String,
    },
    /// A supplied CRL does not parse, is not signed by the issuer it names, or carries a
    /// critical extension we do not understand (`chain_invalid`).
    #[error("CRL: {0}")]
    CrlInvalid(String),
    /// A supplied CRL is outside its thisUpdate .. nextUpdate window (`collateral_expired`).
    #[error("the CRL of `{issuer}` is valid {from} .. {until}, not at {now}")]
    CrlExpired {
        /// The CRL's issuer.
        issuer: String,
        /// thisUpdate.
        from: UnixTime,
        /// The last second before nextUpdate.
        until: UnixTime,
        /// The verification time.
        now: UnixTime,
    },
}

impl NitroError {
    /// A chain error about `what`.
    pub(crate) fn chain(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Chain {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
