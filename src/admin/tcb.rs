//! `GET /tcb`: each enclave host's TCB under Intel's standard and early data.

use super::{bundle_tee, tee_label, Proxy};
use crate::dcap::time::UnixTime;
use crate::source::CollateralSetup;
use crate::tcb_watch::days_left;

/// `GET /tcb`: every enclave host judged so far with its TCB under the standard and the early
/// data, the configured hosts not judged yet, and the early data held per platform.
pub(super) fn tcb_page(proxy: &Proxy, now: UnixTime) -> serde_json::Value {
    let hosts = proxy.tcb_watch().hosts();
    let judged: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| {
            let mut early = h.early.as_ref().map(|e| e.to_json());
            if let (Some(e), Some(t)) = (early.as_mut(), h.standard_from()) {
                e["days_left"] = days_left(t, now).into();
            }
            serde_json::json!({
                "host": h.host,
                "port": h.port,
                "tee": h.tee.map(str::to_lowercase),
                "verdict": if h.code.is_none() { "accepted" } else { "refused" },
                "code": h.code.map(|c| c.as_str()),
                "at_risk": h.at_risk(),
                "judged_at": h.judged_at.to_rfc3339(),
                "standard": h.standard.as_ref().map(|t| serde_json::json!({
                    "status": t.status.as_str(),
                    "tcb_evaluation_data_number": t.tcb_evaluation_data_number,
                    "advisory_ids": t.advisory_ids,
                    "fmspc": t.fmspc.to_string(),
                })),
                "early": early,
            })
        })
        .collect();
    let g = proxy.current();
    let not_judged: Vec<String> = g
        .config
        .enclaves
        .iter()
        // Intel's TCB data judges no SEV-SNP guest or Nitro enclave: never listed here.
        .filter(|e| e.snp.is_none() && e.nitro.is_none())
        .flat_map(|e| &e.hosts)
        .filter(|p| !p.wildcard)
        .map(|p| p.host.to_string())
        .filter(|name| !hosts.iter().any(|h| h.host == *name))
        .collect();
    let early_data: Vec<serde_json::Value> = match g.collateral.as_ref() {
        CollateralSetup::Fetched(cache) => cache
            .early_snapshots()
            .iter()
            .map(|e| {
                early_held(
                    e.key.0,
                    e.key.1.as_str(),
                    tee_label(e.key.2),
                    (e.evaluation_number, e.standard_from, e.valid_until),
                )
            })
            .collect(),
        CollateralSetup::Files(files) => files
            .early_keyed()
            .map(|((fmspc, ca, tee), e)| {
                early_held(
                    *fmspc,
                    ca.as_str(),
                    bundle_tee(*tee),
                    (e.evaluation_number(), e.standard_from(), e.valid_until()),
                )
            })
            .collect(),
        CollateralSetup::Unconfigured | CollateralSetup::Bundle(_) => Vec::new(),
    };
    serde_json::json!({
        "hosts": judged,
        "not_judged": not_judged,
        "early_data": early_data,
    })
}

/// One platform's early data held, for `GET /tcb`.
fn early_held(
    fmspc: crate::dcap::ids::Fmspc,
    ca: &str,
    tee: &str,
    (number, standard_from, valid_until): (u32, Option<UnixTime>, UnixTime),
) -> serde_json::Value {
    serde_json::json!({
        "fmspc": fmspc.to_string(),
        "ca": ca,
        "tee": tee,
        "tcb_evaluation_data_number": number,
        "standard_from": standard_from.map(UnixTime::to_rfc3339),
        "valid_until": valid_until.to_rfc3339(),
    })
}
