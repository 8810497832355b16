//! What the simulated platforms are (their FMSPCs, PCE, quoting enclave and TCB levels), and
//! the signed JSON Intel would publish for them, written as Intel writes it (key order
//! included): a TCB info with one level per TCB status (and, for TDX, a module identity),
//! and a QE identity.

use crate::dcap::ids::{Fmspc, MrSigner, PceId};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;

/// The sim platform's FMSPC.
pub const SIM_FMSPC: Fmspc = Fmspc([0x5e, 0xc0, 0xde, 0x00, 0x00, 0x00]);
/// The simulated TDX platform's FMSPC (another platform model than the SGX one, so one
/// directory of bundles serves both).
pub const SIM_TDX_FMSPC: Fmspc = Fmspc([0x5e, 0xc0, 0xde, 0x00, 0x00, 0x81]);
/// The TEE_TCB_SVN of simulated TDs: module SVN 3, major version 1 (`TDX_01`).
pub const SIM_TEE_TCB_SVN: [u8; 16] = [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// A TEE_TCB_SVN on the out-of-date `TDX_01` module level (SVN 1): what a TD launched on
/// before a TD-preserving module update reports as its launch TCB.
pub const SIM_TEE_TCB_SVN_OUT_OF_DATE: [u8; 16] = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Which simulated platform: an SGX machine or a TDX machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimPlatform {
    /// SGX: TCB info `SGX`, QE identity `QE`.
    Sgx,
    /// TDX: TCB info `TDX` with a module identity, QE identity `TD_QE`.
    Tdx,
}

impl SimPlatform {
    /// Its FMSPC.
    pub fn fmspc(self) -> Fmspc {
        match self {
            Self::Sgx => SIM_FMSPC,
            Self::Tdx => SIM_TDX_FMSPC,
        }
    }
}
/// The sim platform's PCE ID.
pub const SIM_PCE_ID: PceId = PceId([0, 0]);
/// The sim PCE SVN, met by every TCB level.
pub const SIM_PCE_SVN: u16 = 13;
/// The sim quoting enclave's signer.
pub const SIM_QE_MRSIGNER: MrSigner = MrSigner([0x51; 32]);
/// The sim QE's ISVSVN (the QE identity's UpToDate level).
pub const SIM_QE_ISV_SVN: u16 = 8;

/// The component SVN (component 1) that puts a PCK on a given TCB level; a TD relaunch
/// status stands on the platform level a relaunch keeps (the module, not the platform, was
/// out of date).
pub fn level_svn(status: TcbStatus) -> u8 {
    match status {
        TcbStatus::UpToDate | TcbStatus::TdRelaunchAdvised => 16,
        TcbStatus::SwHardeningNeeded => 15,
        TcbStatus::ConfigurationNeeded | TcbStatus::TdRelaunchAdvisedConfigurationNeeded => 14,
        TcbStatus::ConfigurationAndSwHardeningNeeded => 13,
        TcbStatus::OutOfDate => 12,
        TcbStatus::OutOfDateConfigurationNeeded => 11,
        TcbStatus::Revoked => 10,
    }
}

const ALL_LEVELS: [TcbStatus; 7] = [
    TcbStatus::UpToDate,
    TcbStatus::SwHardeningNeeded,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::ConfigurationAndSwHardeningNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::Revoked,
];

fn rfc3339(t: UnixTime) -> String {
    t.to_rfc3339()
}

pub(super) fn tcb_info_json(platform: SimPlatform, issued: UnixTime, next: UnixTime) -> String {
    let levels: Vec<serde_json::Value> = ALL_LEVELS
        .iter()
        .map(|s| {
            let mut comps: Vec<serde_json::Value> = vec![serde_json::json!({"svn": level_svn(*s)})];
            comps.extend((1..16).map(|_| serde_json::json!({"svn": 0})));
            let advisories: Vec<String> = if *s == TcbStatus::UpToDate {
                Vec::new()
            } else {
                vec![format!("SIM-SA-{:05}", level_svn(*s))]
            };
            let mut tcb = serde_json::json!({"sgxtcbcomponents": comps, "pcesvn": SIM_PCE_SVN});
            if platform == SimPlatform::Tdx {
                // Platform levels are told apart by the SGX components; the TDX ones are met
                // by every simulated TD (the module identity judges TEE_TCB_SVN[0..2]).
                let tdx: Vec<serde_json::Value> =
                    (0..16).map(|_| serde_json::json!({"svn": 0})).collect();
                tcb["tdxtcbcomponents"] = serde_json::Value::Array(tdx);
            }
            serde_json::json!({
                "tcb": tcb,
                "tcbDate": rfc3339(issued),
                "tcbStatus": s.as_str(),
                "advisoryIDs": advisories,
            })
        })
        .collect();
    // serde_json keeps insertion order only with preserve_order; build the text by hand
    // so the key order is Intel's.
    let (id, module) = match platform {
        SimPlatform::Sgx => ("SGX", String::new()),
        SimPlatform::Tdx => (
            "TDX",
            format!(
                r#""tdxModule":{{"mrsigner":"{zero}","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF"}},"tdxModuleIdentities":[{{"id":"TDX_01","mrsigner":"{zero}","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF","tcbLevels":[{{"tcb":{{"isvsvn":3}},"tcbDate":"{d}","tcbStatus":"UpToDate"}},{{"tcb":{{"isvsvn":1}},"tcbDate":"{d}","tcbStatus":"OutOfDate","advisoryIDs":["SIM-SA-TDX01"]}}]}}],"#,
                zero = "0".repeat(96),
                d = rfc3339(issued)
            ),
        ),
    };
    format!(
        r#"{{"id":"{id}","version":3,"issueDate":"{}","nextUpdate":"{}","fmspc":"{}","pceId":"{}","tcbType":0,"tcbEvaluationDataNumber":17,{module}"tcbLevels":{}}}"#,
        rfc3339(issued),
        rfc3339(next),
        platform.fmspc().to_string().to_uppercase(),
        SIM_PCE_ID,
        serde_json::Value::Array(levels)
    )
}

pub(super) fn qe_identity_json(platform: SimPlatform, issued: UnixTime, next: UnixTime) -> String {
    let (id, prod) = match platform {
        SimPlatform::Sgx => ("QE", 1),
        SimPlatform::Tdx => ("TD_QE", 2),
    };
    format!(
        r#"{{"id":"{id}","version":2,"issueDate":"{}","nextUpdate":"{}","tcbEvaluationDataNumber":17,"miscselect":"00000000","miscselectMask":"FFFFFFFF","attributes":"11000000000000000000000000000000","attributesMask":"FBFFFFFFFFFFFFFF0000000000000000","mrsigner":"{}","isvprodid":{prod},"tcbLevels":[{{"tcb":{{"isvsvn":{}}},"tcbDate":"{}","tcbStatus":"UpToDate"}},{{"tcb":{{"isvsvn":1}},"tcbDate":"{}","tcbStatus":"OutOfDate","advisoryIDs":["SIM-SA-QE001"]}}]}}"#,
        rfc3339(issued),
        rfc3339(next),
        SIM_QE_MRSIGNER.to_string().to_uppercase(),
        SIM_QE_ISV_SVN,
        rfc3339(issued),
        rfc3339(issued),
    )
}
