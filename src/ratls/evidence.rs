//! Finding the quote in an RA-TLS leaf certificate.
//!
//! Carriers, in the order Gramine's own verifier prefers them:
//! - `2.23.133.5.4.9`, TCG DICE tagged evidence: CBOR `tag(60000) [bstr quote, bstr claims]`
//!   (Gramine ≥ 1.8 for SGX; tag 60000 is "an Intel TEE quote", SGX or TDX), REPORTDATA
//!   commits to the claims;
//! - `1.2.840.113741.1337.6`, the raw quote (Cosmian MSE, and Gramine's intent);
//! - `0.6.9.42.840.113741.1337.6`, the same OID as Gramine's C constant actually encodes it
//!   (its DER tag and length bytes end up inside the OID value);
//! - `1.2.840.113741.1337.8`, a raw TDX quote (Cosmian tee-tools, Cosmian VM; bound like .6);
//! - `1.3.6.1.4.1.62397.1.8`, dstack's versioned attestation (SCALE V0 or MessagePack V1:
//!   the quote, its event log, the report data, the VM configuration; `crate::dstack`);
//! - `1.3.6.1.4.1.62397.1.1`, a TDX quote (dstack's legacy carrier; its own REPORTDATA rule),
//!   with its event log as JSON in `.1.2` when dstack wrote one.
//!
//! dstack wraps every extension's content in a DER OCTET STRING inside the extnValue. More
//! than one raw carrier in one certificate is ambiguous and refused, and so are `.1.8` beside
//! `.1.1` or `.1.2` (dstack reads `.1.8` and ignores the rest: two verifiers would see two
//! different quotes), DICE evidence beside any of dstack's (Gramine reads the one, dstack the
//! other), `.1.2` without `.1.1`, and `.1.1` without `.1.2` (dstack refuses that too).
//! dstack evidence of a platform this build does not verify (SEV-SNP, Nitro, GCP TDX) is
//! recognised and refused as such.
//!
//! An AWS Nitro document may also travel in the subjectAltName (Evervault's carrier,
//! [`super::evervault`]); beside any quote extension it is ambiguous and refused (Evervault
//! reads the one, every other verifier the other). [`find_nitro`] names a Nitro entry's
//! carrier, dstack's or Evervault's.

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;

use super::evervault::{self, EvervaultError, EvervaultSan};
use crate::cbor::{Cbor, CborError};
use crate::dcap::quote::limits::MAX_QUOTE_LEN;
use crate::dstack::{self, Attestation, AttestationError, Platform, UnsupportedTee};

/// `2.23.133.5.4.9`: TCG DICE tagged evidence.
pub const OID_TCG_DICE_TAGGED_EVIDENCE: &[u64] = &[2, 23, 133, 5, 4, 9];
/// `1.2.840.113741.1337.6`: raw SGX quote.
pub const OID_SGX_QUOTE: &[u64] = &[1, 2, 840, 113_741, 1337, 6];
/// `0.6.9.42.840.113741.1337.6`: raw SGX quote, Gramine's legacy encoding.
pub const OID_SGX_QUOTE_GRAMINE_LEGACY: &[u64] = &[0, 6, 9, 42, 840, 113_741, 1337, 6];

/// Cosmian's TDX quote carrier.
pub const OID_TDX_QUOTE: &[u64] = &[1, 2, 840, 113_741, 1337, 8];
/// dstack's TDX quote carrier (legacy).
pub const OID_DSTACK_QUOTE: &[u64] = &[1, 3, 6, 1, 4, 1, 62_397, 1, 1];
pub use crate::dstack::{
    OID_ATTESTATION as OID_DSTACK_ATTESTATION, OID_EVENT_LOG as OID_DSTACK_EVENT_LOG,
};

/// The CBOR tag of TCG DICE tagged evidence for an Intel TEE quote, SGX or TDX.
const DICE_INTEL_QUOTE_TAG: u64 = 60000;

