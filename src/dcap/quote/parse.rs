//! Parsing a DCAP ECDSA quote into borrowed, typed views.
//!
//! Layout: `reference/dcap-verification.md` §2. SGX v3, and SGX in the v4/v5 framing
//! (certification data type 6 wrapping type 5). Everything the verifier needs is parsed
//! here once; nothing downstream indexes raw quote bytes.

use super::limits::{MAX_CERT_DATA_LEN, MAX_QE_AUTH_DATA_LEN, MAX_QUOTE_LEN, MAX_SIG_DATA_LEN};
use super::reader::Reader;
use super::QuoteError;
use crate::dcap::ids::{Attributes, CpuSvn, IsvProdId, IsvSvn, MrEnclave, MrSigner, ReportData};

/// Intel's Quoting Enclave vendor ID.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

const REPORT_BODY_LEN: usize = 384;
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
const TEE_SGX: u32 = 0;
const TEE_TDX: u32 = 0x81;
const CERT_TYPE_PCK_CHAIN: u16 = 5;
const CERT_TYPE_QE_REPORT: u16 = 6;
const V5_BODY_SGX: u16 = 1;

/// The quote format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteVersion {
    /// Version 3 (SGX only).
    V3,
    /// Version 4 (QE report certification data wrapper).
    V4,
    /// Version 5 (body descriptor before the body).
    V5,
}

impl QuoteVersion {
    /// The numeric version as it appears in the header.
    pub fn number(self) -> u16 {
        match self {
            Self::V3 => 3,
            Self::V4 => 4,
            Self::V5 => 5,
        }
    }
}

/// The trusted execution environment the quote attests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeeType {
    /// Intel SGX enclave.
    Sgx,
}

impl TeeType {
    /// Name as used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgx => "SGX",
        }
    }
}

/// The 48-byte quote header.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// Format version.
    pub version: QuoteVersion,
    /// TEE type.
    pub tee: TeeType,
    /// QE security version at quote time (informational; TCB is judged from the QE report).
    pub qe_svn: u16,
    /// PCE security version at quote time (informational; TCB is judged from the PCK certificate).
    pub pce_svn: u16,
    /// QE-chosen user data (Intel: the QE ID).
    pub user_data: &'a [u8; 20],
}

/// An SGX report body (`sgx_report_body_t`, 384 bytes): the enclave's or the QE's.
#[derive(Clone, Copy, Debug)]
pub struct ReportBody<'a> {
    /// The exact 384 bytes, as signed.
    pub raw: &'a [u8; REPORT_BODY_LEN],
    /// CPU security version at report time.
    pub cpu_svn: CpuSvn,
    /// MISCSELECT, as the 4 raw little-endian bytes.
    pub miscselect: [u8; 4],
    /// ATTRIBUTES (FLAGS ‖ XFRM).
    pub attributes: Attributes,
    /// MRENCLAVE.
    pub mrenclave: MrEnclave,
    /// MRSIGNER.
    pub mrsigner: MrSigner,
    /// ISVPRODID.
    pub isv_prod_id: IsvProdId,
    /// ISVSVN.
    pub isv_svn: IsvSvn,
    /// REPORTDATA.
    pub report_data: ReportData,
}

impl<'a> ReportBody<'a> {
    fn parse(raw: &'a [u8; REPORT_BODY_LEN]) -> Result<Self, QuoteError> {
        let mut r = Reader::new(raw);
        let cpu_svn = CpuSvn(*r.array::<16>("report cpusvn")?);
        let miscselect = *r.array::<4>("report miscselect")?;
        r.take(28, "report reserved1 and isv_ext_prod_id")?;
        let attributes = Attributes(*r.array::<16>("report attributes")?);
        let mrenclave = MrEnclave(*r.array::<32>("report mrenclave")?);
        r.take(32, "report reserved2")?;
        let mrsigner = MrSigner(*r.array::<32>("report mrsigner")?);
        r.take(96, "report reserved3 and config_id")?;
        let isv_prod_id = IsvProdId(r.u16_le("report isv_prod_id")?);
        let isv_svn = IsvSvn(r.u16_le("report isv_svn")?);
        r.take(60, "report config_svn, reserved4 and isv_family_id")?;
        let report_data = ReportData(*r.array::<64>("report report_data")?);
        r.finish("report body")?;
        Ok(Self {
            raw,
            cpu_svn,
            miscselect,
            attributes,
            mrenclave,
            mrsigner,
            isv_prod_id,
            isv_svn,
            report_data,
        })
    }
}

/// The Quoting Enclave's certification of the attestation key.
#[derive(Clone, Copy, Debug)]
pub struct QeCertification<'a> {
    /// The QE's own report; its REPORTDATA commits to the attestation key and auth data.
    pub report: ReportBody<'a>,
    /// ECDSA P-256 `r‖s` by the PCK leaf key over `report.raw`.
    pub report_signature: &'a [u8; 64],
    /// QE authentication data, hashed into the QE report.
    pub auth_data: &'a [u8],
    /// The PCK certificate chain as PEM (trailing NULs removed).
    pub pck_chain_pem: &'a [u8],
}

