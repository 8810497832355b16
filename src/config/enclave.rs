//! One `[[enclave]]` table: its hosts, the TEE it expects and that TEE's policy keys,
//! validated with file:line:col.

use serde::Deserialize;
use toml::Spanned;

use super::checker::{list, Checker};
use super::EnclaveConfig;
use crate::addr::{Authority, HostPattern};
use crate::appraise::early::EarlyMode;
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::td_policy::TdPolicy;
use crate::dcap::ids::{
    IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner, MrOwnerConfig, MrSeam, MrSigner, MrTd, Rtmr,
    TeeTcbSvn, Xfam,
};
use crate::dcap::quote::TeeType;
use crate::dcap::tcb::TcbStatus;
use crate::ratls::BindingMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnclave {
    pub(super) hosts: Spanned<Vec<Spanned<String>>>,
    pub(super) tee: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) mrtd: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rtmr0: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rtmr1: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rtmr2: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rtmr3: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrconfigid: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrowner: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrownerconfig: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrseam: Vec<Spanned<String>>,
    pub(super) min_tee_tcb_svn: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) xfam: Vec<Spanned<String>>,
    // dstack's app identity (`config/dstack.rs`).
    #[serde(default)]
    pub(super) app_id: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) compose_hash: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) os_image_hash: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) instance_id: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) key_provider: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrenclave: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) mrsigner: Vec<Spanned<String>>,
    pub(super) isv_prod_id: Option<Spanned<i64>>,
    pub(super) min_isv_svn: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) allow_debug: bool,
    pub(super) tcb_status: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) allowed_advisories: Vec<String>,
    pub(super) max_cert_age_secs: Option<Spanned<i64>>,
    pub(super) early: Option<Spanned<String>>,
    pub(super) min_tcb_evaluation_data_number: Option<Spanned<i64>>,
    pub(super) binding: Option<Spanned<String>>,
    pub(super) connect_to: Option<Spanned<String>>,
    // AMD SEV-SNP (`config/snp.rs`).
    #[serde(default)]
    pub(super) measurement: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) host_data: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) id_key_digest: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) author_key_digest: Vec<Spanned<String>>,
    pub(super) family_id: Option<Spanned<String>>,
    pub(super) image_id: Option<Spanned<String>>,
    pub(super) min_guest_svn: Option<Spanned<i64>>,
    pub(super) min_tcb: Option<Spanned<super::snp::RawMinTcb>>,
    pub(super) max_vmpl: Option<Spanned<i64>>,
    pub(super) allow_migration_agent: Option<Spanned<bool>>,
    // AWS Nitro Enclaves (`config/nitro.rs`).
    #[serde(default)]
    pub(super) pcr0: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pcr1: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pcr2: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pcr3: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pcr4: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pcr8: Vec<Spanned<String>>,
}

/// The TEE an entry's `tee` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Named {
    /// SGX or TDX: the Intel policy keys.
    Intel(TeeType),
    /// AMD SEV-SNP (`config/snp.rs`).
    Snp,
    /// AWS Nitro Enclaves (`config/nitro.rs`).
    Nitro,
}

