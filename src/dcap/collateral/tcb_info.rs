//! Intel TCB info (v3): the TCB levels of one platform model (FMSPC) and their statuses;
//! for TDX also the TDX component SVNs of each level and the TDX module identities.

use serde::Deserialize;

use super::{supported_version, CollateralError};
use crate::dcap::ids::{Fmspc, MrSignerSeam, PceId};
use crate::dcap::tcb::{LevelKind, TcbStatus};
use crate::dcap::time::UnixTime;

/// Which TEE a TCB info or QE identity describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CollateralTee {
    /// `"SGX"` / `"QE"`.
    Sgx,
    /// `"TDX"` / `"TD_QE"`.
    Tdx,
}

impl CollateralTee {
    /// The TEE a TCB info or TCB evaluation numbers body names by its `id`.
    pub(super) fn from_id(id: &str) -> Result<Self, String> {
        match id {
            "SGX" => Ok(Self::Sgx),
            "TDX" => Ok(Self::Tdx),
            other => Err(format!("unknown id `{other}`")),
        }
    }
}

/// One TCB level: component SVNs that must be met, and the status they earn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcbLevel {
    /// SGX TCB component SVNs 1..16.
    pub sgx_components: [u8; 16],
    /// PCE SVN.
    pub pce_svn: u16,
    /// TDX TCB component SVNs (TDX TCB info only), compared with TEE_TCB_SVN.
    pub tdx_components: Option<[u8; 16]>,
    /// Status for platforms at or above this level.
    pub status: TcbStatus,
    /// Intel security advisories that apply at this level.
    pub advisory_ids: Vec<String>,
}

/// Parsed TCB info, levels in matching order (highest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcbInfo {
    /// SGX or TDX.
    pub tee: CollateralTee,
    /// Format version (3).
    pub version: u32,
    /// Issue time.
    pub issue_date: UnixTime,
    /// Time after which it must be refreshed.
    pub next_update: UnixTime,
    /// Platform model.
    pub fmspc: Fmspc,
    /// PCE the levels apply to.
    pub pce_id: PceId,
    /// Evaluation data number.
    pub tcb_evaluation_data_number: u32,
    /// Levels, sorted highest first.
    pub levels: Vec<TcbLevel>,
    /// The TDX module every TD must run (TDX TCB info only).
    pub tdx_module: Option<TdxModule>,
    /// TDX module identities by major version (`TDX_01`, ...), with their TCB levels.
    pub tdx_module_identities: Vec<TdxModuleIdentity>,
}

/// The expected signer and attributes of a TDX module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxModule {
    /// MRSIGNERSEAM.
    pub mrsigner: MrSignerSeam,
    /// SEAM_ATTRIBUTES after the mask.
    pub attributes: [u8; 8],
    /// Mask applied to SEAM_ATTRIBUTES.
    pub attributes_mask: [u8; 8],
}

/// One TDX module major version (`TDX_%02X`) and its TCB levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxModuleIdentity {
    /// `TDX_01`, `TDX_03`, ...
    pub id: String,
    /// Its expected signer and attributes.
    pub module: TdxModule,
    /// Levels by the module's minor SVN (TEE_TCB_SVN[0]), highest first.
    pub levels: Vec<TdxModuleLevel>,
}

/// A TDX module TCB level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxModuleLevel {
    /// Minimum TEE_TCB_SVN[0].
    pub isv_svn: u8,
    /// Status earned.
    pub status: TcbStatus,
    /// Advisories at this level.
    pub advisory_ids: Vec<String>,
}

impl TcbInfo {
    /// The module identity for major version `major` (`TDX_%02X`).
    pub fn tdx_module_identity(&self, major: u8) -> Option<&TdxModuleIdentity> {
        let id = format!("TDX_{major:02X}");
        self.tdx_module_identities.iter().find(|m| m.id == id)
    }
}

