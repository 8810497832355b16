//! The simulated SGX platform (cargo feature `sim`): a test PKI standing in for Intel,
//! quote and collateral forging, and RA-TLS enclave servers. Only the hardware is
//! simulated: certificates, signatures, TLS and HTTP are all real.

mod der;
pub mod enclave;
pub mod nitro;
pub mod pki;
mod platform;
pub mod quote;
mod streaming;

pub use enclave::{ratls_identity, RaTlsIdentity, SimBinding, SimConfig, SimEnclave};
pub use pki::{PckLeaf, SimError, SimPki, SimPlatform};
pub use quote::{forge, forge_td, EnclaveSpec, TdSpec};
