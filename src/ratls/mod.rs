//! RA-TLS: the quote in a certificate, the key binding, and verification of live
//! connections (the rustls verifier, the verdict cache, the attested connector).

pub mod binding;
pub mod cache;
pub mod certificate;
pub mod client;
pub mod dstack;
pub mod evervault;
pub mod evidence;
pub mod nitro;
pub mod snp;
mod validity;
pub mod verifier;

pub use binding::{Binding, BindingMode};
pub use cache::{CacheStats, GenerationId, PolicyId, VerdictCache};
pub use certificate::{
    appraise_certificate, appraise_certificate_for, appraise_certificate_judged, AcceptedCert,
    AcceptedEvidence, CertAppraisal, EntryJudges,
};
pub use nitro::{NitroAppraisal, NitroJudge};
pub use snp::{SnpAppraisal, SnpJudge};
pub use verifier::{client_config, RaTlsRefused, RaTlsVerifier};
