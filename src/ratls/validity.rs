//! PURE. The RA-TLS certificate's own freshness, for every TEE: its validity window, and the
//! entry's `max_cert_age_secs` counted from its notBefore.

use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::time::UnixTime;

/// The certificate's validity window and the entry's `max_cert_age_secs`, as for Intel.
pub(crate) fn check_cert_window(
    (not_before, not_after): (i64, i64),
    max_cert_age_secs: Option<u64>,
    now: UnixTime,
) -> Result<(), Refusal> {
    if now.0 < not_before || now.0 > not_after {
        return Err(Refusal::new(
            RefusalCode::CertificateExpired,
            format!(
                "the RA-TLS certificate is valid {} .. {}, not at {now}",
                UnixTime(not_before),
                UnixTime(not_after)
            ),
        ));
    }
    // Attestation is as fresh as the certificate carrying it: a certificate valid for
    // years can outlive a TCB recovery.
    if let Some(max) = max_cert_age_secs {
        let age = now.0.saturating_sub(not_before);
        if age > i64::try_from(max).unwrap_or(i64::MAX) {
            return Err(Refusal::new(
                RefusalCode::CertificateTooOld,
                format!(
                    "the RA-TLS certificate was issued {} ({age} s ago), more than max_cert_age_secs = {max}",
                    UnixTime(not_before)
                ),
            ));
        }
    }
    Ok(())
}
