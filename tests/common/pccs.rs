//! A PCCS stand-in on loopback speaking the Intel PCS v4 paths the proxy fetches: TCB info
//! per TEE and FMSPC, QE identity per TEE, PCK CRL per CA, the root CA CRL (hex, as a PCCS
//! serves it), issuer chains in URL-encoded headers, and Intel's early TCB data
//! (`update=early` on TCB info and QE identity, `tcbevaluationdatanumbers`) when given some
//! (404 otherwise, as a PCCS without it answers). A test swaps what it serves at will: a
//! hostile PCCS replaying older, validly signed collateral, answering for the wrong CA, or
//! failing ([`Fault`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ratls_proxy::dcap::collateral::early::BundleFile;
use ratls_proxy::dcap::collateral::Collateral;

/// One signed answer: the body and its issuer chain (PEM).
#[derive(Clone)]
pub struct Doc {
    pub body: Vec<u8>,
    pub chain: String,
}

/// The PCS's answer with a signed document: `{"<field>": <text verbatim>, "signature": hex}`.
fn signed(field: &str, text: &str, signature: &[u8], chain: &str) -> Doc {
    Doc {
        body: format!(
            r#"{{"{field}":{text},"signature":"{}"}}"#,
            hex::encode(signature)
        )
        .into_bytes(),
        chain: chain.to_owned(),
    }
}

/// Everything served for one platform, in the shapes the PCS answers with.
#[derive(Clone)]
pub struct Served {
    pub tcb: Doc,
    pub qe: Doc,
    pub pck_crl: Doc,
    /// DER; served as hex.
    pub root_crl: Vec<u8>,
}

impl Served {
    /// The PCS's answers made from a bundle (the signed text placed verbatim).
    pub fn of(c: &Collateral) -> Self {
        Self {
            tcb: signed(
                "tcbInfo",
                &c.tcb_info,
                &c.tcb_info_signature,
                &c.tcb_info_issuer_chain,
            ),
            qe: signed(
                "enclaveIdentity",
                &c.qe_identity,
                &c.qe_identity_signature,
                &c.qe_identity_issuer_chain,
            ),
            pck_crl: Doc {
                body: c.pck_crl.clone(),
                chain: c.pck_crl_issuer_chain.clone(),
            },
            root_crl: c.root_ca_crl.clone(),
        }
    }

    /// The TEE whose TCB info this is: `tdx` or `sgx`.
    fn tee(&self) -> &'static str {
        if self.tcb.body.windows(10).any(|w| w == br#""id":"TDX""#) {
            "tdx"
        } else {
            "sgx"
        }
    }
}

/// How the stand-in fails every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status, no body.
    Status(u16),
    /// 200 with an HTML maintenance page.
    Garbage,
    /// TCB info whose first `OutOfDate` was edited to `UpToDate` (its signature unchanged).
    TamperedTcbInfo,
}

#[derive(Default)]
struct Answers {
    /// ("sgx"|"tdx", FMSPC upper-case) → TCB info.
    tcb: HashMap<(String, String), Doc>,
    /// "sgx"|"tdx" → QE identity.
    qe: HashMap<String, Doc>,
    /// "platform"|"processor" → PCK CRL.
    pck_crl: HashMap<String, Doc>,
    root_crl: Vec<u8>,
    /// Early data: ("sgx"|"tdx", FMSPC) → TCB info; "sgx"|"tdx" → QE identity, and the
    /// evaluation data numbers list.
    early_tcb: HashMap<(String, String), Doc>,
    early_qe: HashMap<String, Doc>,
    numbers: HashMap<String, Doc>,
    fault: Option<Fault>,
}

