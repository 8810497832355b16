//! PURE. Collateral: the exact signed bytes Intel serves (root CA CRL, PCK CRL, TCB info,
//! QE identity, issuer chains), parsed from a bundle or PCS responses. Verification of a
//! snapshot is `dcap::verified`; sources that read files or fetch live in `source/`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod early;
pub mod eval_numbers;
pub mod pcs;
pub mod qe_identity;
pub mod tcb_info;

use std::fmt;

use serde::Deserialize;

/// Collateral that cannot be used: `collateral_unavailable`, or `collateral_rollback`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// No collateral source is configured (no enclave needs one).
    #[error("no collateral source is configured")]
    NotConfigured,
    /// Collateral could not be had (not fetched yet, fetch failed).
    #[error("collateral unavailable: {0}")]
    Unavailable(String),
    /// The collateral to be had is below the high-water mark already seen (a replay).
    #[error("collateral rollback refused: {0}")]
    Rollback(String),
    /// The bundle is not JSON of the expected shape.
    #[error("collateral bundle is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// A hex field does not decode.
    #[error("collateral field `{0}` is not valid hex")]
    Hex(&'static str),
    /// TCB info or QE identity content is malformed.
    #[error("{what} is malformed: {detail}")]
    Content {
        /// The item.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// One collateral snapshot, holding the bytes exactly as signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collateral {
    /// PEM: the PCK Processor/Platform CA, then the root.
    pub pck_crl_issuer_chain: String,
    /// DER CRL issued by the root CA.
    pub root_ca_crl: Vec<u8>,
    /// DER CRL issued by the PCK Processor or Platform CA.
    pub pck_crl: Vec<u8>,
    /// PEM: TCB Signing certificate, then the root.
    pub tcb_info_issuer_chain: String,
    /// The exact signed text of the `tcbInfo` JSON value.
    pub tcb_info: String,
    /// Raw `r‖s` signature over `tcb_info`.
    pub tcb_info_signature: Vec<u8>,
    /// PEM: TCB Signing certificate, then the root.
    pub qe_identity_issuer_chain: String,
    /// The exact signed text of the `enclaveIdentity` JSON value.
    pub qe_identity: String,
    /// Raw `r‖s` signature over `qe_identity`.
    pub qe_identity_signature: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    // Only meaningful for quotes without an embedded chain; we require certification
    // data type 5 and never let collateral replace the quote's own PCK chain.
    #[serde(default, rename = "pck_certificate_chain")]
    _pck_certificate_chain: Option<String>,
    /// `"early"`: the TCB info and QE identity are Intel's early data (`early::BundleFile`).
    #[serde(default)]
    update: Option<String>,
    /// The signed evaluation data numbers list, its signature (hex) and issuer chain.
    #[serde(default)]
    tcb_evaluation_data_numbers: Option<String>,
    #[serde(default)]
    tcb_evaluation_data_numbers_signature: Option<String>,
    #[serde(default)]
    tcb_evaluation_data_numbers_issuer_chain: Option<String>,
}

fn hex_field(field: &'static str, text: &str) -> Result<Vec<u8>, CollateralError> {
    hex::decode(text).map_err(|_| CollateralError::Hex(field))
}

/// Refuses a signed body (TCB info, QE identity, evaluation numbers) in a format `version`
/// other than the one this verifier reads.
fn supported_version(version: u32, supported: u32) -> Result<(), String> {
    if version == supported {
        Ok(())
    } else {
        Err(format!(
            "version {version} (only version {supported} is supported)"
        ))
    }
}

impl Collateral {
    /// Parses the JSON bundle format of `fixtures/dcap/*.collateral.json`
    /// (dcap-qvl's `QuoteCollateralV3`: hex CRLs and signatures, signed JSON as text).
    /// The fields of early bundles (`early::BundleFile`) are read and left aside.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        Self::from_bundle(parse_bundle(bytes)?)
    }

    fn from_bundle(b: Bundle) -> Result<Self, CollateralError> {
        let hex = hex_field;
        Ok(Self {
            root_ca_crl: hex("root_ca_crl", &b.root_ca_crl)?,
            pck_crl: hex("pck_crl", &b.pck_crl)?,
            tcb_info_signature: hex("tcb_info_signature", &b.tcb_info_signature)?,
            qe_identity_signature: hex("qe_identity_signature", &b.qe_identity_signature)?,
            pck_crl_issuer_chain: b.pck_crl_issuer_chain,
            tcb_info_issuer_chain: b.tcb_info_issuer_chain,
            tcb_info: b.tcb_info,
            qe_identity_issuer_chain: b.qe_identity_issuer_chain,
            qe_identity: b.qe_identity,
        })
    }

    /// Serialises back to the JSON bundle format (signed text kept verbatim).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": hex::encode(&self.root_ca_crl),
            "pck_crl": hex::encode(&self.pck_crl),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info,
            "tcb_info_signature": hex::encode(&self.tcb_info_signature),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity,
            "qe_identity_signature": hex::encode(&self.qe_identity_signature),
        })
        .to_string()
    }
}

fn parse_bundle(bytes: &[u8]) -> Result<Bundle, CollateralError> {
    serde_json::from_slice(bytes).map_err(|e| CollateralError::Json(e.to_string()))
}

/// A piece of collateral with its own validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollateralItem {
    /// The pinned root certificate.
    RootCa,
    /// The root CA CRL.
    RootCaCrl,
    /// The PCK CRL.
    PckCrl,
    /// The PCK CA certificate that issued the PCK CRL.
    PckCrlIssuer,
    /// The TCB info.
    TcbInfo,
    /// The TCB Signing certificate of the TCB info.
    TcbInfoSigner,
    /// The QE identity.
    QeIdentity,
    /// The TCB Signing certificate of the QE identity.
    QeIdentitySigner,
    /// The early TCB info.
    EarlyTcbInfo,
    /// The early QE identity.
    EarlyQeIdentity,
    /// The TCB Signing certificate of early data.
    EarlySigner,
}

impl fmt::Display for CollateralItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RootCa => "the root CA certificate",
            Self::RootCaCrl => "the root CA CRL",
            Self::PckCrl => "the PCK CRL",
            Self::PckCrlIssuer => "the PCK CRL issuer certificate",
            Self::TcbInfo => "the TCB info",
            Self::TcbInfoSigner => "the TCB info signing certificate",
            Self::QeIdentity => "the QE identity",
            Self::QeIdentitySigner => "the QE identity signing certificate",
            Self::EarlyTcbInfo => "the early TCB info",
            Self::EarlyQeIdentity => "the early QE identity",
            Self::EarlySigner => "the early TCB data's signing certificate",
        })
    }
}