/// The quote carried by a certificate, and what its REPORTDATA commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence<'a> {
    /// A raw quote; REPORTDATA commits to the certificate key directly.
    Raw {
        /// The quote bytes.
        quote: &'a [u8],
        /// Which OID carried it.
        oid: &'static [u64],
    },
    /// DICE tagged evidence; REPORTDATA commits to `claims`, which names the key hash.
    Dice {
        /// The quote bytes.
        quote: &'a [u8],
        /// The CBOR claims exactly as embedded.
        claims: &'a [u8],
    },
    /// dstack's attestation (`.1.8`, or the legacy `.1.1` with its `.1.2` event log), of
    /// Intel TDX: REPORTDATA is the attestation's report data, which commits to the key;
    /// its event log must replay to the quote's RTMRs.
    Dstack(Box<Attestation<'a>>),
}

impl Evidence<'_> {
    /// The quote bytes.
    pub fn quote(&self) -> &[u8] {
        match self {
            Self::Raw { quote, .. } | Self::Dice { quote, .. } => quote,
            // `find` admits dstack evidence of TDX only; anything else would give no quote,
            // which never parses.
            Self::Dstack(att) => match &att.platform {
                Platform::Tdx(tdx) => &tdx.quote,
                _ => &[],
            },
        }
    }
}

