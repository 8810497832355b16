//! Parsing a DCAP ECDSA quote into borrowed, typed views.
//!
//! Layout: `reference/dcap-verification.md` §2. SGX v3, SGX in the v4/v5 framing
//! (certification data type 6 wrapping type 5), and TDX v4 (TD 1.0 body) and v5 (body
//! descriptor types 2, 3 and 4: TD 1.0, TD 1.5 and TD 1.5 with the extended fields). Everything the verifier needs is parsed
//! here once; nothing downstream indexes raw quote bytes.

use super::limits::{MAX_CERT_DATA_LEN, MAX_QE_AUTH_DATA_LEN, MAX_QUOTE_LEN, MAX_SIG_DATA_LEN};
use super::reader::Reader;
use super::QuoteError;
use crate::dcap::ids::{
    Attributes, CpuSvn, IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam,
    MrServiceTd, MrSigner, MrSignerSeam, MrTd, ReportData, Rtmr, SeamAttributes, TdAttributes,
    TeeTcbSvn, Xfam,
};

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
const V5_BODY_TD10: u16 = 2;
const V5_BODY_TD15: u16 = 3;
const V5_BODY_TD15EX: u16 = 4;
const TD10_LEN: usize = 584;
const TD15_LEN: usize = 648;
const TD15EX_LEN: usize = 885;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeeType {
    /// Intel SGX enclave.
    Sgx,
    /// Intel TDX trust domain (confidential VM).
    Tdx,
}

impl TeeType {
    /// Name as used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sgx => "SGX",
            Self::Tdx => "TDX",
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

/// Which TD report body a TDX quote carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdReportKind {
    /// TD 1.0 (584 bytes; v4, or v5 body type 2).
    Td10,
    /// TD 1.5 (648 bytes; v5 body type 3): adds TEE_TCB_SVN2 and MR_SERVICETD.
    Td15,
    /// TD 1.5 with the extended fields (885 bytes; v5 body type 4).
    Td15Ex,
}

/// A TD report body: the trust domain's measurements and the TDX module's identity.
#[derive(Clone, Copy, Debug)]
pub struct TdReport<'a> {
    /// The exact body bytes, as signed.
    pub raw: &'a [u8],
    /// Which body layout.
    pub kind: TdReportKind,
    /// TEE_TCB_SVN: [0] module minor SVN, [1] module major version, then platform components.
    pub tee_tcb_svn: TeeTcbSvn,
    /// MRSEAM: the TDX module's measurement.
    pub mr_seam: MrSeam,
    /// MRSIGNERSEAM: the TDX module's signer (zero for Intel).
    pub mr_signer_seam: MrSignerSeam,
    /// SEAM_ATTRIBUTES of the module.
    pub seam_attributes: SeamAttributes,
    /// TD_ATTRIBUTES (DEBUG is bit 0).
    pub td_attributes: TdAttributes,
    /// XFAM.
    pub xfam: Xfam,
    /// MRTD: the TD's initial measurement.
    pub mr_td: MrTd,
    /// MRCONFIGID.
    pub mr_config_id: MrConfigId,
    /// MROWNER.
    pub mr_owner: MrOwner,
    /// MROWNERCONFIG.
    pub mr_owner_config: MrOwnerConfig,
    /// RTMR0..RTMR3.
    pub rtmr: [Rtmr; 4],
    /// REPORTDATA.
    pub report_data: ReportData,
    /// TEE_TCB_SVN2: the current TCB (TD 1.5 bodies).
    pub tee_tcb_svn2: Option<TeeTcbSvn>,
    /// MR_SERVICETD (TD 1.5 bodies).
    pub mr_service_td: Option<MrServiceTd>,
}

