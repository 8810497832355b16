//! Judging an RA-TLS leaf certificate: find the quote, the cheap checks (DEBUG,
//! key binding, certificate validity), then full quote verification and policy. SEV-SNP
//! evidence for a `tee = "snp"` entry is judged by [`super::snp`], AWS Nitro evidence for a
//! `tee = "nitro"` entry by [`super::nitro`]; evidence of another TEE than the entry's is
//! `tee_mismatch`.

use sha2::{Digest, Sha256};

use super::binding::{self, Binding, BindingMode, CertKey};
use super::dstack::DstackReport;
use super::evidence::{self, Evidence, EvidenceError, NITRO_ENCLAVE};
use super::nitro::{NitroAppraisal, NitroJudge};
use super::snp::{SnpAppraisal, SnpJudge};
use crate::appraise::nitro_policy::NitroAccepted;
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
    /// AWS Nitro evidence judged for a `tee = "nitro"` entry: its appraisal, which is then
    /// the verdict (as for `snp`).
    pub nitro: Option<Box<NitroAppraisal>>,
}

impl CertAppraisal {
    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match (&self.snp, &self.nitro) {
            (Some(snp), _) => snp.outcome.as_ref().err(),
            (None, Some(nitro)) => nitro.outcome.as_ref().err(),
            (None, None) => self.appraisal.outcome.as_ref().err(),
        }
    }

    /// The TEE the evidence is of, lower-case (`sgx`, `tdx`, `snp`, `nitro`), when it parsed.
    pub fn tee(&self) -> Option<&'static str> {
        match (&self.snp, &self.nitro) {
            (Some(_), _) => Some("snp"),
            (None, Some(_)) => Some("nitro"),
            (None, None) => self.appraisal.quote.as_ref().map(|q| match q.tee {
                crate::dcap::quote::TeeType::Sgx => "sgx",
                crate::dcap::quote::TeeType::Tdx => "tdx",
            }),
        }
    }
}

/// What an accepted certificate's evidence proved, by TEE. Each variant is a proof type
/// made only from verified evidence its policy passed.
#[derive(Clone, Debug)]
pub enum AcceptedEvidence {
    /// An Intel SGX or TDX quote: the identity, the TCB judgement, the collateral used.
    Intel(VerifiedQuote),
    /// An AMD SEV-SNP report.
    Snp(SnpAccepted),
    /// An AWS Nitro Enclaves attestation document.
    Nitro(NitroAccepted),
}

