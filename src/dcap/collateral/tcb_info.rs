//! Intel TCB info (v3): the TCB levels of one platform model (FMSPC) and their statuses.

use serde::Deserialize;

use super::CollateralError;
use crate::dcap::ids::{Fmspc, PceId};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;

/// Which TEE a TCB info or QE identity describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollateralTee {
    /// `"SGX"` / `"QE"`.
    Sgx,
    /// `"TDX"` / `"TD_QE"`.
    Tdx,
}

/// One TCB level: component SVNs that must be met, and the status they earn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcbLevel {
    /// SGX TCB component SVNs 1..16.
    pub sgx_components: [u8; 16],
    /// PCE SVN.
    pub pce_svn: u16,
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
        let tee = match raw.id.as_str() {
            "SGX" => CollateralTee::Sgx,
            "TDX" => CollateralTee::Tdx,
            other => return Err(bad(format!("unknown id `{other}`"))),
        };
        if raw.version != 3 {
            return Err(bad(format!(
                "version {} (only version 3 is supported)",
                raw.version
            )));
        }
        if raw.tcb_type != 0 {
            return Err(bad(format!("tcbType {} (only 0 is defined)", raw.tcb_type)));
        }
        let mut levels = Vec::with_capacity(raw.tcb_levels.len());
        for level in raw.tcb_levels {
            let svns: Vec<u8> = level.tcb.sgxtcbcomponents.iter().map(|c| c.svn).collect();
            let sgx_components: [u8; 16] = svns.try_into().map_err(|v: Vec<u8>| {
                bad(format!("{} SGX TCB components, expected 16", v.len()))
            })?;
            let status = level
                .tcb_status
                .parse::<TcbStatus>()
                .map_err(|e| bad(e.to_string()))?;
            levels.push(TcbLevel {
                sgx_components,
                pce_svn: level.tcb.pcesvn,
                status,
                advisory_ids: level.advisory_ids,
            });
        }
        // Intel QVL orders levels by the 16 SVNs, then PCESVN, highest first, and takes the
        // first one the platform meets. Intel serves them in that order; sort to not depend on it.
        levels.sort_by_key(|l| std::cmp::Reverse((l.sgx_components, l.pce_svn)));
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
        })
    }

    /// The first (highest) level the platform meets: every component SVN and the PCE SVN.
    pub fn matching_level(&self, components: &[u8; 16], pce_svn: u16) -> Option<&TcbLevel> {
        self.levels.iter().find(|level| {
            pce_svn >= level.pce_svn
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
            info.and_then(|i| i.matching_level(&comps, 13))
                .map(|l| l.status),
            Some(TcbStatus::UpToDate)
        );
        comps[1] = 2;
        assert_eq!(
            info.and_then(|i| i.matching_level(&comps, 13))
                .map(|l| l.status),
            Some(TcbStatus::OutOfDate)
        );
        assert_eq!(
            info.and_then(|i| i.matching_level(&comps, 12))
                .map(|l| l.status),
            None
        );
    }

    #[test]
    fn refuses_unknown_status_and_wrong_component_count() {
        assert!(TcbInfo::parse(&TEXT.replace("OutOfDate", "Fine")).is_err());
        assert!(TcbInfo::parse(&TEXT.replacen("{\"svn\":2},", "", 1)).is_err());
        assert!(TcbInfo::parse(&TEXT.replace("\"version\":3", "\"version\":2")).is_err());
    }
}
