//! EDGE. The forward proxy, in rooms by direction and protocol (each folder's `mod.rs` says
//! what it holds), from the entry down:
//!
//! - `listen`: the proxy and route listeners, their accept loops, the pool sweep;
//! - `dispatch`: one request on the proxy listener, by destination;
//! - `connect/`: a CONNECT to an enclave host: intercepted, or refused (inside the tunnel,
//!   for a browser);
//! - `http/`: an HTTP request to an enclave, relayed over an attested connection (sent to
//!   the proxy, or inside an intercepted tunnel or a sidecar route);
//! - `passthrough/`: any other destination: a plain tunnel, plain HTTP, and their dial;
//! - `websocket/`: WebSocket upgrades to enclaves, and the switched connection's bytes;
//! - `exchange`: one request's record: its verdict, the access-log line, the request metric;
//! - `judge/`: an open exchange's verdict checked again, and bodies cut when it falls;
//! - `state/`: the proxy, its generations (config + policy + collateral), reload, drain;
//! - `upstream/`: attested connections and their pool, the upstream cap, message rewriting
//!   between hops, verdicts into the audit trail;
//! - `refusal/`: the proxy's own answers (status, `Proxy-Status`, JSON or a page);
//! - `client/`: the client connection: admission, idle and header timeouts, its TLS;
//! - `target`, `cores`, `body`: destinations matched to enclave entries, one runtime per
//!   core, the body type.
//!
//! Enclave hosts are never tunnelled blindly: a CONNECT is answered only after an attested
//! upstream connection exists, and every request goes over such a connection.

mod body;
mod client;
mod connect;
mod cores;
mod dispatch;
mod exchange;
mod http;
mod judge;
mod listen;
mod passthrough;
mod refusal;
mod state;
mod target;
mod upstream;
mod websocket;

pub(crate) use client::admit::next_client;
pub(crate) use cores::{loads as thread_loads, resolve as resolve_threads, start as start_cores};
pub use listen::Running;
pub use state::Proxy;
