//! What `verify` reads from the user: an `https://` URL's dial target and SNI name, a
//! certificate file's leaf, a live service's certificate judged inside its TLS handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::appraise::policy::EnclavePolicy;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::ratls::client::{self, ConnectError};
use crate::ratls::{BindingMode, CertAppraisal, RaTlsVerifier, VerdictCache};
use crate::source::CollateralSetup;

/// The longest `verify` waits for a TLS handshake (the verdict inside it included).
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where an RA-TLS certificate comes from.
pub(super) enum CertInput<'a> {
    /// A leaf certificate's DER, read from `--cert`.
    Der(&'a [u8]),
    /// `host:port` and the SNI name of a live service (`verify URL`).
    Url {
        /// `host:port` to dial.
        addr: &'a str,
        /// The name presented as SNI.
        host: &'a str,
    },
}

/// The platform of the dstack `.1.8` attestation the leaf `der` carries, through `f`;
/// `None` when it carries none that parses.
pub(super) fn dstack_platform<T>(
    der: &[u8],
    f: impl FnOnce(crate::dstack::Platform<'_>) -> Option<T>,
) -> Option<T> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let oid = x509_parser::der_parser::oid::Oid::from(crate::dstack::OID_ATTESTATION).ok()?;
    let ext = cert.get_extension_unique(&oid).ok()??;
    let att = crate::dstack::extension_value(ext.value)
        .and_then(crate::dstack::Attestation::parse)
        .ok()?;
    f(att.platform)
}

/// A verifier for an entry of another TEE than Intel's (`with_snp`/`with_nitro` name it): its
/// Intel side has no collateral and is never consulted (an Intel quote is a `tee_mismatch`).
pub(super) fn verifier_beside_intel(intel: EnclavePolicy, mode: BindingMode) -> RaTlsVerifier {
    RaTlsVerifier::new(
        intel,
        mode,
        CertSha256([0; 32]),
        Arc::new(CollateralSetup::Unconfigured),
        Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(60))),
    )
}

/// Connects to `addr` as `host` and returns the appraisal `verifier` made of its certificate
/// inside the handshake, accepted or refused.
pub(super) fn judged_live(
    (addr, host): (&str, &str),
    verifier: Arc<RaTlsVerifier>,
    at: Option<UnixTime>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<CertAppraisal> {
    let connected = runtime.block_on(async {
        tokio::time::timeout(
            CONNECT_WAIT,
            client::connect(addr, host, verifier, &[b"h2", b"http/1.1"], at),
        )
        .await
    });
    match connected {
        Err(_) => bail!("timed out connecting to {addr}"),
        Ok(Ok(attested)) => Ok(attested.verdict.accepted.appraisal().clone()),
        Ok(Err(ConnectError::Refused(refused))) => Ok(*refused.appraisal),
        Ok(Err(other)) => Err(other.into()),
    }
}

/// `https://host[:port]` → (`host:port` to dial, host name for SNI).
pub(super) fn https_target(url: &str) -> anyhow::Result<(String, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        bail!("`{url}`: only https:// URLs can be verified");
    }
    let host = uri.host().with_context(|| format!("`{url}` has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((format!("{host}:{port}"), bare))
}

/// The leaf certificate (DER) of the PEM file `path`.
pub(super) fn read_leaf(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?;
    crate::dcap::pki::pem_chain(&pem, "certificate PEM")
        .map_err(anyhow::Error::from)
        .and_then(|chain| chain.into_iter().next().context("no certificate"))
        .with_context(|| format!("{} holds no PEM certificate", path.display()))
}
