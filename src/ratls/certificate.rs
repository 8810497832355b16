//! Judging an RA-TLS leaf certificate: find the quote, the cheap checks (DEBUG,
//! key binding, certificate validity), then full quote verification and policy.

use sha2::{Digest, Sha256};

use super::binding::{self, Binding, BindingMode, CertKey};
use super::dstack::DstackReport;
use super::evidence::{self, Evidence, EvidenceError};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::appraise::snp_policy::SnpPolicy;
use crate::appraise::{appraise_with, Appraisal, CollateralSource};
use crate::dcap::ids::CertSha256;
use crate::dcap::pki;
use crate::dcap::quote::Body;
use crate::dcap::time::UnixTime;
use crate::dcap::verify::VerifiedQuote;

/// dstack's name for AMD SEV-SNP evidence (`Platform::name`).
const SEV_SNP: &str = "sev-snp";

/// The judgement of one certificate, with what the report shows.
#[derive(Clone, Debug)]
pub struct CertAppraisal {
    /// The quote's appraisal.
    pub appraisal: Appraisal,
    /// The binding rule that matched, if checked and matched.
    pub binding: Option<Binding>,
    /// SHA-256 of the leaf DER.
    pub cert_sha256: CertSha256,
    /// The certificate's notBefore, if it parsed.
    pub cert_not_before: Option<UnixTime>,
    /// The certificate's notAfter, if it parsed.
    pub cert_not_after: Option<UnixTime>,
    /// SHA-256 of the quote bytes, if one was found.
    pub quote_sha256: Option<[u8; 32]>,
    /// dstack evidence: the replayed event log and the app identity, once the key binding
    /// and the replay hold.
    pub dstack: Option<Box<DstackReport>>,
}

impl CertAppraisal {
    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.appraisal.outcome.as_ref().err()
    }
}

/// A certificate appraisal that was accepted. Made only by [`AcceptedCert::of`], from an
/// appraisal whose outcome is an acceptance: whatever holds one holds an acceptance.
#[derive(Clone, Debug)]
pub struct AcceptedCert {
    appraisal: CertAppraisal,
    quote: VerifiedQuote,
}

impl AcceptedCert {
    /// `c`, if it was accepted; its refusal (and `c`) otherwise.
    pub fn of(c: CertAppraisal) -> Result<Self, (Refusal, Box<CertAppraisal>)> {
        match &c.appraisal.outcome {
            Ok(accepted) => Ok(Self {
                quote: accepted.quote.clone(),
                appraisal: c,
            }),
            Err(refusal) => Err((refusal.clone(), Box::new(c))),
        }
    }

    /// The whole appraisal (for reports and the audit trail).
    pub fn appraisal(&self) -> &CertAppraisal {
        &self.appraisal
    }

    /// The accepted quote: the identity, the TCB judgement, the collateral used.
    pub fn quote(&self) -> &VerifiedQuote {
        &self.quote
    }
}

impl EvidenceError {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            Self::NoQuote => RefusalCode::NoQuote,
            Self::Ambiguous(_)
            | Self::Dice(_)
            | Self::TooLarge(_)
            | Self::Dstack(_)
            | Self::LegacyWithoutEventLog => RefusalCode::QuoteMalformed,
            Self::UnsupportedTee(_) => RefusalCode::UnsupportedTee,
        }
    }
}

/// Judges the RA-TLS certificate `leaf_der` at `now` against an Intel entry's `policy`.
pub fn appraise_certificate(
    leaf_der: &[u8],
    source: &dyn CollateralSource,
    policy: &EnclavePolicy,
    mode: BindingMode,
    now: UnixTime,
) -> CertAppraisal {
    appraise_certificate_for(leaf_der, source, (policy, None), mode, now)
}

