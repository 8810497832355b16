//! TOML text to [`Config`]: raw structs that refuse unknown keys, then validation of every
//! value with its file:line:col.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{
    default_ca_dir, AuditConfig, Config, ConfigError, ConfigErrors, EnclaveConfig, Limits,
    MetricsHostLabels, RefusalDetails, RefusalPage, RouteConfig, Unmatched, DEFAULT_ADMIN_LISTEN,
    DEFAULT_LISTEN, DEFAULT_SHUTDOWN_GRACE, DEFAULT_VERDICT_MAX_AGE,
};
use crate::addr::{Authority, HostPattern};
use crate::dcap::ids::Fmspc;
use crate::source::fetch::RefreshPolicy;
use crate::source::{CollateralSpec, SourceConfig, TrustRoot};

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

        let listen = match &raw.listen {
            Some(s) => c.parse(s, |v| {
                v.parse::<SocketAddr>()
                    .map_err(|e| format!("listen `{v}`: {e}"))
            }),
            None => DEFAULT_LISTEN.parse().ok(),
        };
        let admin_listen = match &raw.admin_listen {
            Some(s) if s.get_ref().is_empty() => Some(None),
            Some(s) => c.parse(s, |v| {
                v.parse::<SocketAddr>()
                    .map(Some)
                    .map_err(|e| format!("admin_listen `{v}`: {e}"))
            }),
            None => Some(DEFAULT_ADMIN_LISTEN.parse().ok()),
        };
        let unmatched = match &raw.unmatched {
            None => Some(Unmatched::Passthrough),
            Some(s) => c.parse(s, |v| match v.as_str() {
                "passthrough" => Ok(Unmatched::Passthrough),
                "deny" => Ok(Unmatched::Deny),
                other => Err(format!(
                    "unmatched = `{other}`: expected \"passthrough\" or \"deny\""
                )),
            }),
        };
        let verdict_max_age = c.secs(
            "verdict_max_age_secs",
            raw.verdict_max_age_secs.as_ref(),
            1,
            RANGE_DAYS_30,
            DEFAULT_VERDICT_MAX_AGE,
        );
        let shutdown_grace = c.secs(
            "shutdown_grace_secs",
            raw.shutdown_grace_secs.as_ref(),
            0,
            RANGE_HOUR,
            DEFAULT_SHUTDOWN_GRACE,
        );
        let refusal_details = match &raw.refusal_details {
            None => Some(RefusalDetails::Full),
            Some(s) => c.parse(s, |v| match v.as_str() {
                "full" => Ok(RefusalDetails::Full),
                "code" => Ok(RefusalDetails::Code),
                other => Err(format!(
                    "refusal_details = `{other}`: expected \"full\" or \"code\""
                )),
            }),
        };
        let refusal_page = raw.refusal_page.as_ref().and_then(|s| {
            c.parse(s, |v| match v.as_str() {
                "browsers" => Ok(RefusalPage::Browsers),
                "always" => Ok(RefusalPage::Always),
                "never" => Ok(RefusalPage::Never),
                other => Err(format!(
                    "refusal_page = `{other}`: expected \"browsers\", \"always\" or \"never\""
                )),
            })
        });
        let metrics_host_labels = raw.metrics_host_labels.as_ref().and_then(|s| {
            c.parse(s, |v| match v.as_str() {
                "enclaves" => Ok(MetricsHostLabels::Enclaves),
                "all" => Ok(MetricsHostLabels::All),
                other => Err(format!(
                    "metrics_host_labels = `{other}`: expected \"enclaves\" or \"all\""
                )),
            })
        });
        let admin_token_file = raw.admin_token_file.as_ref().map(|s| {
            let p = resolve_path(s.get_ref(), base);
            if !p.is_file() {
                c.error(
                    s,
                    format!("admin_token_file `{}` is not a file", p.display()),
                );
            }
            p
        });
        let audit_key_file = raw.audit.key_file.as_ref().map(|s| {
            let p = resolve_path(s.get_ref(), base);
            if !p.is_file() {
                c.error(s, format!("audit.key_file `{}` is not a file", p.display()));
            }
            if raw.audit.path.is_none() {
                c.error(
                    s,
                    "audit.key_file without audit.path: there is no trail to key",
                );
            }
            p
        });
        let ca_dir = raw
            .ca
            .dir
            .as_ref()
            .map_or_else(default_ca_dir, |d| resolve_path(d.get_ref(), base));
        let state_dir = raw
            .state_dir
            .as_ref()
            .map_or_else(|| ca_dir.clone(), |d| resolve_path(d.get_ref(), base));
        let trust_root = match &raw.trust.root_ca {
            None => TrustRoot::Builtin,
            Some(s) if s.get_ref() == "builtin" => TrustRoot::Builtin,
            Some(s) => {
                let p = resolve_path(s.get_ref(), base);
                if !p.is_file() {
                    c.error(s, format!("trust.root_ca `{}` is not a file", p.display()));
                }
                TrustRoot::Pem(p)
            }
        };
        let collateral = match &raw.collateral.source {
            None => CollateralSpec::Pcs,
            Some(s) => CollateralSpec::parse(s.get_ref(), |p| resolve_path(p, base))
                .unwrap_or_else(|p| {
                    c.error(
                        s,
                        format!(
                            "collateral.source `{}` is neither a file nor a directory",
                            p.display()
                        ),
                    );
                    CollateralSpec::File(p)
                }),
        };

        let pccs_ca = raw.collateral.pccs_ca.as_ref().map(|s| {
            let p = resolve_path(s.get_ref(), base);
            if !p.is_file() {
                c.error(
                    s,
                    format!("collateral.pccs_ca `{}` is not a file", p.display()),
                );
            }
            p
        });
        let defaults = RefreshPolicy::default();
        let refresh = RefreshPolicy {
            interval: c.secs(
                "collateral.refresh_interval_secs",
                raw.collateral.refresh_interval_secs.as_ref(),
                60,
                RANGE_DAYS_30,
                defaults.interval,
            ),
            margin: c.secs(
                "collateral.refresh_margin_secs",
                raw.collateral.refresh_margin_secs.as_ref(),
                0,
                RANGE_DAYS_30,
                defaults.margin,
            ),
            ..defaults
        };
        let prefetch: Vec<Fmspc> = raw
            .collateral
            .prefetch
            .iter()
            .filter_map(|f| c.parse(f, |v| Fmspc::from_hex(v)))
            .collect();

        let d = Limits::default();
        let l = &raw.limits;
        let limits = Limits {
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
                u64::try_from(d.max_header_bytes).unwrap_or(u64::MAX),
            )),
            max_connections: count(c.range(
                "limits.max_connections",
                l.max_connections.as_ref(),
                1,
                1_000_000,
                u64::try_from(d.max_connections).unwrap_or(u64::MAX),
            )),
            max_upstream_connections: count(c.range(
                "limits.max_upstream_connections",
                l.max_upstream_connections.as_ref(),
                1,
                1_000_000,
                u64::try_from(d.max_upstream_connections).unwrap_or(u64::MAX),
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
                u64::try_from(d.threads).unwrap_or(u64::MAX),
            )),
        };

        let mut enclaves = Vec::new();
        for e in &raw.enclave {
            enclaves.push(super::enclave::check(&mut c, e));
        }
        let fetch_early = super::enclave::collateral_early(
            &mut c,
            (
                raw.collateral.early.as_ref(),
                raw.collateral.min_tcb_evaluation_data_number.as_ref(),
            ),
            &raw.enclave,
            &mut enclaves,
        );
        let max_collateral_age = raw.collateral.max_age_secs.as_ref().map(|s| {
            c.range(
                "collateral.max_age_secs",
                Some(s),
                3600,
                10 * 365 * 86_400,
                0,
            )
        });
        let enclaves: Vec<EnclaveConfig> = enclaves
            .into_iter()
            .flatten()
            .map(|mut e| {
                e.policy.max_collateral_age_secs = max_collateral_age;
                e
            })
            .collect();
        // Most specific entry wins; two entries naming the same pattern would tie.
        let mut seen: Vec<(HostPattern, String)> = Vec::new();
        for h in raw.enclave.iter().flat_map(|e| e.hosts.get_ref()) {
            let Ok(pattern) = HostPattern::parse(h.get_ref()) else {
                continue;
            };
            let here = c.at(h.span().start);
            match seen.iter().find(|(p, _)| *p == pattern) {
                Some((_, first)) => {
                    let first = first.clone();
                    c.error(
                        h,
                        format!("{pattern} is already named at {first}: two entries for one host and port at the same specificity"),
                    );
                }
                None => seen.push((pattern, here)),
            }
        }

        let mut routes = Vec::new();
        for r in &raw.route {
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
                if enclaves
                    .iter()
                    .any(|e| e.hosts.iter().any(|h| h.matches(&upstream)))
                {
                    routes.push(RouteConfig { listen, upstream });
                } else {
                    c.error(
                        &r.upstream,
                        format!("route upstream {upstream} matches no [[enclave]] hosts"),
                    );
                }
            }
        }

        match (listen, admin_listen, unmatched, refusal_details) {
            (Some(listen), Some(admin_listen), Some(unmatched), Some(refusal_details))
                if c.errors.is_empty() =>
            {
                Ok(Self {
                    listen,
                    admin_listen,
                    unmatched,
                    ca_dir,
                    state_dir,
                    source: SourceConfig {
                        trust_root,
                        collateral,
                        api_key: raw.collateral.api_key,
                        pccs_ca,
                        refresh,
                        prefetch,
                        early: fetch_early,
                    },
                    enclaves,
                    routes,
                    verdict_max_age,
                    attestation_header: raw.attestation_header.unwrap_or(false),
                    allow_local_destinations: raw.allow_local_destinations.unwrap_or(false),
                    refusal_details,
                    // An invalid value was reported above (and `c.errors` is not empty).
                    refusal_page: refusal_page.unwrap_or(RefusalPage::Browsers),
                    admin_token_file,
                    // An invalid value was reported above (and `c.errors` is not empty).
                    metrics_host_labels: metrics_host_labels.unwrap_or(MetricsHostLabels::Enclaves),
                    audit: raw.audit.path.as_ref().map(|p| AuditConfig {
                        path: resolve_path(p.get_ref(), base),
                        required: raw.audit.required.unwrap_or(false),
                        key_file: audit_key_file,
                    }),
                    shutdown_grace,
                    limits,
                })
            }
            _ => Err(ConfigErrors(c.errors)),
        }
    }
}
