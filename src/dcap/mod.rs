//! PURE. Intel DCAP: quotes as zero-copy typed views, collateral as the exact signed bytes,
//! collateral verified once per snapshot, and the verification steps in the order of the
//! reference. No I/O, no clock, no tokio: time and collateral are parameters.

pub mod anchor_memo;
pub mod collateral;
pub mod early;
pub mod error;
pub mod identity;
pub mod ids;
pub mod known;
pub mod pck_chain;
pub mod pinned;
pub mod pki;
pub mod preloaded;
pub mod quote;
pub(crate) mod root;
pub mod tcb;
pub mod tdx;
pub mod time;
pub mod trust;
pub mod verified;
pub mod verify;
