//! PURE. The TDX steps after the shared ones (`reference/tdx-verification.md` §2.5–§2.6):
//! the TDX module the TD runs on must be the one the TCB info describes, and its TCB
//! level's status converges with the platform's.

use super::collateral::tcb_info::{TcbInfo, TdxModule};
use super::error::VerifyError;
use super::quote::TdReport;
use super::tcb::TcbStatus;

/// The TDX module's judgement: its status and advisories (none when the module's major
/// version is 0, which has no module identity and is judged by the platform level alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleVerdict {
    /// Status of the module's TCB level.
    pub status: Option<TcbStatus>,
    /// Its advisories.
    pub advisory_ids: Vec<String>,
}

/// Checks MRSIGNERSEAM and SEAM_ATTRIBUTES (under the mask) against `module`.
fn check_module(td: &TdReport<'_>, module: &TdxModule, which: &str) -> Result<(), VerifyError> {
    if td.mr_signer_seam != module.mrsigner {
        return Err(VerifyError::TdxModule(format!(
            "MRSIGNERSEAM {} is not {which}'s {}",
            td.mr_signer_seam, module.mrsigner
        )));
    }
    let masked = td
        .seam_attributes
        .0
        .iter()
        .zip(module.attributes_mask.iter())
        .map(|(a, m)| a & m);
    if !masked.eq(module.attributes.iter().copied()) {
        return Err(VerifyError::TdxModule(format!(
            "SEAM_ATTRIBUTES {} under mask {} is not {which}'s {}",
            td.seam_attributes,
            hex::encode(module.attributes_mask),
            hex::encode(module.attributes)
        )));
    }
    Ok(())
}

/// The module the TD runs on, judged: TEE_TCB_SVN[1] (major version) selects the module
/// identity `TDX_%02X`, TEE_TCB_SVN[0] its TCB level.
pub fn verify_module(td: &TdReport<'_>, tcb_info: &TcbInfo) -> Result<ModuleVerdict, VerifyError> {
    let Some(module) = &tcb_info.tdx_module else {
        return Err(VerifyError::TdxModule(
            "the TCB info describes no TDX module".into(),
        ));
    };
    check_module(td, module, "the TCB info's tdxModule")?;
    let [minor, major, ..] = td.tee_tcb_svn.0;
    if major == 0 {
        return Ok(ModuleVerdict {
            status: None,
            advisory_ids: Vec::new(),
        });
    }
    let identity = tcb_info.tdx_module_identity(major).ok_or_else(|| {
        VerifyError::TdxModule(format!(
            "no TDX module identity TDX_{major:02X} in the TCB info for TEE_TCB_SVN {}",
            td.tee_tcb_svn
        ))
    })?;
    check_module(td, &identity.module, &identity.id)?;
    let level = identity.matching_level(minor).ok_or_else(|| {
        VerifyError::TdxModule(format!(
            "TDX module {} SVN {minor} is below every level of {}",
            identity.id, identity.id
        ))
    })?;
    Ok(ModuleVerdict {
        status: Some(level.status),
        advisory_ids: level.advisory_ids.clone(),
    })
}

/// The platform status with the module's folded in, as Intel's QVL converges them (an
/// out-of-date module makes an up-to-date platform out of date; revoked wins).
pub fn converge(platform: TcbStatus, module: Option<TcbStatus>) -> TcbStatus {
    match module {
        Some(m) => TcbStatus::converge(platform, m),
        None => platform,
    }
}