impl<'a> TdReport<'a> {
    fn parse(raw: &'a [u8], kind: TdReportKind) -> Result<Self, QuoteError> {
        let mut r = Reader::new(raw);
        let tee_tcb_svn = TeeTcbSvn(*r.array::<16>("TD tee_tcb_svn")?);
        let mr_seam = MrSeam(*r.array::<48>("TD mr_seam")?);
        let mr_signer_seam = MrSignerSeam(*r.array::<48>("TD mrsigner_seam")?);
        let seam_attributes = SeamAttributes(*r.array::<8>("TD seam_attributes")?);
        let td_attributes = TdAttributes(*r.array::<8>("TD td_attributes")?);
        let xfam = Xfam(*r.array::<8>("TD xfam")?);
        let mr_td = MrTd(*r.array::<48>("TD mr_td")?);
        let mr_config_id = MrConfigId(*r.array::<48>("TD mr_config_id")?);
        let mr_owner = MrOwner(*r.array::<48>("TD mr_owner")?);
        let mr_owner_config = MrOwnerConfig(*r.array::<48>("TD mr_owner_config")?);
        let rtmr = [
            Rtmr(*r.array::<48>("TD rtmr0")?),
            Rtmr(*r.array::<48>("TD rtmr1")?),
            Rtmr(*r.array::<48>("TD rtmr2")?),
            Rtmr(*r.array::<48>("TD rtmr3")?),
        ];
        let report_data = ReportData(*r.array::<64>("TD report_data")?);
        let (tee_tcb_svn2, mr_service_td) = match kind {
            TdReportKind::Td10 => (None, None),
            TdReportKind::Td15 | TdReportKind::Td15Ex => (
                Some(TeeTcbSvn(*r.array::<16>("TD tee_tcb_svn2")?)),
                Some(MrServiceTd(*r.array::<48>("TD mr_servicetd")?)),
            ),
        };
        // The 1.5ex extension (VM and device identities, service-TD hashes, initial SVNs) is
        // signed with the body; no policy reads it yet.
        if kind == TdReportKind::Td15Ex {
            r.take(
                TD15EX_LEN.saturating_sub(TD15_LEN),
                "TD 1.5 extended fields",
            )?;
        }
        r.finish("TD report body")?;
        Ok(Self {
            raw,
            kind,
            tee_tcb_svn,
            mr_seam,
            mr_signer_seam,
            seam_attributes,
            td_attributes,
            xfam,
            mr_td,
            mr_config_id,
            mr_owner,
            mr_owner_config,
            rtmr,
            report_data,
            tee_tcb_svn2,
            mr_service_td,
        })
    }
}

/// What a quote attests: an SGX enclave's report or a TD's report.
// A parsed quote lives on the stack for one verification; boxing the larger TD view would
// allocate for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// An SGX enclave.
    Sgx(ReportBody<'a>),
    /// A TDX trust domain.
    Td(TdReport<'a>),
}

impl Body<'_> {
    /// REPORTDATA, whichever the TEE.
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Sgx(r) => &r.report_data,
            Self::Td(t) => &t.report_data,
        }
    }

    /// The TEE this body belongs to.
    pub fn tee(&self) -> TeeType {
        match self {
            Self::Sgx(_) => TeeType::Sgx,
            Self::Td(_) => TeeType::Tdx,
        }
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

/// A parsed DCAP quote (SGX or TDX): borrowed views over the input bytes.
#[derive(Clone, Copy, Debug)]
pub struct Quote<'a> {
    /// Header.
    pub header: Header<'a>,
    /// The enclave's or the TD's report.
    pub body: Body<'a>,
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
            TEE_TDX if version == QuoteVersion::V3 => return Err(QuoteError::TdxInV3),
            TEE_TDX => TeeType::Tdx,
            other => return Err(QuoteError::UnknownTeeType(other)),
        };
        let qe_svn = r.u16_le("header qe_svn")?;
        let pce_svn = r.u16_le("header pce_svn")?;
        let vendor = r.array::<16>("header qe_vendor_id")?;
        if *vendor != INTEL_QE_VENDOR_ID {
            return Err(QuoteError::UnknownQeVendor(hex::encode(vendor)));
        }
        let user_data = r.array::<20>("header user_data")?;

        let body = match (version, tee) {
            (QuoteVersion::V5, _) => {
                let body_type = r.u16_le("v5 body type")?;
                let body_size = r.u32_le("v5 body size")?;
                let expected = match (body_type, tee) {
                    (V5_BODY_SGX, TeeType::Sgx) => Some(REPORT_BODY_LEN),
                    (V5_BODY_TD10, TeeType::Tdx) => Some(TD10_LEN),
                    (V5_BODY_TD15, TeeType::Tdx) => Some(TD15_LEN),
                    (V5_BODY_TD15EX, TeeType::Tdx) => Some(TD15EX_LEN),
                    _ => None,
                };
                if expected.and_then(|n| u32::try_from(n).ok()) != Some(body_size) {
                    return Err(QuoteError::BodyMismatch {
                        body_type,
                        body_size,
                    });
                }
                match body_type {
                    V5_BODY_SGX => Body::Sgx(ReportBody::parse(
                        r.array::<REPORT_BODY_LEN>("report body")?,
                    )?),
                    V5_BODY_TD10 => Body::Td(TdReport::parse(
                        r.take(TD10_LEN, "TD 1.0 report body")?,
                        TdReportKind::Td10,
                    )?),
                    V5_BODY_TD15 => Body::Td(TdReport::parse(
                        r.take(TD15_LEN, "TD 1.5 report body")?,
                        TdReportKind::Td15,
                    )?),
                    _ => Body::Td(TdReport::parse(
                        r.take(TD15EX_LEN, "TD 1.5 extended report body")?,
                        TdReportKind::Td15Ex,
                    )?),
                }
            }
            (_, TeeType::Sgx) => Body::Sgx(ReportBody::parse(
                r.array::<REPORT_BODY_LEN>("report body")?,
            )?),
            (_, TeeType::Tdx) => Body::Td(TdReport::parse(
                r.take(TD10_LEN, "TD 1.0 report body")?,
                TdReportKind::Td10,
            )?),
        };
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
            body,
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
