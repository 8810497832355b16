//! TOML text to [`Config`]: raw structs that refuse unknown keys, then validation of every
//! value with its file:line:col.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{
    default_ca_dir, AuditConfig, Config, ConfigError, ConfigErrors, EnclaveConfig, HostIndex,
    Limits, MetricsHostLabels, RefusalDetails, RefusalPage, RouteConfig, Unmatched,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_VERDICT_MAX_AGE,
};
use crate::addr::{Authority, HostPattern};
use crate::dcap::ids::Fmspc;
use crate::nitro::revocation::Revocation;
use crate::source::fetch::RefreshPolicy;
use crate::source::nitro::NitroCrlSpec;
use crate::source::{AmdKdsSpec, CollateralSpec, SourceConfig, TrustRoot};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    unmatched: Option<Spanned<String>>,
    verdict_max_age_secs: Option<Spanned<i64>>,
    attestation_header: Option<bool>,
    shutdown_grace_secs: Option<Spanned<i64>>,
    allow_local_destinations: Option<bool>,
    refusal_details: Option<Spanned<String>>,
    refusal_page: Option<Spanned<String>>,
    admin_token_file: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    metrics_host_labels: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    ca: RawCa,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    collateral: RawCollateral,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    enclave: Vec<super::enclave::RawEnclave>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    header_read_timeout_secs: Option<Spanned<i64>>,
    max_header_bytes: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    max_upstream_connections: Option<Spanned<i64>>,
    connect_timeout_secs: Option<Spanned<i64>>,
    client_tls_timeout_secs: Option<Spanned<i64>>,
    idle_timeout_secs: Option<Spanned<i64>>,
    threads: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<Spanned<String>>,
    required: Option<bool>,
    key_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCa {
    dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    root_ca: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCollateral {
    source: Option<Spanned<String>>,
    api_key: Option<String>,
    pccs_ca: Option<Spanned<String>>,
    max_age_secs: Option<Spanned<i64>>,
    early: Option<Spanned<String>>,
    min_tcb_evaluation_data_number: Option<Spanned<i64>>,
    refresh_interval_secs: Option<Spanned<i64>>,
    refresh_margin_secs: Option<Spanned<i64>>,
    #[serde(default)]
    prefetch: Vec<Spanned<String>>,
    amd_kds: Option<Spanned<String>>,
    nitro_trust_root: Option<Spanned<String>>,
    nitro_crls: Option<Spanned<String>>,
    nitro_revocation: Option<Spanned<String>>,
    amd_trust_root: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    listen: Spanned<String>,
    upstream: Spanned<String>,
}

/// Expands `~/` and makes relative paths relative to the config file's directory.
fn resolve_path(p: &str, base: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Upper bounds shared by several keys.
const RANGE_HOUR: u64 = 3600;
const RANGE_DAYS_30: u64 = 30 * 86_400;

/// A range-checked count as `usize` (every bound above fits).
fn count(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// One of a key's allowed words: `choices` pairs each with its value.
fn choice<T: Copy>(
    c: &mut Checker<'_>,
    key: &str,
    value: &Spanned<String>,
    choices: &[(&str, T)],
) -> Option<T> {
    c.parse(value, |v| {
        choices
            .iter()
            .find(|(word, _)| word == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let mut expected = String::new();
                for (i, (word, _)) in choices.iter().enumerate() {
                    let sep = if i == 0 {
                        ""
                    } else if i.saturating_add(1) == choices.len() {
                        " or "
                    } else {
                        ", "
                    };
                    expected.push_str(&format!("{sep}\"{word}\""));
                }
                format!("{key} = `{v}`: expected {expected}")
            })
    })
}

/// A path key naming a file that must exist.
fn file_path(c: &mut Checker<'_>, key: &str, s: &Spanned<String>, base: &Path) -> PathBuf {
    let p = resolve_path(s.get_ref(), base);
    if !p.is_file() {
        c.error(s, format!("{key} `{}` is not a file", p.display()));
    }
    p
}

impl Config {
    /// Validates TOML text; `file` names it in errors, `base` anchors relative paths.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Self, ConfigErrors> {
        let mut c = Checker::new(file, text);
        let raw: Raw = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let location = e.span().map_or_else(|| file.to_owned(), |s| c.at(s.start));
                return Err(ConfigErrors(vec![ConfigError {
                    location,
                    message: e.message().to_owned(),
                }]));
            }
        };
        // Every table fills its part; an invalid value leaves the default and an error.
        let mut config = Self::defaults();
        root(&mut c, &raw, base, &mut config);
        config.audit = audit(&mut c, &raw.audit, base);
        config.ca_dir = raw
            .ca
            .dir
            .as_ref()
            .map_or_else(default_ca_dir, |d| resolve_path(d.get_ref(), base));
        config.state_dir = raw.state_dir.as_ref().map_or_else(
            || config.ca_dir.clone(),
            |d| resolve_path(d.get_ref(), base),
        );
        let (source, max_collateral_age) = collateral(&mut c, &raw, base);
        config.source = source;
        config.limits = limits(&mut c, &raw.limits);
        let (enclaves, fetch_early) =
            enclaves(&mut c, &raw.enclave, &raw.collateral, max_collateral_age);
        config.enclaves = enclaves;
        config.source.early = fetch_early;
        config.routes = routes(&mut c, &raw.route, &config.enclaves);
        if c.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(c.errors))
        }
    }
}

