//! A CONNECT to an enclave host, answered: intercepted (the attested upstream connection
//! first, then the client's TLS terminated and its requests served), or refused, for a
//! browser inside the tunnel.

pub(crate) mod intercept;
pub(crate) mod refused;
