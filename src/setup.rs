//! Building the trust anchor and collateral source a configuration names (an edge:
//! reads files, creates the fetching cache). Used at start-up and on reload.

use std::path::Path;
use std::sync::Arc;

use crate::appraisal::CollateralSource;
use crate::collateral::fetch::{CollateralCache, FetchError, PcsEndpoint, RefreshPolicy};
use crate::collateral::files::FileCollateral;
use crate::config::{CollateralSpec, Config, TrustRoot};
use crate::error::VerifyError;
use crate::trust::TrustAnchor;
use crate::unix_time::UnixTime;

/// Why trust or collateral could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What it was.
        what: &'static str,
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The trust root is not usable.
    #[error("{path} is not a usable root certificate: {detail}")]
    TrustRoot {
        /// Where.
        path: String,
        /// Why.
        detail: String,
    },
    /// Collateral files do not load or verify.
    #[error("collateral: {0}")]
    Collateral(String),
    /// The fetching endpoint is misconfigured.
    #[error("collateral source: {0}")]
    Fetch(#[from] FetchError),
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Where verification gets its collateral, and the fetching cache behind it, if any.
pub struct CollateralSetup {
    /// Read by verifiers (synchronously, inside handshakes).
    pub source: Arc<dyn CollateralSource + Send + Sync>,
    /// Present when collateral is fetched from PCS / a PCCS.
    pub cache: Option<Arc<CollateralCache>>,
    /// Present when collateral comes from files.
    pub files: Option<Arc<FileCollateral>>,
}

/// A fetching cache for `pcs` or a PCCS URL.
pub fn fetching(
    spec: &str,
    pccs_ca: Option<&Path>,
    api_key: Option<String>,
    anchor: &TrustAnchor,
    refresh: RefreshPolicy,
) -> Result<CollateralSetup, SetupError> {
    let endpoint = if spec == "pcs" {
        PcsEndpoint::intel(api_key)?
    } else {
        let ca = pccs_ca.map(|p| read(p, "PCCS CA")).transpose()?;
        PcsEndpoint::pccs(spec, ca.as_deref(), api_key)?
    };
    let cache = Arc::new(CollateralCache::new(endpoint, anchor.clone(), refresh));
    let source: Arc<dyn CollateralSource + Send + Sync> = cache.clone();
    Ok(CollateralSetup {
        source,
        cache: Some(cache),
        files: None,
    })
}

/// Collateral from one JSON bundle file or a directory of them.
pub fn from_files(path: &Path, anchor: &TrustAnchor) -> Result<CollateralSetup, SetupError> {
    let (files, skipped) = FileCollateral::load(path, anchor).map_err(SetupError::Collateral)?;
    for s in skipped {
        tracing::warn!("collateral bundle skipped: {s}");
    }
    let now = UnixTime::now();
    for b in files.bundles() {
        if let Err(e) = b.check_fresh(now) {
            tracing::warn!(fmspc = %b.tcb_info.fmspc, "collateral is not valid now: {e}; connections will be refused");
        }
    }
    let files = Arc::new(files);
    let source: Arc<dyn CollateralSource + Send + Sync> = files.clone();
    Ok(CollateralSetup {
        source,
        cache: None,
        files: Some(files),
    })
}

/// The trust anchor a config names.
pub fn trust_anchor(config: &Config) -> Result<TrustAnchor, SetupError> {
    match &config.trust_root {
        TrustRoot::Builtin => Ok(TrustAnchor::intel()),
        TrustRoot::Pem(path) => {
            TrustAnchor::from_pem(&read(path, "trust root")?).map_err(|e| SetupError::TrustRoot {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
        }
    }
}

/// The trust anchor and collateral a config names; collateral only when enclaves need it.
pub fn trust_and_collateral(config: &Config) -> Result<(TrustAnchor, CollateralSetup), SetupError> {
    let anchor = trust_anchor(config)?;
    if config.enclaves.is_empty() {
        let none: Arc<dyn CollateralSource + Send + Sync> = Arc::new(VerifyError::from(
            crate::collateral::CollateralError::Json("no collateral configured".into()),
        ));
        return Ok((
            anchor,
            CollateralSetup {
                source: none,
                cache: None,
                files: None,
            },
        ));
    }
    let setup = match &config.collateral {
        CollateralSpec::File(p) | CollateralSpec::Dir(p) => from_files(p, &anchor)?,
        CollateralSpec::Pcs => {
            fetching("pcs", None, config.api_key.clone(), &anchor, config.refresh)?
        }
        CollateralSpec::Url(u) => fetching(
            u,
            config.pccs_ca.as_deref(),
            config.api_key.clone(),
            &anchor,
            config.refresh,
        )?,
    };
    Ok((anchor, setup))
}
