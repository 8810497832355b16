//! EDGE. Intel PCS v4 or a PCCS over HTTPS: where and how to fetch one platform's
//! collateral (TCB info, QE identity, CRLs and their issuer chains), bounded in time and
//! size, handing over the exact signed bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::dcap::collateral::early::{EarlyCollateral, SignedNumbers};
use crate::dcap::collateral::pcs::{self, PckCa, Responses};
use crate::dcap::collateral::CollateralError;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::quote::TeeType;

/// Intel PCS v4 base URL.
pub(crate) const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the root CA CRL (DER).
pub(crate) const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// Largest response body accepted.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// A fetch failure.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Bad URL or configuration.
    #[error("{0}")]
    Config(String),
    /// Network or TLS failure.
    #[error("{url}: {detail}")]
    Network {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// A non-200 answer.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// A missing issuer-chain header.
    #[error("{url}: no {header} header")]
    MissingHeader {
        /// The URL.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// The answer does not parse.
    #[error(transparent)]
    Content(#[from] CollateralError),
}

impl From<FetchError> for VerifyError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Content(c) => VerifyError::Collateral(c),
            other => VerifyError::Collateral(CollateralError::Content {
                what: "collateral fetch",
                detail: other.to_string(),
            }),
        }
    }
}

/// Where and how to fetch.
#[derive(Clone)]
pub struct PcsEndpoint {
    base: String,
    root_crl_url: String,
    api_key: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for PcsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("PcsEndpoint")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

pub(crate) fn tls_config(
    custom_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    match custom_ca_pem {
        Some(pem) => {
            for der in crate::dcap::pki::pem_chain(pem, "PCCS CA")
                .map_err(|e| FetchError::Config(e.to_string()))?
            {
                roots
                    .add(der.into())
                    .map_err(|e| FetchError::Config(format!("PCCS CA: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| FetchError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl PcsEndpoint {
    /// Intel PCS v4 (WebPKI roots for its TLS).
    pub fn intel(api_key: Option<String>) -> Result<Self, FetchError> {
        Ok(Self {
            base: INTEL_PCS.to_owned(),
            root_crl_url: INTEL_ROOT_CA_CRL.to_owned(),
            api_key,
            tls: tls_config(None)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// A PCCS (or PCS) at `base_url`; `custom_ca_pem` replaces the WebPKI roots for its TLS.
    pub fn pccs(
        base_url: &str,
        custom_ca_pem: Option<&[u8]>,
        api_key: Option<String>,
    ) -> Result<Self, FetchError> {
        let base = self::base_url(base_url)?;
        Ok(Self {
            root_crl_url: format!("{base}/sgx/certification/v4/rootcacrl"),
            base,
            api_key,
            tls: tls_config(custom_ca_pem)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fetches the four pieces of collateral for one platform and TEE.
    pub async fn fetch(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        tee: TeeType,
    ) -> Result<crate::dcap::collateral::Collateral, FetchError> {
        let v4 = format!("{}/sgx/certification/v4", self.base);
        // TDX has its own TCB info and QE identity; the PCK CRL is the SGX one.
        let tee_v4 = match tee {
            TeeType::Sgx => v4.clone(),
            TeeType::Tdx => format!("{}/tdx/certification/v4", self.base),
        };
        let tcb_url = format!("{tee_v4}/tcb?fmspc={}", fmspc.to_string().to_uppercase());
        let qe_url = format!("{tee_v4}/qe/identity");
        let crl_url = format!("{v4}/pckcrl?ca={}&encoding=der", ca.as_str());
        let (tcb, qe, crl, root) = tokio::join!(
            self.get(&tcb_url),
            self.get(&qe_url),
            self.get(&crl_url),
            self.get(&self.root_crl_url)
        );
        let (tcb, qe, crl, root) = (tcb?, qe?, crl?, root?);
        Responses {
            root_ca_crl: root.1.to_vec(),
            pck_crl: (
                crl.1.to_vec(),
                header(&crl.0, &pcs::PCK_CRL_ISSUER_CHAIN, &crl_url)?,
            ),
            tcb_info: (
                tcb.1.to_vec(),
                header(&tcb.0, &pcs::TCB_INFO_ISSUER_CHAIN, &tcb_url)?,
            ),
            qe_identity: (
                qe.1.to_vec(),
                header(&qe.0, &pcs::QE_IDENTITY_ISSUER_CHAIN, &qe_url)?,
            ),
        }
        .into_collateral()
        .map_err(FetchError::from)
    }

    /// Fetches Intel's early TCB data for one platform and TEE: the TCB info and QE identity
    /// with `update=early`, and the evaluation data numbers list that dates them (none when
    /// the source does not serve it: 404).
    pub async fn fetch_early(
        &self,
        fmspc: Fmspc,
        tee: TeeType,
    ) -> Result<EarlyCollateral, FetchError> {
        let tee_v4 = match tee {
            TeeType::Sgx => format!("{}/sgx/certification/v4", self.base),
            TeeType::Tdx => format!("{}/tdx/certification/v4", self.base),
        };
        let tcb_url = format!(
            "{tee_v4}/tcb?fmspc={}&update=early",
            fmspc.to_string().to_uppercase()
        );
        let qe_url = format!("{tee_v4}/qe/identity?update=early");
        let numbers_url = format!("{tee_v4}/tcbevaluationdatanumbers");
        let (tcb, qe, numbers) = tokio::join!(
            self.get(&tcb_url),
            self.get(&qe_url),
            self.get(&numbers_url)
        );
        let (tcb, qe) = (tcb?, qe?);
        let evaluation_numbers = match numbers {
            Ok((headers, body)) => {
                let (text, signature) = pcs::evaluation_numbers_body(&body)?;
                let chain = header(
                    &headers,
                    &pcs::EVALUATION_NUMBERS_ISSUER_CHAIN,
                    &numbers_url,
                )?;
                Some(SignedNumbers {
                    issuer_chain: pcs::issuer_chain(
                        &chain,
                        "TCB evaluation data numbers issuer chain",
                    )?,
                    text,
                    signature,
                })
            }
            // Not every PCCS serves the list: the early data is then undated.
            Err(FetchError::Status { status, .. }) if status == StatusCode::NOT_FOUND => None,
            Err(e) => return Err(e),
        };
        let (tcb_info, tcb_info_signature) = pcs::tcb_info_body(&tcb.1)?;
        let (qe_identity, qe_identity_signature) = pcs::qe_identity_body(&qe.1)?;
        Ok(EarlyCollateral {
            tcb_info_issuer_chain: pcs::issuer_chain(
                &header(&tcb.0, &pcs::TCB_INFO_ISSUER_CHAIN, &tcb_url)?,
                "early TCB info issuer chain",
            )?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: pcs::issuer_chain(
                &header(&qe.0, &pcs::QE_IDENTITY_ISSUER_CHAIN, &qe_url)?,
                "early QE identity issuer chain",
            )?,
            qe_identity,
            qe_identity_signature,
            evaluation_numbers,
        })
    }

    async fn get(&self, url: &str) -> Result<(HeaderMap, Bytes), FetchError> {
        let key = self
            .api_key
            .as_deref()
            .map(|k| ("Ocp-Apim-Subscription-Key", k));
        http_get(url, &self.tls, key, (self.timeout, MAX_BODY)).await
    }
}

/// `text` as a base URL: http(s)://host[:port][/path], without the trailing `/`.
pub(crate) fn base_url(text: &str) -> Result<String, FetchError> {
    let base = text.trim_end_matches('/').to_owned();
    let uri: http::Uri = base
        .parse()
        .map_err(|_| FetchError::Config(format!("`{text}` is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(FetchError::Config(format!(
            "`{text}`: expected http(s)://host[:port][/path]"
        )));
    }
    Ok(base)
}

/// One GET of `url` within `timeout`, with `header` when given, over TLS under `tls` for
/// `https://`; only a 200 with a body of at most `max_body` bytes is an answer.
pub(crate) async fn http_get(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    header: Option<(&'static str, &str)>,
    (timeout, max_body): (Duration, usize),
) -> Result<(HeaderMap, Bytes), FetchError> {
    match tokio::time::timeout(timeout, get_inner(url, tls, header, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Network {
            url: url.to_owned(),
            detail: format!("no answer within {}s", timeout.as_secs()),
        }),
    }
}

async fn get_inner(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    header: Option<(&'static str, &str)>,
    max_body: usize,
) -> Result<(HeaderMap, Bytes), FetchError> {
    let net = |detail: String| FetchError::Network {
        url: url.to_owned(),
        detail,
    };
    let uri: http::Uri = url.parse().map_err(|_| net("not a URL".into()))?;
    let host = uri.host().ok_or_else(|| net("no host".into()))?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| net(e.to_string()))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = Request::get(path).header(
        http::header::HOST,
        uri.authority().map_or(host.as_str(), |a| a.as_str()),
    );
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| net(e.to_string()))?;
    let resp = if https {
        let name = rustls::pki_types::ServerName::try_from(bare).map_err(|e| net(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| net(format!("TLS: {e}")))?;
        send(TokioIo::new(tls), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
    .map_err(net)?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status(),
        });
    }
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| net(format!("body: {e}")))?
        .to_bytes();
    Ok((parts.headers, body))
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn header(headers: &HeaderMap, names: &[&'static str], url: &str) -> Result<Vec<u8>, FetchError> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .map(|v| v.as_bytes().to_vec())
        .ok_or_else(|| FetchError::MissingHeader {
            url: url.to_owned(),
            header: names.first().copied().unwrap_or("issuer chain"),
        })
}
