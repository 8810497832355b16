//! The one place that builds refusal responses: HTTP status, RFC 9209 `Proxy-Status`,
//! and a small JSON body with a stable `code`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::config::RefusalDetails;

/// Why the proxy answered instead of the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ProxyRefusal {
    /// Attestation or verification failed.
    Attestation(Refusal),
    /// The upstream could not be reached.
    Unreachable(String),
    /// The upstream did not answer in time.
    Timeout(String),
    /// The destination is not allowed (CONNECT).
    DestinationDenied(String),
    /// The request is not allowed (plain HTTP).
    RequestDenied(String),
    /// The request is malformed.
    BadRequest(String),
    /// The proxy failed internally (for example, minting a leaf).
    Internal(String),
    /// A destination rule refused it (403): an enclave host at an unlisted port, an
    /// enclave's address through passthrough, a local destination.
    Destination(RefusalCode, String),
    /// No upstream connection could be had within the connect timeout (503).
    Capacity(String),
}

impl ProxyRefusal {
    /// HTTP status.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::Attestation(_) | Self::Unreachable(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::DestinationDenied(_) | Self::RequestDenied(_) | Self::Destination(..) => {
                StatusCode::FORBIDDEN
            }
            Self::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 9209 error type.
    pub(super) fn proxy_status_error(&self) -> &'static str {
        match self {
            Self::Attestation(_) => "tls_certificate_error",
            Self::Unreachable(_) => "destination_unavailable",
            Self::Timeout(_) => "connection_timeout",
            Self::DestinationDenied(_) | Self::Destination(..) => "destination_ip_prohibited",
            Self::Capacity(_) => "connection_limit_reached",
            Self::RequestDenied(_) => "http_request_denied",
            Self::BadRequest(_) => "http_request_error",
            Self::Internal(_) => "proxy_internal_error",
        }
    }

    /// The stable code: the refusal code for attestation failures, else the error type.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::Attestation(r) => r.code.as_str(),
            Self::Destination(code, _) => code.as_str(),
            Self::Capacity(_) => RefusalCode::UpstreamCapacity.as_str(),
            other => other.proxy_status_error(),
        }
    }

    /// Human-readable reasons.
    pub(super) fn reasons(&self) -> Vec<String> {
        match self {
            Self::Attestation(r) => r.reasons.clone(),
            Self::Unreachable(s)
            | Self::Timeout(s)
            | Self::DestinationDenied(s)
            | Self::RequestDenied(s)
            | Self::BadRequest(s)
            | Self::Internal(s)
            | Self::Destination(_, s)
            | Self::Capacity(s) => vec![s.clone()],
        }
    }

    /// The response to send; the connection is closed after it. With
    /// `refusal_details = "code"` the reasons stay in the log.
    pub(super) fn response(&self, host: &str, details: RefusalDetails) -> Response<ProxyBody> {
        let reasons = match details {
            RefusalDetails::Full => self.reasons(),
            RefusalDetails::Code => Vec::new(),
        };
        let details: String = format!("{}: {}", self.code(), reasons.join("; "))
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .take(300)
            .collect();
        let body = serde_json::json!({
            "error": self.proxy_status_error(),
            "code": self.code(),
            "reasons": reasons,
            "host": host,
        });
        Response::builder()
            .status(self.status())
            .header("content-type", "application/json")
            .header(
                "proxy-status",
                format!(
                    "ratls-proxy; error={}; details=\"{details}\"",
                    self.proxy_status_error()
                ),
            )
            .header("connection", "close")
            .body(
                Full::new(Bytes::from(format!("{body}\n")))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap_or_else(|_| {
                Response::new(
                    http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed(),
                )
            })
    }
}
