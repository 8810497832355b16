//! The one place that builds refusal responses: HTTP status, RFC 9209 `Proxy-Status`,
//! and a small JSON body with a stable `code`, or, for a browser (`Accept: text/html`), a
//! small self-contained HTML page saying the same (`page`).

mod page;

use http::{Response, StatusCode};

use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::config::RefusalDetails;
use crate::proxy::body::{full, ProxyBody};

/// Why the proxy answered instead of the destination: the one error toward the client
/// (the pool's too), from which its status, `Proxy-Status` and body are derived. It reads
/// as its reason (an attestation refusal as `code: reasons`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyRefusal {
    /// Attestation or verification failed.
    #[error("{0}")]
    Attestation(Refusal),
    /// The upstream could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The upstream did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The destination is not allowed (CONNECT).
    #[error("{0}")]
    DestinationDenied(String),
    /// The request is not allowed (plain HTTP).
    #[error("{0}")]
    RequestDenied(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The proxy failed internally (for example, minting a leaf).
    #[error("{0}")]
    Internal(String),
    /// A destination rule refused it (403): an enclave host at an unlisted port, an
    /// enclave's address through passthrough, a local destination.
    #[error("{1}")]
    Destination(RefusalCode, String),
    /// No upstream connection could be had within the connect timeout (503).
    #[error("{0}")]
    Capacity(String),
    /// A method not relayed where it was sent (405): `CONNECT` inside a tunnel or on a route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A request inside a tunnel for another host than the tunnel's (421).
    #[error("{0}")]
    Misdirected(String),
}

impl ProxyRefusal {
    /// HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Attestation(_) | Self::Unreachable(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::DestinationDenied(_) | Self::RequestDenied(_) | Self::Destination(..) => {
                StatusCode::FORBIDDEN
            }
            Self::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 9209 error type.
    pub(crate) fn proxy_status_error(&self) -> &'static str {
        match self {
            Self::Attestation(_) => "tls_certificate_error",
            Self::Unreachable(_) => "destination_unavailable",
            Self::Timeout(_) => "connection_timeout",
            Self::DestinationDenied(_) | Self::Destination(..) => "destination_ip_prohibited",
            Self::Capacity(_) => "connection_limit_reached",
            Self::RequestDenied(_) | Self::MethodNotAllowed(_) | Self::Misdirected(_) => {
                "http_request_denied"
            }
            Self::BadRequest(_) => "http_request_error",
            Self::Internal(_) => "proxy_internal_error",
        }
    }

    /// The stable code: the refusal code for attestation failures, else the error type.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Attestation(r) => r.code.as_str(),
            Self::Destination(code, _) => code.as_str(),
            Self::Capacity(_) => RefusalCode::UpstreamCapacity.as_str(),
            other => other.proxy_status_error(),
        }
    }

    /// Human-readable reasons.
    pub(crate) fn reasons(&self) -> Vec<String> {
        match self {
            Self::Attestation(r) => r.reasons.clone(),
            Self::Unreachable(s)
            | Self::Timeout(s)
            | Self::DestinationDenied(s)
            | Self::RequestDenied(s)
            | Self::BadRequest(s)
            | Self::Internal(s)
            | Self::Destination(_, s)
            | Self::Capacity(s)
            | Self::MethodNotAllowed(s)
            | Self::Misdirected(s) => vec![s.clone()],
        }
    }

    /// The response to send (JSON, the refusal's own status); the connection is closed
    /// after it. With `refusal_details = "code"` the reasons stay in the log.
    pub(crate) fn response(&self, host: &str, details: RefusalDetails) -> Response<ProxyBody> {
        self.rendered(host, details, Format::Json)
    }

    /// The response in the format the client asked for, with the refusal's own status.
    pub(crate) fn rendered(
        &self,
        host: &str,
        details: RefusalDetails,
        format: Format,
    ) -> Response<ProxyBody> {
        self.build(self.status(), host, details, format)
    }

    /// The answer to every request inside a refused CONNECT's tunnel: always 502, since
    /// the proxy stands in as the origin's gateway there, and the client's browser shows
    /// the status as the origin's.
    pub(crate) fn in_tunnel(
        &self,
        host: &str,
        details: RefusalDetails,
        format: Format,
    ) -> Response<ProxyBody> {
        self.build(StatusCode::BAD_GATEWAY, host, details, format)
    }

    fn build(
        &self,
        status: StatusCode,
        host: &str,
        details: RefusalDetails,
        format: Format,
    ) -> Response<ProxyBody> {
        let reasons = match details {
            RefusalDetails::Full => self.reasons(),
            RefusalDetails::Code => Vec::new(),
        };
        // Quoted-string safe: no quote, backslash or control character can end it early.
        let proxy_details: String = format!("{}: {}", self.code(), reasons.join("; "))
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .take(300)
            .collect();
        let mut b = Response::builder().status(status);
        if let Self::MethodNotAllowed(_) = self {
            // RFC 9110 15.5.6: a 405 lists what is allowed; here, every method but CONNECT.
            b = b.header(
                "allow",
                "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE",
            );
        }
        let b = b
            .header(
                "proxy-status",
                format!(
                    "ratls-proxy; error={}; details=\"{proxy_details}\"",
                    self.proxy_status_error()
                ),
            )
            .header("connection", "close")
            // Inside a tunnel the page is served as the origin's: never cache it for it.
            .header("cache-control", "no-store");
        let built = match format {
            Format::Json => {
                let body = serde_json::json!({
                    "error": self.proxy_status_error(),
                    "code": self.code(),
                    "reasons": reasons,
                    "host": host,
                });
                b.header("content-type", "application/json")
                    .body(full(format!("{body}\n")))
            }
            Format::Html => b
                .header("content-type", "text/html; charset=utf-8")
                // The page needs nothing but its inline style: nothing else may load or run,
                // even if some value slipped through escaping.
                .header(
                    "content-security-policy",
                    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
                )
                .header("x-content-type-options", "nosniff")
                .body(full(page::html(self, host, &reasons, details))),
        };
        built.unwrap_or_else(|_| Response::new(full(String::new())))
    }
}

