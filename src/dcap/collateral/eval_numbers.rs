//! Intel's TCB evaluation data numbers (PCS v4 `tcbevaluationdatanumbers`, model v1): every
//! evaluation data number Intel still serves, with the date its TCB recovery event published
//! it (`tcbRecoveryEventDate`) and its TCB date. Signed by the TCB Signing key, like TCB info.
//!
//! When a number becomes the standard data (`update=standard`) is not in the document: it is
//! [`STANDARD_AFTER_YEARS`] after its TCB recovery event, as Intel has served it (evaluation
//! 18, published 2024-11-12, was not standard in October 2025 and was in February 2026; 20,
//! published in August 2025, replaced 19 as standard on 2026-08-13).

use serde::Deserialize;

use super::tcb_info::CollateralTee;
use super::{supported_version, CollateralError};
use crate::dcap::time::UnixTime;

/// Numbers listed at most (Intel lists a handful; more is not Intel's document).
pub const MAX_NUMBERS: usize = 256;
/// Years after its TCB recovery event an evaluation data number becomes Intel's standard data.
pub const STANDARD_AFTER_YEARS: i32 = 1;

/// One evaluation data number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvaluationNumber {
    /// `tcbEvaluationDataNumber`.
    pub number: u32,
    /// When Intel first published its collateral (the early data).
    pub tcb_recovery_event_date: UnixTime,
    /// Its TCB date.
    pub tcb_date: UnixTime,
}

impl EvaluationNumber {
    /// When this number becomes Intel's standard data, if representable.
    pub fn standard_from(&self) -> Option<UnixTime> {
        self.tcb_recovery_event_date
            .plus_years(STANDARD_AFTER_YEARS)
    }
}

/// The parsed list, highest number first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluationNumbers {
    /// SGX or TDX.
    pub tee: CollateralTee,
    /// Issue time.
    pub issue_date: UnixTime,
    /// When Intel suggests asking again.
    pub next_update: UnixTime,
    /// The numbers, highest first.
    pub numbers: Vec<EvaluationNumber>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_eval_numbers: Vec<RawNumber>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNumber {
    tcb_evaluation_data_number: u32,
    tcb_recovery_event_date: String,
    tcb_date: String,
}

fn bad(detail: impl Into<String>) -> CollateralError {
    CollateralError::Content {
        what: "TCB evaluation data numbers",
        detail: detail.into(),
    }
}

fn date(text: &str, field: &str) -> Result<UnixTime, CollateralError> {
    UnixTime::parse_rfc3339(text).ok_or_else(|| bad(format!("bad {field} `{text}`")))
}

