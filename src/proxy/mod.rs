//! EDGE. The forward proxy, one file per job:
//!
//! - `state`: the proxy, its generations (config + policy + collateral) and reload;
//! - `listen`: binding, the accept loops of the proxy and route listeners, the pool sweep;
//! - `admit`: the connection cap and a client connection's slot;
//! - `cores`: one single-threaded runtime per core, each serving its share of the connections;
//! - `dispatch`: one request on the proxy listener: CONNECT or absolute-form, by destination;
//! - `intercept`: an attested CONNECT answered, the client's TLS terminated, its requests served;
//! - `client_tls`: the client's TLS session inside an answered CONNECT (tunnels and pages);
//! - `passthrough`: plain tunnels and plain HTTP to non-enclave destinations;
//! - `relay`: one request over an attested connection, and the access-log calls;
//! - `tunnel_request`: a request in a tunnel or on a route, to `relay` or `upgrade`;
//! - `upgrade`: WebSocket upgrades (HTTP/1.1 `Upgrade`, HTTP/2 extended CONNECT) sent to an
//!   enclave on an attested connection of their own;
//! - `upgraded`: a switched connection's bytes relayed both ways, judged again under each
//!   new generation, logged at close;
//! - `judge`: an open exchange's verdict checked again before each chunk and when a reload
//!   or a new collateral snapshot fires (an integer compare while nothing changed);
//! - `judged`: a relayed body under its exchange's judge, cut when the enclave is refused;
//! - `refusal`: the one place that builds refusal responses (JSON, or `refusal/page`'s HTML);
//! - `refused_tunnel`: a refused CONNECT to an enclave host answered inside the tunnel, for
//!   browsers (which never show a failed CONNECT's answer);
//! - `audited`: verdicts into the audit trail, once each, before the connection is used;
//! - `rewrite`, `pool`, `target`, `idle`: message rewriting, the attested upstream pool
//!   (`pool/attest`: attested dialing, and the connections upgrades get to themselves),
//!   destinations matched to enclave entries, idle and header timeouts.
//!
//! Enclave hosts are never tunnelled blindly: a CONNECT is answered only after an attested
//! upstream connection exists, and every request goes over such a connection.

mod admit;
mod audited;
mod client_tls;
mod cores;
mod dispatch;
mod idle;
mod intercept;
mod judge;
mod judged;
mod listen;
mod passthrough;
mod pool;
mod refusal;
mod refused_tunnel;
mod relay;
mod rewrite;
mod state;
mod target;
mod tunnel_request;
mod upgrade;
mod upgraded;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};

pub(crate) use admit::next_client;
pub(crate) use cores::{loads as thread_loads, resolve as resolve_threads, start as start_cores};
pub use listen::Running;
pub use state::Proxy;

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

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}
