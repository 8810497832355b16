//! PURE. Intel's early TCB data (PCS v4 `update=early`): the TCB info and QE identity the next
//! TCB recovery will make standard, verified exactly as the standard ones (the same chain
//! rules, under the standard snapshot's root and root CRL), and a verified quote judged under
//! them. Time is a parameter; nothing here reads a clock or the quote's bytes again.

use sha2::{Digest, Sha256};

use super::collateral::early::EarlyCollateral;
use super::collateral::eval_numbers::EvaluationNumbers;
use super::collateral::qe_identity::QeIdentity;
use super::collateral::tcb_info::{CollateralTee, TcbInfo};
use super::collateral::{CollateralError, CollateralItem};
use super::error::VerifyError;
use super::time::UnixTime;
use super::verified::{check_windows, VerifiedCollateral, Window};
use super::verify::{judge_tcb_under, TcbVerdict, VerifiedQuote};

/// Early TCB data whose signatures and chains verified, for one platform and TEE. The only
/// constructor is [`VerifiedEarly::verify`].
#[derive(Clone, Debug)]
pub struct VerifiedEarly {
    /// The early TCB info.
    pub tcb_info: TcbInfo,
    /// The early QE identity.
    pub qe_identity: QeIdentity,
    /// Intel's evaluation data numbers with their dates, when the source served them.
    pub evaluation_numbers: Option<EvaluationNumbers>,
    windows: Vec<Window>,
    /// SHA-256 of the early TCB info and QE identity texts.
    pub digests: EarlyDigests,
}

/// SHA-256 of the early documents' exact bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EarlyDigests {
    /// Of the signed early TCB info text.
    pub tcb_info: [u8; 32],
    /// Of the signed early QE identity text.
    pub qe_identity: [u8; 32],
}

fn not_early(detail: String) -> VerifyError {
    VerifyError::Collateral(CollateralError::Content {
        what: "early TCB data",
        detail,
    })
}

fn tee_name(t: CollateralTee) -> &'static str {
    match t {
        CollateralTee::Sgx => "SGX",
        CollateralTee::Tdx => "TDX",
    }
}

impl VerifiedEarly {
    /// Verifies `early` as the early data of the platform and TEE `standard` is for: each
    /// document signed by a TCB Signing certificate under `standard`'s root and not in its
    /// root CRL, the TCB info for the same TEE, FMSPC and PCE ID, the QE identity for the same
    /// quoting enclave, neither older than the standard data (by evaluation data number), and
    /// the evaluation data numbers list, when given, for the same TEE.
    pub fn verify(
        early: &EarlyCollateral,
        standard: &VerifiedCollateral,
    ) -> Result<Self, VerifyError> {
        let mut windows = Vec::with_capacity(4);
        windows.push(standard.verify_signed(
            &early.tcb_info_issuer_chain,
            &early.tcb_info,
            &early.tcb_info_signature,
            ("early TCB info issuer chain", "early TCB info"),
            CollateralItem::EarlySigner,
        )?);
        let tcb_info = TcbInfo::parse(&early.tcb_info)?;
        windows.push(standard.verify_signed(
            &early.qe_identity_issuer_chain,
            &early.qe_identity,
            &early.qe_identity_signature,
            ("early QE identity issuer chain", "early QE identity"),
            CollateralItem::EarlySigner,
        )?);
        let qe_identity = QeIdentity::parse(&early.qe_identity)?;
        let held = &standard.tcb_info;
        // Another platform's or TEE's data would be judged against this platform's quotes
        // and admitted against that platform's early marks.
        if tcb_info.tee != held.tee || qe_identity.tee != standard.qe_identity.tee {
            return Err(not_early(format!(
                "the early TCB info is for {} and the early QE identity for the {} quoting enclave, the standard data for {}",
                tee_name(tcb_info.tee),
                tee_name(qe_identity.tee),
                tee_name(held.tee)
            )));
        }
        if tcb_info.fmspc != held.fmspc || tcb_info.pce_id != held.pce_id {
            return Err(not_early(format!(
                "the early TCB info is for FMSPC {} (PCE ID {}), the standard data for FMSPC {} (PCE ID {})",
                tcb_info.fmspc, tcb_info.pce_id, held.fmspc, held.pce_id
            )));
        }
        for (what, early_n, standard_n) in [
            (
                "TCB info",
                tcb_info.tcb_evaluation_data_number,
                held.tcb_evaluation_data_number,
            ),
            (
                "QE identity",
                qe_identity.tcb_evaluation_data_number,
                standard.qe_identity.tcb_evaluation_data_number,
            ),
        ] {
            if early_n < standard_n {
                return Err(not_early(format!(
                    "the early {what} has TCB evaluation data number {early_n}, below the standard data's {standard_n}: it is older data, not early data"
                )));
            }
        }
        let evaluation_numbers = match &early.evaluation_numbers {
            None => None,
            Some(n) => {
                standard.verify_signed(
                    &n.issuer_chain,
                    &n.text,
                    &n.signature,
                    (
                        "TCB evaluation data numbers issuer chain",
                        "TCB evaluation data numbers",
                    ),
                    CollateralItem::EarlySigner,
                )?;
                let numbers = EvaluationNumbers::parse(&n.text)?;
                if numbers.tee != tcb_info.tee {
                    return Err(not_early(format!(
                        "the evaluation data numbers are {}'s, the TCB info {}'s",
                        tee_name(numbers.tee),
                        tee_name(tcb_info.tee)
                    )));
                }
                Some(numbers)
            }
        };
        windows.push(Window {
            item: CollateralItem::EarlyTcbInfo,
            from: tcb_info.issue_date,
            until: tcb_info.next_update,
        });
        windows.push(Window {
            item: CollateralItem::EarlyQeIdentity,
            from: qe_identity.issue_date,
            until: qe_identity.next_update,
        });
        Ok(Self {
            digests: EarlyDigests {
                tcb_info: Sha256::digest(early.tcb_info.as_bytes()).into(),
                qe_identity: Sha256::digest(early.qe_identity.as_bytes()).into(),
            },
            tcb_info,
            qe_identity,
            evaluation_numbers,
            windows,
        })
    }

    /// Fails unless the early documents and their signers are valid at `now` (the
    /// evaluation data numbers only date them: a list past its `nextUpdate` still does).
    pub fn check_fresh(&self, now: UnixTime) -> Result<(), VerifyError> {
        check_windows(&self.windows, now)
    }

    /// The last second at which the early data is valid.
    pub fn valid_until(&self) -> UnixTime {
        self.windows
            .iter()
            .map(|w| w.until)
            .min()
            .unwrap_or(UnixTime(i64::MIN))
    }

    /// The early TCB evaluation data number (the TCB info's).
    pub fn evaluation_number(&self) -> u32 {
        self.tcb_info.tcb_evaluation_data_number
    }

    /// When the early data becomes Intel's standard data, if the evaluation data numbers
    /// list dates its number.
    pub fn standard_from(&self) -> Option<UnixTime> {
        self.evaluation_numbers
            .as_ref()?
            .get(self.evaluation_number())?
            .standard_from()
    }
}

/// The TCB judgement of `quote` (verified under the standard data) under the early data at
/// `now`: `Err` when the early data would refuse it (no TCB level, another QE or TDX module,
/// revoked) or is not valid at `now`.
pub fn judge(
    quote: &VerifiedQuote,
    early: &VerifiedEarly,
    now: UnixTime,
) -> Result<TcbVerdict, VerifyError> {
    early.check_fresh(now)?;
    judge_tcb_under(quote, &early.tcb_info, &early.qe_identity)
}
