//! A simulated RA-TLS enclave: an HTTPS server (HTTP/1.1 and HTTP/2 by ALPN) with a fresh
//! RA-TLS certificate whose quote is forged with the test PKI. It answers every request
//! with a JSON echo and counts the requests it serves; `/ws`, `/stream` and `/upload` are
//! a WebSocket echo and streamed bodies (see `streaming`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    CertificateParams, CustomExtension, KeyPair, PublicKeyData, SanType, PKCS_ECDSA_P384_SHA384,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::dstack::{self, DstackSpec, DstackWire};
use super::dstack_snp::SnpSimSpec;
use super::pki::{SimError, SimPki, SimPlatform, SIM_TEE_TCB_SVN, SIM_TEE_TCB_SVN_OUT_OF_DATE};
use super::quote::{forge, forge_td, EnclaveSpec, TdSpec};
use super::streaming::{self, Answer, Counters};
use crate::dcap::collateral::pcs::PckCa;
use crate::dcap::ids::{Rtmr, TeeTcbSvn};
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;
use crate::ratls::binding::dstack_report_data;
use crate::ratls::evidence::{
    OID_DSTACK_ATTESTATION, OID_DSTACK_EVENT_LOG, OID_DSTACK_QUOTE, OID_SGX_QUOTE,
    OID_SGX_QUOTE_GRAMINE_LEGACY, OID_TCG_DICE_TAGGED_EVIDENCE, OID_TDX_QUOTE,
};

/// How the RA-TLS certificate binds its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimBinding {
    /// P-256, raw quote under 1.2.840.113741.1337.6, REPORTDATA = SHA-256(point).
    Cosmian,
    /// P-384, Gramine's legacy OID encoding with REPORTDATA = SHA-256(SPKI) and TCG DICE evidence.
    Gramine,
    /// Like Cosmian, but REPORTDATA binds a different key.
    Wrong,
    /// TDX only: P-256, dstack's evidence (`SimConfig::dstack` says which wire form and
    /// app) and REPORTDATA = SHA-512("ratls-cert:" ‖ SPKI).
    Dstack,
}

impl std::str::FromStr for SimBinding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosmian" => Ok(Self::Cosmian),
            "gramine" => Ok(Self::Gramine),
            "wrong" => Ok(Self::Wrong),
            "dstack" => Ok(Self::Dstack),
            other => Err(format!(
                "unknown binding `{other}` (cosmian, gramine, dstack, wrong)"
            )),
        }
    }
}

/// Everything that makes one sim enclave.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The identity its quote claims (an SGX enclave).
    pub spec: EnclaveSpec,
    /// A TD instead: the TDX quote's identity (then `spec` is unused).
    pub td: Option<TdSpec>,
    /// The TCB level of its platform.
    pub tcb_status: TcbStatus,
    /// Its platform's TCB level under the early data (the next TCB recovery); none: the same.
    pub early_tcb_status: Option<TcbStatus>,
    /// How its certificate binds the key.
    pub binding: SimBinding,
    /// With the dstack binding: the app, the wire form, and what to break.
    pub dstack: DstackSpec,
    /// Print `METHOD PATH` for each request served.
    pub log_requests: bool,
    /// Offer only `h2` in ALPN, like an HTTP/2-only (for example gRPC) service.
    pub h2_only: bool,
    /// The PCK CA that issued its platform's PCK certificate.
    pub pck_ca: PckCa,
    // AWS Nitro
    /// An AWS Nitro enclave instead, behind dstack's RA-TLS (`.1.8`, the `NitroEnclave`
    /// platform): then `spec`, `td`, `tcb_status`, `binding` and `dstack` are unused.
    pub nitro: Option<super::dstack_nitro::NitroEnclaveSpec>,
    // SEV-SNP
    /// An SEV-SNP guest behind dstack instead (then `spec`, `td` and the Intel fields are
    /// unused).
    pub snp: Option<SnpSimSpec>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            spec: EnclaveSpec::default(),
            td: None,
            tcb_status: TcbStatus::UpToDate,
            early_tcb_status: None,
            binding: SimBinding::Cosmian,
            dstack: DstackSpec::default(),
            log_requests: false,
            h2_only: false,
            pck_ca: PckCa::Platform,
            // AWS Nitro
            nitro: None,
            // SEV-SNP
            snp: None,
        }
    }
}

