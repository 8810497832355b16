//! Configuration: the TOML of DESIGN.md, read into raw structs (unknown keys refused)
//! and validated into typed values. Every error names its file, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::collateral::fetch::RefreshPolicy;
use crate::ids::{Fmspc, IsvProdId, IsvSvn, MrEnclave, MrSigner};
use crate::policy::EnclavePolicy;
use crate::ratls::BindingMode;
use crate::tcb::TcbStatus;

/// Default proxy listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3129";
/// Default time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default maximum age of a cached verdict.
pub const DEFAULT_VERDICT_MAX_AGE: Duration = Duration::from_secs(3600);

/// One configuration problem with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `file:line:col` or just the file.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// All problems found in one configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// What to do with destinations that are not enclave hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// Plain CONNECT tunnel and plain HTTP forwarding.
    Passthrough,
    /// 403.
    Deny,
}

/// Where the trust anchor comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustRoot {
    /// The compiled-in Intel SGX Root CA.
    Builtin,
    /// A PEM file (test PKI).
    Pem(PathBuf),
}

/// Where collateral comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollateralSpec {
    /// Intel PCS v4.
    Pcs,
    /// A PCCS (or PCS) base URL.
    Url(String),
    /// One collateral JSON bundle.
    File(PathBuf),
    /// A directory of bundles, chosen by FMSPC.
    Dir(PathBuf),
}

/// A host pattern: `host[:port]` or `*.suffix[:port]`; the port defaults to 443.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-case host, or the suffix after `*.`.
    pub host: String,
    /// True for `*.suffix`: any host ending in `.suffix`.
    pub wildcard: bool,
    /// Port.
    pub port: u16,
}

impl HostPattern {
    /// Parses `host[:port]`, `*.suffix[:port]`, `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(text, 443)?;
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, host),
        };
        if host.is_empty() || host.contains('*') {
            return Err(format!(
                "`{text}`: a wildcard is only allowed as a leading `*.`"
            ));
        }
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }

    /// True if `host:port` (host lower-cased) matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        port == self.port
            && if self.wildcard {
                host.strip_suffix(self.host.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            } else {
                host == self.host
            }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-case host without brackets and a port.
pub fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{text}`: expected `:port` after `]`"))?,
                ),
            ),
        }
    } else if text.matches(':').count() > 1 {
        return Err(format!(
            "`{text}`: IPv6 addresses must be in brackets, like [::1]:443"
        ));
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}`: missing host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.*_:".contains(c))
    {
        return Err(format!("`{text}`: invalid host name"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{text}`: invalid port"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// One `[[enclave]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclaveConfig {
    /// Destinations this policy covers.
    pub hosts: Vec<HostPattern>,
    /// The policy.
    pub policy: EnclavePolicy,
    /// Binding rule.
    pub binding: BindingMode,
    /// Dial here instead of resolving the host (`host:port`).
    pub connect_to: Option<String>,
}

/// One `[[route]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Plain-HTTP listener.
    pub listen: SocketAddr,
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Index of the `[[enclave]]` that covers the upstream.
    pub enclave: usize,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener, if on.
    pub admin_listen: Option<SocketAddr>,
    /// Non-enclave destinations.
    pub unmatched: Unmatched,
    /// Local CA directory.
    pub ca_dir: PathBuf,
    /// Trust anchor.
    pub trust_root: TrustRoot,
    /// Collateral source.
    pub collateral: CollateralSpec,
    /// PCS API key (sent as `Ocp-Apim-Subscription-Key`; never logged).
    pub api_key: Option<String>,
    /// A PEM CA for a PCCS's TLS, instead of the WebPKI roots.
    pub pccs_ca: Option<PathBuf>,
    /// When fetched collateral is refreshed.
    pub refresh: RefreshPolicy,
    /// FMSPCs whose collateral is fetched at start-up.
    pub prefetch: Vec<Fmspc>,
    /// Enclave policies.
    pub enclaves: Vec<EnclaveConfig>,
    /// Sidecar routes.
    pub routes: Vec<RouteConfig>,
    /// Maximum age of a cached verdict.
    pub verdict_max_age: Duration,
    /// Add a `Ratls-Attestation` header to responses relayed from enclaves.
    pub attestation_header: bool,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Resource limits.
    pub limits: Limits,
}

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

/// Resource limits with their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A client must send its request head within this time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// Larger request heads get 431.
    pub max_header_bytes: usize,
    /// Client connections beyond this are answered 503 at once and closed.
    pub max_connections: usize,
    /// Dialing an enclave plus the attested handshake (504 after it).
    pub connect_timeout: Duration,
    /// The client's TLS handshake inside an intercepted CONNECT.
    pub client_tls_timeout: Duration,
    /// A client connection or tunnel with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            max_header_bytes: 32 * 1024,
            max_connections: 4096,
            connect_timeout: Duration::from_secs(10),
            client_tls_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
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

/// The default CA directory: `$XDG_DATA_HOME/ratls-proxy`, else `~/.local/share/ratls-proxy`.
pub fn default_ca_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ratls-proxy"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local/share/ratls-proxy"),
    }
}