/// Validates one `[[enclave]]`; `None` once its errors are recorded in `c`.
pub(super) fn check(c: &mut Checker<'_>, e: &RawEnclave) -> Option<EnclaveConfig> {
    let before = c.errors.len();
    if e.hosts.get_ref().is_empty() {
        c.error(&e.hosts, "hosts must list at least one host");
    }
    let hosts: Vec<HostPattern> = e
        .hosts
        .get_ref()
        .iter()
        .filter_map(|h| c.parse(h, |v| HostPattern::parse(v)))
        .collect();
    // SNP and Nitro entries expect no Intel TEE (`config/snp.rs`, `config/nitro.rs`).
    let named = match &e.tee {
        None => Some(Named::Intel(TeeType::Sgx)),
        Some(s) => c.parse(s, |v| match v.as_str() {
            "sgx" => Ok(Named::Intel(TeeType::Sgx)),
            "tdx" => Ok(Named::Intel(TeeType::Tdx)),
            "snp" => Ok(Named::Snp),
            "nitro" => Ok(Named::Nitro),
            other => Err(format!(
                "tee = `{other}`: expected \"sgx\", \"tdx\", \"snp\" or \"nitro\""
            )),
        }),
    };
    let is_snp = named == Some(Named::Snp);
    let is_nitro = named == Some(Named::Nitro);
    let tee = match named {
        Some(Named::Intel(t)) => Some(t),
        _ => None,
    };
    let td_keys = !e.mrtd.is_empty()
        || [
            &e.rtmr0,
            &e.rtmr1,
            &e.rtmr2,
            &e.rtmr3,
            &e.mrconfigid,
            &e.mrowner,
            &e.mrownerconfig,
            &e.mrseam,
            &e.xfam,
        ]
        .iter()
        .any(|v| !v.is_empty())
        || e.min_tee_tcb_svn.is_some();
    match tee {
        Some(TeeType::Sgx) => {
            if e.mrenclave.is_empty() && e.mrsigner.is_empty() {
                c.error(
                    &e.hosts,
                    "an [[enclave]] needs at least one of mrenclave or mrsigner",
                );
            }
            if td_keys {
                c.error(&e.hosts, "TD keys (mrtd, rtmr0..3, mrconfigid, mrowner, mrownerconfig, mrseam, xfam, min_tee_tcb_svn) need tee = \"tdx\"");
            }
        }
        Some(TeeType::Tdx) => {
            if e.mrtd.is_empty() {
                c.error(
                    &e.hosts,
                    "a tee = \"tdx\" [[enclave]] needs mrtd (an allow-list)",
                );
            }
            if !e.mrenclave.is_empty()
                || !e.mrsigner.is_empty()
                || e.isv_prod_id.is_some()
                || e.min_isv_svn.is_some()
            {
                c.error(&e.hosts, "SGX keys (mrenclave, mrsigner, isv_prod_id, min_isv_svn) do not apply to tee = \"tdx\"");
            }
        }
        None if is_snp || is_nitro => {
            let intel = !e.mrenclave.is_empty()
                || !e.mrsigner.is_empty()
                || e.isv_prod_id.is_some()
                || e.min_isv_svn.is_some()
                || td_keys
                || e.tcb_status.is_some()
                || !e.allowed_advisories.is_empty()
                || e.early.is_some()
                || e.min_tcb_evaluation_data_number.is_some();
            if intel {
                let name = if is_snp { "snp" } else { "nitro" };
                c.error(&e.hosts, format!("Intel keys (mrenclave, mrsigner, isv_prod_id, min_isv_svn, mrtd, rtmr0..3, mrconfigid, mrowner, mrownerconfig, mrseam, xfam, min_tee_tcb_svn, tcb_status, allowed_advisories, early, min_tcb_evaluation_data_number) do not apply to tee = \"{name}\""));
            }
        }
        None => {}
    }
    let snp_keys = super::snp::SnpKeys {
        measurement: &e.measurement,
        host_data: &e.host_data,
        id_key_digest: &e.id_key_digest,
        author_key_digest: &e.author_key_digest,
        family_id: e.family_id.as_ref(),
        image_id: e.image_id.as_ref(),
        min_guest_svn: e.min_guest_svn.as_ref(),
        min_tcb: e.min_tcb.as_ref(),
        max_vmpl: e.max_vmpl.as_ref(),
        allow_migration_agent: e.allow_migration_agent.as_ref(),
        allow_debug: e.allow_debug,
    };
    let snp = super::snp::check(c, &snp_keys, is_snp, &e.hosts);
    let max_cert_age_secs = e
        .max_cert_age_secs
        .as_ref()
        .map(|s| c.range("max_cert_age_secs", Some(s), 1, 10 * 365 * 86_400, 0));
    let nitro_keys = super::nitro::NitroKeys {
        pcrs: [&e.pcr0, &e.pcr1, &e.pcr2, &e.pcr3, &e.pcr4, &e.pcr8],
        allow_debug: e.allow_debug,
        max_cert_age_secs,
    };
    let nitro = super::nitro::check(c, &nitro_keys, is_nitro, &e.hosts);
    if let (true, Some(b)) = (is_nitro, &e.binding) {
        // Each Nitro carrier (dstack's `.1.8`, Evervault's subjectAltName) has exactly one
        // binding rule and is recognised by its bytes; a mode chosen here would mean nothing.
        c.error(b, "binding does not apply to tee = \"nitro\" (each Nitro carrier, dstack's .1.8 or Evervault's subjectAltName, has its own binding rule)");
    }
    let td = TdPolicy {
        mrtd: list(c, &e.mrtd, MrTd::from_hex),
        rtmr: [
            list(c, &e.rtmr0, Rtmr::from_hex),
            list(c, &e.rtmr1, Rtmr::from_hex),
            list(c, &e.rtmr2, Rtmr::from_hex),
            list(c, &e.rtmr3, Rtmr::from_hex),
        ],
        mrconfigid: list(c, &e.mrconfigid, MrConfigId::from_hex),
        mrowner: list(c, &e.mrowner, MrOwner::from_hex),
        mrownerconfig: list(c, &e.mrownerconfig, MrOwnerConfig::from_hex),
        mrseam: list(c, &e.mrseam, MrSeam::from_hex),
        min_tee_tcb_svn: e
            .min_tee_tcb_svn
            .as_ref()
            .and_then(|s| c.parse(s, |v| TeeTcbSvn::from_hex(v))),
        xfam: list(c, &e.xfam, Xfam::from_hex),
    };
    let keys = super::dstack::AppKeys {
        app_id: &e.app_id,
        compose_hash: &e.compose_hash,
        os_image_hash: &e.os_image_hash,
        instance_id: &e.instance_id,
        key_provider: &e.key_provider,
    };
    let app = super::dstack::check(c, &keys, tee, &td);
    let mrenclave: Vec<MrEnclave> = e
        .mrenclave
        .iter()
        .filter_map(|m| c.parse(m, |v| MrEnclave::from_hex(v)))
        .collect();
    let mrsigner: Vec<MrSigner> = e
        .mrsigner
        .iter()
        .filter_map(|m| c.parse(m, |v| MrSigner::from_hex(v)))
        .collect();
    let tcb_statuses = match &e.tcb_status {
        None => vec![TcbStatus::UpToDate],
        // An empty list would refuse every quote: a mistake, not a policy.
        Some(list) if list.get_ref().is_empty() => {
            c.error(
                list,
                "tcb_status = []: an empty list accepts no TCB status, so every connection would be refused; leave it out for [\"UpToDate\"]",
            );
            Vec::new()
        }
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|s| {
                c.parse(s, |v| match v.parse::<TcbStatus>() {
                    Ok(TcbStatus::Revoked) => {
                        Err("tcb_status Revoked: a revoked TCB is never acceptable".to_owned())
                    }
                    // Only a TD 1.5 quote can earn one: on an SGX entry it is a mistake.
                    Ok(t) if !t.is_published() && tee != Some(TeeType::Tdx) => Err(format!(
                        "tcb_status {t}: a TD relaunch status applies to tee = \"tdx\" entries only"
                    )),
                    Ok(t) => Ok(t),
                    Err(e) => Err(e.to_string()),
                })
            })
            .collect(),
    };
    let binding = match &e.binding {
        None => Some(BindingMode::Auto),
        Some(b) => c.parse(b, |v| v.parse::<BindingMode>()),
    };
    let connect_to = e.connect_to.as_ref().and_then(|s| {
        c.parse(s, |v| {
            Authority::parse_dial(v).map_err(|e| format!("connect_to must be host:port: {e}"))
        })
    });
    let u16_field = |c: &mut Checker<'_>, name: &str, v: Option<&Spanned<i64>>| {
        v.map(|s| u16::try_from(c.range(name, Some(s), 0, u64::from(u16::MAX), 0)).unwrap_or(0))
    };
    let isv_prod_id = u16_field(c, "isv_prod_id", e.isv_prod_id.as_ref()).map(IsvProdId);
    let min_isv_svn = u16_field(c, "min_isv_svn", e.min_isv_svn.as_ref()).map(IsvSvn);
    // Without their own, entries take `[collateral]`'s (set once every entry is read).
    let early = e
        .early
        .as_ref()
        .and_then(|s| c.parse(s, |v| v.parse::<EarlyMode>()));
    let min_tcb_evaluation_data_number = e
        .min_tcb_evaluation_data_number
        .as_ref()
        .map(|s| evaluation_number(c, "min_tcb_evaluation_data_number", s));
    if c.errors.len() != before {
        return None;
    }
    Some(EnclaveConfig {
        hosts,
        policy: EnclavePolicy {
            tee,
            td,
            app,
            mrenclave,
            mrsigner,
            isv_prod_id,
            min_isv_svn,
            allow_debug: e.allow_debug,
            // A Nitro entry accepts no Intel TCB status: until the proxy appraises Nitro
            // evidence, Intel evidence given to such an entry (which pins no Intel
            // identity) must still be refused, by this policy alone.
            tcb_statuses: if is_nitro { Vec::new() } else { tcb_statuses },
            allowed_advisories: e.allowed_advisories.clone(),
            max_cert_age_secs,
            // Set from `[collateral] max_age_secs` once every entry is read.
            max_collateral_age_secs: None,
            min_tcb_evaluation_data_number,
            early: early.unwrap_or_default(),
        },
        binding: binding?,
        connect_to,
        snp,
        nitro,
    })
}