impl AcceptedEvidence {
    /// The last second the evidence's collateral holds (Intel: the TCB info, QE identity and
    /// CRLs; SEV-SNP: the VCEK, its chain and the product CRL's nextUpdate; Nitro: the
    /// chain (the signing certificate lives ~3 h), the CRLs' nextUpdate, the document's age
    /// limit).
    pub fn valid_until(&self) -> UnixTime {
        match self {
            Self::Intel(q) => q.valid_until,
            Self::Snp(s) => s.report().valid_until,
            Self::Nitro(n) => n.valid_until(),
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
        let evidence = match (&c.snp, &c.nitro, &c.appraisal.outcome) {
            (Some(snp), _, _) => snp.outcome.clone().map(AcceptedEvidence::Snp),
            (None, Some(nitro), _) => nitro.outcome.clone().map(AcceptedEvidence::Nitro),
            (None, None, outcome) => outcome
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
            AcceptedEvidence::Snp(_) | AcceptedEvidence::Nitro(_) => None,
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
            | Self::LegacyWithoutEventLog
            | Self::Evervault(_) => RefusalCode::QuoteMalformed,
            Self::UnsupportedTee(_) | Self::EvervaultNitro => RefusalCode::UnsupportedTee,
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
    appraise_certificate_judged(
        leaf_der,
        source,
        EntryJudges {
            policy,
            snp,
            nitro: None,
        },
        mode,
        now,
    )
}

/// What an entry judges a certificate with: its Intel policy, and the SEV-SNP or AWS Nitro
/// judge of a `tee = "snp"` or `tee = "nitro"` entry (at most one of them).
#[derive(Clone, Copy, Debug)]
pub struct EntryJudges<'a> {
    /// The Intel policy (for an SNP or Nitro entry, one that accepts no TCB status).
    pub policy: &'a EnclavePolicy,
    /// A `tee = "snp"` entry's judge.
    pub snp: Option<&'a SnpJudge<'a>>,
    /// A `tee = "nitro"` entry's judge.
    pub nitro: Option<&'a NitroJudge<'a>>,
}

impl EntryJudges<'_> {
    /// The TEE the entry expects, for messages.
    fn expects(&self) -> String {
        match (self.snp, self.nitro, self.policy.expected_tee()) {
            (Some(_), _, _) => "AMD SEV-SNP (tee = \"snp\")".into(),
            (None, Some(_), _) => "AWS Nitro Enclaves (tee = \"nitro\")".into(),
            (None, None, Some(t)) => format!("Intel {}", t.as_str()),
            (None, None, None) => "Intel SGX or TDX".into(),
        }
    }

    /// True for an entry that names its TEE (every configured one does).
    fn names_its_tee(&self) -> bool {
        self.snp.is_some() || self.nitro.is_some() || self.policy.expected_tee().is_some()
    }
}

/// Judges `leaf_der` against an entry's `judges`: Intel evidence for an Intel entry, dstack
/// SEV-SNP evidence for an SNP entry, dstack Nitro evidence for a Nitro entry; any other
/// pairing an entry that names its TEE is given is a `tee_mismatch`.
pub fn appraise_certificate_judged(
    leaf_der: &[u8],
    source: &dyn CollateralSource,
    judges: EntryJudges<'_>,
    mode: BindingMode,
    now: UnixTime,
) -> CertAppraisal {
    let policy = judges.policy;
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
        nitro: None,
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
    let key = CertKey {
        spki_der: cert.public_key().raw,
        point: cert.public_key().subject_public_key.data.as_ref(),
    };
    let mismatch = |carries: &str| {
        refused(
            Refusal::new(
                RefusalCode::TeeMismatch,
                format!(
                    "the entry expects {} and the certificate carries {carries}",
                    judges.expects()
                ),
            ),
            Some(UnixTime(not_after)),
        )
    };
    let found = evidence::find(&cert);
    let other = found.as_ref().err().and_then(EvidenceError::other_tee);
    let evidence = match (found, other, judges.snp, judges.nitro) {
        (Ok(_), _, Some(_), _) | (Ok(_), _, _, Some(_)) => return mismatch("an Intel quote"),
        (Ok(e), _, None, None) => e,
        (Err(_), Some(SEV_SNP), Some(judge), _) => {
            return appraise_snp(
                &cert,
                (key, mode),
                judge,
                (not_before, not_after, policy.max_cert_age_secs),
                now,
                cert_sha256,
            );
        }
        (Err(_), Some(NITRO_ENCLAVE), None, Some(judge)) => {
            return appraise_nitro(
                &cert,
                (key, mode),
                judge,
                (not_before, not_after),
                now,
                cert_sha256,
            );
        }
        (Err(e), Some(SEV_SNP | NITRO_ENCLAVE), _, _) if judges.names_its_tee() => {
            return mismatch(&e.to_string())
        }
        (Err(e), _, _, _) => {
            return refused(
                Refusal::new(e.code(), e.to_string()),
                Some(UnixTime(not_after)),
            )
        }
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
        nitro: None,
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
        nitro: None,
    }
}

/// The appraisal of AWS Nitro evidence in `cert` (found by `evidence::find`, which names it
/// Nitro's for Intel entries: dstack's `.1.8` or Evervault's subjectAltName) for a Nitro entry.
fn appraise_nitro(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    key: (CertKey<'_>, BindingMode),
    judge: &NitroJudge<'_>,
    window: (i64, i64),
    now: UnixTime,
    cert_sha256: CertSha256,
) -> CertAppraisal {
    let nitro = match evidence::find_nitro(cert) {
        Ok(carrier) => super::nitro::appraise(&carrier, key, judge, window, now),
        Err(e) => NitroAppraisal::refused(Refusal::new(e.code(), e.to_string())),
    };
    // As for SEV-SNP: the Intel appraisal holds the refusal, or one no reader sees.
    let intel = nitro.outcome.as_ref().err().cloned().unwrap_or_else(|| {
        Refusal::new(
            RefusalCode::UnsupportedTee,
            "AWS Nitro evidence: the verdict is the Nitro appraisal",
        )
    });
    CertAppraisal {
        appraisal: Appraisal::refused_early(intel, now),
        // Known to hold once the document verified (the binding is checked before).
        binding: nitro.identity.is_some().then_some(nitro.binding).flatten(),
        cert_sha256,
        cert_not_before: Some(UnixTime(window.0)),
        cert_not_after: Some(UnixTime(window.1)),
        quote_sha256: nitro.document_sha256,
        dstack: None,
        snp: None,
        nitro: Some(Box::new(nitro)),
    }
}
