//! Judging an RA-TLS leaf certificate: find the quote, the cheap checks (DEBUG,
//! key binding, certificate validity), then full quote verification and policy. SEV-SNP
//! evidence for a `tee = "snp"` entry is judged by [`super::snp`].

use sha2::{Digest, Sha256};

use super::binding::{self, Binding, BindingMode, CertKey};
use super::dstack::DstackReport;
use super::evidence::{self, Evidence, EvidenceError};
use super::snp::{SnpAppraisal, SnpJudge};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::appraise::snp_policy::SnpAccepted;
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
    /// SEV-SNP evidence judged for a `tee = "snp"` entry: its appraisal, which is then the
    /// verdict (`appraisal` holds no Intel quote and never an acceptance).
    pub snp: Option<Box<SnpAppraisal>>,
}

impl CertAppraisal {
    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match &self.snp {
            Some(snp) => snp.outcome.as_ref().err(),
            None => self.appraisal.outcome.as_ref().err(),
        }
    }

    /// The TEE the evidence is of, lower-case (`sgx`, `tdx`, `snp`), when it parsed.
    pub fn tee(&self) -> Option<&'static str> {
        match &self.snp {
            Some(_) => Some("snp"),
            None => self.appraisal.quote.as_ref().map(|q| match q.tee {
                crate::dcap::quote::TeeType::Sgx => "sgx",
                crate::dcap::quote::TeeType::Tdx => "tdx",
            }),
        }
    }
}

/// What an accepted certificate's evidence proved, by TEE. Each variant is a proof type
/// made only from verified evidence its policy passed (a Nitro variant comes next).
#[derive(Clone, Debug)]
pub enum AcceptedEvidence {
    /// An Intel SGX or TDX quote: the identity, the TCB judgement, the collateral used.
    Intel(VerifiedQuote),
    /// An AMD SEV-SNP report.
    Snp(SnpAccepted),
}

impl AcceptedEvidence {
    /// The last second the evidence's collateral holds (Intel: the TCB info, QE identity and
    /// CRLs; SEV-SNP: the VCEK, its chain and the product CRL's nextUpdate).
    pub fn valid_until(&self) -> UnixTime {
        match self {
            Self::Intel(q) => q.valid_until,
            Self::Snp(s) => s.report().valid_until,
        }
    }
}

/// A certificate appraisal that was accepted. Made only by [`AcceptedCert::of`], from an
/// appraisal whose outcome is an acceptance: whatever holds one holds an acceptance.
#[derive(Clone, Debug)]
pub struct AcceptedCert {
    appraisal: CertAppraisal,
    evidence: AcceptedEvidence,
}

impl AcceptedCert {
    /// `c`, if it was accepted; its refusal (and `c`) otherwise.
    pub fn of(c: CertAppraisal) -> Result<Self, (Refusal, Box<CertAppraisal>)> {
        let evidence = match (&c.snp, &c.appraisal.outcome) {
            (Some(snp), _) => snp.outcome.clone().map(AcceptedEvidence::Snp),
            (None, outcome) => outcome
                .as_ref()
                .map(|a| AcceptedEvidence::Intel(a.quote.clone()))
                .map_err(Clone::clone),
        };
        match evidence {
            Ok(evidence) => Ok(Self {
                appraisal: c,
                evidence,
            }),
            Err(refusal) => Err((refusal, Box::new(c))),
        }
    }

    /// The whole appraisal (for reports and the audit trail).
    pub fn appraisal(&self) -> &CertAppraisal {
        &self.appraisal
    }

    /// What the evidence proved.
    pub fn evidence(&self) -> &AcceptedEvidence {
        &self.evidence
    }

    /// The accepted Intel quote (identity, TCB judgement, collateral), if the evidence is
    /// Intel's.
    pub fn quote(&self) -> Option<&VerifiedQuote> {
        match &self.evidence {
            AcceptedEvidence::Intel(q) => Some(q),
            AcceptedEvidence::Snp(_) => None,
        }
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

/// Judges `leaf_der` against an entry: its Intel `policy`, and for a `tee = "snp"` entry
/// its SEV-SNP judge (policy, collateral, pinned ARKs). An SNP entry refuses every Intel
/// quote (`tee_mismatch`) and judges dstack SEV-SNP evidence; an Intel entry given SEV-SNP
/// evidence is a `tee_mismatch`.
pub fn appraise_certificate_for(
    leaf_der: &[u8],
    source: &dyn CollateralSource,
    (policy, snp): (&EnclavePolicy, Option<&SnpJudge<'_>>),
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
        snp: None,
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
        (Err(_), Some(judge)) if is_snp_evidence => {
            let key = CertKey {
                spki_der: cert.public_key().raw,
                point: cert.public_key().subject_public_key.data.as_ref(),
            };
            return appraise_snp(
                &cert,
                (key, mode),
                judge,
                (not_before, not_after, policy.max_cert_age_secs),
                now,
                cert_sha256,
            );
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
        super::validity::check_cert_window((not_before, not_after), policy.max_cert_age_secs, now)?;
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
        snp: None,
    }
}

/// The appraisal of SEV-SNP evidence in `cert` (found by `evidence::find`, which names it
/// unsupported for Intel entries) for an SNP entry.
fn appraise_snp(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    key: (CertKey<'_>, BindingMode),
    judge: &SnpJudge<'_>,
    (not_before, not_after, max_age): (i64, i64, Option<u64>),
    now: UnixTime,
    cert_sha256: CertSha256,
) -> CertAppraisal {
    let (snp, quote_sha256) = match evidence::find_dstack(cert) {
        Ok(att) => {
            let report_sha = match &att.platform {
                crate::dstack::Platform::SevSnp { report, .. } => {
                    Some(Sha256::digest(report).into())
                }
                _ => None,
            };
            let judged =
                super::snp::appraise(&att, key, judge, ((not_before, not_after), max_age), now);
            (judged, report_sha)
        }
        Err(e) => (
            SnpAppraisal {
                identity: None,
                collateral: None,
                outcome: Err(Refusal::new(e.code(), e.to_string())),
            },
            None,
        ),
    };
    // The Intel appraisal does not apply: it holds the SEV-SNP refusal, or (accepted) a
    // refusal no reader of `snp` sees, so a reader that ignores `snp` fails closed.
    let intel = snp.outcome.as_ref().err().cloned().unwrap_or_else(|| {
        Refusal::new(
            RefusalCode::UnsupportedTee,
            "SEV-SNP evidence: the verdict is the SEV-SNP appraisal",
        )
    });
    CertAppraisal {
        appraisal: Appraisal::refused_early(intel, now),
        // Known to hold once the report verified (the binding is checked before).
        binding: snp.identity.is_some().then_some(Binding::Dstack),
        cert_sha256,
        cert_not_before: Some(UnixTime(not_before)),
        cert_not_after: Some(UnixTime(not_after)),
        quote_sha256,
        dstack: None,
        snp: Some(Box::new(snp)),
    }
}
