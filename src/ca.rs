//! The local CA that signs the leaves ratls-proxy presents to clients on intercepted
//! connections: created on first run (key file mode 0600), leaves minted per host and cached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::dcap::time::UnixTime;

/// CA certificate file name.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// CA key file name (mode 0600).
pub(crate) const CA_KEY_FILE: &str = "ca-key.pem";
/// How long a minted leaf is valid.
pub(crate) const LEAF_VALIDITY: Duration = Duration::days(7);

/// A CA problem.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// File access.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Key or certificate generation or parsing.
    #[error("{0}")]
    Cert(#[from] rcgen::Error),
    /// TLS configuration.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The key file is readable by others.
    #[error("{0} is readable by group or others (mode {1:o}); run chmod 600")]
    KeyMode(PathBuf, u32),
}

fn ca_params(created: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ratls-proxy local CA");
    dn.push(DnType::OrganizationName, "ratls-proxy");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = created - Duration::days(1);
    p.not_after = created + Duration::days(3650);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

/// The local CA.
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaves: moka::sync::Cache<(String, Vec<Vec<u8>>), Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it (and `dir`) on first run.
    pub fn load_or_create(dir: &Path, now: UnixTime) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let key = KeyPair::generate()?;
            let created =
                OffsetDateTime::from_unix_timestamp(now.0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let cert = ca_params(created).self_signed(&key)?;
            write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
            std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_path)
                .map_err(io(&key_path))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(CaError::KeyMode(key_path, mode));
            }
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert_pem,
            issuer,
            leaves: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(StdDuration::from_secs(24 * 3600))
                .build(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate's path.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// A TLS server configuration presenting a leaf for `host` (DNS name or IP), offering
    /// `alpn` in order. Leaves are minted once per (host, ALPN list) and cached.
    pub fn server_config(
        &self,
        host: &str,
        alpn: &[&[u8]],
        now: UnixTime,
    ) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let key = (
            host.to_owned(),
            alpn.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
        );
        if let Some(hit) = self.leaves.get(&key) {
            return Ok(hit);
        }
        let config = Arc::new(self.mint(host, alpn, now)?);
        self.leaves.insert(key, Arc::clone(&config));
        Ok(config)
    }

    fn mint(
        &self,
        host: &str,
        alpn: &[&[u8]],
        now: UnixTime,
    ) -> Result<rustls::ServerConfig, CaError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        p.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        }];
        let t = OffsetDateTime::from_unix_timestamp(now.0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        p.not_before = t - Duration::hours(1);
        p.not_after = t + LEAF_VALIDITY;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.signed_by(&key, &self.issuer)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}
