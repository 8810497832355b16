//! PURE. AMD SEV-SNP: the ATTESTATION_REPORT as a borrowed typed view, the chain ARK → ASK →
//! VCEK (or ARK → ASVK → VLEK) with the product's CRL, and the report's signature, in the
//! order of `docs/snp.md`. No I/O, no clock, no tokio: time and collateral are parameters;
//! ring is the only signature provider (RSA-PSS SHA-384, ECDSA P-384).
//!
//! Phase 2 entry points: [`Report::parse`], then either [`collateral::verify_with_collateral`]
//! (one shot) or [`chain::VerifiedChain::verify`] and [`verify::VerifiedVek::verify`] once
//! per product and chip, then [`verify::verify`] per report; the policy is
//! `appraise::snp_policy`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod cert;
pub mod chain;
pub mod collateral;
pub mod error;
pub mod extension;
pub mod ids;
pub mod product;
pub mod report;
pub mod trust;
pub mod verified;
pub mod verify;

pub use cert::{MAX_DER_LEN, PSS_SHA384_ALGORITHMS};
pub use error::{CertRole, ReportError, SnpError, TcbComponent};
pub use product::{Product, Tcb, TcbVersion};
pub use report::{Report, REPORT_LEN, SIGNED_LEN};
pub use trust::{Ark, SnpTrust};
