//! PURE. What a verified AWS Nitro enclave must look like for a `tee = "nitro"` entry: PCR
//! allow-lists (PCR0 required; PCR1, PCR2, PCR3, PCR4, PCR8 optional), no debug mode unless
//! allowed, and a fresh enough document. Each violation names the refusal code of DESIGN.md
//! it will become (`pcr_mismatch`, `debug_enclave`, `document_too_old`); phase 2 folds them,
//! and [`error_code`]'s mapping of verification errors, into `RefusalCode` and the verdict.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fmt;
use std::str::FromStr;

use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::time::UnixTime;
use crate::nitro::error::NitroError;
use crate::nitro::revocation::RevocationStatus;
use crate::nitro::{AttestationDoc, NitroRoot, VerifiedDocument};

/// The PCRs a policy may pin: image, kernel and bootstrap, application, the parent's IAM
/// role, the parent instance, the image's signing certificate.
pub const POLICY_PCRS: [usize; 6] = [0, 1, 2, 3, 4, 8];

/// How far in the future a document's timestamp may be (the enclave's and our clocks
/// differ; dstack allows 5 minutes too).
pub const MAX_FUTURE_SKEW_SECS: i64 = 300;

/// An allowed PCR value: 32, 48 or 64 bytes, written as hex.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PcrValue(Vec<u8>);

impl PcrValue {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<[u8; 48]> for PcrValue {
    fn from(sha384: [u8; 48]) -> Self {
        Self(sha384.to_vec())
    }
}

impl FromStr for PcrValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim()).map_err(|e| format!("`{s}` is not hex: {e}"))?;
        if [32, 48, 64].contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(format!(
                "a PCR is 32, 48 or 64 bytes (64, 96 or 128 hex digits), `{s}` is {}",
                bytes.len()
            ))
        }
    }
}

impl fmt::Display for PcrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for PcrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PcrValue({self})")
    }
}

/// A Nitro policy. An empty list leaves that PCR free, except PCR0: an entry that pins no
/// image would accept any enclave, so an empty `pcr0` refuses every document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NitroPolicy {
    /// Allowed PCR0 (enclave image) values; at least one.
    pub pcr0: Vec<PcrValue>,
    /// Allowed PCR1 (kernel and bootstrap) values.
    pub pcr1: Vec<PcrValue>,
    /// Allowed PCR2 (application) values.
    pub pcr2: Vec<PcrValue>,
    /// Allowed PCR3 (the parent instance's IAM role) values.
    pub pcr3: Vec<PcrValue>,
    /// Allowed PCR4 (the parent instance's ID) values.
    pub pcr4: Vec<PcrValue>,
    /// Allowed PCR8 (the enclave image's signing certificate) values.
    pub pcr8: Vec<PcrValue>,
    /// Accept a debug-mode enclave (PCR0–2 all zeros: nothing of it is measured).
    pub allow_debug: bool,
    /// The oldest document accepted, in seconds (`max_cert_age_secs` for Nitro entries).
    pub max_age_secs: Option<u64>,
}

impl NitroPolicy {
    /// The allow-list for PCR `index` (one of [`POLICY_PCRS`]).
    pub fn allowed(&self, index: usize) -> &[PcrValue] {
        match index {
            0 => &self.pcr0,
            1 => &self.pcr1,
            2 => &self.pcr2,
            3 => &self.pcr3,
            4 => &self.pcr4,
            8 => &self.pcr8,
            _ => &[],
        }
    }
}

/// One way a verified document fails its policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NitroViolation {
    /// A PCR not in its allow-list, or absent (`pcr_mismatch`).
    #[error("PCR{index} {} is not in the allow-list [{}]", .actual.as_deref().unwrap_or("(absent)"), join(.allowed))]
    Pcr {
        /// Which PCR.
        index: usize,
        /// Its value, hex; `None` when the document does not have it.
        actual: Option<String>,
        /// The policy's list.
        allowed: Vec<PcrValue>,
    },
    /// A debug-mode enclave, not allowed (`debug_enclave`).
    #[error("the enclave runs in debug mode (PCR0, PCR1 and PCR2 are all zeros: nothing is measured) and the policy does not allow debug enclaves")]
    Debug,
    /// The document is older than the policy allows (`document_too_old`).
    #[error("the attestation document is {age_secs} s old, more than the {max_secs} s allowed")]
    TooOld {
        /// Its age.
        age_secs: i64,
        /// The policy's maximum.
        max_secs: u64,
    },
    /// The document is stamped in the future, beyond clock skew (`document_too_old`: it
    /// is not a fresh document of now).
    #[error("the attestation document is stamped {ahead_secs} s in the future (more than the {MAX_FUTURE_SKEW_SECS} s of clock skew allowed)")]
    FromTheFuture {
        /// How far ahead.
        ahead_secs: i64,
    },
}