/// An RA-TLS certificate and its key.
pub struct RaTlsIdentity {
    /// Leaf DER.
    pub cert_der: Vec<u8>,
    /// PKCS#8 of the key.
    pub key_pkcs8: Vec<u8>,
}

fn report_data(first: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(first));
    rd
}

/// CBOR `{"pubkey-hash": bstr(CBOR [1, bstr(32)])}` as Gramine emits it.
fn dice_claims(spki_hash: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x01, 0x58, 0x20];
    inner.extend_from_slice(spki_hash);
    let mut claims = vec![0xa1, 0x6b];
    claims.extend_from_slice(b"pubkey-hash");
    claims.push(0x58);
    claims.push(u8::try_from(inner.len()).unwrap_or(0));
    claims.extend_from_slice(&inner);
    claims
}

fn dice_evidence(quote: &[u8], claims: &[u8]) -> Vec<u8> {
    let mut v = vec![0xd9, 0xea, 0x60, 0x82, 0x59];
    v.extend_from_slice(&u16::try_from(quote.len()).unwrap_or(0).to_be_bytes());
    v.extend_from_slice(quote);
    v.push(0x58);
    v.push(u8::try_from(claims.len()).unwrap_or(0));
    v.extend_from_slice(claims);
    v
}

/// The platform's status under the standard and the early data.
fn judged(config: &SimConfig) -> Result<(TcbStatus, Option<TcbStatus>), SimError> {
    match config.early_tcb_status {
        Some(s) if !s.is_published() => Err(SimError::Format(format!(
            "{s} is computed, never published: it cannot be a status under the early data"
        ))),
        early => Ok((config.tcb_status, early)),
    }
}

/// The quote extension of an SGX sim's certificate.
fn sgx_evidence(
    pki: &SimPki,
    config: &SimConfig,
    key: &KeyPair,
    now: UnixTime,
) -> Result<Vec<CustomExtension>, SimError> {
    if !config.tcb_status.is_published() {
        return Err(SimError::Format(format!(
            "{} is a TDX status (--tee tdx)",
            config.tcb_status
        )));
    }
    let pck = pki.pck_leaf_judged(SimPlatform::Sgx, config.pck_ca, judged(config)?, now)?;
    Ok(match config.binding {
        SimBinding::Cosmian => {
            let quote = forge(&config.spec, &report_data(key.public_key_raw()), &pck)?;
            vec![CustomExtension::from_oid_content(OID_SGX_QUOTE, quote)]
        }
        SimBinding::Wrong => {
            let other = KeyPair::generate()?;
            let quote = forge(&config.spec, &report_data(other.public_key_raw()), &pck)?;
            vec![CustomExtension::from_oid_content(OID_SGX_QUOTE, quote)]
        }
        SimBinding::Gramine => {
            let spki = key.subject_public_key_info();
            let legacy = forge(&config.spec, &report_data(&spki), &pck)?;
            let claims = dice_claims(&Sha256::digest(&spki));
            let dice = forge(&config.spec, &report_data(&claims), &pck)?;
            vec![
                CustomExtension::from_oid_content(OID_SGX_QUOTE_GRAMINE_LEGACY, legacy),
                CustomExtension::from_oid_content(
                    OID_TCG_DICE_TAGGED_EVIDENCE,
                    dice_evidence(&dice, &claims),
                ),
            ]
        }
        SimBinding::Dstack => {
            return Err(SimError::Format(
                "the dstack binding is for TDX sims (--tee tdx)".into(),
            ))
        }
    })
}

