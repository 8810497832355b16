//! EDGE. The SEV-SNP collateral a generation owns when some entry is `tee = "snp"`: the
//! pinned ARKs (AMD's, or `[collateral] amd_trust_root`'s PEMs for a test PKI) and the
//! source `[collateral] amd_kds` names (AMD's KDS by default, a KDS-compatible URL, or a
//! directory of PEMs). Built at start-up and on each reload; a fetching source is refreshed
//! in the background and fetches on a handshake's miss, one fetch at a time.

use std::path::Path;
use std::sync::Arc;

use super::kds::{KdsCache, KdsEndpoint};
use super::snp_files::SnpFiles;
use super::{read, AmdKdsSpec, SetupError, SourceConfig};
use crate::appraise::snp_source::{SnpCollateralError, SnpCollateralSource};
use crate::snp::chain::VerifiedChain;
use crate::snp::collateral::{classify, SnpCertKind};
use crate::snp::report::SigningKey;
use crate::snp::verify::VerifiedVek;
use crate::snp::{Ark, Product, Report, SnpTrust};

/// Where a generation's SEV-SNP keys come from.
pub(crate) enum SnpSource {
    /// Fetched from a KDS, verified, cached and refreshed.
    Kds(Arc<KdsCache>),
    /// A directory of PEMs, verified at load.
    Files(Arc<SnpFiles>),
    /// The configured source could not be set up (at start-up: the proxy runs, and refuses
    /// every SEV-SNP guest with this reason).
    Failed(String),
}

impl SnpCollateralSource for SnpSource {
    fn vek_for(&self, report: &Report<'_>) -> Result<Arc<VerifiedVek>, SnpCollateralError> {
        match self {
            Self::Kds(k) => k.vek_for(report),
            Self::Files(f) => f.vek_for(report),
            Self::Failed(why) => Err(SnpCollateralError::Unavailable(why.clone())),
        }
    }

    fn chain_for(&self, product: Product, kind: SigningKey) -> Option<Arc<VerifiedChain>> {
        match self {
            Self::Kds(k) => k.chain_for(product, kind),
            Self::Files(f) => f.chain_for(product, kind),
            Self::Failed(_) => None,
        }
    }

    fn snapshot_id(&self) -> u64 {
        match self {
            Self::Kds(k) => k.snapshot_id(),
            Self::Files(_) | Self::Failed(_) => 0,
        }
    }
}

/// A generation's SEV-SNP trust and collateral.
pub(crate) struct SnpSetup {
    /// The pinned ARKs.
    pub(crate) trust: Arc<SnpTrust>,
    /// Where keys come from.
    pub(crate) source: Arc<SnpSource>,
}

impl SnpSetup {
    /// The fetching cache, when keys are fetched.
    pub(crate) fn kds(&self) -> Option<&Arc<KdsCache>> {
        match self.source.as_ref() {
            SnpSource::Kds(k) => Some(k),
            SnpSource::Files(_) | SnpSource::Failed(_) => None,
        }
    }

    /// Why the configured source could not be set up, if it could not.
    pub(crate) fn failure(&self) -> Option<&str> {
        match self.source.as_ref() {
            SnpSource::Failed(why) => Some(why),
            SnpSource::Kds(_) | SnpSource::Files(_) => None,
        }
    }

    /// A setup whose every SEV-SNP guest is refused (`collateral_unavailable`, `why`).
    pub(crate) fn failed(why: String) -> Self {
        Self {
            trust: Arc::new(SnpTrust::amd()),
            source: Arc::new(SnpSource::Failed(why)),
        }
    }
}

/// The ARKs of a PEM file (each `ARK-<product>`, self-signed); at least one.
pub(crate) fn arks_from_pem(path: &Path) -> Result<SnpTrust, SetupError> {
    let bad = |detail: String| SetupError::TrustRoot {
        path: path.display().to_string(),
        detail,
    };
    let pem = read(path, "AMD trust root")?;
    let ders = crate::dcap::pki::pem_chain(&pem, "AMD ARK PEM").map_err(|e| bad(e.to_string()))?;
    let mut arks = Vec::new();
    for der in ders {
        match classify(&der) {
            Ok(SnpCertKind::Ark(product)) => {
                arks.push(Ark::from_der(product, der).map_err(|e| bad(e.to_string()))?);
            }
            Ok(other) => return Err(bad(format!("{other:?} is not an ARK"))),
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    if arks.is_empty() {
        return Err(bad("no certificate".into()));
    }
    Ok(SnpTrust::with_arks(arks))
}

/// The SEV-SNP trust and collateral `config` names, when `needed` (some `tee = "snp"`
/// entry); `None` otherwise.
pub(crate) fn snp_collateral(
    config: &SourceConfig,
    needed: bool,
) -> Result<Option<SnpSetup>, SetupError> {
    if !needed {
        return Ok(None);
    }
    let trust = match &config.amd_trust_root {
        None => SnpTrust::amd(),
        Some(path) => {
            let trust = arks_from_pem(path)?;
            tracing::warn!(
                path = %path.display(),
                "collateral.amd_trust_root replaces AMD's pinned ARKs: SEV-SNP evidence is verified to these roots (meant for test PKIs)"
            );
            trust
        }
    };
    let source = match &config.amd_kds {
        Some(AmdKdsSpec::Dir(dir)) => {
            let (files, skipped) = SnpFiles::load(dir, &trust).map_err(SetupError::Collateral)?;
            for s in skipped {
                tracing::warn!("SEV-SNP collateral skipped: {s}");
            }
            SnpSource::Files(Arc::new(files))
        }
        spec => {
            let endpoint = match spec {
                Some(AmdKdsSpec::Url(url)) => {
                    let ca = config
                        .pccs_ca
                        .as_deref()
                        .map(|p| read(p, "PCCS CA"))
                        .transpose()?;
                    KdsEndpoint::at(url, ca.as_deref())?
                }
                _ => KdsEndpoint::amd()?,
            };
            SnpSource::Kds(Arc::new(KdsCache::new(
                endpoint,
                trust.clone(),
                config.refresh,
            )))
        }
    };
    Ok(Some(SnpSetup {
        trust: Arc::new(trust),
        source: Arc::new(source),
    }))
}