fn join(list: &[PcrValue]) -> String {
    list.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl NitroViolation {
    /// The refusal code of DESIGN.md this violation becomes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Pcr { .. } => "pcr_mismatch",
            Self::Debug => "debug_enclave",
            Self::TooOld { .. } | Self::FromTheFuture { .. } => "document_too_old",
        }
    }
}

/// Every violation of `policy` by `verified` at `now`, in ranking order (debug first, then
/// the PCRs in index order, then age); empty means accepted.
pub fn evaluate(
    policy: &NitroPolicy,
    verified: &VerifiedDocument<'_>,
    now: UnixTime,
) -> Vec<NitroViolation> {
    let doc = verified.doc();
    let mut out = Vec::new();
    if doc.is_debug() && !policy.allow_debug {
        out.push(NitroViolation::Debug);
    }
    for index in POLICY_PCRS {
        let allowed = policy.allowed(index);
        if allowed.is_empty() && index != 0 {
            continue;
        }
        let actual = doc.pcrs.get(index);
        if !actual.is_some_and(|a| allowed.iter().any(|v| v.as_bytes() == a.0)) {
            out.push(NitroViolation::Pcr {
                index,
                actual: actual.map(|a| a.to_string()),
                allowed: allowed.to_vec(),
            });
        }
    }
    out.extend(age(doc.timestamp_ms, policy.max_age_secs, now));
    out
}

/// The document's age against `max_age_secs` and clock skew.
pub(crate) fn age(
    timestamp_ms: u64,
    max_age_secs: Option<u64>,
    now: UnixTime,
) -> Option<NitroViolation> {
    let stamped = i64::try_from(timestamp_ms / 1000).unwrap_or(i64::MAX);
    let age_secs = now.0.saturating_sub(stamped);
    if age_secs < MAX_FUTURE_SKEW_SECS.saturating_neg() {
        return Some(NitroViolation::FromTheFuture {
            ahead_secs: age_secs.saturating_neg(),
        });
    }
    match max_age_secs {
        Some(max) if age_secs > i64::try_from(max).unwrap_or(i64::MAX) => {
            Some(NitroViolation::TooOld {
                age_secs,
                max_secs: max,
            })
        }
        _ => None,
    }
}

/// The refusal code of DESIGN.md each verification error becomes (exhaustive, no `_`).
pub fn error_code(e: &NitroError) -> &'static str {
    match e {
        NitroError::Document(_) => "quote_malformed",
        NitroError::Chain { .. } | NitroError::TimestampOutsideLeaf { .. } => "chain_invalid",
        NitroError::CrlInvalid(_) => "chain_invalid",
        NitroError::Expired { .. } => "certificate_expired",
        NitroError::Signature => "signature_invalid",
        NitroError::Revoked { .. } => "revoked",
        NitroError::RevocationUnknown { .. } => "collateral_unavailable",
        NitroError::CrlExpired { .. } => "collateral_expired",
    }
}

/// The [`RefusalCode`] a code string of [`NitroViolation::code`] or [`error_code`] names
/// (every one is a code of DESIGN.md: `tests` pins them; anything else refuses as
/// `quote_malformed`, never accepts).
pub fn refusal_code(code: &str) -> RefusalCode {
    RefusalCode::ALL
        .into_iter()
        .find(|c| c.as_str() == code)
        .unwrap_or(RefusalCode::QuoteMalformed)
}

/// What a verified document shows, for reports, the audit trail and the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitroIdentity {
    /// The issuing Nitro hypervisor module (`i-…-enc…`).
    pub module_id: String,
    /// When the document was made, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// PCR0–2 all zeros.
    pub debug: bool,
    /// Every PCR the document carries, by index, hex.
    pub pcrs: Vec<(usize, String)>,
}

impl NitroIdentity {
    /// The fields of `doc`.
    pub fn of(doc: &AttestationDoc<'_>) -> Self {
        Self {
            module_id: doc.module_id.to_owned(),
            timestamp_ms: doc.timestamp_ms,
            debug: doc.is_debug(),
            pcrs: doc.pcrs.iter().map(|(i, p)| (i, p.to_string())).collect(),
        }
    }

    /// PCR `index`, hex, if the document carries it.
    pub fn pcr(&self, index: usize) -> Option<&str> {
        self.pcrs
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, v)| v.as_str())
    }
}

