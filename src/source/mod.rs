//! EDGE. Where trust and collateral come from: the trust root a configuration names, and
//! the collateral source (Intel PCS or a PCCS fetched and cached, bundle files, one bundle
//! given to `verify`), chosen in one place ([`CollateralSpec::parse`]) for config and CLI.
//! Reads files and builds the fetching cache; used at start-up, on reload and by `verify`.

pub(crate) mod backoff;
pub(crate) mod fetch;
pub(crate) mod files;
pub(crate) mod kds;
pub(crate) mod marks;
pub(crate) mod nitro;
pub(crate) mod pcs;
pub(crate) mod platform;
pub(crate) mod policy;
pub(crate) mod snp_files;
pub(crate) mod snp_setup;

pub(crate) use snp_setup::{snp_collateral, SnpSetup};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::fetch::{CollateralCache, RefreshPolicy};
use self::files::FileCollateral;
use self::pcs::{FetchError, PcsEndpoint};
use crate::appraise::{CollateralSource, SnapshotId};
use crate::dcap::collateral::CollateralError;
use crate::dcap::early::VerifiedEarly;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::quote::Quote;
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::VerifiedCollateral;

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

/// Where the trust anchor comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustRoot {
    /// The compiled-in Intel SGX Root CA.
    Builtin,
    /// A PEM file (test PKI).
    Pem(PathBuf),
}

/// Where collateral comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollateralSpec {
    /// Intel PCS v4.
    Pcs,
    /// A PCCS (or PCS) base URL.
    Url(String),
    /// One collateral JSON bundle.
    File(PathBuf),
    /// A directory of bundles, chosen by FMSPC.
    Dir(PathBuf),
}

impl CollateralSpec {
    /// `pcs`, an `http(s)://` base URL, or a directory or file (`resolve` turns the text
    /// into a path). `Err` carries the resolved path that is neither a file nor a directory.
    pub fn parse(text: &str, resolve: impl FnOnce(&str) -> PathBuf) -> Result<Self, PathBuf> {
        if text == "pcs" {
            return Ok(Self::Pcs);
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(Self::Url(text.to_owned()));
        }
        let path = resolve(text);
        if path.is_dir() {
            Ok(Self::Dir(path))
        } else if path.is_file() {
            Ok(Self::File(path))
        } else {
            Err(path)
        }
    }
}

/// Where SEV-SNP collateral (ASK/ARK chain, VCEK, CRL) comes from: `[collateral] amd_kds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmdKdsSpec {
    /// A KDS (or a cache serving its paths) at this `http(s)://` base URL.
    Url(String),
    /// A directory of PEMs (`crate::source::snp_files`), offline.
    Dir(PathBuf),
}

impl AmdKdsSpec {
    /// AMD's own KDS.
    pub const AMD: &'static str = "https://kdsintf.amd.com";

    /// An `http(s)://` base URL or a directory (`resolve` turns the text into a path).
    /// `Err` carries the resolved path that is not a directory.
    pub fn parse(text: &str, resolve: impl FnOnce(&str) -> PathBuf) -> Result<Self, PathBuf> {
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(Self::Url(text.to_owned()));
        }
        let path = resolve(text);
        if path.is_dir() {
            Ok(Self::Dir(path))
        } else {
            Err(path)
        }
    }
}

/// Everything a configuration says about trust and collateral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The trust anchor.
    pub trust_root: TrustRoot,
    /// Where collateral comes from.
    pub collateral: CollateralSpec,
    /// Intel PCS subscription key.
    pub api_key: Option<String>,
    /// PEM CA for the PCCS's TLS.
    pub pccs_ca: Option<PathBuf>,
    /// When fetched collateral is refreshed.
    pub refresh: RefreshPolicy,
    /// FMSPCs to fetch collateral for at start-up.
    pub prefetch: Vec<Fmspc>,
    /// Fetch Intel's early TCB data too (some policy judges under it).
    pub early: bool,
    /// `[collateral] amd_kds`; `None`: AMD's KDS when a `tee = "snp"` entry needs it.
    pub amd_kds: Option<AmdKdsSpec>,
    /// `[collateral] nitro_trust_root`: a PEM root replacing AWS Nitro Enclaves Root-G1
    /// (a test PKI only).
    pub nitro_trust_root: Option<PathBuf>,
    /// `[collateral] nitro_crls`: where AWS's CRLs for the chain's intermediates come from.
    pub nitro_crls: self::nitro::NitroCrlSpec,
    /// `[collateral] nitro_revocation`: whether a Nitro chain without its CRLs is refused.
    pub nitro_revocation: crate::nitro::revocation::Revocation,
    /// `[collateral] amd_trust_root`: ARK PEMs replacing AMD's pinned roots (test PKIs).
    pub amd_trust_root: Option<PathBuf>,
}

impl SourceConfig {
    /// True if `other` takes collateral from the same place under the same root (its
    /// refresh timing, prefetch list and early data may differ).
    pub(crate) fn same_origin(&self, other: &Self) -> bool {
        self.trust_root == other.trust_root
            && self.collateral == other.collateral
            && self.api_key == other.api_key
            && self.pccs_ca == other.pccs_ca
            && self.amd_kds == other.amd_kds
            && self.nitro_trust_root == other.nitro_trust_root
            && self.nitro_crls == other.nitro_crls
            && self.nitro_revocation == other.nitro_revocation
            && self.amd_trust_root == other.amd_trust_root
    }
}

