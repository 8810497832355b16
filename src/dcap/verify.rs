//! PURE. Verifying a parsed quote against verified collateral at a given time.
//!
//! The body of [`verify`] is the check list of `reference/dcap-verification.md` §5, in
//! order; each step is one function. Collateral signatures were checked once when the
//! [`VerifiedCollateral`] was built; here only the quote's own chain and signatures
//! are checked (3 ECDSA verifications when the PCK CA matches the collateral's, and 1, the
//! quote's own, when the snapshot has verified this platform's PCK chain and QE report
//! before: `dcap::known`).

use sha2::{Digest, Sha256};

use super::identity::Identity;
use super::pck_chain::{
    qe_report_key, verify_pck_chain, verify_qe_report_signature, SignedQeReport,
};
use super::quote::pck_extension::PckTcb;
use super::quote::{Body, Quote, ReportBody};
use super::tdx::{self, TdFacts};
use crate::dcap::collateral::qe_identity::{QeIdentity, QeTcbLevel};
use crate::dcap::collateral::tcb_info::{CollateralTee, TcbInfo};
use crate::dcap::error::VerifyError;
use crate::dcap::ids::{Attributes, Fmspc, IsvProdId, IsvSvn, MrSigner, TeeTcbSvn};
use crate::dcap::pki;
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;
use crate::dcap::verified::{CollateralDigests, VerifiedCollateral};

/// The PCK chain's readers, where they were before `dcap::pck_chain`.
pub use super::pck_chain::{pck_fmspc, pck_platform, pck_platform_under};

/// The platform's TCB judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcbVerdict {
    /// Converged status (platform, TDX module and QE; for TD 1.5 after the relaunch check).
    pub status: TcbStatus,
    /// Platform, module, QE (then TD 1.5 current TCB) advisories, deduplicated.
    pub advisory_ids: Vec<String>,
    /// The platform level's status.
    pub platform_status: TcbStatus,
    /// The QE level's status.
    pub qe_status: TcbStatus,
    /// The TDX module level's status (TDX with a module identity only).
    pub tdx_module_status: Option<TcbStatus>,
    /// The converged status of the TCB a TD 1.5 runs on now (TEE_TCB_SVN2); `status` is
    /// the launch TCB's, or a TD relaunch status when only the launch TCB is out of date.
    pub current_status: Option<TcbStatus>,
    /// The platform model.
    pub fmspc: Fmspc,
    /// Which TCB evaluation the verdict is based on.
    pub tcb_evaluation_data_number: u32,
}

/// A quote whose every signature and chain verified. The only constructor is [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedQuote {
    /// The enclave's or the TD's identity.
    pub identity: Identity,
    /// The TCB judgement.
    pub tcb: TcbVerdict,
    /// The last second at which the collateral used is valid.
    pub valid_until: UnixTime,
    /// When the collateral used was issued (the older of TCB info and QE identity).
    pub collateral_issued: UnixTime,
    /// The TCB evaluation data number of the collateral used (the lower of TCB info and QE
    /// identity).
    pub collateral_evaluation: u32,
    /// The verification time.
    pub verified_at: UnixTime,
    /// What the collateral used was, byte for byte (for the audit trail).
    pub collateral: CollateralDigests,
    /// What the TCB judgement read from the quote, to judge it under other TCB data.
    pub(crate) facts: TcbFacts,
}

/// What the TCB judgement reads from a verified quote, owned: the PCK certificate's TCB, the
/// quoting enclave's report and a TD's module and TCB SVNs. A [`VerifiedQuote`] keeps them so
/// the quote can be judged under other TCB data (Intel's early data) without a signature
/// check or the quote's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TcbFacts {
    pck: PckTcb,
    qe: QeFacts,
    td: Option<TdFacts>,
}

/// The quoting enclave's report fields its identity and TCB level are judged on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QeFacts {
    miscselect: [u8; 4],
    attributes: Attributes,
    mrsigner: MrSigner,
    isv_prod_id: IsvProdId,
    isv_svn: IsvSvn,
}

