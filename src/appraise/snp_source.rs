//! PURE. Where an SEV-SNP report's signing key comes from, as the handshake path sees it
//! (read without I/O: `source/` fetches and verifies before it stores), and why there is
//! none. Here, below `ratls/`, so the certificate appraisal names the source without
//! reaching up into `source/`.

use std::sync::Arc;

use crate::appraise::refusal::RefusalCode;
use crate::appraise::snp_policy::snp_refusal_code;
use crate::snp::chain::VerifiedChain;
use crate::snp::report::SigningKey;
use crate::snp::verify::VerifiedVek;
use crate::snp::{Product, Report, SnpError};

/// Why SEV-SNP collateral could not be had.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SnpCollateralError {
    /// The source did not answer, or not with a 200 (`collateral_unavailable`).
    #[error("KDS: {0}")]
    Fetch(String),
    /// The report's key cannot be asked for (a masked CHIP_ID, a VLEK, version 2 with no
    /// CPUID), or nothing was fetched for it yet (`collateral_unavailable`).
    #[error("SEV-SNP collateral: {0}")]
    Unavailable(String),
    /// What was served does not verify (`collateral_unavailable`; `revoked` when the CRL
    /// revokes the ASK/ASVK).
    #[error("SEV-SNP collateral does not verify: {0}")]
    Invalid(#[source] SnpError),
    /// A CRL older than one already admitted (`collateral_rollback`).
    #[error("SEV-SNP collateral rollback: {0}")]
    Rollback(String),
}

impl SnpCollateralError {
    /// The refusal code a report without its collateral gets.
    pub fn refusal_code(&self) -> RefusalCode {
        match self {
            Self::Invalid(e @ SnpError::Revoked { .. }) => snp_refusal_code(e),
            Self::Rollback(_) => RefusalCode::CollateralRollback,
            Self::Fetch(_) | Self::Unavailable(_) | Self::Invalid(_) => {
                RefusalCode::CollateralUnavailable
            }
        }
    }

    /// [`Self::refusal_code`] as its stable string.
    pub fn code(&self) -> &'static str {
        self.refusal_code().as_str()
    }
}

/// Where a report's VCEK and chain come from, read without I/O (the proxy's handshake path).
pub trait SnpCollateralSource {
    /// The verified key for `report`, or why there is none.
    fn vek_for(&self, report: &Report<'_>) -> Result<Arc<VerifiedVek>, SnpCollateralError>;

    /// The verified chain (with its product CRL) held for `product` and `kind`, if any: a
    /// key carried in the evidence is verified under it, never under a chain of its own.
    fn chain_for(&self, _product: Product, _kind: SigningKey) -> Option<Arc<VerifiedChain>> {
        None
    }

    /// Changes whenever what this source hands out changes (a chain or CRL stored): a
    /// verdict made under another value is not reused.
    fn snapshot_id(&self) -> u64 {
        0
    }
}

/// No SEV-SNP collateral at all (no `tee = "snp"` entry, or a configuration without one).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSnpCollateral;

impl SnpCollateralSource for NoSnpCollateral {
    fn vek_for(&self, _report: &Report<'_>) -> Result<Arc<VerifiedVek>, SnpCollateralError> {
        Err(SnpCollateralError::Unavailable(
            "no SEV-SNP collateral source is configured".into(),
        ))
    }
}