impl Default for SourceConfig {
    /// Intel's root and Intel PCS.
    fn default() -> Self {
        Self {
            trust_root: TrustRoot::Builtin,
            collateral: CollateralSpec::Pcs,
            api_key: None,
            pccs_ca: None,
            refresh: RefreshPolicy::default(),
            prefetch: Vec::new(),
            early: true,
            amd_kds: None,
            // Fail closed: a chain whose intermediates AWS may have revoked is not admitted
            // on faith (docs/nitro.md, "Revocation").
            nitro_trust_root: None,
            nitro_crls: self::nitro::NitroCrlSpec::Aws,
            nitro_revocation: crate::nitro::revocation::Revocation::Required,
            amd_trust_root: None,
        }
    }
}

/// The collateral source in force: one of the ways collateral can come, each with the
/// machinery behind it (readiness and metrics look inside).
pub enum CollateralSetup {
    /// No enclave is configured, so nothing is ever verified.
    Unconfigured,
    /// Fetched from Intel PCS or a PCCS, cached and refreshed.
    Fetched(Arc<CollateralCache>),
    /// Bundle files, verified at load.
    Files(Arc<FileCollateral>),
    /// One bundle given to `verify`: verified once, or the reason it is refused.
    Bundle(Result<Arc<VerifiedCollateral>, VerifyError>),
}

impl CollateralSource for CollateralSetup {
    fn verified_for(&self, quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        match self {
            Self::Unconfigured => Err(CollateralError::NotConfigured.into()),
            Self::Fetched(cache) => cache.verified_for(quote),
            Self::Files(files) => files.verified_for(quote),
            Self::Bundle(bundle) => bundle.clone(),
        }
    }

    fn snapshot_id(&self) -> SnapshotId {
        match self {
            Self::Fetched(cache) => cache.snapshot_id(),
            Self::Unconfigured | Self::Files(_) | Self::Bundle(_) => SnapshotId::default(),
        }
    }

    fn early_for(&self, quote: &Quote<'_>) -> Option<Arc<VerifiedEarly>> {
        match self {
            Self::Fetched(cache) => cache.early_for(quote),
            Self::Files(files) => files.early_for(quote),
            Self::Unconfigured | Self::Bundle(_) => None,
        }
    }
}

impl CollateralSetup {
    /// The fetching cache, when collateral is fetched.
    pub fn cache(&self) -> Option<&Arc<CollateralCache>> {
        match self {
            Self::Fetched(cache) => Some(cache),
            _ => None,
        }
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// A fetching cache for Intel PCS (`url` = `None`) or a PCCS base URL, fetching Intel's early
/// TCB data too when `early`.
pub(crate) fn fetching(
    url: Option<&str>,
    pccs_ca: Option<&Path>,
    api_key: Option<String>,
    anchor: &TrustAnchor,
    (refresh, early): (RefreshPolicy, bool),
) -> Result<CollateralSetup, SetupError> {
    let endpoint = match url {
        None => PcsEndpoint::intel(api_key)?,
        Some(url) => {
            let ca = pccs_ca.map(|p| read(p, "PCCS CA")).transpose()?;
            PcsEndpoint::pccs(url, ca.as_deref(), api_key)?
        }
    };
    let cache = CollateralCache::new(endpoint, anchor.clone(), refresh);
    Ok(CollateralSetup::Fetched(Arc::new(if early {
        cache.with_early()
    } else {
        cache
    })))
}

/// Collateral from one JSON bundle file or a directory of them, checked for freshness at
/// `now` (stale bundles are loaded, with a warning: connections will be refused).
pub(crate) fn from_files(
    path: &Path,
    anchor: &TrustAnchor,
    now: UnixTime,
) -> Result<CollateralSetup, SetupError> {
    let (files, skipped) = FileCollateral::load(path, anchor).map_err(SetupError::Collateral)?;
    for s in skipped {
        tracing::warn!("collateral bundle skipped: {s}");
    }
    for b in files.bundles() {
        if let Err(e) = b.check_fresh(now) {
            tracing::warn!(fmspc = %b.tcb_info.fmspc, "collateral is not valid now: {e}; connections will be refused");
        }
    }
    Ok(CollateralSetup::Files(Arc::new(files)))
}

/// The trust anchor `root` names.
pub(crate) fn trust_anchor(root: &TrustRoot) -> Result<TrustAnchor, SetupError> {
    match root {
        TrustRoot::Builtin => Ok(TrustAnchor::intel()),
        TrustRoot::Pem(path) => {
            TrustAnchor::from_pem(&read(path, "trust root")?).map_err(|e| SetupError::TrustRoot {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
        }
    }
}

/// The trust anchor and collateral source `config` names; collateral only when `needed`
/// (some enclave is configured).
pub fn trust_and_collateral(
    config: &SourceConfig,
    needed: bool,
) -> Result<(TrustAnchor, CollateralSetup), SetupError> {
    let anchor = trust_anchor(&config.trust_root)?;
    // A Nitro root that is not a usable certificate is a configuration error now, not a
    // refusal at the first Nitro connection.
    if config.nitro_trust_root.is_some() {
        self::nitro::nitro_root(config)?;
    }
    if !needed {
        return Ok((anchor, CollateralSetup::Unconfigured));
    }
    let setup = match &config.collateral {
        CollateralSpec::File(p) | CollateralSpec::Dir(p) => {
            from_files(p, &anchor, UnixTime::now())?
        }
        CollateralSpec::Pcs => fetching(
            None,
            None,
            config.api_key.clone(),
            &anchor,
            (config.refresh, config.early),
        )?,
        CollateralSpec::Url(u) => fetching(
            Some(u),
            config.pccs_ca.as_deref(),
            config.api_key.clone(),
            &anchor,
            (config.refresh, config.early),
        )?,
    };
    Ok((anchor, setup))
}
