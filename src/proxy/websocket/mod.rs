//! WebSockets: the upgrade handshake (HTTP/1.1 `Upgrade` or HTTP/2 extended CONNECT) sent
//! to an enclave on an attested connection of its own, and the switched connection's bytes
//! piped both ways, judged again under each new generation, logged at close.

pub(crate) mod handshake;
pub(crate) mod pipe;
