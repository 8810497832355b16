//! ratls-proxy: verify Intel SGX and TDX RA-TLS attestation for clients that cannot.
//!
//! The house, from the bottom up (arrows point down; nothing imports a layer above it):
//!
//! - `dcap` (PURE): quotes, collateral, the verification steps. No I/O, no clock.
//! - `cbor` (PURE): the one CBOR reader (DICE evidence, Nitro documents).
//! - `nitro` (PURE): AWS Nitro Enclaves attestation documents: COSE_Sign1, the chain to the
//!   pinned AWS root, CRLs as parameters, key binding. Not yet wired into the proxy.
//! - `snp` (PURE): AMD SEV-SNP reports, the VCEK/VLEK chain, the report signature. Not yet
//!   wired into the proxy.
//! - `dstack` (PURE): dstack's attestation formats, key binding, event-log replay, app identity.
//!   `ratls` uses its key binding for the `.1.1` carrier; the `.1.8` attestation and the app
//!   identity are not yet wired into the proxy.
//! - `appraise` (PURE): policy, the appraisal of one quote, the refusal vocabulary.
//! - `ratls`: an RA-TLS certificate judged (evidence, key binding, rustls verifier, verdict
//!   cache) and the attested TLS connector.
//! - `source` (edge): where trust and collateral come from (PCS/PCCS fetch, files).
//! - `config`, `addr`, `ca`, `metrics`, `clock`, `tcb_watch`: the configuration,
//!   destinations, the local CA, counters, the wall clock, each enclave host's TCB under
//!   Intel's standard and early data.
//! - `proxy` (edge): the forward proxy; `admin` (edge): the admin listener; `cli` (edge):
//!   the commands.
//!
//! The verification stack (`dcap`, `appraise`, `ratls`) and the simulator (`sim`) are
//! public; the application is private, with the small facade below for the binary, the
//! tests, benches and examples.

mod addr;
mod admin;
pub mod appraise;
mod audit;
mod bytes;
mod ca;
pub mod cbor;
mod cli;
mod clock;
mod config;
pub mod dcap;
pub mod dstack;
mod metrics;
pub mod nitro;
mod proxy;
pub mod ratls;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snp;
mod source;
mod tcb_watch;

pub use addr::Authority;
pub use ca::LocalCa;
pub use cli::{not_in_this_build, run, Cli, Command, EXIT_CANNOT_CHECK};
pub use config::Config;
pub use proxy::{Proxy, Running};
pub use source::fetch::{CollateralCache, RefreshPolicy};
pub use source::kds::{KdsCache, KdsEndpoint, KdsError, SnpCollateralSource};
pub use source::nitro::{
    nitro_collateral, NitroCrlCache, NitroCrlError, NitroCrlSpec, NitroCrlStats,
};
pub use source::pcs::PcsEndpoint;
pub use source::snp_files::SnpFiles;
pub use source::{trust_and_collateral, CollateralSetup, CollateralSpec, SourceConfig};
