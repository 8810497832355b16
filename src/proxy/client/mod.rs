//! The client's side of a connection: admission under `max_connections` (and the HTTP/1
//! server every client connection gets), the idle and header timeouts, and the client's
//! TLS session inside an answered CONNECT.

pub(crate) mod admit;
pub(crate) mod idle;
pub(crate) mod tls;
