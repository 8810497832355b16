//! One HTTP request to an enclave: relayed over an attested connection, whether it came
//! absolute-form to the proxy listener or inside a connection bound to one enclave (an
//! intercepted tunnel, a sidecar route).

pub(crate) mod inside;
pub(crate) mod relay;