/// The top-level keys.
fn root(c: &mut Checker<'_>, raw: &Raw, base: &Path, config: &mut Config) {
    if let Some(s) = &raw.listen {
        if let Some(v) = c.parse(s, |v| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("listen `{v}`: {e}"))
        }) {
            config.listen = v;
        }
    }
    match &raw.admin_listen {
        Some(s) if s.get_ref().is_empty() => config.admin_listen = None,
        Some(s) => {
            config.admin_listen = c.parse(s, |v| {
                v.parse::<SocketAddr>()
                    .map_err(|e| format!("admin_listen `{v}`: {e}"))
            });
        }
        None => {}
    }
    if let Some(s) = &raw.unmatched {
        let words = [
            ("passthrough", Unmatched::Passthrough),
            ("deny", Unmatched::Deny),
        ];
        config.unmatched = choice(c, "unmatched", s, &words).unwrap_or(config.unmatched);
    }
    config.verdict_max_age = c.secs(
        "verdict_max_age_secs",
        raw.verdict_max_age_secs.as_ref(),
        1,
        RANGE_DAYS_30,
        DEFAULT_VERDICT_MAX_AGE,
    );
    config.shutdown_grace = c.secs(
        "shutdown_grace_secs",
        raw.shutdown_grace_secs.as_ref(),
        0,
        RANGE_HOUR,
        DEFAULT_SHUTDOWN_GRACE,
    );
    if let Some(s) = &raw.refusal_details {
        let words = [
            ("full", RefusalDetails::Full),
            ("code", RefusalDetails::Code),
        ];
        config.refusal_details =
            choice(c, "refusal_details", s, &words).unwrap_or(config.refusal_details);
    }
    if let Some(s) = &raw.refusal_page {
        let words = [
            ("browsers", RefusalPage::Browsers),
            ("always", RefusalPage::Always),
            ("never", RefusalPage::Never),
        ];
        config.refusal_page = choice(c, "refusal_page", s, &words).unwrap_or(config.refusal_page);
    }
    if let Some(s) = &raw.metrics_host_labels {
        let words = [
            ("enclaves", MetricsHostLabels::Enclaves),
            ("all", MetricsHostLabels::All),
        ];
        config.metrics_host_labels =
            choice(c, "metrics_host_labels", s, &words).unwrap_or(config.metrics_host_labels);
    }
    config.admin_token_file = raw
        .admin_token_file
        .as_ref()
        .map(|s| file_path(c, "admin_token_file", s, base));
    config.attestation_header = raw.attestation_header.unwrap_or(false);
    config.allow_local_destinations = raw.allow_local_destinations.unwrap_or(false);
}

/// `[audit]`.
fn audit(c: &mut Checker<'_>, raw: &RawAudit, base: &Path) -> Option<AuditConfig> {
    let key_file = raw.key_file.as_ref().map(|s| {
        let p = file_path(c, "audit.key_file", s, base);
        if raw.path.is_none() {
            c.error(
                s,
                "audit.key_file without audit.path: there is no trail to key",
            );
        }
        p
    });
    raw.path.as_ref().map(|p| AuditConfig {
        path: resolve_path(p.get_ref(), base),
        required: raw.required.unwrap_or(false),
        key_file,
    })
}

