//! The simulated platforms (cargo feature `sim`): a test PKI standing in for Intel, quote
//! and collateral forging, RA-TLS enclave servers, and (`snp`) AMD's SEV-SNP PKI and
//! reports. Only the hardware is simulated: certificates, signatures, TLS and HTTP are real.

mod der;
pub mod dstack;
// AWS Nitro
pub mod dstack_nitro;
pub mod dstack_snp;
pub mod enclave;
pub mod evervault;
pub mod nitro;
pub mod pki;
mod platform;
pub mod quote;
pub mod snp;
mod snp_x509;
mod streaming;

pub use dstack::{DstackSpec, DstackWire};
// AWS Nitro
pub use dstack_nitro::{NitroEnclaveSpec, SimNitroCarrier};
pub use dstack_snp::{SnpSim, SnpSimSpec};
pub use enclave::{ratls_identity, RaTlsIdentity, SimBinding, SimConfig, SimEnclave};
pub use pki::{PckLeaf, SimError, SimPki, SimPlatform};
pub use quote::{forge, forge_td, EnclaveSpec, TdSpec};
