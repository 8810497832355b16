//! PURE. The whole judgement of one quote: parse, the early DEBUG check, collateral,
//! verification, policy. Keeps whatever was learnt along the way so a refusal can
//! still show the user the parsed identity and TCB.

pub mod app_identity;
pub mod early;
pub mod nitro_policy;
pub mod policy;
pub mod refusal;
pub mod snp_policy;
pub mod snp_source;
pub mod td_policy;
pub mod violation;

use std::sync::Arc;

use crate::appraise::early::{EarlyMode, EarlyOutcome};
use crate::appraise::policy::{Accepted, EnclavePolicy};
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::collateral::Collateral;
use crate::dcap::early::VerifiedEarly;
use crate::dcap::error::VerifyError;
use crate::dcap::identity::Identity;
use crate::dcap::quote::{Quote, QuoteVersion, TeeType};
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::{CollateralDigests, VerifiedCollateral};
use crate::dcap::verify::{self, TcbVerdict};

/// Which collateral a source hands out: it changes whenever that collateral changes, and a
/// verdict made under another snapshot is not to be reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotId(pub u64);

/// Hands out verified collateral for a parsed quote.
pub trait CollateralSource {
    /// Verified collateral fitting `quote` (its FMSPC and PCK CA).
    fn verified_for(&self, quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError>;

    /// Changes whenever the collateral this source hands out changes: a verdict made under
    /// another snapshot id is not to be reused.
    fn snapshot_id(&self) -> SnapshotId {
        SnapshotId::default()
    }

    /// Intel's early TCB data for `quote`'s platform, if held (verified as the standard data
    /// `verified_for` hands out is).
    fn early_for(&self, _quote: &Quote<'_>) -> Option<Arc<VerifiedEarly>> {
        None
    }
}

/// Collateral verified once and shared.
impl CollateralSource for Arc<VerifiedCollateral> {
    fn verified_for(&self, _quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        Ok(Arc::clone(self))
    }
}

/// Raw collateral verified on demand (one-shot use; nothing cached).
pub struct Unverified<'a> {
    /// The collateral bytes.
    pub collateral: &'a Collateral,
    /// The root to verify them against.
    pub anchor: &'a TrustAnchor,
}

impl CollateralSource for Unverified<'_> {
    fn verified_for(&self, _quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        VerifiedCollateral::verify(self.collateral, self.anchor).map(Arc::new)
    }
}

/// Collateral that could not be obtained at all.
impl CollateralSource for VerifyError {
    fn verified_for(&self, _quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        Err(self.clone())
    }
}

/// What the quote says, parsed but not necessarily verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteSummary {
    /// Format version.
    pub version: QuoteVersion,
    /// TEE.
    pub tee: TeeType,
    /// Identity fields of the enclave or TD.
    pub identity: Identity,
}

/// The outcome of judging one quote.
#[derive(Clone, Debug)]
pub struct Appraisal {
    /// Parsed fields, when the quote parsed.
    pub quote: Option<QuoteSummary>,
    /// The TCB judgement, when verification got that far.
    pub tcb: Option<TcbVerdict>,
    /// The collateral used, when verification got that far.
    pub collateral: Option<CollateralDigests>,
    /// Accepted, or refused with a code and reasons.
    pub outcome: Result<Accepted, Refusal>,
    /// The judgement under Intel's early TCB data, for a quote accepted under the standard
    /// data (none when the policy's `early` is off).
    pub early: Option<EarlyOutcome>,
    /// The verification time used.
    pub verified_at: UnixTime,
}

impl Appraisal {
    /// True when accepted.
    pub fn is_accepted(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl Appraisal {
    /// A refusal before any quote was parsed.
    pub fn refused_early(refusal: Refusal, now: UnixTime) -> Self {
        Self {
            quote: None,
            tcb: None,
            collateral: None,
            outcome: Err(refusal),
            early: None,
            verified_at: now,
        }
    }
}

/// Judges `quote_bytes` under `policy` at `now`.
pub fn appraise(
    quote_bytes: &[u8],
    source: &dyn CollateralSource,
    policy: &EnclavePolicy,
    now: UnixTime,
) -> Appraisal {
    // A bare quote carries no dstack app identity: a policy pinning one refuses it.
    appraise_with(quote_bytes, source, policy, now, |_| policy.app.check(None))
}

/// Like [`appraise`], with `precheck` (cheap checks such as the key binding) run after
/// the DEBUG check and before any signature work.
pub fn appraise_with(
    quote_bytes: &[u8],
    source: &dyn CollateralSource,
    policy: &EnclavePolicy,
    now: UnixTime,
    precheck: impl FnOnce(&Quote<'_>) -> Result<(), Refusal>,
) -> Appraisal {
    let refused = |quote, tcb, refusal: Refusal| Appraisal {
        quote,
        tcb,
        collateral: None,
        outcome: Err(refusal),
        early: None,
        verified_at: now,
    };
    let quote = match Quote::parse(quote_bytes) {
        Ok(q) => q,
        Err(e) => return refused(None, None, VerifyError::from(e).into()),
    };
    let summary = QuoteSummary {
        version: quote.header.version,
        tee: quote.header.tee,
        identity: Identity::of(&quote.body),
    };
    if let Err(v) = policy.check_early(&quote.body) {
        return refused(Some(summary), None, Refusal::new(v.code(), v.to_string()));
    }
    if let Err(refusal) = precheck(&quote) {
        return refused(Some(summary), None, refusal);
    }
    let verified = source
        .verified_for(&quote)
        .and_then(|collateral| verify::verify(&quote, &collateral, now));
    match verified {
        // Without collateral, the identity allow-lists still decide: a refusal there is a
        // refusal (offline `verify` exits 1), not "could not check".
        Err(e) if e.code() == RefusalCode::CollateralUnavailable => {
            match policy.identity_refusal(&summary.identity) {
                Some(mut refusal) => {
                    refusal.reasons.push(format!("(not verified further: {e})"));
                    refused(Some(summary), None, refusal)
                }
                None => refused(Some(summary), None, e.into()),
            }
        }
        Err(e) => refused(Some(summary), None, e.into()),
        Ok(v) => {
            let tcb = Some(v.tcb.clone());
            let collateral = Some(v.collateral);
            let outcome = policy.evaluate(v);
            // Only an accepted enclave is judged under the early data too.
            let early = match &outcome {
                Ok(accepted) if policy.early != EarlyMode::Off => Some(early::judge(
                    &accepted.quote,
                    source.early_for(&quote).as_deref(),
                    policy,
                    now,
                )),
                _ => None,
            };
            let outcome = match (outcome, early::enforced(policy.early, early.as_ref())) {
                (Ok(_), Some(refusal)) => Err(refusal),
                (outcome, _) => outcome,
            };
            Appraisal {
                quote: Some(summary),
                tcb,
                collateral,
                outcome,
                early,
                verified_at: now,
            }
        }
    }
}