/// Judges `leaf_der` against an entry: its Intel `policy`, and its SEV-SNP policy when the
/// entry is `tee = "snp"`. An SNP entry refuses every Intel quote (`tee_mismatch`); SEV-SNP
/// evidence is recognised and refused (`unsupported_tee`) until the proxy appraises it, so
/// no SNP entry admits anything yet; an Intel entry given SEV-SNP evidence is a
/// `tee_mismatch`.
pub fn appraise_certificate_for(
    leaf_der: &[u8],
    source: &dyn CollateralSource,
    (policy, snp): (&EnclavePolicy, Option<&SnpPolicy>),
    mode: BindingMode,
    now: UnixTime,
) -> CertAppraisal {
    let cert_sha256 = CertSha256(Sha256::digest(leaf_der).into());
    let refused = |refusal: Refusal, not_after| CertAppraisal {
        appraisal: Appraisal::refused_early(refusal, now),
        binding: None,
        cert_sha256,
        cert_not_before: None,
        cert_not_after: not_after,
        quote_sha256: None,
        dstack: None,
    };
    let cert = match pki::parse_cert(leaf_der, "RA-TLS certificate") {
        Ok(c) => c,
        Err(e) => {
            return refused(
                Refusal::new(RefusalCode::QuoteMalformed, e.to_string()),
                None,
            )
        }
    };
    let (not_before, not_after) = pki::validity(&cert);
    let found = evidence::find(&cert);
    let is_snp_evidence = matches!(&found, Err(EvidenceError::UnsupportedTee(u)) if u.0 == SEV_SNP);
    let evidence = match (found, snp) {
        (Ok(_), Some(_)) => {
            return refused(
                Refusal::new(
                    RefusalCode::TeeMismatch,
                    "the entry expects AMD SEV-SNP (tee = \"snp\") and the certificate carries an Intel quote",
                ),
                Some(UnixTime(not_after)),
            )
        }
        (Ok(e), None) => e,
        (Err(_), Some(_)) if is_snp_evidence => {
            return refused(
                Refusal::new(
                    RefusalCode::UnsupportedTee,
                    "the certificate carries SEV-SNP evidence (dstack, 1.3.6.1.4.1.62397.1.8); this build recognises it but does not appraise SEV-SNP through the proxy yet (`ratls-proxy verify --quote` does)",
                ),
                Some(UnixTime(not_after)),
            )
        }
        // An entry that names an Intel TEE (every configured one does) is given another.
        (Err(e), None) if is_snp_evidence && policy.expected_tee().is_some() => {
            return refused(
                Refusal::new(
                    RefusalCode::TeeMismatch,
                    format!("the entry expects Intel {} and {e}", policy.expected_tee().map_or("", |t| t.as_str())),
                ),
                Some(UnixTime(not_after)),
            )
        }
        (Err(e), _) => {
            return refused(
                Refusal::new(e.code(), e.to_string()),
                Some(UnixTime(not_after)),
            )
        }
    };
    let key = CertKey {
        spki_der: cert.public_key().raw,
        point: cert.public_key().subject_public_key.data.as_ref(),
    };
    let mut bound = None;
    let mut dstack = None;
    let appraisal = appraise_with(evidence.quote(), source, policy, now, |quote| {
        let b = binding::check(mode, &evidence, quote.body.report_data(), key)
            .map_err(|reason| Refusal::new(RefusalCode::BindingMismatch, reason))?;
        bound = Some(b);
        if let Evidence::Dstack(att) = &evidence {
            let Body::Td(td) = &quote.body else {
                return Err(Refusal::new(
                    RefusalCode::QuoteMalformed,
                    "the quote in the dstack attestation is not a TDX quote",
                ));
            };
            let (report, id) = super::dstack::check(att, td)?;
            dstack = Some(Box::new(report));
            policy.app.check(Some(&super::dstack::claims(&id)))?;
        } else {
            // Evidence without a dstack event log names no app: pinning one refuses it.
            policy.app.check(None)?;
        }
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
        if let Some(max) = policy.max_cert_age_secs {
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
    });
    CertAppraisal {
        appraisal,
        binding: bound,
        cert_sha256,
        cert_not_before: Some(UnixTime(not_before)),
        cert_not_after: Some(UnixTime(not_after)),
        quote_sha256: Some(Sha256::digest(evidence.quote()).into()),
        dstack,
    }
}
