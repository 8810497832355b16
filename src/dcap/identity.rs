//! PURE. What a verified quote says its enclave or TD is: the identity fields a policy
//! judges, copied out of the quote so they outlive its bytes.

use super::ids::{
    Attributes, CpuSvn, IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam,
    MrServiceTd, MrSigner, MrSignerSeam, MrTd, ReportData, Rtmr, SeamAttributes, TdAttributes,
    TeeTcbSvn, Xfam,
};
use super::quote::{Body, ReportBody, TdReport, TdReportKind, TeeType};

/// An SGX enclave's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclaveIdentity {
    /// MRENCLAVE.
    pub mrenclave: MrEnclave,
    /// MRSIGNER.
    pub mrsigner: MrSigner,
    /// ISVPRODID.
    pub isv_prod_id: IsvProdId,
    /// ISVSVN.
    pub isv_svn: IsvSvn,
    /// ATTRIBUTES (DEBUG is bit 1).
    pub attributes: Attributes,
    /// REPORTDATA.
    pub report_data: ReportData,
    /// CPUSVN.
    pub cpu_svn: CpuSvn,
    /// MISCSELECT (raw little-endian bytes).
    pub miscselect: [u8; 4],
}

impl EnclaveIdentity {
    /// Copies the identity fields of a report body.
    pub fn of(report: &ReportBody<'_>) -> Self {
        Self {
            mrenclave: report.mrenclave,
            mrsigner: report.mrsigner,
            isv_prod_id: report.isv_prod_id,
            isv_svn: report.isv_svn,
            attributes: report.attributes,
            report_data: report.report_data,
            cpu_svn: report.cpu_svn,
            miscselect: report.miscselect,
        }
    }
}

/// A TD's identity: its measurements and the TDX module it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdIdentity {
    /// Which TD report body it came from.
    pub kind: TdReportKind,
    /// MRTD.
    pub mr_td: MrTd,
    /// RTMR0..RTMR3.
    pub rtmr: [Rtmr; 4],
    /// MRCONFIGID.
    pub mr_config_id: MrConfigId,
    /// MROWNER.
    pub mr_owner: MrOwner,
    /// MROWNERCONFIG.
    pub mr_owner_config: MrOwnerConfig,
    /// MRSEAM (the TDX module's measurement).
    pub mr_seam: MrSeam,
    /// MRSIGNERSEAM.
    pub mr_signer_seam: MrSignerSeam,
    /// SEAM_ATTRIBUTES.
    pub seam_attributes: SeamAttributes,
    /// TD_ATTRIBUTES.
    pub td_attributes: TdAttributes,
    /// XFAM.
    pub xfam: Xfam,
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: TeeTcbSvn,
    /// TEE_TCB_SVN2 (TD 1.5).
    pub tee_tcb_svn2: Option<TeeTcbSvn>,
    /// MR_SERVICETD (TD 1.5).
    pub mr_service_td: Option<MrServiceTd>,
    /// REPORTDATA.
    pub report_data: ReportData,
}

impl TdIdentity {
    /// Copies the identity fields of a TD report.
    pub fn of(td: &TdReport<'_>) -> Self {
        Self {
            kind: td.kind,
            mr_td: td.mr_td,
            rtmr: td.rtmr,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
            mr_seam: td.mr_seam,
            mr_signer_seam: td.mr_signer_seam,
            seam_attributes: td.seam_attributes,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            tee_tcb_svn: td.tee_tcb_svn,
            tee_tcb_svn2: td.tee_tcb_svn2,
            mr_service_td: td.mr_service_td,
            report_data: td.report_data,
        }
    }
}

/// The identity a quote attests, by TEE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// An SGX enclave.
    Sgx(EnclaveIdentity),
    /// A TDX trust domain.
    Td(Box<TdIdentity>),
}

impl Identity {
    /// Copies the identity fields of a quote body.
    pub fn of(body: &Body<'_>) -> Self {
        match body {
            Body::Sgx(r) => Self::Sgx(EnclaveIdentity::of(r)),
            Body::Td(t) => Self::Td(Box::new(TdIdentity::of(t))),
        }
    }

    /// The TEE.
    pub fn tee(&self) -> TeeType {
        match self {
            Self::Sgx(_) => TeeType::Sgx,
            Self::Td(_) => TeeType::Tdx,
        }
    }

    /// REPORTDATA.
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Sgx(e) => &e.report_data,
            Self::Td(t) => &t.report_data,
        }
    }

    /// The SGX identity, if this is an enclave.
    pub fn sgx(&self) -> Option<&EnclaveIdentity> {
        match self {
            Self::Sgx(e) => Some(e),
            Self::Td(_) => None,
        }
    }

    /// The TD identity, if this is a TD.
    pub fn td(&self) -> Option<&TdIdentity> {
        match self {
            Self::Sgx(_) => None,
            Self::Td(t) => Some(t),
        }
    }

    /// True if the DEBUG attribute is set (SGX ATTRIBUTES bit 1, TD_ATTRIBUTES bit 0).
    pub fn is_debug(&self) -> bool {
        match self {
            Self::Sgx(e) => e.attributes.is_debug(),
            Self::Td(t) => t.td_attributes.is_debug(),
        }
    }
}
