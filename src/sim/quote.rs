//! Forging quotes with the test PKI: SGX v3, TDX v4 (TD 1.0) and v5 (TD 1.5), a chosen identity and
//! REPORTDATA, a fresh attestation key, a QE report signed by the PCK leaf, the PCK chain.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};

use super::pki::{
    sign_raw, PckLeaf, SimError, SIM_PCE_SVN, SIM_QE_ISV_SVN, SIM_QE_MRSIGNER, SIM_TEE_TCB_SVN,
};
use crate::dcap::ids::{
    IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam, MrSigner, MrTd, Rtmr,
    TeeTcbSvn,
};
use crate::dcap::quote::INTEL_QE_VENDOR_ID;

/// The identity a forged quote claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclaveSpec {
    /// MRENCLAVE.
    pub mrenclave: MrEnclave,
    /// MRSIGNER.
    pub mrsigner: MrSigner,
    /// ISVPRODID.
    pub isv_prod_id: IsvProdId,
    /// ISVSVN.
    pub isv_svn: IsvSvn,
    /// DEBUG attribute.
    pub debug: bool,
}

impl Default for EnclaveSpec {
    fn default() -> Self {
        Self {
            mrenclave: MrEnclave([0xe1; 32]),
            mrsigner: MrSigner([0x5a; 32]),
            isv_prod_id: IsvProdId(1),
            isv_svn: IsvSvn(1),
            debug: false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report_body(
    cpusvn0: u8,
    flags: u8,
    mrenclave: &[u8; 32],
    mrsigner: &[u8; 32],
    isv_prod_id: u16,
    isv_svn: u16,
    report_data: &[u8; 64],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(384);
    let mut cpusvn = [0u8; 16];
    cpusvn[0] = cpusvn0;
    b.extend_from_slice(&cpusvn);
    b.extend_from_slice(&[0; 4]); // miscselect
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(&[0; 16]); // isv_ext_prod_id
    let mut attributes = [0u8; 16];
    attributes[0] = flags;
    attributes[8] = 0xe7;
    b.extend_from_slice(&attributes);
    b.extend_from_slice(mrenclave);
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(mrsigner);
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(&[0; 64]); // config_id
    b.extend_from_slice(&isv_prod_id.to_le_bytes());
    b.extend_from_slice(&isv_svn.to_le_bytes());
    b.extend_from_slice(&[0; 2]); // config_svn
    b.extend_from_slice(&[0; 42]);
    b.extend_from_slice(&[0; 16]); // isv_family_id
    b.extend_from_slice(report_data);
    b
}

/// The identity a forged TDX quote claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdSpec {
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
    /// MRSEAM.
    pub mr_seam: MrSeam,
    /// DEBUG TD attribute.
    pub debug: bool,
    /// TEE_TCB_SVN: the TCB the TD launched on.
    pub tee_tcb_svn: TeeTcbSvn,
    /// TEE_TCB_SVN2, the TCB the TD runs on now: `Some` forges a v5 quote with a TD 1.5
    /// body, `None` a v4 quote with a TD 1.0 body.
    pub tee_tcb_svn2: Option<TeeTcbSvn>,
}

impl Default for TdSpec {
    fn default() -> Self {
        Self {
            mr_td: MrTd([0x7d; 48]),
            rtmr: [
                Rtmr([0x10; 48]),
                Rtmr([0x11; 48]),
                Rtmr([0x12; 48]),
                Rtmr([0x13; 48]),
            ],
            mr_config_id: MrConfigId([0; 48]),
            mr_owner: MrOwner([0; 48]),
            mr_owner_config: MrOwnerConfig([0; 48]),
            mr_seam: MrSeam([0x5e; 48]),
            debug: false,
            tee_tcb_svn: TeeTcbSvn(SIM_TEE_TCB_SVN),
            tee_tcb_svn2: None,
        }
    }
}

/// A TD 1.0 report body (584 bytes) for `spec`, or TD 1.5 (648) when it has TEE_TCB_SVN2.
fn td_body(spec: &TdSpec, report_data: &[u8; 64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(648);
    b.extend_from_slice(spec.tee_tcb_svn.as_bytes());
    b.extend_from_slice(spec.mr_seam.as_bytes());
    b.extend_from_slice(&[0; 48]); // mrsigner_seam: Intel's module
    b.extend_from_slice(&[0; 8]); // seam_attributes
                                  // SEPT_VE_DISABLE (bit 28), and DEBUG (bit 0) when asked for.
    let attributes: u64 = (1 << 28) | u64::from(spec.debug);
    b.extend_from_slice(&attributes.to_le_bytes());
    b.extend_from_slice(&0xe7u64.to_le_bytes()); // xfam
    b.extend_from_slice(spec.mr_td.as_bytes());
    b.extend_from_slice(spec.mr_config_id.as_bytes());
    b.extend_from_slice(spec.mr_owner.as_bytes());
    b.extend_from_slice(spec.mr_owner_config.as_bytes());
    for r in &spec.rtmr {
        b.extend_from_slice(r.as_bytes());
    }
    b.extend_from_slice(report_data);
    if let Some(svn2) = &spec.tee_tcb_svn2 {
        b.extend_from_slice(svn2.as_bytes());
        b.extend_from_slice(&[0; 48]); // mr_servicetd: no service TD
    }
    b
}

/// Forges a TDX quote for `spec` with `report_data`, certified by `pck` (a PCK leaf of the
/// TDX platform): v4 with a TD 1.0 body, or v5 with a TD 1.5 body (descriptor type 3)
/// when the spec has TEE_TCB_SVN2.
pub fn forge_td(spec: &TdSpec, report_data: &[u8; 64], pck: &PckLeaf) -> Result<Vec<u8>, SimError> {
    let version: u16 = if spec.tee_tcb_svn2.is_some() { 5 } else { 4 };
    let mut header = Vec::with_capacity(48);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&0x81u32.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&INTEL_QE_VENDOR_ID);
    header.extend_from_slice(&[0x0a; 16]);
    header.extend_from_slice(&[0; 4]);
    let body = td_body(spec, report_data);
    if spec.tee_tcb_svn2.is_none() {
        return sign_quote(header, &body, 2, true, pck);
    }
    // v5: the body descriptor (type 3 = TD 1.5, size) is signed with the header and body.
    let size = u32::try_from(body.len()).map_err(|_| SimError::Format("TD body size".into()))?;
    header.extend_from_slice(&3u16.to_le_bytes());
    header.extend_from_slice(&size.to_le_bytes());
    sign_quote(header, &body, 2, true, pck)
}

/// Forges a v3 quote for `spec` with `report_data`, certified by `pck`.
pub fn forge(
    spec: &EnclaveSpec,
    report_data: &[u8; 64],
    pck: &PckLeaf,
) -> Result<Vec<u8>, SimError> {
    let mut header = Vec::with_capacity(48);
    header.extend_from_slice(&3u16.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&SIM_QE_ISV_SVN.to_le_bytes());
    header.extend_from_slice(&SIM_PCE_SVN.to_le_bytes());
    header.extend_from_slice(&INTEL_QE_VENDOR_ID);
    header.extend_from_slice(&[0x0a; 16]);
    header.extend_from_slice(&[0; 4]);
    let flags = if spec.debug { 0x07 } else { 0x05 };
    let body = report_body(
        16,
        flags,
        spec.mrenclave.as_bytes(),
        spec.mrsigner.as_bytes(),
        spec.isv_prod_id.0,
        spec.isv_svn.0,
        report_data,
    );
    sign_quote(header, &body, 1, false, pck)
}

/// Header ‖ body, signed by a fresh attestation key, with the QE's certification of that
/// key (QE product `qe_prod_id`); v4 framing wraps it in certification data type 6.
fn sign_quote(
    header: Vec<u8>,
    body: &[u8],
    qe_prod_id: u16,
    v4: bool,
    pck: &PckLeaf,
) -> Result<Vec<u8>, SimError> {
    let rng = SystemRandom::new();
    let att_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| SimError::Ring(e.to_string()))?;
    let att = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, att_pkcs8.as_ref(), &rng)
        .map_err(|e| SimError::Ring(e.to_string()))?;
    let att_key = att
        .public_key()
        .as_ref()
        .get(1..)
        .unwrap_or_default()
        .to_vec();

