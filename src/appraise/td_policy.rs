//! PURE. What a TDX trust domain must look like: allow-lists for its measurements and the
//! module it runs on, a component-wise minimum TEE_TCB_SVN, and TD attributes a policy can
//! live with (`reference/tdx-verification.md` §2.8, §3).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::violation::PolicyViolation;
use crate::dcap::identity::TdIdentity;
use crate::dcap::ids::{MrConfigId, MrOwner, MrOwnerConfig, MrSeam, MrTd, Rtmr, TeeTcbSvn, Xfam};

/// TUD.DEBUG: the host can read and change the TD.
const DEBUG: u64 = 1;
/// SEPT_VE_DISABLE: the TD gets no #VE on EPT violations (required: without it a host can
/// steer the TD through injected exceptions).
const SEPT_VE_DISABLE: u64 = 1 << 28;
/// PKS and KL: features a TD may use without weakening isolation.
const PKS: u64 = 1 << 30;
const KL: u64 = 1 << 31;

/// A TD policy: every non-empty list is an allow-list; `None` means no minimum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TdPolicy {
    /// Allowed MRTD values (a TDX entry needs at least one).
    pub mrtd: Vec<MrTd>,
    /// Allowed RTMR0..RTMR3 values, per register.
    pub rtmr: [Vec<Rtmr>; 4],
    /// Allowed MRCONFIGID values.
    pub mrconfigid: Vec<MrConfigId>,
    /// Allowed MROWNER values.
    pub mrowner: Vec<MrOwner>,
    /// Allowed MROWNERCONFIG values.
    pub mrownerconfig: Vec<MrOwnerConfig>,
    /// Allowed MRSEAM values (the TDX module's measurement).
    pub mrseam: Vec<MrSeam>,
    /// Component-wise minimum TEE_TCB_SVN.
    pub min_tee_tcb_svn: Option<TeeTcbSvn>,
    /// Allowed XFAM values (the extended CPU features the TD enables), as the quote holds
    /// them.
    pub xfam: Vec<Xfam>,
}

fn allowed<T: PartialEq>(list: &[T], actual: &T) -> bool {
    list.is_empty() || list.contains(actual)
}

impl TdPolicy {
    /// Pushes every violation of this policy by `td` onto `out`.
    pub(crate) fn violations(
        &self,
        td: &TdIdentity,
        allow_debug: bool,
        out: &mut Vec<PolicyViolation>,
    ) {
        let attrs = td.td_attributes.bits();
        if attrs & DEBUG != 0 && !allow_debug {
            out.push(PolicyViolation::DebugTd(td.td_attributes));
        }
        let permitted = SEPT_VE_DISABLE | PKS | KL | if allow_debug { DEBUG } else { 0 };
        let extra = attrs & !permitted & !DEBUG;
        if extra != 0 {
            out.push(PolicyViolation::TdAttributes {
                actual: td.td_attributes,
                why: format!("bits {extra:#018x} are not allowed (reserved, migration, perfmon or other features that weaken isolation)"),
            });
        }
        if attrs & SEPT_VE_DISABLE == 0 {
            out.push(PolicyViolation::TdAttributes {
                actual: td.td_attributes,
                why: "SEPT_VE_DISABLE (bit 28) is not set".into(),
            });
        }
        if td
            .mr_service_td
            .is_some_and(|m| m.0.iter().any(|b| *b != 0))
        {
            out.push(PolicyViolation::TdAttributes {
                actual: td.td_attributes,
                why: "the TD is bound to a service TD (MR_SERVICETD is not zero)".into(),
            });
        }
        if !allowed(&self.xfam, &td.xfam) {
            out.push(PolicyViolation::Xfam {
                actual: td.xfam,
                allowed: self.xfam.clone(),
            });
        }
        if !allowed(&self.mrtd, &td.mr_td) {
            out.push(PolicyViolation::MrTd {
                actual: td.mr_td,
                allowed: self.mrtd.clone(),
            });
        }
        for (index, (list, actual)) in self.rtmr.iter().zip(td.rtmr.iter()).enumerate() {
            if !allowed(list, actual) {
                out.push(PolicyViolation::Rtmr {
                    index,
                    actual: *actual,
                    allowed: list.clone(),
                });
            }
        }
        if !allowed(&self.mrconfigid, &td.mr_config_id) {
            out.push(PolicyViolation::MrConfigId {
                actual: td.mr_config_id,
                allowed: self.mrconfigid.clone(),
            });
        }
        if !allowed(&self.mrowner, &td.mr_owner) {
            out.push(PolicyViolation::MrOwner {
                actual: td.mr_owner,
                allowed: self.mrowner.clone(),
            });
        }
        if !allowed(&self.mrownerconfig, &td.mr_owner_config) {
            out.push(PolicyViolation::MrOwnerConfig {
                actual: td.mr_owner_config,
                allowed: self.mrownerconfig.clone(),
            });
        }
        if !allowed(&self.mrseam, &td.mr_seam) {
            out.push(PolicyViolation::MrSeam {
                actual: td.mr_seam,
                allowed: self.mrseam.clone(),
            });
        }
        if let Some(min) = self.min_tee_tcb_svn {
            // TD 1.5: the TCB the TD launched on and the one it runs on now both count.
            let svns = [
                ("TEE_TCB_SVN", Some(td.tee_tcb_svn)),
                ("TEE_TCB_SVN2", td.tee_tcb_svn2),
            ];
            for (field, svn) in svns {
                let Some(actual) = svn else { continue };
                let below = actual
                    .0
                    .iter()
                    .zip(min.0.iter())
                    .any(|(have, need)| have < need);
                if below {
                    out.push(PolicyViolation::TeeTcbSvn { field, actual, min });
                }
            }
        }
    }
}
