//! ratls-proxy: verify Intel SGX RA-TLS attestation for clients that cannot.
//!
//! The pure core (`quote`, `collateral` verification, `policy`, `tcb`, `pki`) does no
//! I/O and reads no clock; time is a parameter. I/O lives in `cli` and `main`.

pub mod admin;
pub mod appraisal;
pub mod ca;
pub mod cli;
pub mod collateral;
pub mod config;
#[cfg(feature = "sim")]
pub mod demo;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod proxy;
pub mod quote;
pub mod ratls;
pub mod refusal;
pub mod report;
pub mod setup;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tcb;
pub mod trust;
pub mod unix_time;
