//! Why dstack evidence could not be read (`quote_malformed`), and the platforms carried but
//! not verified (`unsupported_tee`).

use crate::dcap::quote::QuoteError;

/// The attestation bytes are not a well-formed dstack attestation. Always `quote_malformed`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// No bytes at all.
    #[error("the dstack attestation is empty")]
    Empty,
    /// The whole input is above its cap.
    #[error("{what} is {len} bytes, above the {max}-byte limit")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The first byte names neither wire form (0x00: SCALE V0; a MessagePack map: V1).
    #[error("unknown dstack attestation wire form (first byte {0:#04x})")]
    UnknownWire(u8),
    /// A field runs past the end of the input.
    #[error("dstack attestation truncated: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A declared length or count is above its cap.
    #[error("{what} declares {len}, above the limit of {max}")]
    FieldTooLarge {
        /// The field.
        what: &'static str,
        /// Declared length or count.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// A SCALE compact integer not in its shortest form (dstack's decoder refuses these too).
    #[error("{0}: non-canonical SCALE compact length")]
    NonCanonical(&'static str),
    /// Text that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes left over where the format allows none.
    #[error("{extra} unexpected bytes after {what}")]
    TrailingBytes {
        /// What should have ended.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A value of another type than the format says (MessagePack or JSON).
    #[error("{what}: expected {expected}")]
    Type {
        /// The field.
        what: &'static str,
        /// The type the format requires.
        expected: &'static str,
    },
    /// A platform variant this parser does not know (neither TDX, GCP TDX, Nitro Enclave,
    /// NitroTPM nor SEV-SNP).
    #[error("unknown dstack platform evidence `{0}`")]
    UnknownPlatform(String),
    /// A stack evidence kind other than `dstack` and `dstack-pod`.
    #[error("unknown dstack stack evidence `{0}`")]
    UnknownStack(String),
    /// A V1 attestation version other than 1, or an event version other than 1 and 2.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Whose version.
        what: &'static str,
        /// The version found.
        version: u64,
    },
    /// A required map key is absent.
    #[error("{map} has no `{key}`")]
    MissingKey {
        /// The map.
        map: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A map key appears twice (which value would count is a question an attacker likes).
    #[error("{map} has `{key}` twice")]
    DuplicateKey {
        /// The map.
        map: &'static str,
        /// The key.
        key: String,
    },
    /// A map key the format does not define.
    #[error("{map} has an unknown key `{key}`")]
    UnknownKey {
        /// The map.
        map: &'static str,
        /// The key.
        key: String,
    },
    /// MessagePack nested deeper than [`super::limits::MAX_DEPTH`].
    #[error("{0} is nested too deeply")]
    TooDeep(&'static str),
    /// A report data that is not 64 bytes.
    #[error("report_data is {0} bytes, not 64")]
    ReportDataLength(usize),
    /// Hex text that does not decode.
    #[error("{0} is not hex")]
    BadHex(&'static str),
    /// The legacy event log is not the JSON dstack writes.
    #[error("the legacy event log (1.3.6.1.4.1.62397.1.2) is malformed: {0}")]
    Json(String),
    /// The legacy quote (`.1.1`) does not parse, or is not a TDX quote.
    #[error("the legacy dstack quote: {0}")]
    Quote(QuoteError),
    /// The legacy quote is an SGX quote (dstack's legacy pair is TDX only).
    #[error("the legacy dstack quote is not a TDX quote")]
    NotTdx,
}

/// Evidence of a platform dstack supports and this build does not verify yet.
/// Always `unsupported_tee`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the dstack attestation carries {0} evidence, which this build does not verify")]
pub struct UnsupportedTee(pub &'static str);