impl QeFacts {
    /// The facts of a QE report whose signature verified (the proof is the argument).
    fn of(qe: &ReportBody<'_>, _signed: SignedQeReport) -> Self {
        Self {
            miscselect: qe.miscselect,
            attributes: qe.attributes,
            mrsigner: qe.mrsigner,
            isv_prod_id: qe.isv_prod_id,
            isv_svn: qe.isv_svn,
        }
    }
}

/// Verifies `quote` against `collateral` at `now`.
pub fn verify(
    quote: &Quote<'_>,
    collateral: &VerifiedCollateral,
    now: UnixTime,
) -> Result<VerifiedQuote, VerifyError> {
    collateral.check_fresh(now)?;
    check_collateral_tee(quote, collateral)?;
    let pck = collateral
        .known
        .pck
        .get_or_verify(quote.qe.pck_chain_pem, || {
            verify_pck_chain(quote, &collateral.pck_trust(), now)
        })?;
    let (pck_point, pck_tcb) = pck.at(now)?;
    let signed = collateral
        .known
        .qe
        .get_or_verify(&qe_report_key(quote, pck_point), || {
            verify_qe_report_signature(quote, pck_point)
        })?;
    verify_qe_report_data(quote)?;
    let qe = QeFacts::of(&quote.qe.report, signed);
    let qe_level = verify_qe_identity(&qe, &collateral.qe_identity)?;
    verify_isv_report_signature(quote)?;
    let facts = TcbFacts {
        pck: pck_tcb.clone(),
        qe,
        td: match &quote.body {
            Body::Td(td) => Some(TdFacts::from(td)),
            Body::Sgx(_) => None,
        },
    };
    let tcb = judge_tcb(&facts, qe_level, &collateral.tcb_info)?;
    Ok(VerifiedQuote {
        identity: Identity::of(&quote.body),
        tcb,
        valid_until: collateral.valid_until(),
        collateral_issued: collateral
            .tcb_info
            .issue_date
            .min(collateral.qe_identity.issue_date),
        collateral_evaluation: collateral
            .tcb_info
            .tcb_evaluation_data_number
            .min(collateral.qe_identity.tcb_evaluation_data_number),
        verified_at: now,
        collateral: collateral.digests,
        facts,
    })
}

/// The TCB judgement of an already verified quote under `tcb_info` and `qe_identity` (other
/// TCB data than it was verified with, such as Intel's early data), checked for nothing but
/// what decides the TCB: the QE identity, the platform (FMSPC, PCE ID), the TDX module and
/// the TCB levels. The signatures and chains were checked once, by [`verify`].
pub fn judge_tcb_under(
    quote: &VerifiedQuote,
    tcb_info: &TcbInfo,
    qe_identity: &QeIdentity,
) -> Result<TcbVerdict, VerifyError> {
    let facts = &quote.facts;
    let qe_level = verify_qe_identity(&facts.qe, qe_identity)?;
    judge_tcb(facts, qe_level, tcb_info)
}

