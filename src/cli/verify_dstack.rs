//! `ratls-proxy verify --quote FILE`: what the file holds, recognised by content (a DCAP
//! quote, SEV-SNP or Nitro evidence, a dstack attestation), and a dstack TDX attestation
//! judged as its quote plus dstack's binding, event-log replay and app identity.

use super::report::Report;
use super::{verify_nitro, verify_snp};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::appraise::{self, CollateralSource};
use crate::dcap::quote::Body;
use crate::dcap::time::UnixTime;
use crate::dstack::{Attestation, Platform, TdxEvidence};

/// What a `--quote` file holds, recognised by content.
pub(super) enum Recognised<'a> {
    /// SEV-SNP evidence (or a dstack attestation of a platform this build cannot judge).
    Snp(Result<verify_snp::SnpEvidence<'a>, (&'static str, String)>),
    /// AWS Nitro evidence.
    Nitro(verify_nitro::NitroEvidence<'a>),
    /// A dstack attestation of a TDX platform: its quote, replayed log and app identity.
    DstackTdx,
    /// Anything else: left to the DCAP quote parser.
    Dcap,
}

pub(super) fn recognise(bytes: &[u8]) -> Recognised<'_> {
    if verify_nitro::looks_like_cose(bytes) {
        return Recognised::Nitro(verify_nitro::NitroEvidence::Raw(bytes));
    }
    if let Some(Ok(a)) = dstack_attestation(bytes) {
        if let Some(n) = verify_nitro::of_dstack(&a) {
            return Recognised::Nitro(n);
        }
        if matches!(a.platform, Platform::Tdx(_)) {
            return Recognised::DstackTdx;
        }
    }
    match verify_snp::recognise(bytes) {
        Some(e) => Recognised::Snp(e.map_err(|e| ("unsupported_tee", e))),
        None => Recognised::Dcap,
    }
}

/// dstack's versioned attestation, when the first byte can start one (SCALE V0 starts with
/// 0x00, V1 with a MessagePack map).
pub(super) fn dstack_attestation(bytes: &[u8]) -> Option<Result<Attestation<'_>, String>> {
    matches!(bytes.first(), Some(0x00 | 0x80..=0x8f | 0xde | 0xdf))
        .then(|| Attestation::parse(bytes).map_err(|e| e.to_string()))
}

/// A dstack TDX attestation given as `--quote`: its quote verified as any TDX quote, then
/// (before the policy) REPORTDATA must be the attestation's report data, the event log must
/// replay to the quote's RTMRs, and the app identity read from it must fit the policy.
pub(super) fn dstack_report(
    att: &Attestation<'_>,
    tdx: &TdxEvidence<'_>,
    source: &dyn CollateralSource,
    policy: &EnclavePolicy,
    now: UnixTime,
) -> Report {
    let mut dstack = None;
    let appraisal = appraise::appraise_with(&tdx.quote, source, policy, now, |quote| {
        let Body::Td(td) = &quote.body else {
            return Err(Refusal::new(
                RefusalCode::QuoteMalformed,
                "the quote in the dstack attestation is not a TDX quote",
            ));
        };
        if td.report_data.0 != att.stack.report_data {
            return Err(Refusal::new(
                RefusalCode::BindingMismatch,
                "REPORTDATA is not the dstack attestation's report data",
            ));
        }
        let (report, id) = crate::ratls::dstack::check(att, td)?;
        dstack = Some(report);
        policy.app.check(Some(&crate::ratls::dstack::claims(&id)))
    });
    Report {
        dstack,
        ..Report::new(&appraisal, Some("dstack"), None)
    }
}