/// The quote extension of a TDX sim's certificate: Cosmian's `1337.8` or dstack's carrier.
fn td_evidence(
    pki: &SimPki,
    config: &SimConfig,
    td: &TdSpec,
    key: &KeyPair,
    now: UnixTime,
) -> Result<Vec<CustomExtension>, SimError> {
    let pck = pki.pck_leaf_judged(SimPlatform::Tdx, config.pck_ca, judged(config)?, now)?;
    let relaunched;
    let td = if config.tcb_status.is_published() {
        td
    } else {
        // A TD relaunch status: the TD launched on the out-of-date module level and runs
        // on the up-to-date one now (a TD 1.5 body tells both).
        relaunched = TdSpec {
            tee_tcb_svn: TeeTcbSvn(SIM_TEE_TCB_SVN_OUT_OF_DATE),
            tee_tcb_svn2: Some(TeeTcbSvn(SIM_TEE_TCB_SVN)),
            ..td.clone()
        };
        &relaunched
    };
    Ok(match config.binding {
        SimBinding::Cosmian => {
            let quote = forge_td(td, &report_data(key.public_key_raw()), &pck)?;
            vec![CustomExtension::from_oid_content(OID_TDX_QUOTE, quote)]
        }
        SimBinding::Wrong => {
            let other = KeyPair::generate()?;
            let quote = forge_td(td, &report_data(other.public_key_raw()), &pck)?;
            vec![CustomExtension::from_oid_content(OID_TDX_QUOTE, quote)]
        }
        SimBinding::Dstack => dstack_evidence(td, &config.dstack, key, &pck)?,
        SimBinding::Gramine => {
            // TCG DICE tagged evidence around a TDX quote: tag 60000 is "an Intel TEE
            // quote", SGX or TDX; REPORTDATA commits to the claims, as for Gramine's SGX.
            let claims = dice_claims(&Sha256::digest(key.subject_public_key_info()));
            let quote = forge_td(td, &report_data(&claims), &pck)?;
            vec![CustomExtension::from_oid_content(
                OID_TCG_DICE_TAGGED_EVIDENCE,
                dice_evidence(&quote, &claims),
            )]
        }
    })
}

/// dstack's evidence for a TD running `app`: RTMR3 the replay of its runtime events, the
/// report data dstack's hash of the key (or of another key), in the wire form it names.
fn dstack_evidence(
    td: &TdSpec,
    app: &DstackSpec,
    key: &KeyPair,
    pck: &super::pki::PckLeaf,
) -> Result<Vec<CustomExtension>, SimError> {
    let spki = if app.wrong_key {
        KeyPair::generate()?.subject_public_key_info()
    } else {
        key.subject_public_key_info()
    };
    let rd = dstack_report_data(&spki);
    let mut rtmr = td.rtmr;
    rtmr[3] = Rtmr(app.rtmr3());
    let quote = forge_td(&TdSpec { rtmr, ..td.clone() }, &rd, pck)?;
    let events = app.carried_events();
    // dstack wraps every extension's content in an OCTET STRING of its own.
    let ext = |oid, content: Vec<u8>| {
        CustomExtension::from_oid_content(oid, super::der::octets(&content))
    };
    Ok(match app.wire {
        DstackWire::V0 => vec![ext(
            OID_DSTACK_ATTESTATION,
            dstack::v0(&quote, &events, &rd, &dstack::vm_config()),
        )],
        DstackWire::V1 => vec![ext(
            OID_DSTACK_ATTESTATION,
            dstack::v1(&quote, &events, &rd, &dstack::vm_config()),
        )],
        DstackWire::Legacy => vec![
            ext(OID_DSTACK_QUOTE, quote),
            ext(OID_DSTACK_EVENT_LOG, dstack::legacy_event_log(&events)),
        ],
    })
}

/// Mints a fresh RA-TLS certificate for `config`, valid around `now`.
pub fn ratls_identity(
    pki: &SimPki,
    config: &SimConfig,
    now: UnixTime,
) -> Result<RaTlsIdentity, SimError> {
    let key = match config.binding {
        SimBinding::Gramine => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
        SimBinding::Cosmian | SimBinding::Wrong | SimBinding::Dstack => KeyPair::generate()?,
    };
    let extensions = match (&config.nitro, &config.snp, &config.td) {
        // AWS Nitro
        (Some(nitro), _, _) => super::dstack_nitro::evidence(nitro, &key, now)?,
        // SEV-SNP
        (None, Some(snp), _) => super::dstack_snp::snp_evidence(snp, &key)?,
        (None, None, Some(td)) => td_evidence(pki, config, td, &key, now)?,
        (None, None, None) => sgx_evidence(pki, config, &key, now)?,
    };
    let mut p = CertificateParams::new(vec!["localhost".to_owned()])?;
    p.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    // AWS Nitro: Evervault's carrier is a subjectAltName.
    if let Some(nitro) = &config.nitro {
        p.subject_alt_names
            .extend(super::evervault::names(nitro, &key, now)?);
    }
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "ratls-proxy sim enclave");
    let t = OffsetDateTime::from_unix_timestamp(now.0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    p.not_before = t - Duration::hours(1);
    p.not_after = t + Duration::days(2);
    p.custom_extensions = extensions;
    let cert = p.self_signed(&key)?;
    Ok(RaTlsIdentity {
        cert_der: cert.der().to_vec(),
        key_pkcs8: key.serialize_der(),
    })
}

