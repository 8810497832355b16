//! The ways an SEV-SNP report, its certificates or its signature can fail, as two typed
//! enums: [`ReportError`] (the bytes are not a report we understand) and [`SnpError`]
//! (verification). The refusal code of each variant is chosen in `appraise`, so the core
//! depends on nothing above it.

use super::product::Product;
use crate::dcap::time::UnixTime;

/// A report that cannot be parsed, or uses a format or value we do not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not exactly 1184 bytes.
    #[error("an SEV-SNP report is 1184 bytes, got {0}")]
    Length(usize),
    /// VERSION other than 2, 3 or 5.
    #[error("unsupported SEV-SNP report version {0} (supported: 2, 3, 5)")]
    UnsupportedVersion(u32),
    /// SIGNATURE_ALGO other than 1 (ECDSA P-384 with SHA-384).
    #[error("unsupported signature algorithm {0} (only 1, ECDSA P-384 with SHA-384)")]
    SignatureAlgorithm(u32),
    /// A reserved field or bit is not zero (or policy bit 17 is not one).
    #[error("{what}: reserved bits are set (a layout this verifier does not know)")]
    Reserved {
        /// Which field.
        what: &'static str,
    },
    /// SIGNING_KEY is one of the reserved values 2–6.
    #[error("SIGNING_KEY {0} is reserved (0 VCEK, 1 VLEK, 7 none)")]
    SigningKey(u8),
    /// The firmware did not sign the report (SIGNING_KEY none, or MASK_CHIP_KEY set).
    #[error("the report is not signed (SIGNING_KEY = none or MASK_CHIP_KEY set)")]
    Unsigned,
    /// CPUID family/model of no product line we know.
    #[error("CPUID family {family:#04x} model {model:#04x} is no SEV-SNP product this verifier knows (Milan, Genoa, Turin)")]
    UnknownCpu {
        /// CPUID_FAM_ID.
        family: u8,
        /// CPUID_MOD_ID.
        model: u8,
    },
}

/// Which certificate of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// AMD Root Key (self-signed, one per product).
    Ark,
    /// AMD SEV Key: signs VCEKs.
    Ask,
    /// AMD SEV VLEK Key: signs VLEKs.
    Asvk,
    /// Versioned Chip Endorsement Key: one per chip and TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: one per cloud provider and TCB.
    Vlek,
    /// The product's certificate revocation list (signed by the ARK).
    Crl,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ark => "ARK",
            Self::Ask => "ASK",
            Self::Asvk => "ASVK",
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
            Self::Crl => "CRL",
        })
    }
}

/// A TCB component named in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcbComponent {
    /// FMC (Turin).
    Fmc,
    /// PSP bootloader.
    Bootloader,
    /// PSP OS.
    Tee,
    /// SNP firmware.
    Snp,
    /// Microcode.
    Microcode,
}

impl std::fmt::Display for TcbComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fmc => "fmc",
            Self::Bootloader => "bootloader",
            Self::Tee => "tee",
            Self::Snp => "snp",
            Self::Microcode => "microcode",
        })
    }
}

/// An SEV-SNP report or its certificates failed verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// The report does not parse.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A certificate or CRL does not parse, or is not what its role requires.
    #[error("{role} certificate: {detail}")]
    Certificate {
        /// Which certificate.
        role: CertRole,
        /// What is wrong.
        detail: String,
    },
    /// A certificate, the CRL or the report is signed with an algorithm or encoding we do
    /// not accept (RSA-PSS SHA-384 for certificates, ECDSA P-384 for the report).
    #[error("{role}: signature algorithm or encoding not accepted: {detail}")]
    Algorithm {
        /// Whose signature.
        role: CertRole,
        /// What is wrong.
        detail: &'static str,
    },
    /// No pinned ARK for this product, or the chain does not lead to it.
    #[error("{role} is not issued by the pinned {product} ARK: {detail}")]
    NotPinned {
        /// The certificate that should chain to the ARK.
        role: CertRole,
        /// The product.
        product: Product,
        /// What is wrong.
        detail: String,
    },
    /// A certificate's or the CRL's signature does not verify under its issuer's key.
    #[error("{0} signature does not verify under its issuer's key")]
    CertificateSignature(CertRole),
    /// The report's signature encoding is not canonical (non-zero high bytes in r or s).
    #[error("report signature: {0}")]
    SignatureEncoding(&'static str),
    /// The report's signature does not verify under the VCEK/VLEK.
    #[error("the report's signature does not verify under the {0} key")]
    ReportSignature(CertRole),
    /// A certificate or the CRL is outside its validity window.
    #[error("{role} is valid {from} .. {until}, not at {now}")]
    Expired {
        /// Which one.
        role: CertRole,
        /// First valid second.
        from: UnixTime,
        /// Last valid second.
        until: UnixTime,
        /// Verification time.
        now: UnixTime,
    },
    /// The ASK or ASVK is listed in the product's CRL.
    #[error("{role} (serial {serial}) is revoked by the {product} CRL of {crl_issued}")]
    Revoked {
        /// Which certificate.
        role: CertRole,
        /// Its serial, hex.
        serial: String,
        /// The product.
        product: Product,
        /// The revoking CRL's thisUpdate: a fetching source raises its rollback mark to it, so
        /// no CRL issued before the revocation is admitted after it (a restart too).
        crl_issued: UnixTime,
    },
    /// The report says VCEK and the certificate is a VLEK, or the reverse (or the
    /// intermediate is the other kind's).
    #[error("the report is signed by the {report}, the certificate given is a {certificate}")]
    KeyKind {
        /// What SIGNING_KEY says.
        report: CertRole,
        /// What the certificate is.
        certificate: CertRole,
    },
    /// The report's product (CPUID) and the certificate's disagree.
    #[error("the report is from a {report} chip, the {role} is for {certificate}")]
    ProductMismatch {
        /// From the report's CPUID.
        report: Product,
        /// The certificate's.
        certificate: Product,
        /// Which certificate.
        role: CertRole,
    },
    /// A VCEK extension is missing, duplicated, or malformed.
    #[error("{role} extension {oid}: {detail}")]
    Extension {
        /// Which certificate.
        role: CertRole,
        /// The extension's OID (dotted).
        oid: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The VCEK is for another chip.
    #[error("the VCEK is for chip {certificate}, the report's CHIP_ID is {report}")]
    ChipIdMismatch {
        /// The VCEK's hwID, hex.
        certificate: String,
        /// The report's CHIP_ID (its first 8 bytes on Turin), hex.
        report: String,
    },
    /// The VCEK/VLEK is for another TCB than the report's REPORTED_TCB.
    #[error(
        "the {role} is for {component} SPL {certificate}, the report's REPORTED_TCB says {report}"
    )]
    TcbMismatch {
        /// Which certificate.
        role: CertRole,
        /// The component.
        component: TcbComponent,
        /// The certificate's SPL.
        certificate: u8,
        /// The report's SPL.
        report: u8,
    },
}

impl SnpError {
    /// A certificate error with a message.
    pub(crate) fn cert(role: CertRole, detail: impl Into<String>) -> Self {
        Self::Certificate {
            role,
            detail: detail.into(),
        }
    }
}
