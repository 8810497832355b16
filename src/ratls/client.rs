//! An attested TLS connection to an RA-TLS server: TCP, the handshake with our
//! verifier, then the verdict for this very connection (the step after the handshake).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::cache::CachedVerdict;
use super::verifier::{client_config, RaTlsRefused, RaTlsVerifier};
use crate::dcap::time::UnixTime;

/// Why an attested connection could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The attestation was refused (inside the handshake or after it).
    #[error("{0}")]
    Refused(Box<RaTlsRefused>),
    /// The TLS handshake failed for another reason (for example a bad handshake signature).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server name is not valid for SNI.
    #[error("invalid server name `{0}`")]
    ServerName(String),
    /// The server sent no certificate.
    #[error("the server presented no certificate")]
    NoCertificate,
}

/// An established attested connection and the verdict that admitted it.
pub struct Attested {
    /// The TLS stream; no application byte has been sent on it yet.
    pub stream: TlsStream<TcpStream>,
    /// The accepted verdict for this connection's own leaf certificate.
    pub verdict: Arc<CachedVerdict>,
}

/// Connects to `addr`, presenting `host` as SNI, and returns the stream only if attested.
pub async fn connect(
    addr: &str,
    host: &str,
    verifier: Arc<RaTlsVerifier>,
    alpn: &[&[u8]],
    at: Option<UnixTime>,
) -> Result<Attested, ConnectError> {
    let config = client_config(Arc::clone(&verifier), alpn, at).map_err(|e| ConnectError::Tls {
        addr: addr.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ConnectError::ServerName(host.to_owned()))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|source| match RaTlsRefused::find(&source) {
            Some(r) => ConnectError::Refused(Box::new(r.clone())),
            None => ConnectError::Tls {
                addr: addr.to_owned(),
                source,
            },
        })?;
    // The verdict belongs to this connection: re-derive it from the leaf it presented.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(ConnectError::NoCertificate)?
        .clone();
    let verdict = verifier
        .verdict_for(leaf.as_ref(), at.unwrap_or_else(UnixTime::now))
        .map_err(|r| ConnectError::Refused(Box::new(r)))?;
    Ok(Attested { stream, verdict })
}