/// How a refusal's body is written, from the request's `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The stable JSON object (the default: scripts and tools).
    Json,
    /// A small self-contained page, for a person in a browser.
    Html,
}

impl Format {
    /// HTML when `Accept` names `text/html` with a non-zero weight, else JSON (so an absent
    /// `Accept`, `*/*` and `application/json` keep today's answer).
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let values = headers.get_all(http::header::ACCEPT);
        // `text/html` contains `html`: a value without it names no HTML range, and the
        // usual `*/*` or absent `Accept` skips the range-by-range parse (measured per request).
        let named = |v: &http::HeaderValue| {
            v.as_bytes()
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"html"))
        };
        if !values.iter().any(named) {
            return Self::Json;
        }
        let html = values
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .or_else(|| p.strip_prefix("Q="))
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("text/html") && !refused
            });
        if html {
            Self::Html
        } else {
            Self::Json
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Format {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_str(v).expect("value"),
        );
        Format::of(&h)
    }

    #[test]
    fn html_only_when_asked_for() {
        assert_eq!(Format::of(&http::HeaderMap::new()), Format::Json);
        assert_eq!(accept("*/*"), Format::Json);
        assert_eq!(accept("application/json"), Format::Json);
        assert_eq!(accept("text/html;q=0"), Format::Json);
        assert_eq!(accept("Text/HTML"), Format::Html);
        assert_eq!(
            accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Format::Html
        );
    }

    /// The `html` pre-check only skips values the range-by-range parse would find no
    /// `text/html` in: both agree on values with and without it, in any case, and across
    /// several `Accept` headers.
    #[test]
    fn the_html_pre_check_changes_no_answer() {
        for (v, want) in [
            ("application/xhtml+xml", Format::Json),
            ("text/htm, */*", Format::Json),
            ("text/html-fragment", Format::Json),
            ("TEXT/HTML;Q=0.5", Format::Html),
            ("text/html ; q=0.0", Format::Json),
            (" text/html", Format::Html),
            ("application/json, text/HtMl;q=1", Format::Html),
        ] {
            assert_eq!(accept(v), want, "{v}");
        }
        let mut h = http::HeaderMap::new();
        h.append(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
        h.append(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/html"),
        );
        assert_eq!(Format::of(&h), Format::Html, "the second header names it");
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::ACCEPT,
            http::HeaderValue::from_bytes(b"text/html\xff").expect("opaque bytes"),
        );
        assert_eq!(Format::of(&h), Format::Json, "not text: skipped as before");
    }

    #[test]
    fn the_page_in_a_tunnel_is_502_with_its_guards() {
        let r = ProxyRefusal::Attestation(Refusal::new(RefusalCode::DebugEnclave, "<b>\"x\""));
        let resp = r.in_tunnel("h.test", RefusalDetails::Full, Format::Html);
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let h = resp.headers();
        assert!(h["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html"));
        assert!(h["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("default-src 'none'"));
        assert_eq!(h["cache-control"], "no-store");
        // The Proxy-Status quoted string cannot be broken by a reason's quote.
        assert_eq!(
            h["proxy-status"],
            "ratls-proxy; error=tls_certificate_error; details=\"debug_enclave: <b>x\""
        );
        let json = r.rendered("h.test", RefusalDetails::Code, Format::Json);
        assert_eq!(json.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(json.headers()["content-type"], "application/json");
    }
}