/// The stand-in, stopped on drop (then nothing answers on its port).
pub struct Pccs {
    pub addr: SocketAddr,
    answers: Arc<Mutex<Answers>>,
    tcb_hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pccs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fmspc_of(c: &Collateral) -> String {
    let v: serde_json::Value = serde_json::from_str(&c.tcb_info).expect("TCB info JSON");
    v["fmspc"].as_str().expect("fmspc").to_uppercase()
}

fn answer(a: &Answers, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let respond = |code: u16, header: Option<(&str, String)>, body: Vec<u8>| {
        let mut r = Response::builder()
            .status(code)
            .header("Request-ID", "pccs-stand-in");
        if let Some((name, value)) = header {
            r = r.header(name, value);
        }
        r.body(Full::new(Bytes::from(body))).unwrap_or_default()
    };
    let status = |code: u16| respond(code, None, Vec::new());
    match a.fault {
        Some(Fault::Status(code)) => return status(code),
        Some(Fault::Garbage) => return respond(200, None, b"<html>maintenance</html>".to_vec()),
        Some(Fault::TamperedTcbInfo) | None => {}
    }
    let reply = |doc: Option<&Doc>, header: &str| match doc {
        Some(d) => respond(
            200,
            Some((
                header,
                percent_encoding::utf8_percent_encode(&d.chain, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            )),
            d.body.clone(),
        ),
        None => status(404),
    };
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let path = req.uri().path();
    let tee = if path.starts_with("/tdx/") {
        "tdx"
    } else {
        "sgx"
    };
    let early = param("update") == "early";
    match path {
        "/sgx/certification/v4/tcb" | "/tdx/certification/v4/tcb" if early => reply(
            a.early_tcb
                .get(&(tee.to_owned(), param("fmspc").to_uppercase())),
            "TCB-Info-Issuer-Chain",
        ),
        "/sgx/certification/v4/qe/identity" | "/tdx/certification/v4/qe/identity" if early => {
            reply(a.early_qe.get(tee), "SGX-Enclave-Identity-Issuer-Chain")
        }
        "/sgx/certification/v4/tcbevaluationdatanumbers"
        | "/tdx/certification/v4/tcbevaluationdatanumbers" => reply(
            a.numbers.get(tee),
            "TCB-Evaluation-Data-Numbers-Issuer-Chain",
        ),
        "/sgx/certification/v4/tcb" | "/tdx/certification/v4/tcb" => {
            let doc = a.tcb.get(&(tee.to_owned(), param("fmspc").to_uppercase()));
            match (doc, a.fault) {
                (Some(d), Some(Fault::TamperedTcbInfo)) => {
                    let body = String::from_utf8_lossy(&d.body)
                        .replacen("OutOfDate", "UpToDate", 1)
                        .into_bytes();
                    reply(Some(&Doc { body, ..d.clone() }), "TCB-Info-Issuer-Chain")
                }
                _ => reply(doc, "TCB-Info-Issuer-Chain"),
            }
        }
        "/sgx/certification/v4/qe/identity" | "/tdx/certification/v4/qe/identity" => {
            reply(a.qe.get(tee), "SGX-Enclave-Identity-Issuer-Chain")
        }
        "/sgx/certification/v4/pckcrl" => {
            reply(a.pck_crl.get(&param("ca")), "SGX-PCK-CRL-Issuer-Chain")
        }
        "/sgx/certification/v4/rootcacrl" => {
            respond(200, None, hex::encode(&a.root_crl).into_bytes())
        }
        _ => status(404),
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` (in TLS with `tls`), each request answered by
/// `answer`, until the task is aborted.
pub async fn serve_http<F>(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    answer: F,
) where
    F: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (answer, tls) = (answer.clone(), tls.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = answer(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(cfg) => {
                    if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                }
            }
        });
    }
}

impl Pccs {
    /// A stand-in serving nothing yet, over plain HTTP.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A stand-in serving nothing yet, in TLS with `tls` when given.
    pub async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let answers = Arc::new(Mutex::new(Answers::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcb_hits = Arc::new(AtomicU64::new(0));
        let (a, hits) = (Arc::clone(&answers), Arc::clone(&tcb_hits));
        let task = tokio::spawn(serve_http(listener, tls, move |req| {
            // Standard TCB info only: early data has its own fetches.
            let early = req
                .uri()
                .query()
                .unwrap_or_default()
                .contains("update=early");
            if req.uri().path().ends_with("/tcb") && !early {
                hits.fetch_add(1, Ordering::Relaxed);
            }
            a.lock().map(|a| answer(&a, req)).unwrap_or_default()
        }));
        Self {
            addr,
            answers,
            tcb_hits,
            task,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Standard TCB info fetches answered or not (`update=early` ones not counted).
    pub fn tcb_hits(&self) -> u64 {
        self.tcb_hits.load(Ordering::Relaxed)
    }

    /// Serves everything in `c` (its TEE's TCB info for its FMSPC, its TEE's QE identity, its
    /// PCK CRL as `ca`'s, its root CA CRL), replacing what was served for those.
    pub fn serve(&self, ca: &str, c: &Collateral) {
        self.serve_docs(ca, &fmspc_of(c), &Served::of(c));
    }

    /// Serves `docs` for `fmspc` (the TCB info and QE identity at their TEE's paths), the PCK
    /// CRL as `ca`'s, replacing what was served for those.
    pub fn serve_docs(&self, ca: &str, fmspc: &str, docs: &Served) {
        let tee = docs.tee().to_owned();
        let mut a = self.answers.lock().expect("lock");
        a.tcb
            .insert((tee.clone(), fmspc.to_uppercase()), docs.tcb.clone());
        a.qe.insert(tee, docs.qe.clone());
        a.pck_crl.insert(ca.to_owned(), docs.pck_crl.clone());
        a.root_crl = docs.root_crl.clone();
    }

    /// Serves `c`'s QE identity at `tee`'s path (`sgx` or `tdx`), whatever TEE it is for.
    pub fn serve_qe_as(&self, tee: &str, c: &Collateral) {
        let qe = Served::of(c).qe;
        self.answers
            .lock()
            .expect("lock")
            .qe
            .insert(tee.to_owned(), qe);
    }

    /// Serves `c`'s PCK CRL (and its chain) for `ca=<ca>` only.
    pub fn serve_pck_crl(&self, ca: &str, c: &Collateral) {
        let crl = Served::of(c).pck_crl;
        self.answers
            .lock()
            .expect("lock")
            .pck_crl
            .insert(ca.to_owned(), crl);
    }

    /// Serves `b`'s TCB info and QE identity as its TEE's early data for its FMSPC, and its
    /// evaluation data numbers list.
    pub fn serve_early(&self, b: &BundleFile) {
        let tee = Served::of(&b.collateral).tee();
        self.serve_early_at(tee, &fmspc_of(&b.collateral), b);
    }

    /// Serves `b` as early data at `tee`'s paths (`sgx` or `tdx`) for `fmspc`, whatever TEE
    /// and platform it is for (a hostile PCCS may serve anything as early data).
    pub fn serve_early_at(&self, tee: &str, fmspc: &str, b: &BundleFile) {
        let docs = Served::of(&b.collateral);
        let mut a = self.answers.lock().expect("lock");
        a.early_tcb
            .insert((tee.to_owned(), fmspc.to_uppercase()), docs.tcb);
        a.early_qe.insert(tee.to_owned(), docs.qe);
        match &b.evaluation_numbers {
            Some(n) => {
                let doc = signed(
                    "tcbEvaluationDataNumbers",
                    &n.text,
                    &n.signature,
                    &n.issuer_chain,
                );
                a.numbers.insert(tee.to_owned(), doc);
            }
            None => {
                a.numbers.remove(tee);
            }
        }
    }

    /// Fails every request with `fault`, or (`None`) answers normally again.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.answers.lock().expect("lock").fault = fault;
    }
}