/// `[collateral] early` and `min_tcb_evaluation_data_number`, given to each entry of `raw`
/// (checked into `enclaves`, in order) that does not set its own. True if any entry judges
/// under Intel's early TCB data: it is fetched then.
pub(super) fn collateral_early(
    c: &mut Checker<'_>,
    (early, min): (Option<&Spanned<String>>, Option<&Spanned<i64>>),
    raw: &[RawEnclave],
    enclaves: &mut [Option<EnclaveConfig>],
) -> bool {
    let early = early
        .and_then(|s| c.parse(s, |v| v.parse::<EarlyMode>()))
        .unwrap_or_default();
    let min = min.map(|s| evaluation_number(c, "collateral.min_tcb_evaluation_data_number", s));
    for (e, r) in enclaves.iter_mut().zip(raw) {
        let Some(e) = e else { continue };
        if r.early.is_none() {
            e.policy.early = early;
        }
        if r.min_tcb_evaluation_data_number.is_none() {
            e.policy.min_tcb_evaluation_data_number = min;
        }
    }
    early != EarlyMode::Off
        || enclaves
            .iter()
            .flatten()
            .any(|e| e.policy.early != EarlyMode::Off)
}

/// A TCB evaluation data number key's value, within 1..=u32::MAX.
pub(super) fn evaluation_number(c: &mut Checker<'_>, name: &str, s: &Spanned<i64>) -> u32 {
    u32::try_from(c.range(name, Some(s), 1, u64::from(u32::MAX), 1)).unwrap_or(1)
}
