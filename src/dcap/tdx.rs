//! PURE. The TDX steps after the shared ones (`reference/tdx-verification.md` §2.5–§2.7):
//! the TDX module the TD runs on must be the one the TCB info describes, its TCB level's
//! status converges with the platform's, and a TD 1.5 whose current TCB (TEE_TCB_SVN2) is
//! better than its launch TCB is advised to relaunch.

use super::collateral::tcb_info::{TcbInfo, TdxModule, TdxModuleIdentity};
use super::error::VerifyError;
use super::ids::{MrSignerSeam, SeamAttributes, TeeTcbSvn};
use super::quote::TdReport;
use super::tcb::TcbStatus;

/// What the TCB judgement reads from a TD report: the module it runs on and its TCB SVNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TdFacts {
    /// TEE_TCB_SVN: the launch TCB.
    pub(crate) tee_tcb_svn: TeeTcbSvn,
    /// TEE_TCB_SVN2: the current TCB (TD 1.5).
    pub(crate) tee_tcb_svn2: Option<TeeTcbSvn>,
    /// MRSIGNERSEAM.
    pub(crate) mr_signer_seam: MrSignerSeam,
    /// SEAM_ATTRIBUTES.
    pub(crate) seam_attributes: SeamAttributes,
}

impl From<&TdReport<'_>> for TdFacts {
    fn from(td: &TdReport<'_>) -> Self {
        Self {
            tee_tcb_svn: td.tee_tcb_svn,
            tee_tcb_svn2: td.tee_tcb_svn2,
            mr_signer_seam: td.mr_signer_seam,
            seam_attributes: td.seam_attributes,
        }
    }
}

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
fn check_module(td: &TdFacts, module: &TdxModule, which: &str) -> Result<(), VerifyError> {
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

/// The module the TD runs on is the one the TCB info describes: MRSIGNERSEAM and
/// SEAM_ATTRIBUTES match `tdxModule` and, for a major version above 0 (TEE_TCB_SVN[1]),
/// the module identity `TDX_%02X` too.
pub(crate) fn check_module_identity(td: &TdFacts, tcb_info: &TcbInfo) -> Result<(), VerifyError> {
    let Some(module) = &tcb_info.tdx_module else {
        return Err(VerifyError::TdxModule(
            "the TCB info describes no TDX module".into(),
        ));
    };
    check_module(td, module, "the TCB info's tdxModule")?;
    let major = td.tee_tcb_svn.0[1];
    if major == 0 {
        return Ok(());
    }
    let identity = module_identity(tcb_info, &td.tee_tcb_svn, "TEE_TCB_SVN")?;
    check_module(td, &identity.module, &identity.id)
}

fn module_identity<'c>(
    tcb_info: &'c TcbInfo,
    svn: &TeeTcbSvn,
    field: &str,
) -> Result<&'c TdxModuleIdentity, VerifyError> {
    let major = svn.0[1];
    tcb_info.tdx_module_identity(major).ok_or_else(|| {
        VerifyError::TdxModule(format!(
            "no TDX module identity TDX_{major:02X} in the TCB info for {field} {svn}"
        ))
    })
}

