//! Destinations that are not enclave hosts, under `unmatched = "passthrough"`: a plain
//! CONNECT tunnel (bytes), plain HTTP forwarding (a WebSocket upgrade included), and the
//! one dial both use, which resolves a name once and never reaches an enclave's address,
//! a local one or the proxy itself.

pub(crate) mod dial;
pub(crate) mod http;
pub(crate) mod tunnel;
