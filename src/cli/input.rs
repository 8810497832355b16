//! What `verify` reads from the user: an `https://` URL's dial target and SNI name, a
//! certificate file's leaf.

use std::path::Path;

use anyhow::{bail, Context};

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
