//! Configuration: the TOML of DESIGN.md, read into raw structs (unknown keys refused)
//! and validated into typed values (`parse.rs`). Every error names its file, line and
//! column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod checker;
mod dstack;
mod enclave;
mod index;
mod nitro;
mod parse;
mod snp;

pub(crate) use self::index::HostIndex;

use crate::addr::{Authority, HostPattern};
use crate::appraise::nitro_policy::NitroPolicy;
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::snp_policy::SnpPolicy;
use crate::ratls::BindingMode;
use crate::source::SourceConfig;

/// Default time in-flight requests get to finish on shutdown.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default maximum age of a cached verdict.
pub(crate) const DEFAULT_VERDICT_MAX_AGE: Duration = Duration::from_secs(3600);

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

/// One `[[enclave]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclaveConfig {
    /// Destinations this policy covers.
    pub hosts: Vec<HostPattern>,
    /// The policy.
    pub policy: EnclavePolicy,
    /// Binding rule.
    pub binding: BindingMode,
    /// Dial here instead of resolving the host.
    pub connect_to: Option<Authority>,
    /// `tee = "snp"`: the SEV-SNP policy. Such an entry refuses every Intel quote
    /// (`tee_mismatch`), whatever `policy` says.
    pub snp: Option<SnpPolicy>,
    /// `tee = "nitro"`: the AWS Nitro policy. Such an entry's Intel `policy` accepts no TCB
    /// status, so it refuses every Intel quote until the proxy appraises Nitro evidence.
    pub nitro: Option<NitroPolicy>,
}

/// One `[[route]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Plain-HTTP listener.
    pub listen: SocketAddr,
    /// The enclave destination (it matches an `[[enclave]]`).
    pub upstream: Authority,
}

/// How much a refusal tells the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalDetails {
    /// Status, `Proxy-Status`, JSON code and the reasons.
    Full,
    /// Status, `Proxy-Status` and the JSON code only; reasons go to the log.
    Code,
}

/// Whether a refused CONNECT to an enclave host is answered inside the tunnel: 200, the
/// client's TLS with a leaf minted for the host, and a refusal page for every request.
/// Browsers never show the body of a failed CONNECT, only a generic tunnel error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalPage {
    /// For browsers only: the CONNECT's `User-Agent` starts with `Mozilla/`.
    Browsers,
    /// For every client.
    Always,
    /// For none: the CONNECT itself gets the refusal.
    Never,
}

/// Which destinations `ratls_requests_total` names in its `host` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsHostLabels {
    /// Enclave hosts only; every other destination (passthrough, denied, malformed) is `-`,
    /// so a local user reading metrics does not learn where others went.
    Enclaves,
    /// Every destination (capped at 1000 label values).
    All,
}

/// `[audit]`: one hash-chained JSON line per verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The file (appended to, never truncated; reopened on SIGUSR1).
    pub path: PathBuf,
    /// Refuse connections rather than serve unaudited when a write fails.
    pub required: bool,
    /// The HMAC key (a file only the proxy's user may read): an HMAC chain nobody without
    /// it can forge.
    pub key_file: Option<PathBuf>,
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
    /// Where the proxy keeps its state (the collateral high-water marks); the CA directory
    /// unless `state_dir` says otherwise.
    pub state_dir: PathBuf,
    /// Trust anchor and collateral source.
    pub source: SourceConfig,
    /// Enclave policies.
    pub enclaves: Vec<EnclaveConfig>,
    /// Sidecar routes.
    pub routes: Vec<RouteConfig>,
    /// Maximum age of a cached verdict.
    pub verdict_max_age: Duration,
    /// Add a `Ratls-Attestation` header to responses relayed from enclaves.
    pub attestation_header: bool,
    /// Let passthrough and plain HTTP reach loopback, link-local and the proxy's own
    /// addresses (development only).
    pub allow_local_destinations: bool,
    /// How much refusals tell the client.
    pub refusal_details: RefusalDetails,
    /// Who gets a refused CONNECT answered inside the tunnel.
    pub refusal_page: RefusalPage,
    /// A file holding the bearer token `POST /reload`, `GET /metrics` and `/readyz`'s
    /// reasons require.
    pub admin_token_file: Option<PathBuf>,
    /// Which destinations metrics name.
    pub metrics_host_labels: MetricsHostLabels,
    /// The audit trail, if on.
    pub audit: Option<AuditConfig>,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Resource limits.
    pub limits: Limits,
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
    /// Upstream connections (attested and passthrough alike) open at once; beyond it a
    /// request waits up to `connect_timeout`, then gets 503 `upstream_capacity`.
    pub max_upstream_connections: usize,
    /// Dialing an enclave plus the attested handshake (504 after it).
    pub connect_timeout: Duration,
    /// The client's TLS handshake inside an intercepted CONNECT.
    pub client_tls_timeout: Duration,
    /// A client connection or tunnel with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Threads serving client connections, each with its own share of them and of the
    /// upstream pool; 0: one per CPU the process may use.
    pub threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            max_header_bytes: 32 * 1024,
            max_connections: 4096,
            max_upstream_connections: 1024,
            connect_timeout: Duration::from_secs(10),
            client_tls_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            threads: 0,
        }
    }
}

