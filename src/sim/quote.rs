//! Forging SGX v3 quotes with the test PKI: a chosen enclave identity and REPORTDATA,
//! a fresh attestation key, a QE report signed by the PCK leaf, the PCK chain.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};

use super::pki::{sign_raw, PckLeaf, SimError, SIM_PCE_SVN, SIM_QE_ISV_SVN, SIM_QE_MRSIGNER};
use crate::dcap::ids::{IsvProdId, IsvSvn, MrEnclave, MrSigner};
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

/// Forges a v3 quote for `spec` with `report_data`, certified by `pck`.
pub fn forge(
    spec: &EnclaveSpec,
    report_data: &[u8; 64],
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

    let mut quote = Vec::with_capacity(4800);
    quote.extend_from_slice(&3u16.to_le_bytes());
    quote.extend_from_slice(&2u16.to_le_bytes());
    quote.extend_from_slice(&0u32.to_le_bytes());
    quote.extend_from_slice(&SIM_QE_ISV_SVN.to_le_bytes());
    quote.extend_from_slice(&SIM_PCE_SVN.to_le_bytes());
    quote.extend_from_slice(&INTEL_QE_VENDOR_ID);
    quote.extend_from_slice(&[0x0a; 16]);
    quote.extend_from_slice(&[0; 4]);
    let flags = if spec.debug { 0x07 } else { 0x05 };
    quote.extend_from_slice(&report_body(
        16,
        flags,
        spec.mrenclave.as_bytes(),
        spec.mrsigner.as_bytes(),
        spec.isv_prod_id.0,
        spec.isv_svn.0,
        report_data,
    ));
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
        1,
        SIM_QE_ISV_SVN,
        &qe_report_data,
    );
    let qe_signature = sign_raw(&pck.key_pkcs8, &qe_report)?;

    let mut cert_data = pck.chain_pem.as_bytes().to_vec();
    cert_data.push(0);
    let mut sig = Vec::new();
    sig.extend_from_slice(&isv_signature);
    sig.extend_from_slice(&att_key);
    sig.extend_from_slice(&qe_report);
    sig.extend_from_slice(&qe_signature);
    sig.extend_from_slice(&u16::try_from(auth_data.len()).unwrap_or(0).to_le_bytes());
    sig.extend_from_slice(&auth_data);
    sig.extend_from_slice(&5u16.to_le_bytes());
    sig.extend_from_slice(&u32::try_from(cert_data.len()).unwrap_or(0).to_le_bytes());
    sig.extend_from_slice(&cert_data);
    quote.extend_from_slice(&u32::try_from(sig.len()).unwrap_or(0).to_le_bytes());
    quote.extend_from_slice(&sig);
    Ok(quote)
}