/// The module level a TEE_TCB_SVN reaches: byte 1 (major version) selects the module
/// identity `TDX_%02X`, byte 0 (minor SVN) its TCB level. Evaluated for the launch
/// TEE_TCB_SVN and, on TD 1.5, for the current TEE_TCB_SVN2.
pub fn module_level(
    svn: &TeeTcbSvn,
    field: &str,
    tcb_info: &TcbInfo,
) -> Result<ModuleVerdict, VerifyError> {
    let [minor, major, ..] = svn.0;
    if major == 0 {
        return Ok(ModuleVerdict {
            status: None,
            advisory_ids: Vec::new(),
        });
    }
    let identity = module_identity(tcb_info, svn, field)?;
    let level = identity.matching_level(minor).ok_or_else(|| {
        VerifyError::TdxModule(format!(
            "TDX module {} SVN {minor} ({field}) is below every level of {}",
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

/// The status of a TD 1.5 from its launch TCB (TEE_TCB_SVN) and its current TCB
/// (TEE_TCB_SVN2), both converged (platform, module and QE).
///
/// A TD that launched out of date on a platform whose current TCB is no longer out of date
/// needs only a relaunch, not a TCB recovery: Intel QVL `checkForRelaunch`
/// (TDRelaunchCheck.cpp). Otherwise Intel keeps the launch status; stricter here, the
/// current TCB's problems are added to it (a TD that launched up to date but runs on an
/// out-of-date, revoked or configuration-needing TCB now is judged so), because the
/// connection being attested is made to the module running now.
pub fn with_current_tcb(launch: TcbStatus, current: TcbStatus) -> TcbStatus {
    if launch == TcbStatus::Revoked || current == TcbStatus::Revoked {
        return TcbStatus::Revoked;
    }
    let (l, c) = (Flags::of(launch), Flags::of(current));
    let configuration = l.configuration || c.configuration;
    if l.out_of_date && !c.out_of_date {
        return if configuration {
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded
        } else {
            TcbStatus::TdRelaunchAdvised
        };
    }
    Flags {
        out_of_date: l.out_of_date || c.out_of_date,
        configuration,
        sw_hardening: l.sw_hardening || c.sw_hardening,
    }
    .status()
}

/// A published, non-revoked status as the three things it says.
#[derive(Clone, Copy)]
struct Flags {
    out_of_date: bool,
    configuration: bool,
    sw_hardening: bool,
}

impl Flags {
    fn of(s: TcbStatus) -> Self {
        use TcbStatus::*;
        Self {
            out_of_date: matches!(s, OutOfDate | OutOfDateConfigurationNeeded),
            configuration: s.needs_configuration(),
            sw_hardening: matches!(s, SwHardeningNeeded | ConfigurationAndSwHardeningNeeded),
        }
    }

    /// Intel has no out-of-date status with software hardening: out of date subsumes it.
    fn status(self) -> TcbStatus {
        use TcbStatus::*;
        match (self.out_of_date, self.configuration, self.sw_hardening) {
            (true, false, _) => OutOfDate,
            (true, true, _) => OutOfDateConfigurationNeeded,
            (false, false, false) => UpToDate,
            (false, false, true) => SwHardeningNeeded,
            (false, true, false) => ConfigurationNeeded,
            (false, true, true) => ConfigurationAndSwHardeningNeeded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_current_tcb as judge;
    use crate::dcap::tcb::TcbStatus::{self, *};

    const FINE: [TcbStatus; 4] = [
        UpToDate,
        SwHardeningNeeded,
        ConfigurationNeeded,
        ConfigurationAndSwHardeningNeeded,
    ];

    #[test]
    fn an_out_of_date_launch_on_a_current_platform_is_advised_to_relaunch() {
        assert_eq!(judge(OutOfDate, UpToDate), TdRelaunchAdvised);
        assert_eq!(judge(OutOfDate, SwHardeningNeeded), TdRelaunchAdvised);
        assert_eq!(
            judge(OutOfDate, ConfigurationNeeded),
            TdRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(
            judge(OutOfDateConfigurationNeeded, UpToDate),
            TdRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(
            judge(
                OutOfDateConfigurationNeeded,
                ConfigurationAndSwHardeningNeeded
            ),
            TdRelaunchAdvisedConfigurationNeeded
        );
    }

    #[test]
    fn out_of_date_then_and_now_stays_out_of_date() {
        assert_eq!(judge(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(
            judge(OutOfDateConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
    }

    #[test]
    fn equal_launch_and_current_keep_the_status() {
        for status in FINE
            .into_iter()
            .chain([OutOfDate, OutOfDateConfigurationNeeded, Revoked])
        {
            assert_eq!(judge(status, status), status);
        }
    }

    #[test]
    fn a_better_current_tcb_that_is_not_a_relaunch_keeps_the_launch_status() {
        for launch in FINE {
            assert_eq!(judge(launch, UpToDate), launch, "{launch}");
        }
        assert_eq!(
            judge(ConfigurationAndSwHardeningNeeded, ConfigurationNeeded),
            ConfigurationAndSwHardeningNeeded
        );
    }

    #[test]
    fn revoked_launch_or_current_is_revoked() {
        for other in FINE
            .into_iter()
            .chain([OutOfDate, OutOfDateConfigurationNeeded])
        {
            assert_eq!(judge(Revoked, other), Revoked, "{other}");
            assert_eq!(judge(other, Revoked), Revoked, "{other}");
        }
    }

    /// Stricter than Intel QVL and dcap-qvl, which keep the launch status.
    #[test]
    fn stricter_a_worse_current_tcb_worsens_the_status() {
        assert_eq!(judge(UpToDate, SwHardeningNeeded), SwHardeningNeeded);
        assert_eq!(judge(UpToDate, ConfigurationNeeded), ConfigurationNeeded);
        assert_eq!(
            judge(SwHardeningNeeded, ConfigurationNeeded),
            ConfigurationAndSwHardeningNeeded
        );
        assert_eq!(
            judge(OutOfDate, OutOfDateConfigurationNeeded),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(judge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(judge(SwHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            judge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(
            judge(UpToDate, OutOfDateConfigurationNeeded),
            OutOfDateConfigurationNeeded
        );
    }
}