impl EvaluationNumbers {
    /// Parses the `tcbEvaluationDataNumbers` JSON text (after its signature was checked over
    /// the same bytes).
    pub fn parse(text: &str) -> Result<Self, CollateralError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tee = CollateralTee::from_id(&raw.id).map_err(bad)?;
        supported_version(raw.version, 1).map_err(bad)?;
        if raw.tcb_eval_numbers.len() > MAX_NUMBERS {
            return Err(bad(format!(
                "{} numbers, more than {MAX_NUMBERS}",
                raw.tcb_eval_numbers.len()
            )));
        }
        let mut numbers = Vec::with_capacity(raw.tcb_eval_numbers.len());
        for n in &raw.tcb_eval_numbers {
            if numbers
                .iter()
                .any(|m: &EvaluationNumber| m.number == n.tcb_evaluation_data_number)
            {
                return Err(bad(format!(
                    "number {} is listed twice",
                    n.tcb_evaluation_data_number
                )));
            }
            numbers.push(EvaluationNumber {
                number: n.tcb_evaluation_data_number,
                tcb_recovery_event_date: date(&n.tcb_recovery_event_date, "tcbRecoveryEventDate")?,
                tcb_date: date(&n.tcb_date, "tcbDate")?,
            });
        }
        numbers.sort_by_key(|n| std::cmp::Reverse(n.number));
        Ok(Self {
            tee,
            issue_date: date(&raw.issue_date, "issueDate")?,
            next_update: date(&raw.next_update, "nextUpdate")?,
            numbers,
        })
    }

    /// The entry for `number`, if listed.
    pub fn get(&self, number: u32) -> Option<&EvaluationNumber> {
        self.numbers.iter().find(|n| n.number == number)
    }

    /// The highest number listed.
    pub fn highest(&self) -> Option<u32> {
        self.numbers.first().map(|n| n.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The list Intel's PCS served on 2025-05-27 (the signed text; its signature is checked
    // in tests/early_fixtures.rs).
    const TEXT: &str = r#"{"id":"SGX","version":1,"issueDate":"2025-05-27T19:04:23Z","nextUpdate":"2025-06-26T19:04:23Z","tcbEvalNumbers":[{"tcbEvaluationDataNumber":19,"tcbRecoveryEventDate":"2025-05-13T00:00:00Z","tcbDate":"2025-05-14T00:00:00Z"},{"tcbEvaluationDataNumber":18,"tcbRecoveryEventDate":"2024-11-12T00:00:00Z","tcbDate":"2024-11-13T00:00:00Z"},{"tcbEvaluationDataNumber":17,"tcbRecoveryEventDate":"2024-03-12T00:00:00Z","tcbDate":"2024-03-13T00:00:00Z"}]}"#;

    #[test]
    fn reads_intels_list_and_the_date_each_number_becomes_standard() {
        let n = EvaluationNumbers::parse(TEXT).ok();
        let n = n.as_ref();
        assert_eq!(n.map(|n| n.tee), Some(CollateralTee::Sgx));
        assert_eq!(n.and_then(EvaluationNumbers::highest), Some(19));
        let standard = |number| {
            n.and_then(|n| n.get(number))
                .and_then(EvaluationNumber::standard_from)
                .map(UnixTime::to_rfc3339)
        };
        assert_eq!(standard(19).as_deref(), Some("2026-05-13T00:00:00Z"));
        assert_eq!(standard(17).as_deref(), Some("2025-03-12T00:00:00Z"));
        assert_eq!(standard(16), None);
    }

    #[test]
    fn refuses_another_id_or_version_in_the_same_words() {
        let detail = |text: String| match EvaluationNumbers::parse(&text) {
            Err(CollateralError::Content { what, detail }) => Some((what, detail)),
            _ => None,
        };
        let what = "TCB evaluation data numbers";
        assert_eq!(
            detail(TEXT.replace("\"version\":1", "\"version\":3")),
            Some((what, "version 3 (only version 1 is supported)".into()))
        );
        assert_eq!(
            detail(TEXT.replace("\"id\":\"SGX\"", "\"id\":\"TD_QE\"")),
            Some((what, "unknown id `TD_QE`".into()))
        );
    }

    #[test]
    fn refuses_what_is_not_intels_list() {
        for (name, text) in [
            ("version", TEXT.replace("\"version\":1", "\"version\":2")),
            ("id", TEXT.replace("\"id\":\"SGX\"", "\"id\":\"QE\"")),
            (
                "twice",
                TEXT.replace(
                    "\"tcbEvaluationDataNumber\":18",
                    "\"tcbEvaluationDataNumber\":19",
                ),
            ),
            ("date", TEXT.replace("2024-11-12T00:00:00Z", "soon")),
            ("shape", "[]".to_owned()),
        ] {
            assert!(EvaluationNumbers::parse(&text).is_err(), "{name}");
        }
        let many: Vec<String> = (0..=MAX_NUMBERS)
            .map(|i| {
                format!(r#"{{"tcbEvaluationDataNumber":{i},"tcbRecoveryEventDate":"2024-03-12T00:00:00Z","tcbDate":"2024-03-13T00:00:00Z"}}"#)
            })
            .collect();
        let text = format!(
            r#"{{"id":"TDX","version":1,"issueDate":"2025-05-27T19:04:23Z","nextUpdate":"2025-06-26T19:04:23Z","tcbEvalNumbers":[{}]}}"#,
            many.join(",")
        );
        assert!(EvaluationNumbers::parse(&text).is_err());
    }
}