/// J–K and the TDX steps: the platform level, the TDX module's, the QE's converged (for TD
/// 1.5, the current TCB's too), a revoked TCB refused.
fn judge_tcb(
    facts: &TcbFacts,
    qe_level: &QeTcbLevel,
    tcb_info: &TcbInfo,
) -> Result<TcbVerdict, VerifyError> {
    let td = facts.td.as_ref();
    check_platform(&facts.pck, tcb_info)?;
    if let Some(td) = td {
        tdx::check_module_identity(td, tcb_info)?;
    }
    let launch = evaluate_tcb(
        &facts.pck,
        td.map(|t| (&t.tee_tcb_svn, "TEE_TCB_SVN")),
        qe_level,
        tcb_info,
    )?;
    // TD 1.5 reports the TCB it runs on now beside the one it launched on; Intel's QVL
    // evaluates both and may advise a relaunch instead of a TCB recovery.
    let current = match td.and_then(|t| t.tee_tcb_svn2.as_ref()) {
        Some(svn2) => Some(evaluate_tcb(
            &facts.pck,
            Some((svn2, "TEE_TCB_SVN2")),
            qe_level,
            tcb_info,
        )?),
        None => None,
    };
    let current_status = current.as_ref().map(|c| c.status);
    let status = match current_status {
        Some(current) => tdx::with_current_tcb(launch.status, current),
        None => launch.status,
    };
    if status == TcbStatus::Revoked {
        return Err(VerifyError::TcbRevoked);
    }
    let mut advisory_ids = launch.advisory_ids;
    join_advisories(
        &mut advisory_ids,
        current.iter().flat_map(|c| &c.advisory_ids),
    );
    Ok(TcbVerdict {
        status,
        advisory_ids,
        platform_status: launch.platform_status,
        qe_status: qe_level.status,
        tdx_module_status: launch.module_status,
        current_status,
        fmspc: facts.pck.fmspc,
        tcb_evaluation_data_number: tcb_info.tcb_evaluation_data_number,
    })
}

/// C4/D: the collateral must describe the quote's TEE: an SGX quote is never judged with
/// TDX collateral (TCB info `TDX`, QE identity `TD_QE`), nor the reverse.
fn check_collateral_tee(quote: &Quote<'_>, c: &VerifiedCollateral) -> Result<(), VerifyError> {
    let (want, name) = match quote.body {
        Body::Sgx(_) => (CollateralTee::Sgx, "SGX"),
        Body::Td(_) => (CollateralTee::Tdx, "TDX"),
    };
    let tee_name = |t: CollateralTee| match t {
        CollateralTee::Sgx => "SGX",
        CollateralTee::Tdx => "TDX",
    };
    if c.qe_identity.tee != want {
        return Err(VerifyError::QeIdentity(format!(
            "the QE identity is for the {} quoting enclave, the quote is {name}",
            tee_name(c.qe_identity.tee)
        )));
    }
    if c.tcb_info.tee != want {
        return Err(VerifyError::TcbInfoTee {
            tcb_info: tee_name(c.tcb_info.tee),
            quote: name,
        });
    }
    Ok(())
}

/// G: the QE report commits to the attestation key and auth data.
fn verify_qe_report_data(quote: &Quote<'_>) -> Result<(), VerifyError> {
    let mut h = Sha256::new();
    h.update(quote.attestation_key);
    h.update(quote.qe.auth_data);
    let digest: [u8; 32] = h.finalize().into();
    // Both Intel QVL and dcap-qvl compare only the first half; the QE zeroes the rest.
    if quote.qe.report.report_data.0.starts_with(&digest) {
        Ok(())
    } else {
        Err(VerifyError::QeReportData)
    }
}

/// H: the QE is Intel's, and its TCB level.
fn verify_qe_identity<'c>(qe: &QeFacts, id: &'c QeIdentity) -> Result<&'c QeTcbLevel, VerifyError> {
    let masked_eq = |have: &[u8], mask: &[u8], want: &[u8]| {
        have.len() == want.len()
            && have
                .iter()
                .zip(mask)
                .map(|(h, m)| h & m)
                .eq(want.iter().copied())
    };
    if !masked_eq(&qe.miscselect, &id.miscselect_mask, &id.miscselect) {
        return Err(VerifyError::QeIdentity(format!(
            "MISCSELECT {} under mask {} is not {}",
            hex::encode(qe.miscselect),
            hex::encode(id.miscselect_mask),
            hex::encode(id.miscselect)
        )));
    }
    if !masked_eq(
        qe.attributes.as_bytes(),
        &id.attributes_mask,
        &id.attributes,
    ) {
        return Err(VerifyError::QeIdentity(format!(
            "ATTRIBUTES {} under mask {} is not {}",
            qe.attributes,
            hex::encode(id.attributes_mask),
            hex::encode(id.attributes)
        )));
    }
    if qe.mrsigner != id.mrsigner {
        return Err(VerifyError::QeIdentity(format!(
            "MRSIGNER is {}, expected {}",
            qe.mrsigner, id.mrsigner
        )));
    }
    if qe.isv_prod_id != id.isv_prod_id {
        return Err(VerifyError::QeIdentity(format!(
            "ISVPRODID is {}, expected {}",
            qe.isv_prod_id, id.isv_prod_id
        )));
    }
    id.matching_level(qe.isv_svn.0).ok_or_else(|| {
        VerifyError::QeIdentity(format!(
            "QE ISVSVN {} is below every QE TCB level",
            qe.isv_svn
        ))
    })
}

