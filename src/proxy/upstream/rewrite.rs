//! Rewriting HTTP messages between hops: hop-by-hop headers out, a request put in the form
//! its upstream connection's HTTP version needs, and a response from an enclave as the
//! client gets it (only the proxy speaks for the enclave).

use http::header::{HeaderName, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE};
use http::header::{TRANSFER_ENCODING, UPGRADE};
use http::Request;

use crate::dcap::identity::Identity;
use crate::proxy::body::ProxyBody;
use crate::proxy::target::Target;
use crate::ratls::cache::CachedVerdict;
use crate::ratls::AcceptedEvidence;

/// Headers that belong to one hop only (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The same names as [`HOP_BY_HOP`], to compare with a map's names without hashing.
static HOP_BY_HOP_NAMES: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHORIZATION,
    PROXY_AUTHENTICATE,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Strips hop-by-hop headers (including those named in `Connection`).
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Most messages carry none: one pass over their few names is cheaper than the nine hashed
    // lookups below (any name `Connection` lists is only there if `Connection` is).
    if !headers.keys().any(|k| HOP_BY_HOP_NAMES.contains(k)) {
        return;
    }
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for h in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(h);
    }
}

/// Rewrites a request for the upstream: HTTP/2 takes the authority from an absolute URI
/// and must not also get `Host`; HTTP/1.1 takes origin-form and `Host`.
pub(crate) fn prepare(
    mut req: Request<ProxyBody>,
    target: &Target,
    h2: bool,
) -> Request<ProxyBody> {
    let authority = &target.host_header;
    strip_hop_by_hop(req.headers_mut());
    if h2 {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("https://{authority}{path}").parse();
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut().remove(http::header::HOST);
        if let Ok(uri) = uri {
            *req.uri_mut() = uri;
        }
    } else {
        *req.version_mut() = http::Version::HTTP_11;
        // Inside a tunnel both are usually right already; rewriting them on every request
        // (a URI parse and a header insert) was measurable work.
        let host = req.headers().get(http::header::HOST);
        if host.is_none_or(|v| v.as_bytes() != authority.as_bytes()) {
            if let Some(v) = &target.host_value {
                req.headers_mut().insert(http::header::HOST, v.clone());
            }
        }
        if let Some(uri) = origin_form(req.uri()) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The origin form (`/path?query`) of an absolute URI; `None` if it is one already.
fn origin_form(uri: &http::Uri) -> Option<http::Uri> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return None;
    }
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    http::Uri::from_parts(parts).ok()
}

/// The header in which the proxy tells the client what it verified.
pub(crate) const ATTESTATION_HEADER: &str = "ratls-attestation";

/// [`ATTESTATION_HEADER`] as a header name: removed from every response, and a `&str` name
/// is parsed again on each use.
static ATTESTATION: http::HeaderName = http::HeaderName::from_static(ATTESTATION_HEADER);

/// The optional header that tells the client what was verified.
fn what_was_verified(v: &CachedVerdict) -> Option<http::HeaderValue> {
    let binding = v.accepted.appraisal().binding.map_or("-", |b| b.as_str());
    let text = match v.accepted.evidence() {
        AcceptedEvidence::Intel(q) => {
            let identity = match &q.identity {
                Identity::Sgx(e) => format!(
                    "mrenclave={}; mrsigner={}; isv_prod_id={}; isv_svn={}",
                    e.mrenclave, e.mrsigner, e.isv_prod_id, e.isv_svn
                ),
                Identity::Td(t) => format!(
                    "mrtd={}; rtmr0={}; rtmr1={}; rtmr2={}; rtmr3={}; mrseam={}",
                    t.mr_td, t.rtmr[0], t.rtmr[1], t.rtmr[2], t.rtmr[3], t.mr_seam
                ),
            };
            format!(
                "{identity}; tcb={}; binding={binding}; verified_at={}",
                q.tcb.status,
                q.verified_at.to_rfc3339()
            )
        }
        AcceptedEvidence::Snp(s) => {
            let r = s.report();
            let id = &r.identity;
            format!(
                "tee=snp; measurement={}; host_data={}; chip_id={}; reported_tcb={}; vmpl={}; binding={binding}; verified_at={}",
                id.measurement,
                id.host_data,
                id.chip_id,
                id.tcb.reported,
                id.vmpl,
                r.verified_at.to_rfc3339()
            )
        }
        AcceptedEvidence::Nitro(n) => {
            let id = n.identity();
            let pcr = |i| id.pcr(i).unwrap_or("-");
            format!(
                "tee=nitro; pcr0={}; pcr1={}; pcr2={}; module_id={}; timestamp_ms={}; binding={binding}; verified_at={}",
                pcr(0),
                pcr(1),
                pcr(2),
                id.module_id,
                id.timestamp_ms,
                n.verified_at().to_rfc3339()
            )
        }
    };
    http::HeaderValue::from_str(&text).ok()
}

/// The head of a response from an attested connection, as the client gets it: hop-by-hop
/// headers out, and only the proxy speaks for the enclave (whatever upstream sent under the
/// attestation header's name goes; ours is added only when configured).
/// With `attestation_header` (the configuration's), the proxy says what it verified.
pub(crate) fn speak_for(
    headers: &mut http::HeaderMap,
    verdict: &CachedVerdict,
    attestation_header: bool,
) {
    strip_hop_by_hop(headers);
    headers.remove(&ATTESTATION);
    if attestation_header {
        if let Some(v) = what_was_verified(verdict) {
            headers.insert(ATTESTATION.clone(), v);
        }
    }
}