/// A parsed SGX DCAP quote: borrowed views over the input bytes.
#[derive(Clone, Copy, Debug)]
pub struct Quote<'a> {
    /// Header.
    pub header: Header<'a>,
    /// The application enclave's report.
    pub report: ReportBody<'a>,
    /// Bytes covered by the ISV enclave report signature (header, descriptor, body).
    pub signed: &'a [u8],
    /// ECDSA P-256 `r‖s` by the attestation key over `signed`.
    pub isv_signature: &'a [u8; 64],
    /// The attestation public key `x‖y`.
    pub attestation_key: &'a [u8; 64],
    /// QE report, its signature, auth data and the PCK chain.
    pub qe: QeCertification<'a>,
}

impl<'a> Quote<'a> {
    /// Parses a quote. Trailing bytes after the signature data must be zero padding.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, QuoteError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::TooLarge {
                len: bytes.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut r = Reader::new(bytes);

        let version = match r.u16_le("header version")? {
            3 => QuoteVersion::V3,
            4 => QuoteVersion::V4,
            5 => QuoteVersion::V5,
            other => return Err(QuoteError::UnsupportedVersion(other)),
        };
        let att_key_type = r.u16_le("header att_key_type")?;
        if att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(QuoteError::UnsupportedAttestationKeyType(att_key_type));
        }
        let tee = match r.u32_le("header tee_type")? {
            TEE_SGX => TeeType::Sgx,
            TEE_TDX => return Err(QuoteError::TdxUnsupported),
            other => return Err(QuoteError::UnknownTeeType(other)),
        };
        let qe_svn = r.u16_le("header qe_svn")?;
        let pce_svn = r.u16_le("header pce_svn")?;
        let vendor = r.array::<16>("header qe_vendor_id")?;
        if *vendor != INTEL_QE_VENDOR_ID {
            return Err(QuoteError::UnknownQeVendor(hex::encode(vendor)));
        }
        let user_data = r.array::<20>("header user_data")?;

        if version == QuoteVersion::V5 {
            let body_type = r.u16_le("v5 body type")?;
            let body_size = r.u32_le("v5 body size")?;
            let sgx_size = u32::try_from(REPORT_BODY_LEN).unwrap_or(u32::MAX);
            if body_type != V5_BODY_SGX || body_size != sgx_size {
                return Err(QuoteError::BodyMismatch {
                    body_type,
                    body_size,
                });
            }
        }
        let report = ReportBody::parse(r.array::<REPORT_BODY_LEN>("report body")?)?;
        let signed_len = bytes.len().saturating_sub(r.remaining());
        let signed = bytes.get(..signed_len).ok_or(QuoteError::Truncated {
            what: "signed region",
            needed: signed_len,
            available: bytes.len(),
        })?;

        let sig_data = r.sized_u32(MAX_SIG_DATA_LEN, "signature data")?;
        let padding = r.rest();
        if padding.iter().any(|&b| b != 0) {
            return Err(QuoteError::TrailingBytes {
                what: "signature data (non-zero padding)",
                extra: padding.len(),
            });
        }

        let mut s = Reader::new(sig_data);
        let isv_signature = s.array::<64>("ISV report signature")?;
        let attestation_key = s.array::<64>("attestation key")?;
        let qe = match version {
            QuoteVersion::V3 => {
                let qe = parse_qe_certification(&mut s)?;
                s.finish("signature data")?;
                qe
            }
            QuoteVersion::V4 | QuoteVersion::V5 => {
                let outer = s.u16_le("certification data type")?;
                if outer != CERT_TYPE_QE_REPORT {
                    return Err(QuoteError::UnsupportedCertificationData(outer));
                }
                let payload = s.sized_u32(MAX_SIG_DATA_LEN, "QE report certification data")?;
                s.finish("signature data")?;
                let mut p = Reader::new(payload);
                let qe = parse_qe_certification(&mut p)?;
                p.finish("QE report certification data")?;
                qe
            }
        };

        Ok(Self {
            header: Header {
                version,
                tee,
                qe_svn,
                pce_svn,
                user_data,
            },
            report,
            signed,
            isv_signature,
            attestation_key,
            qe,
        })
    }
}

/// QE report ‖ signature ‖ auth data ‖ certification data (type 5).
fn parse_qe_certification<'a>(r: &mut Reader<'a>) -> Result<QeCertification<'a>, QuoteError> {
    let report = ReportBody::parse(r.array::<REPORT_BODY_LEN>("QE report")?)?;
    let report_signature = r.array::<64>("QE report signature")?;
    let auth_len = usize::from(r.u16_le("QE auth data size")?);
    if auth_len > MAX_QE_AUTH_DATA_LEN {
        return Err(QuoteError::FieldTooLarge {
            what: "QE auth data",
            len: auth_len,
            max: MAX_QE_AUTH_DATA_LEN,
        });
    }
    let auth_data = r.take(auth_len, "QE auth data")?;
    let cert_type = r.u16_le("certification data type")?;
    if cert_type != CERT_TYPE_PCK_CHAIN {
        return Err(QuoteError::UnsupportedCertificationData(cert_type));
    }
    let cert_data = r.sized_u32(MAX_CERT_DATA_LEN, "certification data")?;
    // Quote generators NUL-terminate the PEM text.
    let end = cert_data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i.saturating_add(1));
    let pck_chain_pem = cert_data.get(..end).unwrap_or_default();
    Ok(QeCertification {
        report,
        report_signature,
        auth_data,
        pck_chain_pem,
    })
}