/// An AWS Nitro enclave accepted: a document whose chain, signature and revocation verified
/// and which its policy passed. Made only by [`accept`].
#[derive(Clone, Debug)]
pub struct NitroAccepted {
    identity: NitroIdentity,
    revocation: RevocationStatus,
    valid_until: UnixTime,
    verified_at: UnixTime,
}

impl NitroAccepted {
    /// What the document shows.
    pub fn identity(&self) -> &NitroIdentity {
        &self.identity
    }

    /// Which certificates of the chain a CRL covered.
    pub fn revocation(&self) -> &RevocationStatus {
        &self.revocation
    }

    /// The last second the verdict holds: every certificate of the chain (the signing one
    /// lives about three hours), the CRLs used (their nextUpdate) and the document's age
    /// limit.
    pub fn valid_until(&self) -> UnixTime {
        self.valid_until
    }

    /// When it was verified.
    pub fn verified_at(&self) -> UnixTime {
        self.verified_at
    }
}

/// Every violation of `policy` by `verified` at `now` as one refusal headed by the first, or
/// `None`. Needs no collateral, so it is judged before revocation: an enclave the policy refuses
/// is refused for that, and never makes the proxy fetch CRLs.
pub fn refusal(
    policy: &NitroPolicy,
    verified: &VerifiedDocument<'_>,
    now: UnixTime,
) -> Option<Refusal> {
    let violations = evaluate(policy, verified, now);
    violations.first().map(|first| Refusal {
        code: refusal_code(first.code()),
        reasons: violations.iter().map(ToString::to_string).collect(),
    })
}

/// `verified` (with its CRL verdict `revocation`) under `policy` at `now`: the acceptance,
/// or every violation as one refusal headed by the first.
pub fn accept(
    policy: &NitroPolicy,
    (verified, root): (&VerifiedDocument<'_>, &NitroRoot),
    revocation: RevocationStatus,
    now: UnixTime,
) -> Result<NitroAccepted, Refusal> {
    if let Some(refused) = refusal(policy, verified, now) {
        return Err(refused);
    }
    let mut valid_until = verified.valid_until(root);
    if let Some(crl) = revocation.until {
        valid_until = valid_until.min(crl);
    }
    if let Some(max) = policy.max_age_secs {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        valid_until = valid_until.min(UnixTime(
            verified.doc().timestamp_secs().saturating_add(max),
        ));
    }
    Ok(NitroAccepted {
        identity: NitroIdentity::of(verified.doc()),
        revocation,
        valid_until,
        verified_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nitro_code_string_is_a_refusal_code() {
        for code in [
            "pcr_mismatch",
            "debug_enclave",
            "document_too_old",
            "quote_malformed",
            "chain_invalid",
            "certificate_expired",
            "signature_invalid",
            "revoked",
            "collateral_unavailable",
            "collateral_expired",
        ] {
            assert_eq!(refusal_code(code).as_str(), code);
        }
        assert_eq!(refusal_code("no such code"), RefusalCode::QuoteMalformed);
    }

    #[test]
    fn pcr_values_parse_from_hex_of_the_three_lengths_only() {
        assert!("ab".repeat(48).parse::<PcrValue>().is_ok());
        assert!("ab".repeat(32).parse::<PcrValue>().is_ok());
        assert!("ab".repeat(64).parse::<PcrValue>().is_ok());
        assert!("ab".repeat(47).parse::<PcrValue>().is_err());
        assert!("zz".repeat(48).parse::<PcrValue>().is_err());
        let v: Result<PcrValue, _> = "AB".repeat(48).parse();
        assert_eq!(v.map(|v| v.to_string()), Ok("ab".repeat(48)));
    }

    #[test]
    fn age_is_measured_in_seconds_with_skew_for_the_future() {
        let now = UnixTime(1_000_000);
        assert_eq!(age(1_000_000_000, Some(0), now), None);
        assert_eq!(
            age(999_999_999, Some(1), now),
            None,
            "999 999 s: one second old"
        );
        assert!(matches!(
            age(999_998_999, Some(1), now),
            Some(NitroViolation::TooOld { age_secs: 2, .. })
        ));
        assert_eq!(age(1, None, now), None, "no maximum");
        assert_eq!(age(1_000_300_999, None, now), None, "300 s ahead is skew");
        assert!(matches!(
            age(1_000_301_000, None, now),
            Some(NitroViolation::FromTheFuture { ahead_secs: 301 })
        ));
        assert!(matches!(
            age(u64::MAX, Some(10), now),
            Some(NitroViolation::FromTheFuture { .. })
        ));
    }
}
