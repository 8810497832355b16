//! PURE. AWS Nitro Enclaves attestation documents (AWS "Nitro Enclaves attestation process",
//! RFC 9052 COSE): the COSE_Sign1 envelope and the CBOR document as borrowed typed views over
//! bounded bytes, the chain from the pinned AWS root through the document's CA bundle at a
//! given time, the ES384 signature, revocation over CRLs handed in, and the key bindings the
//! carriers define. No I/O, no clock, no tokio: time and CRLs are parameters.
//!
//! The order of [`verify::verify`] is `docs/nitro.md`'s: parse (size caps, COSE structure,
//! ES384 in the protected header, every document field and its bounds), chain (pinned root,
//! bundle order, names, signatures, validity, basic constraints, path length, key usage),
//! the COSE signature over the `Sig_structure`, the timestamp inside the signing certificate.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod binding;
pub mod cache;
pub mod chain;
pub mod collateral;
pub mod cose;
pub mod document;
pub mod error;
pub mod limits;
pub mod pki;
pub mod revocation;
pub mod trust;
pub mod verify;

pub use cache::IntermediatesCache;
pub use collateral::{CrlPoint, NitroCollateral};
pub use cose::CoseSign1;
pub use document::{AttestationDoc, Pcrs};
pub use error::{DocumentError, NitroError};
pub use trust::NitroRoot;
pub use verify::{parse, verify, verify_cached, Parsed, VerifiedDocument};