/// I: the attestation key signed header and body.
fn verify_isv_report_signature(quote: &Quote<'_>) -> Result<(), VerifyError> {
    let mut point = [0u8; 65];
    let (tag, xy) = point.split_at_mut(1);
    tag.copy_from_slice(&[0x04]);
    xy.copy_from_slice(quote.attestation_key);
    if pki::verify_raw_signature(&point, quote.signed, quote.isv_signature) {
        Ok(())
    } else {
        Err(VerifyError::Signature("ISV enclave report"))
    }
}

/// J: the TCB info is this platform's.
fn check_platform(pck: &PckTcb, tcb_info: &TcbInfo) -> Result<(), VerifyError> {
    if pck.fmspc != tcb_info.fmspc {
        return Err(VerifyError::FmspcMismatch {
            pck: pck.fmspc,
            tcb_info: tcb_info.fmspc,
        });
    }
    // Stricter than dcap-qvl 0.7.1, which skips this; Intel QVL checks it.
    if pck.pce_id != tcb_info.pce_id {
        return Err(VerifyError::PceIdMismatch {
            pck: pck.pce_id,
            tcb_info: tcb_info.pce_id,
        });
    }
    Ok(())
}

/// One TCB evaluation (Intel QVL `sgxEvaluateTCB` / `tdxEvaluateTCB`).
struct TcbEvaluation {
    /// Platform, module and QE statuses converged.
    status: TcbStatus,
    /// The platform level's own status.
    platform_status: TcbStatus,
    /// The TDX module level's status.
    module_status: Option<TcbStatus>,
    /// Platform, module, QE advisories, deduplicated.
    advisory_ids: Vec<String>,
}

/// J–K: the platform level the PCK TCB (and a TD's TEE_TCB_SVN) reaches, the TDX module
/// level, and the QE level, converged.
fn evaluate_tcb(
    pck: &PckTcb,
    tee_tcb_svn: Option<(&TeeTcbSvn, &str)>,
    qe_level: &QeTcbLevel,
    tcb_info: &TcbInfo,
) -> Result<TcbEvaluation, VerifyError> {
    let platform = tcb_info
        .matching_level(&pck.components, pck.pce_svn, tee_tcb_svn.map(|(s, _)| &s.0))
        .ok_or(VerifyError::TcbNotSupported)?;
    let module = match tee_tcb_svn {
        Some((svn, field)) => Some(tdx::module_level(svn, field, tcb_info)?),
        None => None,
    };
    let module_status = module.as_ref().and_then(|m| m.status);
    let status = TcbStatus::converge(
        tdx::converge(platform.status, module_status),
        qe_level.status,
    );
    let mut advisory_ids = platform.advisory_ids.clone();
    let module_advisories = module.iter().flat_map(|m| &m.advisory_ids);
    join_advisories(
        &mut advisory_ids,
        module_advisories.chain(&qe_level.advisory_ids),
    );
    Ok(TcbEvaluation {
        status,
        platform_status: platform.status,
        module_status,
        advisory_ids,
    })
}

/// Appends the advisories of `more` that `ids` does not list yet, in order.
fn join_advisories<'a>(ids: &mut Vec<String>, more: impl Iterator<Item = &'a String>) {
    for id in more {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
}