/// Serves a fixed certificate with a fixed signing key, without checking they match
/// (so tests can build an impostor that replays someone else's certificate).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A running sim enclave.
pub struct SimEnclave {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    streaming: Arc<Counters>,
    cert_der: Vec<u8>,
    task: JoinHandle<()>,
}

impl Drop for SimEnclave {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimEnclave {
    /// Starts a sim enclave on `listen` with a fresh RA-TLS certificate.
    pub async fn start(
        pki: &SimPki,
        config: SimConfig,
        listen: SocketAddr,
        now: UnixTime,
    ) -> Result<Self, SimError> {
        let id = ratls_identity(pki, &config, now)?;
        Self::serve(id.cert_der, id.key_pkcs8, config, listen).await
    }

    /// Serves `cert_der` while signing the handshake with `key_pkcs8` (which may not match).
    pub async fn serve(
        cert_der: Vec<u8>,
        key_pkcs8: Vec<u8>,
        config: SimConfig,
        listen: SocketAddr,
    ) -> Result<Self, SimError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| SimError::Format(e.to_string()))?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der.clone())], signing);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError::Format(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
        tls.alpn_protocols = if config.h2_only {
            vec![b"h2".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SimError::Io {
                path: listen.to_string().into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            path: listen.to_string().into(),
            source,
        })?;
        let requests = Arc::new(AtomicU64::new(0));
        // The echo names the measurement the quote claims: MRENCLAVE, or `mrtd:` and MRTD.
        let mrenclave = match (&config.nitro, &config.snp, &config.td) {
            // AWS Nitro
            (Some(nitro), _, _) => format!("pcr0:{}", hex::encode(nitro.pcr0)),
            // SEV-SNP
            (None, Some(snp), _) => format!("snp:{}", hex::encode(snp.report.measurement)),
            (None, None, Some(td)) => format!("mrtd:{}", td.mr_td),
            (None, None, None) => config.spec.mrenclave.to_string(),
        };
        let counter = Arc::clone(&requests);
        let streamed = Arc::new(Counters::default());
        let counters = Arc::clone(&streamed);
        let log = config.log_requests;
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let counter = Arc::clone(&counter);
                let counters = Arc::clone(&counters);
                let mrenclave = mrenclave.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        if log {
                            // Not `println!`: a closed stdout (`demo | head`) must not
                            // take the enclave down with a panic.
                            use std::io::Write;
                            let _ = writeln!(
                                std::io::stdout().lock(),
                                "{} {}",
                                req.method(),
                                req.uri().path()
                            );
                        }
                        if streaming::serves(req.uri().path()) {
                            return streaming::answer(req, &counters);
                        }
                        let body = echo(&req, &mrenclave);
                        // `/slow?ms=N` answers after N ms (at most 10 s), for shutdown tests.
                        let delay = (req.uri().path() == "/slow")
                            .then(|| {
                                req.uri()
                                    .query()
                                    .and_then(|q| q.strip_prefix("ms="))
                                    .and_then(|v| v.parse::<u64>().ok())
                            })
                            .flatten()
                            .map(|ms| std::time::Duration::from_millis(ms.min(10_000)));
                        let answer: Answer = Box::pin(async move {
                            if let Some(d) = delay {
                                tokio::time::sleep(d).await;
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)).boxed())
                                    .unwrap_or_default(),
                            )
                        });
                        answer
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            requests,
            streaming: streamed,
            cert_der,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has served.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many WebSocket data frames its `/ws` echo has received.
    pub fn websocket_frames(&self) -> u64 {
        self.streaming.frames.load(Ordering::Relaxed)
    }

    /// How many `/stream` responses it has finished writing (the last chunk handed over).
    pub fn streams_done(&self) -> u64 {
        self.streaming.streams_done.load(Ordering::Relaxed)
    }

    /// How many request body bytes its `/upload` has received so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.streaming.uploaded.load(Ordering::Relaxed)
    }

    /// Its RA-TLS certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }
}

fn echo(req: &Request<Incoming>, measurement: &str) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let (key, value) = match measurement.split_once(':') {
        Some(("mrtd", mrtd)) => ("mrtd", mrtd),
        // AWS Nitro
        Some(("pcr0", pcr0)) => ("pcr0", pcr0),
        _ => ("mrenclave", measurement),
    };
    serde_json::json!({
        "enclave": "ratls-proxy sim",
        key: value,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    })
    .to_string()
}