impl Config {
    /// The configuration with every default (what `ratls-proxy` alone runs).
    pub fn defaults() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 3129))),
            unmatched: Unmatched::Passthrough,
            ca_dir: default_ca_dir(),
            trust_root: TrustRoot::Builtin,
            collateral: CollateralSpec::Pcs,
            api_key: None,
            pccs_ca: None,
            refresh: RefreshPolicy::default(),
            prefetch: Vec::new(),
            enclaves: Vec::new(),
            routes: Vec::new(),
            verdict_max_age: DEFAULT_VERDICT_MAX_AGE,
            attestation_header: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            limits: Limits::default(),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                location: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &path.display().to_string(), &base)
    }

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
            Some(s) if s.get_ref() == "pcs" => CollateralSpec::Pcs,
            Some(s)
                if s.get_ref().starts_with("https://") || s.get_ref().starts_with("http://") =>
            {
                CollateralSpec::Url(s.get_ref().clone())
            }
            Some(s) => {
                let p = resolve_path(s.get_ref(), base);
                if p.is_dir() {
                    CollateralSpec::Dir(p)
                } else {
                    if !p.is_file() {
                        c.error(
                            s,
                            format!(
                                "collateral.source `{}` is neither a file nor a directory",
                                p.display()
                            ),
                        );
                    }
                    CollateralSpec::File(p)
                }
            }
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
                split_host_port(rest.trim_end_matches('/'), 443)
            });
            if let (Some(listen), Some((host, port))) = (listen, target) {
                match enclaves
                    .iter()
                    .position(|e| e.hosts.iter().any(|h| h.matches(&host, port)))
                {
                    Some(enclave) => routes.push(RouteConfig {
                        listen,
                        host,
                        port,
                        enclave,
                    }),
                    None => c.error(
                        &r.upstream,
                        format!("route upstream {host}:{port} matches no [[enclave]] hosts"),
                    ),
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
                    trust_root,
                    collateral,
                    api_key: raw.collateral.api_key,
                    pccs_ca,
                    refresh,
                    prefetch,
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

    /// The enclave entry covering `host:port`, if any (first match wins).
    pub fn enclave_for(&self, host: &str, port: u16) -> Option<(usize, &EnclaveConfig)> {
        self.enclaves
            .iter()
            .enumerate()
            .find(|(_, e)| e.hosts.iter().any(|h| h.matches(host, port)))
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
            if v.rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                Ok(v.clone())
            } else {
                Err(format!("connect_to `{v}` must be host:port"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::from_toml("", "x", Path::new(".")).expect("empty config is valid");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.admin_listen.map(|a| a.to_string()).as_deref(),
            Some(DEFAULT_ADMIN_LISTEN)
        );
        assert_eq!(c.unmatched, Unmatched::Passthrough);
        assert_eq!(c.collateral, CollateralSpec::Pcs);
        assert!(c.enclaves.is_empty());
        assert_eq!(c, Config::defaults());
    }

    #[test]
    fn host_patterns_match_exactly_or_by_suffix() {
        let exact = HostPattern::parse("KMS.example.com").expect("ok");
        assert!(exact.matches("kms.example.com", 443));
        assert!(!exact.matches("kms.example.com", 8443));
        let wild = HostPattern::parse("*.enclave.example.com:8443").expect("ok");
        assert!(wild.matches("a.enclave.example.com", 8443));
        assert!(wild.matches("a.b.enclave.example.com", 8443));
        assert!(!wild.matches("enclave.example.com", 8443));
        assert!(!wild.matches("xenclave.example.com", 8443));
        let v6 = HostPattern::parse("[::1]:9000").expect("ok");
        assert!(v6.matches("::1", 9000));
        for bad in ["", "a*.b", "host:0", "host:99999", "::1", "[::1", "ho st"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let text = "listen = \"127.0.0.1:3128\"\n\n[[enclave]]\nhosts = [\"a.example\"]\nmrenclave = [\"zz\"]\n";
        let err = Config::from_toml(text, "p.toml", Path::new(".")).expect_err("invalid");
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].location, "p.toml:5:14");
        assert!(
            err.0[0].message.contains("MRENCLAVE"),
            "{}",
            err.0[0].message
        );

        let err =
            Config::from_toml("bogus = 1\n", "p.toml", Path::new(".")).expect_err("unknown key");
        assert!(err.0[0].location.starts_with("p.toml:1:"), "{}", err.0[0]);
        assert!(err.0[0].message.contains("unknown field"), "{}", err.0[0]);
    }

    #[test]
    fn every_enclave_error_is_reported_at_once() {
        let text = "[[enclave]]\nhosts = [\"*x.example\"]\ntcb_status = [\"Revoked\", \"Fine\"]\nbinding = \"maybe\"\n\n[[route]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"https://nowhere.example\"\n";
        let err = Config::from_toml(text, "p.toml", Path::new(".")).expect_err("invalid");
        let all = err.to_string();
        assert!(all.contains("p.toml:2:"), "{all}");
        assert!(all.contains("mrenclave or mrsigner"), "{all}");
        assert!(all.contains("never acceptable"), "{all}");
        assert!(all.contains("unknown TCB status"), "{all}");
        assert!(all.contains("unknown binding"), "{all}");
        assert!(all.contains("matches no [[enclave]]"), "{all}");
    }
}