/// `[trust]` and `[collateral]`: the source, and `max_age_secs` (each entry's policy
/// carries it).
fn collateral(c: &mut Checker<'_>, raw: &Raw, base: &Path) -> (SourceConfig, Option<u64>) {
    let trust_root = match &raw.trust.root_ca {
        None => TrustRoot::Builtin,
        Some(s) if s.get_ref() == "builtin" => TrustRoot::Builtin,
        Some(s) => TrustRoot::Pem(file_path(c, "trust.root_ca", s, base)),
    };
    let raw = &raw.collateral;
    let collateral = match &raw.source {
        None => CollateralSpec::Pcs,
        Some(s) => {
            CollateralSpec::parse(s.get_ref(), |p| resolve_path(p, base)).unwrap_or_else(|p| {
                c.error(
                    s,
                    format!(
                        "collateral.source `{}` is neither a file nor a directory",
                        p.display()
                    ),
                );
                CollateralSpec::File(p)
            })
        }
    };
    let pccs_ca = raw
        .pccs_ca
        .as_ref()
        .map(|s| file_path(c, "collateral.pccs_ca", s, base));
    let defaults = RefreshPolicy::default();
    let refresh = RefreshPolicy {
        interval: c.secs(
            "collateral.refresh_interval_secs",
            raw.refresh_interval_secs.as_ref(),
            60,
            RANGE_DAYS_30,
            defaults.interval,
        ),
        margin: c.secs(
            "collateral.refresh_margin_secs",
            raw.refresh_margin_secs.as_ref(),
            0,
            RANGE_DAYS_30,
            defaults.margin,
        ),
        ..defaults
    };
    let prefetch: Vec<Fmspc> = raw
        .prefetch
        .iter()
        .filter_map(|f| c.parse(f, |v| Fmspc::from_hex(v)))
        .collect();
    let max_age = raw.max_age_secs.as_ref().map(|s| {
        c.range(
            "collateral.max_age_secs",
            Some(s),
            3600,
            10 * 365 * 86_400,
            0,
        )
    });
    let amd_kds = raw.amd_kds.as_ref().map(|s| {
        AmdKdsSpec::parse(s.get_ref(), |p| resolve_path(p, base)).unwrap_or_else(|p| {
            c.error(
                s,
                format!(
                    "collateral.amd_kds `{}` is neither an http(s):// URL nor a directory",
                    p.display()
                ),
            );
            AmdKdsSpec::Dir(p)
        })
    });
    let (nitro_trust_root, nitro_crls, nitro_revocation) = nitro_collateral(c, raw, base);
    let source = SourceConfig {
        amd_kds,
        amd_trust_root: raw
            .amd_trust_root
            .as_ref()
            .map(|s| file_path(c, "collateral.amd_trust_root", s, base)),
        trust_root,
        collateral,
        api_key: raw.api_key.clone(),
        pccs_ca,
        refresh,
        prefetch,
        early: false,
        nitro_trust_root,
        nitro_crls,
        nitro_revocation,
    };
    (source, max_age)
}

/// `[collateral]`'s AWS Nitro keys: `nitro_trust_root`, `nitro_crls`, `nitro_revocation`.
fn nitro_collateral(
    c: &mut Checker<'_>,
    raw: &RawCollateral,
    base: &Path,
) -> (Option<PathBuf>, NitroCrlSpec, Revocation) {
    let root = raw
        .nitro_trust_root
        .as_ref()
        .map(|s| file_path(c, "collateral.nitro_trust_root", s, base));
    let crls = raw.nitro_crls.as_ref().map_or(NitroCrlSpec::Aws, |s| {
        NitroCrlSpec::parse(s.get_ref(), |p| resolve_path(p, base)).unwrap_or_else(|p| {
            c.error(
                s,
                format!(
                    "collateral.nitro_crls `{}` is neither \"aws\", an http(s):// URL nor a directory",
                    p.display()
                ),
            );
            NitroCrlSpec::Dir(p)
        })
    });
    let words = [
        ("required", Revocation::Required),
        ("if_available", Revocation::IfSupplied),
    ];
    let revocation = raw
        .nitro_revocation
        .as_ref()
        .and_then(|s| choice(c, "collateral.nitro_revocation", s, &words))
        .unwrap_or(Revocation::Required);
    (root, crls, revocation)
}