    let mut quote = header;
    quote.extend_from_slice(body);
    let isv_signature = sign_raw(att_pkcs8.as_ref(), &quote)?;

    let auth_data: Vec<u8> = (0u8..32).collect();
    let mut qe_report_data = [0u8; 64];
    let digest = Sha256::new()
        .chain_update(&att_key)
        .chain_update(&auth_data)
        .finalize();
    qe_report_data[..32].copy_from_slice(&digest);
    let qe_report = report_body(
        16,
        0x15,
        &[0x9e; 32],
        SIM_QE_MRSIGNER.as_bytes(),
        qe_prod_id,
        SIM_QE_ISV_SVN,
        &qe_report_data,
    );
    let qe_signature = sign_raw(&pck.key_pkcs8, &qe_report)?;

    let mut cert_data = pck.chain_pem.as_bytes().to_vec();
    cert_data.push(0);
    let mut qe = Vec::new();
    qe.extend_from_slice(&qe_report);
    qe.extend_from_slice(&qe_signature);
    qe.extend_from_slice(&u16::try_from(auth_data.len()).unwrap_or(0).to_le_bytes());
    qe.extend_from_slice(&auth_data);
    qe.extend_from_slice(&5u16.to_le_bytes());
    qe.extend_from_slice(&u32::try_from(cert_data.len()).unwrap_or(0).to_le_bytes());
    qe.extend_from_slice(&cert_data);
    let mut sig = Vec::new();
    sig.extend_from_slice(&isv_signature);
    sig.extend_from_slice(&att_key);
    if v4 {
        sig.extend_from_slice(&6u16.to_le_bytes());
        sig.extend_from_slice(&u32::try_from(qe.len()).unwrap_or(0).to_le_bytes());
    }
    sig.extend_from_slice(&qe);
    quote.extend_from_slice(&u32::try_from(sig.len()).unwrap_or(0).to_le_bytes());
    quote.extend_from_slice(&sig);
    Ok(quote)
}
