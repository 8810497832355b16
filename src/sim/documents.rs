//! The sim's signed JSON documents, written as Intel writes them (key order included): a
//! TCB info with one level per TCB status (and, for TDX, a module identity), and a QE
//! identity.

use super::pki::{
    level_svn, SimPlatform, ALL_LEVELS, SIM_PCE_ID, SIM_PCE_SVN, SIM_QE_ISV_SVN, SIM_QE_MRSIGNER,
};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;

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
