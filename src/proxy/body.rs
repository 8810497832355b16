//! The body every message in the proxy carries, and why a relayed one stops short.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// The body type everywhere in the proxy.
pub(crate) type ProxyBody = BoxBody<Bytes, BodyError>;

/// Why a relayed body stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The side it came from failed (reset, closed mid-body, ...).
    #[error(transparent)]
    Side(#[from] hyper::Error),
    /// The proxy cut the exchange: its enclave is refused under the generation or collateral
    /// snapshot in force (the refusal code).
    #[error("cut by ratls-proxy: the enclave is refused ({0})")]
    Cut(&'static str),
}

/// No body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `s` as the whole body.
pub(crate) fn full(s: String) -> ProxyBody {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}
