//! What the simulated platforms are (their FMSPCs, PCE, quoting enclave and TCB levels), and
//! the signed JSON Intel would publish for them, written as Intel writes it (key order
//! included): a TCB info with one level per TCB status (and, for TDX, a module identity),
//! a QE identity, and two evaluation data sets: the standard one ([`SIM_EVALUATION`]) and
//! the early one ([`SIM_EARLY_EVALUATION`]), where SGX TCB component 2 of the PCK puts a
//! platform on a level of its own (0: the same status as under the standard data).

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
/// The standard data's TCB evaluation data number.
pub const SIM_EVALUATION: u32 = 17;
/// The early data's TCB evaluation data number (the next TCB recovery).
pub const SIM_EARLY_EVALUATION: u32 = 18;
/// Days from the collateral's issue date until the early data becomes the standard data.
pub const SIM_EARLY_DAYS: i64 = 30;
/// The advisory every early level other than the standard ones carries.
pub const SIM_EARLY_ADVISORY: &str = "SIM-SA-20000";

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

/// One TCB level's JSON: SGX components 1 and 2, its status and advisories.
fn level_json(
    platform: SimPlatform,
    (c1, c2): (u8, u8),
    status: TcbStatus,
    advisories: &[String],
    date: &str,
) -> serde_json::Value {
    let mut comps: Vec<serde_json::Value> = vec![
        serde_json::json!({"svn": c1}),
        serde_json::json!({"svn": c2}),
    ];
    comps.extend((2..16).map(|_| serde_json::json!({"svn": 0})));
    let mut tcb = serde_json::json!({"sgxtcbcomponents": comps, "pcesvn": SIM_PCE_SVN});
    if platform == SimPlatform::Tdx {
        // Platform levels are told apart by the SGX components; the TDX ones are met
        // by every simulated TD (the module identity judges TEE_TCB_SVN[0..2]).
        let tdx: Vec<serde_json::Value> = (0..16).map(|_| serde_json::json!({"svn": 0})).collect();
        tcb["tdxtcbcomponents"] = serde_json::Value::Array(tdx);
    }
    serde_json::json!({
        "tcb": tcb,
        "tcbDate": date,
        "tcbStatus": status.as_str(),
        "advisoryIDs": advisories,
    })
}

fn standard_advisories(s: TcbStatus) -> Vec<String> {
    if s == TcbStatus::UpToDate {
        Vec::new()
    } else {
        vec![format!("SIM-SA-{:05}", level_svn(s))]
    }
}

/// The TCB info of `platform`: the standard data, or with `early` the early data, whose
/// levels also tell platforms apart by SGX component 2: 0 keeps the standard status, the
/// component of a status's level ([`level_svn`]) earns that status and [`SIM_EARLY_ADVISORY`].
pub(super) fn tcb_info_json(
    platform: SimPlatform,
    issued: UnixTime,
    next: UnixTime,
    early: bool,
) -> String {
    let date = rfc3339(issued);
    let mut levels = Vec::new();
    for s in ALL_LEVELS {
        let c1 = level_svn(s);
        if early {
            for e in ALL_LEVELS {
                let mut advisories = standard_advisories(e);
                advisories.push(SIM_EARLY_ADVISORY.to_owned());
                levels.push(level_json(
                    platform,
                    (c1, level_svn(e)),
                    e,
                    &advisories,
                    &date,
                ));
            }
        }
        levels.push(level_json(
            platform,
            (c1, 0),
            s,
            &standard_advisories(s),
            &date,
        ));
    }
    let evaluation = if early {
        SIM_EARLY_EVALUATION
    } else {
        SIM_EVALUATION
    };
    // serde_json keeps insertion order only with preserve_order; build the text by hand
    // so the key order is Intel's.
    let (id, module) = match platform {
        SimPlatform::Sgx => ("SGX", String::new()),
        SimPlatform::Tdx => (
            "TDX",
            format!(
                r#""tdxModule":{{"mrsigner":"{zero}","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF"}},"tdxModuleIdentities":[{{"id":"TDX_01","mrsigner":"{zero}","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF","tcbLevels":[{{"tcb":{{"isvsvn":3}},"tcbDate":"{d}","tcbStatus":"UpToDate"}},{{"tcb":{{"isvsvn":1}},"tcbDate":"{d}","tcbStatus":"OutOfDate","advisoryIDs":["SIM-SA-TDX01"]}}]}}],"#,
                zero = "0".repeat(96),
                d = date
            ),
        ),
    };
    format!(
        r#"{{"id":"{id}","version":3,"issueDate":"{}","nextUpdate":"{}","fmspc":"{}","pceId":"{}","tcbType":0,"tcbEvaluationDataNumber":{evaluation},{module}"tcbLevels":{}}}"#,
        rfc3339(issued),
        rfc3339(next),
        platform.fmspc().to_string().to_uppercase(),
        SIM_PCE_ID,
        serde_json::Value::Array(levels)
    )
}

/// The evaluation data numbers list of `platform`'s TEE: the early number published
/// [`SIM_EARLY_DAYS`] less a year after `issued` (so it becomes standard that many days
/// after), the standard one a year before that.
pub(super) fn evaluation_numbers_json(
    platform: SimPlatform,
    issued: UnixTime,
    next: UnixTime,
) -> String {
    let id = match platform {
        SimPlatform::Sgx => "SGX",
        SimPlatform::Tdx => "TDX",
    };
    let standard_on = UnixTime(issued.0.saturating_add(SIM_EARLY_DAYS * 86_400));
    let published = standard_on.plus_years(-1).unwrap_or(issued);
    let before = published.plus_years(-1).unwrap_or(published);
    let entry = |n: u32, t: UnixTime| {
        format!(
            r#"{{"tcbEvaluationDataNumber":{n},"tcbRecoveryEventDate":"{}","tcbDate":"{}"}}"#,
            rfc3339(t),
            rfc3339(UnixTime(t.0.saturating_add(86_400)))
        )
    };
    format!(
        r#"{{"id":"{id}","version":1,"issueDate":"{}","nextUpdate":"{}","tcbEvalNumbers":[{},{}]}}"#,
        rfc3339(issued),
        rfc3339(next),
        entry(SIM_EARLY_EVALUATION, published),
        entry(SIM_EVALUATION, before)
    )
}

pub(super) fn qe_identity_json(
    platform: SimPlatform,
    issued: UnixTime,
    next: UnixTime,
    evaluation: u32,
) -> String {
    let (id, prod) = match platform {
        SimPlatform::Sgx => ("QE", 1),
        SimPlatform::Tdx => ("TD_QE", 2),
    };
    format!(
        r#"{{"id":"{id}","version":2,"issueDate":"{}","nextUpdate":"{}","tcbEvaluationDataNumber":{evaluation},"miscselect":"00000000","miscselectMask":"FFFFFFFF","attributes":"11000000000000000000000000000000","attributesMask":"FBFFFFFFFFFFFFFF0000000000000000","mrsigner":"{}","isvprodid":{prod},"tcbLevels":[{{"tcb":{{"isvsvn":{}}},"tcbDate":"{}","tcbStatus":"UpToDate"}},{{"tcb":{{"isvsvn":1}},"tcbDate":"{}","tcbStatus":"OutOfDate","advisoryIDs":["SIM-SA-QE001"]}}]}}"#,
        rfc3339(issued),
        rfc3339(next),
        SIM_QE_MRSIGNER.to_string().to_uppercase(),
        SIM_QE_ISV_SVN,
        rfc3339(issued),
        rfc3339(issued),
    )
}
