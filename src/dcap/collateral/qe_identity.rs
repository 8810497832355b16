//! Intel QE identity (v2): what a genuine Quoting Enclave looks like, and its TCB levels.

use serde::Deserialize;

use super::tcb_info::CollateralTee;
use super::{supported_version, CollateralError};
use crate::dcap::ids::{IsvProdId, MrSigner};
use crate::dcap::tcb::{LevelKind, TcbStatus};
use crate::dcap::time::UnixTime;

/// One QE TCB level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QeTcbLevel {
    /// Minimum QE ISVSVN for this level.
    pub isv_svn: u16,
    /// Status earned.
    pub status: TcbStatus,
    /// Advisories at this level.
    pub advisory_ids: Vec<String>,
}

/// Parsed QE identity, levels sorted by ISVSVN descending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QeIdentity {
    /// `QE` (SGX) or `TD_QE` (TDX).
    pub tee: CollateralTee,
    /// Format version (2).
    pub version: u32,
    /// Issue time.
    pub issue_date: UnixTime,
    /// Refresh deadline.
    pub next_update: UnixTime,
    /// Which TCB evaluation (recovery) round it belongs to: higher is newer.
    pub tcb_evaluation_data_number: u32,
    /// Expected MISCSELECT bytes.
    pub miscselect: [u8; 4],
    /// Mask applied before comparing MISCSELECT.
    pub miscselect_mask: [u8; 4],
    /// Expected ATTRIBUTES bytes.
    pub attributes: [u8; 16],
    /// Mask applied before comparing ATTRIBUTES.
    pub attributes_mask: [u8; 16],
    /// Intel's QE signer.
    pub mrsigner: MrSigner,
    /// The QE's product ID.
    pub isv_prod_id: IsvProdId,
    /// TCB levels, highest ISVSVN first.
    pub levels: Vec<QeTcbLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
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
    isvsvn: u16,
}

fn bad(detail: impl Into<String>) -> CollateralError {
    CollateralError::Content {
        what: "QE identity",
        detail: detail.into(),
    }
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], CollateralError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| bad(format!("{field} is not {N} bytes of hex")))?;
    Ok(out)
}

impl QeIdentity {
    /// Parses the `enclaveIdentity` JSON text (after its signature was checked).
    pub fn parse(text: &str) -> Result<Self, CollateralError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tee = match raw.id.as_str() {
            "QE" => CollateralTee::Sgx,
            "TD_QE" => CollateralTee::Tdx,
            other => {
                return Err(bad(format!(
                    "id `{other}` is not a quoting enclave (QE or TD_QE)"
                )))
            }
        };
        supported_version(raw.version, 2).map_err(bad)?;
        let mut levels = Vec::with_capacity(raw.tcb_levels.len());
        for level in raw.tcb_levels {
            levels.push(QeTcbLevel {
                isv_svn: level.tcb.isvsvn,
                status: TcbStatus::parse_level(&level.tcb_status, LevelKind::QuotingEnclave)
                    .map_err(|e| bad(e.to_string()))?,
                advisory_ids: level.advisory_ids,
            });
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.isv_svn));
        Ok(Self {
            tee,
            version: raw.version,
            issue_date: UnixTime::parse_rfc3339(&raw.issue_date)
                .ok_or_else(|| bad("bad issueDate"))?,
            next_update: UnixTime::parse_rfc3339(&raw.next_update)
                .ok_or_else(|| bad("bad nextUpdate"))?,
            tcb_evaluation_data_number: raw.tcb_evaluation_data_number,
            miscselect: hex_array("miscselect", &raw.miscselect)?,
            miscselect_mask: hex_array("miscselectMask", &raw.miscselect_mask)?,
            attributes: hex_array("attributes", &raw.attributes)?,
            attributes_mask: hex_array("attributesMask", &raw.attributes_mask)?,
            mrsigner: MrSigner::from_hex(&raw.mrsigner).map_err(|e| bad(e.to_string()))?,
            isv_prod_id: IsvProdId(raw.isvprodid),
            levels,
        })
    }

    /// The first level whose ISVSVN the QE meets.
    pub fn matching_level(&self, qe_isv_svn: u16) -> Option<&QeTcbLevel> {
        self.levels.iter().find(|level| level.isv_svn <= qe_isv_svn)
    }
}
