//! TOML text to [`Config`]: raw structs that refuse unknown keys, then validation of every
//! value with its file:line:col.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    default_ca_dir, Config, ConfigError, ConfigErrors, EnclaveConfig, Limits, RouteConfig,
    Unmatched, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_VERDICT_MAX_AGE,
};
use crate::addr::{Authority, HostPattern};
use crate::appraise::policy::EnclavePolicy;
use crate::dcap::ids::{Fmspc, IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::dcap::tcb::TcbStatus;
use crate::ratls::BindingMode;
use crate::source::fetch::RefreshPolicy;
use crate::source::{CollateralSpec, SourceConfig, TrustRoot};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    unmatched: Option<Spanned<String>>,
    verdict_max_age_secs: Option<Spanned<u64>>,
    attestation_header: Option<bool>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    ca: RawCa,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    collateral: RawCollateral,
    #[serde(default)]
    enclave: Vec<RawEnclave>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    header_read_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    connect_timeout_secs: Option<u64>,
    client_tls_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
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
    refresh_interval_secs: Option<u64>,
    refresh_margin_secs: Option<u64>,
    #[serde(default)]
    prefetch: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnclave {
    hosts: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    mrenclave: Vec<Spanned<String>>,
    #[serde(default)]
    mrsigner: Vec<Spanned<String>>,
    isv_prod_id: Option<u16>,
    min_isv_svn: Option<u16>,
    #[serde(default)]
    allow_debug: bool,
    tcb_status: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allowed_advisories: Vec<String>,
    binding: Option<Spanned<String>>,
    connect_to: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    listen: Spanned<String>,
    upstream: Spanned<String>,
}

/// Collects errors with locations while validating.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count().saturating_add(1);
        let col = before
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            .saturating_add(1);
        format!("{}:{line}:{col}", self.file)
    }

    fn error<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: self.at(spanned.span().start),
            message: message.into(),
        });
    }

    fn parse<T, U, E: std::fmt::Display>(
        &mut self,
        s: &Spanned<T>,
        f: impl FnOnce(&T) -> Result<U, E>,
    ) -> Option<U> {
        match f(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(s, e.to_string());
                None
            }
        }
    }
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

impl Config {
    /// Validates TOML text; `file` names it in errors, `base` anchors relative paths.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Self, ConfigErrors> {
        let mut c = Checker {
            file,
            text,
            errors: Vec::new(),
        };
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
        let verdict_max_age = raw
            .verdict_max_age_secs
            .as_ref()
            .map_or(DEFAULT_VERDICT_MAX_AGE, |s| {
                Duration::from_secs(*s.get_ref())
            });
        let ca_dir = raw
            .ca
            .dir
            .as_ref()
            .map_or_else(default_ca_dir, |d| resolve_path(d.get_ref(), base));
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
            interval: raw
                .collateral
                .refresh_interval_secs
                .map_or(defaults.interval, Duration::from_secs),
            margin: raw
                .collateral
                .refresh_margin_secs
                .map_or(defaults.margin, Duration::from_secs),
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
            header_read_timeout: l
                .header_read_timeout_secs
                .map_or(d.header_read_timeout, Duration::from_secs),
            // hyper needs room for at least a minimal request head.
            max_header_bytes: l
                .max_header_bytes
                .map_or(d.max_header_bytes, |v| v.max(1024)),
            max_connections: l
                .max_connections
                .map_or(d.max_connections, |v| v.clamp(1, 1_000_000)),
            connect_timeout: l
                .connect_timeout_secs
                .map_or(d.connect_timeout, Duration::from_secs),
            client_tls_timeout: l
                .client_tls_timeout_secs
                .map_or(d.client_tls_timeout, Duration::from_secs),
            idle_timeout: l
                .idle_timeout_secs
                .map_or(d.idle_timeout, |v| Duration::from_secs(v.max(1))),
        };

        let mut enclaves = Vec::new();
        for e in &raw.enclave {
            enclaves.push(check_enclave(&mut c, e));
        }
        let enclaves: Vec<EnclaveConfig> = enclaves.into_iter().flatten().collect();

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

        match (listen, admin_listen, unmatched) {
            (Some(listen), Some(admin_listen), Some(unmatched)) if c.errors.is_empty() => {
                Ok(Self {
                    listen,
                    admin_listen,
                    unmatched,
                    ca_dir,
                    source: SourceConfig {
                        trust_root,
                        collateral,
                        api_key: raw.collateral.api_key,
                        pccs_ca,
                        refresh,
                        prefetch,
                    },
                    enclaves,
                    routes,
                    verdict_max_age,
                    attestation_header: raw.attestation_header.unwrap_or(false),
                    shutdown_grace: raw
                        .shutdown_grace_secs
                        .map_or(DEFAULT_SHUTDOWN_GRACE, Duration::from_secs),
                    limits,
                })
            }
            _ => Err(ConfigErrors(c.errors)),
        }
    }
}

fn check_enclave(c: &mut Checker<'_>, e: &RawEnclave) -> Option<EnclaveConfig> {
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
    if e.mrenclave.is_empty() && e.mrsigner.is_empty() {
        c.error(
            &e.hosts,
            "an [[enclave]] needs at least one of mrenclave or mrsigner",
        );
    }
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
        Some(list) => list
            .iter()
            .filter_map(|s| {
                c.parse(s, |v| match v.parse::<TcbStatus>() {
                    Ok(TcbStatus::Revoked) => {
                        Err("tcb_status Revoked: a revoked TCB is never acceptable".to_owned())
                    }
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
            Authority::parse(v, None).map_err(|e| format!("connect_to must be host:port: {e}"))
        })
    });
    if c.errors.len() != before {
        return None;
    }
    Some(EnclaveConfig {
        hosts,
        policy: EnclavePolicy {
            mrenclave,
            mrsigner,
            isv_prod_id: e.isv_prod_id.map(IsvProdId),
            min_isv_svn: e.min_isv_svn.map(IsvSvn),
            allow_debug: e.allow_debug,
            tcb_statuses,
            allowed_advisories: e.allowed_advisories.clone(),
        },
        binding: binding?,
        connect_to,
    })
}