impl TdxModuleIdentity {
    /// The first (highest) level the module's minor SVN reaches.
    pub fn matching_level(&self, minor: u8) -> Option<&TdxModuleLevel> {
        self.levels.iter().find(|l| minor >= l.isv_svn)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u32,
    tcb_evaluation_data_number: u32,
    tcb_levels: Vec<RawLevel>,
    tdx_module: Option<RawModule>,
    #[serde(default)]
    tdx_module_identities: Vec<RawModuleIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<RawModuleLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModuleLevel {
    tcb: RawModuleTcb,
    tcb_status: String,
    #[serde(default, rename = "advisoryIDs")]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawModuleTcb {
    isvsvn: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLevel {
    tcb: RawTcb,
    tcb_status: String,
    #[serde(default, rename = "advisoryIDs")]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawTcb {
    sgxtcbcomponents: Vec<RawComponent>,
    pcesvn: u16,
    tdxtcbcomponents: Option<Vec<RawComponent>>,
}

#[derive(Deserialize)]
struct RawComponent {
    svn: u8,
}

fn bad(detail: impl Into<String>) -> CollateralError {
    CollateralError::Content {
        what: "TCB info",
        detail: detail.into(),
    }
}

impl TcbInfo {
    /// Parses the `tcbInfo` JSON text (after its signature was checked over the same bytes).
    pub fn parse(text: &str) -> Result<Self, CollateralError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tee = CollateralTee::from_id(&raw.id).map_err(bad)?;
        supported_version(raw.version, 3).map_err(bad)?;
        if raw.tcb_type != 0 {
            return Err(bad(format!("tcbType {} (only 0 is defined)", raw.tcb_type)));
        }
        let mut levels = Vec::with_capacity(raw.tcb_levels.len());
        for level in raw.tcb_levels {
            let svns: Vec<u8> = level.tcb.sgxtcbcomponents.iter().map(|c| c.svn).collect();
            let sgx_components: [u8; 16] = svns.try_into().map_err(|v: Vec<u8>| {
                bad(format!("{} SGX TCB components, expected 16", v.len()))
            })?;
            let status = TcbStatus::parse_level(&level.tcb_status, LevelKind::Platform)
                .map_err(|e| bad(e.to_string()))?;
            let tdx_components = match (&tee, level.tcb.tdxtcbcomponents) {
                (CollateralTee::Tdx, Some(c)) => {
                    let svns: Vec<u8> = c.iter().map(|c| c.svn).collect();
                    Some(svns.try_into().map_err(|v: Vec<u8>| {
                        bad(format!("{} TDX TCB components, expected 16", v.len()))
                    })?)
                }
                (CollateralTee::Tdx, None) => {
                    return Err(bad("a TDX TCB level without tdxtcbcomponents"))
                }
                (CollateralTee::Sgx, _) => None,
            };
            levels.push(TcbLevel {
                sgx_components,
                pce_svn: level.tcb.pcesvn,
                tdx_components,
                status,
                advisory_ids: level.advisory_ids,
            });
        }
        // Intel QVL orders levels by the 16 SVNs, then PCESVN, highest first, and takes the
        // first one the platform meets. Intel serves them in that order; sort to not depend on it.
        levels.sort_by_key(|l| std::cmp::Reverse((l.sgx_components, l.pce_svn, l.tdx_components)));
        let module =
            |mrsigner: &str, attributes: &str, mask: &str| -> Result<TdxModule, CollateralError> {
                let mut attrs = [0u8; 8];
                let mut attrs_mask = [0u8; 8];
                hex::decode_to_slice(attributes, &mut attrs)
                    .map_err(|_| bad("bad TDX module attributes"))?;
                hex::decode_to_slice(mask, &mut attrs_mask)
                    .map_err(|_| bad("bad TDX module attributesMask"))?;
                Ok(TdxModule {
                    mrsigner: MrSignerSeam::from_hex(mrsigner).map_err(|e| bad(e.to_string()))?,
                    attributes: attrs,
                    attributes_mask: attrs_mask,
                })
            };
        let tdx_module = match (&tee, &raw.tdx_module) {
            (CollateralTee::Tdx, Some(m)) => {
                Some(module(&m.mrsigner, &m.attributes, &m.attributes_mask)?)
            }
            (CollateralTee::Tdx, None) => return Err(bad("a TDX TCB info without tdxModule")),
            (CollateralTee::Sgx, _) => None,
        };
        let mut tdx_module_identities = Vec::with_capacity(raw.tdx_module_identities.len());
        for m in &raw.tdx_module_identities {
            let mut levels = Vec::with_capacity(m.tcb_levels.len());
            for l in &m.tcb_levels {
                levels.push(TdxModuleLevel {
                    isv_svn: l.tcb.isvsvn,
                    status: TcbStatus::parse_level(&l.tcb_status, LevelKind::TdxModule)
                        .map_err(|e| bad(e.to_string()))?,
                    advisory_ids: l.advisory_ids.clone(),
                });
            }
            levels.sort_by_key(|l| std::cmp::Reverse(l.isv_svn));
            tdx_module_identities.push(TdxModuleIdentity {
                id: m.id.clone(),
                module: module(&m.mrsigner, &m.attributes, &m.attributes_mask)?,
                levels,
            });
        }
        Ok(Self {
            tee,
            version: raw.version,
            issue_date: UnixTime::parse_rfc3339(&raw.issue_date)
                .ok_or_else(|| bad("bad issueDate"))?,
            next_update: UnixTime::parse_rfc3339(&raw.next_update)
                .ok_or_else(|| bad("bad nextUpdate"))?,
            fmspc: Fmspc::from_hex(&raw.fmspc).map_err(|e| bad(e.to_string()))?,
            pce_id: PceId::from_hex(&raw.pce_id).map_err(|e| bad(e.to_string()))?,
            tcb_evaluation_data_number: raw.tcb_evaluation_data_number,
            levels,
            tdx_module,
            tdx_module_identities,
        })
    }

    /// The first (highest) level the platform meets: every component SVN and the PCE SVN,
    /// and for a TD every TEE_TCB_SVN component (`tee_tcb_svn`; its first two are skipped when
    /// the module major version `[1]` is set: the module identity judges them).
    pub fn matching_level(
        &self,
        components: &[u8; 16],
        pce_svn: u16,
        tee_tcb_svn: Option<&[u8; 16]>,
    ) -> Option<&TcbLevel> {
        let skip = match tee_tcb_svn {
            Some(svn) if svn.get(1).is_some_and(|major| *major > 0) => 2,
            _ => 0,
        };
        self.levels.iter().find(|level| {
            let tdx_ok = match (tee_tcb_svn, &level.tdx_components) {
                (Some(have), Some(need)) => have
                    .iter()
                    .zip(need.iter())
                    .skip(skip)
                    .all(|(have, need)| have >= need),
                (None, _) => true,
                (Some(_), None) => false,
            };
            pce_svn >= level.pce_svn
                && tdx_ok
                && components
                    .iter()
                    .zip(level.sgx_components.iter())
                    .all(|(have, need)| have >= need)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{"id":"SGX","version":3,"issueDate":"2025-06-19T10:56:11Z","nextUpdate":"2025-07-19T10:56:11Z","fmspc":"00A067110000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":17,"tcbLevels":[
        {"tcb":{"sgxtcbcomponents":[{"svn":2},{"svn":2},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0}],"pcesvn":13},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"OutOfDate","advisoryIDs":["INTEL-SA-1"]},
        {"tcb":{"sgxtcbcomponents":[{"svn":3},{"svn":3},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0}],"pcesvn":13},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"}]}"#;

    #[test]
    fn picks_the_highest_level_the_platform_meets_regardless_of_served_order() {
        let info = TcbInfo::parse(TEXT).ok();
        let info = info.as_ref();
        let mut comps = [0u8; 16];
        comps[0] = 3;
        comps[1] = 3;
        assert_eq!(
            info.and_then(|i| i.matching_level(&comps, 13, None))
                .map(|l| l.status),
            Some(TcbStatus::UpToDate)
        );
        comps[1] = 2;
        assert_eq!(
            info.and_then(|i| i.matching_level(&comps, 13, None))
                .map(|l| l.status),
            Some(TcbStatus::OutOfDate)
        );
        assert_eq!(
            info.and_then(|i| i.matching_level(&comps, 12, None))
                .map(|l| l.status),
            None
        );
    }

    #[test]
    fn refuses_another_id_or_version_in_the_same_words() {
        let detail = |text: String| match TcbInfo::parse(&text) {
            Err(CollateralError::Content { what, detail }) => Some((what, detail)),
            _ => None,
        };
        assert_eq!(
            detail(TEXT.replace("\"version\":3", "\"version\":2")),
            Some(("TCB info", "version 2 (only version 3 is supported)".into()))
        );
        assert_eq!(
            detail(TEXT.replace("\"id\":\"SGX\"", "\"id\":\"QE\"")),
            Some(("TCB info", "unknown id `QE`".into()))
        );
    }

    #[test]
    fn refuses_unknown_status_and_wrong_component_count() {
        assert!(TcbInfo::parse(&TEXT.replace("OutOfDate", "Fine")).is_err());
        assert!(TcbInfo::parse(&TEXT.replacen("{\"svn\":2},", "", 1)).is_err());
        assert!(TcbInfo::parse(&TEXT.replace("\"version\":3", "\"version\":2")).is_err());
    }
}