/// The default CA directory: `$XDG_DATA_HOME/ratls-proxy`, else `~/.local/share/ratls-proxy`.
pub(crate) fn default_ca_dir() -> PathBuf {
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
            state_dir: default_ca_dir(),
            source: SourceConfig::default(),
            enclaves: Vec::new(),
            routes: Vec::new(),
            verdict_max_age: DEFAULT_VERDICT_MAX_AGE,
            attestation_header: false,
            allow_local_destinations: false,
            refusal_details: RefusalDetails::Full,
            refusal_page: RefusalPage::Browsers,
            admin_token_file: None,
            metrics_host_labels: MetricsHostLabels::Enclaves,
            audit: None,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::from_toml("", "x", Path::new(".")).expect("empty config is valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:3128");
        assert_eq!(
            c.admin_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:3129")
        );
        assert_eq!(c.unmatched, Unmatched::Passthrough);
        assert_eq!(c.source.collateral, crate::source::CollateralSpec::Pcs);
        assert!(c.enclaves.is_empty());
        assert_eq!(c, Config::defaults());
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
        let text = "[[enclave]]\nhosts = [\"*x.example\"]\ntcb_status = [\"Revoked\", \"Fine\", \"TDRelaunchAdvised\"]\nbinding = \"maybe\"\n\n[[route]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"https://nowhere.example\"\n";
        let err = Config::from_toml(text, "p.toml", Path::new(".")).expect_err("invalid");
        let all = err.to_string();
        assert!(all.contains("p.toml:2:"), "{all}");
        assert!(all.contains("mrenclave or mrsigner"), "{all}");
        assert!(all.contains("never acceptable"), "{all}");
        assert!(all.contains("unknown TCB status"), "{all}");
        assert!(
            all.contains("applies to tee = \"tdx\" entries only"),
            "{all}"
        );
        assert!(all.contains("unknown binding"), "{all}");
        assert!(all.contains("matches no [[enclave]]"), "{all}");
    }

    #[test]
    fn a_duplicate_is_named_at_both_places_and_routes_find_wildcards() {
        let m = format!("mrenclave = [\"{}\"]\n", "e1".repeat(32));
        let text = format!(
            "[[enclave]]\nhosts = [\"*.apps.test\", \"kms.test\"]\n{m}\n[[enclave]]\nhosts = [\"KMS.test:443\", \"*.apps.test:8443\"]\n{m}\n[[route]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"https://x.apps.test:8443\"\n"
        );
        let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err("duplicate");
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].location, "p.toml:6:10");
        assert!(
            err.0[0]
                .message
                .starts_with("kms.test:443 is already named at p.toml:2:25:"),
            "{err}"
        );
        let ok = text.replace("KMS.test:443", "kms.test:8443");
        let c = Config::from_toml(&ok, "p.toml", Path::new(".")).expect("valid");
        assert_eq!(c.routes.len(), 1);
        let bad = ok.replace("https://x.apps.test:8443", "https://apps.test:8443");
        let err = Config::from_toml(&bad, "p.toml", Path::new(".")).expect_err("no entry");
        assert!(err.to_string().contains("matches no [[enclave]]"), "{err}");
    }

    #[test]
    fn threads_default_to_one_per_cpu_and_are_bounded() {
        assert_eq!(Config::defaults().limits.threads, 0);
        let c =
            Config::from_toml("[limits]\nthreads = 3\n", "p.toml", Path::new(".")).expect("valid");
        assert_eq!(c.limits.threads, 3);
        for bad in ["-1", "1025", "\"2\""] {
            let text = format!("[limits]\nthreads = {bad}\n");
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(bad);
            assert!(
                err.0[0].location.starts_with("p.toml:2:"),
                "{bad}: {}",
                err.0[0]
            );
        }
    }

    #[test]
    fn refusal_page_parses_and_reports_where() {
        for (v, want) in [
            ("browsers", RefusalPage::Browsers),
            ("always", RefusalPage::Always),
            ("never", RefusalPage::Never),
        ] {
            let text = format!("refusal_page = \"{v}\"\n");
            let c = Config::from_toml(&text, "p.toml", Path::new(".")).expect("valid");
            assert_eq!(c.refusal_page, want);
        }
        let err = Config::from_toml("\nrefusal_page = \"sometimes\"\n", "p.toml", Path::new("."))
            .expect_err("invalid");
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].location, "p.toml:2:16");
        assert!(err.0[0]
            .message
            .contains("\"browsers\", \"always\" or \"never\""));
    }
}