/// `[limits]`.
fn limits(c: &mut Checker<'_>, l: &RawLimits) -> Limits {
    let d = Limits::default();
    let default = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Limits {
        header_read_timeout: c.secs(
            "limits.header_read_timeout_secs",
            l.header_read_timeout_secs.as_ref(),
            1,
            RANGE_HOUR,
            d.header_read_timeout,
        ),
        // hyper needs room for at least a minimal request head.
        max_header_bytes: count(c.range(
            "limits.max_header_bytes",
            l.max_header_bytes.as_ref(),
            1024,
            1 << 20,
            default(d.max_header_bytes),
        )),
        max_connections: count(c.range(
            "limits.max_connections",
            l.max_connections.as_ref(),
            1,
            1_000_000,
            default(d.max_connections),
        )),
        max_upstream_connections: count(c.range(
            "limits.max_upstream_connections",
            l.max_upstream_connections.as_ref(),
            1,
            1_000_000,
            default(d.max_upstream_connections),
        )),
        connect_timeout: c.secs(
            "limits.connect_timeout_secs",
            l.connect_timeout_secs.as_ref(),
            1,
            300,
            d.connect_timeout,
        ),
        client_tls_timeout: c.secs(
            "limits.client_tls_timeout_secs",
            l.client_tls_timeout_secs.as_ref(),
            1,
            300,
            d.client_tls_timeout,
        ),
        idle_timeout: c.secs(
            "limits.idle_timeout_secs",
            l.idle_timeout_secs.as_ref(),
            1,
            RANGE_DAYS_30,
            d.idle_timeout,
        ),
        threads: count(c.range(
            "limits.threads",
            l.threads.as_ref(),
            0,
            1024,
            default(d.threads),
        )),
    }
}

/// Every `[[enclave]]` with `[collateral]`'s per-entry defaults, then the patterns two of
/// them name; and whether any entry judges under Intel's early TCB data (it is fetched then).
fn enclaves(
    c: &mut Checker<'_>,
    raw: &[super::enclave::RawEnclave],
    collateral: &RawCollateral,
    max_collateral_age: Option<u64>,
) -> (Vec<EnclaveConfig>, bool) {
    let mut checked: Vec<Option<EnclaveConfig>> =
        raw.iter().map(|e| super::enclave::check(c, e)).collect();
    for e in checked.iter_mut().flatten() {
        e.policy.max_collateral_age_secs = max_collateral_age;
    }
    let fetch_early = super::enclave::collateral_early(
        c,
        (
            collateral.early.as_ref(),
            collateral.min_tcb_evaluation_data_number.as_ref(),
        ),
        raw,
        &mut checked,
    );
    let enclaves: Vec<EnclaveConfig> = checked.into_iter().flatten().collect();
    // Most specific entry wins; two entries naming the same pattern would tie. One hash
    // lookup per pattern; the first place is located only when a duplicate is found.
    let mut seen: HashMap<HostPattern, usize> = HashMap::new();
    for h in raw.iter().flat_map(|e| e.hosts.get_ref()) {
        let Ok(pattern) = HostPattern::parse(h.get_ref()) else {
            continue;
        };
        match seen.get(&pattern) {
            Some(first) => {
                let first = c.at(*first);
                c.error(
                    h,
                    format!("{pattern} is already named at {first}: two entries for one host and port at the same specificity"),
                );
            }
            None => {
                seen.insert(pattern, h.span().start);
            }
        }
    }
    (enclaves, fetch_early)
}

/// Every `[[route]]`: its upstream must be an enclave host.
fn routes(c: &mut Checker<'_>, raw: &[RawRoute], enclaves: &[EnclaveConfig]) -> Vec<RouteConfig> {
    let index = HostIndex::new(enclaves);
    let mut routes = Vec::new();
    for r in raw {
        let listen = c.parse(&r.listen, |v| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("route listen `{v}`: {e}"))
        });
        let target = c.parse(&r.upstream, |v| {
            let rest = v
                .strip_prefix("https://")
                .ok_or_else(|| format!("route upstream `{v}` must be https://host[:port]"))?;
            Authority::parse(rest.trim_end_matches('/'), Some(443))
        });
        if let (Some(listen), Some(upstream)) = (listen, target) {
            if index.find(&upstream).is_some() {
                routes.push(RouteConfig { listen, upstream });
            } else {
                c.error(
                    &r.upstream,
                    format!("route upstream {upstream} matches no [[enclave]] hosts"),
                );
            }
        }
    }
    routes
}