/// Why no usable quote was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// No carrier extension (`no_quote`).
    #[error("the certificate carries no quote (none of 2.23.133.5.4.9, 1.2.840.113741.1337.6, Gramine's legacy OID, 1.2.840.113741.1337.8, 1.3.6.1.4.1.62397.1.8, 1.3.6.1.4.1.62397.1.1; nor an AWS Nitro document in a DNS subjectAltName, Evervault's carrier)")]
    NoQuote,
    /// A carrier appears twice, or both raw encodings are present (`quote_malformed`).
    #[error("ambiguous evidence: {0}")]
    Ambiguous(&'static str),
    /// The DICE evidence does not decode (`quote_malformed`).
    #[error("TCG DICE evidence is malformed: {0}")]
    Dice(#[from] CborError),
    /// The carried quote is above the size cap (`quote_malformed`).
    #[error("the embedded quote is {0} bytes, above the {MAX_QUOTE_LEN}-byte limit")]
    TooLarge(usize),
    /// dstack's legacy quote (`.1.1`) without its event log (`.1.2`), which dstack refuses
    /// too (`quote_malformed`).
    #[error("dstack's legacy quote (1.3.6.1.4.1.62397.1.1) without its event log (.1.2): dstack's verifier refuses it, and it names no app")]
    LegacyWithoutEventLog,
    /// dstack's evidence does not decode (`quote_malformed`).
    #[error("dstack evidence is malformed: {0}")]
    Dstack(#[from] AttestationError),
    /// dstack evidence of a platform this build does not verify (`unsupported_tee`).
    #[error(transparent)]
    UnsupportedTee(#[from] UnsupportedTee),
    /// The subjectAltName carries no usable Evervault document (`quote_malformed`).
    #[error("Evervault's attestation document in the subjectAltName is malformed: {0}")]
    Evervault(#[from] EvervaultError),
    /// An AWS Nitro document in the subjectAltName (Evervault's carrier): judged only for a
    /// `tee = "nitro"` entry (`unsupported_tee` for an entry that names no TEE).
    #[error("an AWS Nitro attestation document in the subjectAltName (Evervault's carrier), judged only for tee = \"nitro\" entries")]
    EvervaultNitro,
}

impl EvidenceError {
    /// The TEE (dstack's platform name) of evidence `find` recognised and left to another
    /// judge than Intel's: SEV-SNP or Nitro.
    pub fn other_tee(&self) -> Option<&'static str> {
        match self {
            Self::UnsupportedTee(u) => Some(u.0),
            Self::EvervaultNitro => Some(NITRO_ENCLAVE),
            _ => None,
        }
    }
}

/// dstack's name for AWS Nitro Enclaves evidence (`Platform::name`), for either carrier.
pub const NITRO_ENCLAVE: &str = "nitro-enclave";

/// Where a Nitro entry's document travels, each with its own key binding.
#[derive(Debug)]
pub enum NitroCarrier<'a> {
    /// dstack's `.1.8` attestation (of any platform: the Nitro judge names another one's
    /// `tee_mismatch`).
    Dstack(Box<Attestation<'a>>),
    /// Evervault's hex document in the subjectAltName.
    Evervault(EvervaultSan<'a>),
}

fn extension<'c>(
    cert: &'c X509Certificate<'_>,
    arcs: &[u64],
) -> Result<Option<&'c [u8]>, EvidenceError> {
    let oid = Oid::from(arcs).map_err(|_| EvidenceError::Ambiguous("bad OID constant"))?;
    cert.get_extension_unique(&oid)
        .map(|ext| ext.map(|e| e.value))
        .map_err(|_| EvidenceError::Ambiguous("a quote extension appears more than once"))
}

fn capped(quote: &[u8]) -> Result<&[u8], EvidenceError> {
    if quote.len() > MAX_QUOTE_LEN {
        Err(EvidenceError::TooLarge(quote.len()))
    } else {
        Ok(quote)
    }
}

/// Every quote extension this module knows.
const CARRIER_OIDS: [&[u64]; 7] = [
    OID_TCG_DICE_TAGGED_EVIDENCE,
    OID_SGX_QUOTE,
    OID_SGX_QUOTE_GRAMINE_LEGACY,
    OID_TDX_QUOTE,
    OID_DSTACK_ATTESTATION,
    OID_DSTACK_QUOTE,
    OID_DSTACK_EVENT_LOG,
];

/// Evervault's document in `cert`, if any and if no quote extension stands beside it.
fn evervault_alone<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<Option<EvervaultSan<'a>>, EvidenceError> {
    let Some(san) = evervault::find(cert)? else {
        return Ok(None);
    };
    for oid in CARRIER_OIDS {
        if extension(cert, oid)?.is_some() {
            return Err(EvidenceError::Ambiguous(
                "an AWS Nitro document in the subjectAltName (Evervault's carrier) beside a quote extension",
            ));
        }
    }
    Ok(Some(san))
}

/// Finds the quote, preferring DICE evidence when present (as Gramine does).
pub fn find<'a>(cert: &'a X509Certificate<'_>) -> Result<Evidence<'a>, EvidenceError> {
    if evervault_alone(cert)?.is_some() {
        return Err(EvidenceError::EvervaultNitro);
    }
    let dstack_log = extension(cert, OID_DSTACK_EVENT_LOG)?;
    if let Some(value) = extension(cert, OID_TCG_DICE_TAGGED_EVIDENCE)? {
        // Gramine reads DICE first, dstack reads its own: two verifiers, two quotes.
        if dstack_log.is_some()
            || extension(cert, OID_DSTACK_ATTESTATION)?.is_some()
            || extension(cert, OID_DSTACK_QUOTE)?.is_some()
        {
            return Err(EvidenceError::Ambiguous(
                "TCG DICE evidence (2.23.133.5.4.9) beside dstack's evidence (1.3.6.1.4.1.62397.1.8, .1.1 or .1.2)",
            ));
        }
        let mut c = Cbor::new(value);
        if c.tag()? != DICE_INTEL_QUOTE_TAG {
            return Err(
                CborError("unexpected tag (expected 60000, Intel TEE quote evidence)").into(),
            );
        }
        if c.array()? != 2 {
            return Err(CborError("expected [quote, claims]").into());
        }
        let quote = capped(c.bytes()?)?;
        let claims = c.bytes()?;
        if !c.is_empty() {
            return Err(CborError("trailing bytes").into());
        }
        return Ok(Evidence::Dice { quote, claims });
    }
    if let Some(value) = extension(cert, OID_DSTACK_ATTESTATION)? {
        if dstack_log.is_some() || extension(cert, OID_DSTACK_QUOTE)?.is_some() {
            return Err(EvidenceError::Ambiguous(
                "dstack's attestation (1.3.6.1.4.1.62397.1.8) beside its legacy quote or event log (.1.1, .1.2)",
            ));
        }
        for oid in [OID_SGX_QUOTE, OID_SGX_QUOTE_GRAMINE_LEGACY, OID_TDX_QUOTE] {
            if extension(cert, oid)?.is_some() {
                return Err(EvidenceError::Ambiguous(
                    "more than one quote extension is present",
                ));
            }
        }
        return dstack_evidence(Attestation::parse(dstack::extension_value(value)?)?);
    }
    let mut found = None;
    for oid in [
        OID_SGX_QUOTE,
        OID_SGX_QUOTE_GRAMINE_LEGACY,
        OID_TDX_QUOTE,
        OID_DSTACK_QUOTE,
    ] {
        if let Some(mut q) = extension(cert, oid)? {
            if oid == OID_DSTACK_QUOTE {
                q = dstack::extension_value(q)?;
            }
            if found.is_some() {
                return Err(EvidenceError::Ambiguous(
                    "more than one quote extension is present",
                ));
            }
            found = Some(Evidence::Raw {
                quote: capped(q)?,
                oid,
            });
        }
    }
    match (found, dstack_log) {
        (Some(Evidence::Raw { quote, oid }), Some(log)) if oid == OID_DSTACK_QUOTE => {
            let att = Attestation::from_legacy(quote, dstack::extension_value(log)?)?;
            dstack_evidence(att)
        }
        (_, Some(_)) => Err(EvidenceError::Ambiguous(
            "dstack's event log (1.3.6.1.4.1.62397.1.2) without its quote (.1.1)",
        )),
        // dstack refuses it too: without the log RTMR3 names no app, and a quote dstack's
        // verifier would refuse must not pass here.
        (Some(Evidence::Raw { oid, .. }), None) if oid == OID_DSTACK_QUOTE => {
            Err(EvidenceError::LegacyWithoutEventLog)
        }
        (found, None) => found.ok_or(EvidenceError::NoQuote),
    }
}

/// dstack's `.1.8` attestation in `cert`, parsed whatever its platform (for the SEV-SNP
/// judge, once [`find`] has named the evidence and refused every ambiguity).
pub fn find_dstack<'a>(cert: &'a X509Certificate<'_>) -> Result<Attestation<'a>, EvidenceError> {
    let value = extension(cert, OID_DSTACK_ATTESTATION)?.ok_or(EvidenceError::NoQuote)?;
    Ok(Attestation::parse(dstack::extension_value(value)?)?)
}

/// The Nitro carrier in `cert` for a Nitro entry, once [`find`] has named the evidence
/// Nitro's and refused every ambiguity: Evervault's document, else dstack's `.1.8`.
pub fn find_nitro<'a>(cert: &'a X509Certificate<'_>) -> Result<NitroCarrier<'a>, EvidenceError> {
    match evervault_alone(cert)? {
        Some(san) => Ok(NitroCarrier::Evervault(san)),
        None => find_dstack(cert).map(|att| NitroCarrier::Dstack(Box::new(att))),
    }
}

/// dstack evidence of TDX, its quote under the same cap as every other carrier's.
fn dstack_evidence(att: Attestation<'_>) -> Result<Evidence<'_>, EvidenceError> {
    capped(&att.platform.tdx()?.quote)?;
    Ok(Evidence::Dstack(Box::new(att)))
}

pub(crate) fn dice_pubkey_hash(claims: &[u8]) -> Result<(u64, &[u8]), CborError> {
    let mut c = Cbor::new(claims);
    let pairs = c.map()?;
    let mut found = None;
    for _ in 0..pairs {
        let key = c.text()?;
        if key == "pubkey-hash" {
            if found.is_some() {
                return Err(CborError("pubkey-hash appears twice"));
            }
            let inner = c.bytes()?;
            let mut h = Cbor::new(inner);
            if h.array()? != 2 {
                return Err(CborError("pubkey-hash is not [alg, hash]"));
            }
            let alg = h.uint()?;
            let digest = h.bytes()?;
            if !h.is_empty() {
                return Err(CborError("trailing bytes in pubkey-hash"));
            }
            found = Some((alg, digest));
        } else {
            c.skip()?; // unknown claims (a nonce is planned) are ignored, as Gramine does
        }
    }
    if !c.is_empty() {
        return Err(CborError("trailing bytes after the claims"));
    }
    found.ok_or(CborError("no pubkey-hash claim"))
}
