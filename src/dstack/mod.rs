//! PURE. dstack's RA-TLS evidence (Dstack-TEE/dstack): the versioned attestation of
//! extension `1.3.6.1.4.1.62397.1.8` in both wire forms (SCALE `V0`, MessagePack `V1`) and
//! the legacy pair `.1.1` (raw quote) + `.1.2` (event log JSON), parsed into one borrowed
//! typed view; the key binding; the event-log replay against the quote's RTMRs; the app
//! identity read from RTMR3's runtime events. No I/O, no clock, no tokio.
//!
//! The order of use: [`Attestation::parse`] (or [`Attestation::from_legacy`]), then
//! [`Platform::tdx`] (other platforms are carried, not yet verified), [`binding::check`]
//! against the certificate key and the quote's REPORTDATA, [`replay::replay`] against the
//! quote's RTMRs, and only from the replayed log [`app::AppIdentity::derive`].

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod app;
mod attestation;
pub mod binding;
mod cursor;
mod envelope;
mod error;
mod legacy;
pub mod limits;
mod msgpack;
pub mod replay;
mod scale;
mod v0;
mod v1;
pub mod vm_config;

pub use attestation::{
    Attestation, Event, EventVersion, Platform, RuntimeEvent, Stack, TdxEvidence, Wire,
};
pub use envelope::{extension_value, OID_ATTESTATION, OID_EVENT_LOG};
pub use error::{AttestationError, UnsupportedTee};
