//! The early book of marks (Intel's early TCB data): its TCB info and QE identity as the
//! standard book's, and the evaluation data numbers list per TEE; and the two books a proxy
//! keeps side by side.

use std::path::Path;
use std::sync::Arc;

use super::{documents, tee_name, Book, Level, LevelMark, Marks, MarksError, Refused, Slot};
use crate::dcap::early::VerifiedEarly;
use crate::dcap::ids::CertSha256;

/// The two books of marks a proxy keeps: the standard data's and the early data's.
#[derive(Clone, Debug)]
pub(crate) struct Books {
    /// What verdicts are made under.
    pub(crate) standard: Arc<Marks>,
    /// Intel's early TCB data.
    pub(crate) early: Arc<Marks>,
}

impl Books {
    /// Both books in memory only.
    pub(crate) fn in_memory() -> Self {
        Self {
            standard: Arc::new(Marks::in_memory()),
            early: Arc::new(Marks::in_memory()),
        }
    }

    /// Both books kept in `dir` (see [`Marks::load`]).
    pub(crate) fn load(dir: &Path) -> Result<Self, MarksError> {
        Ok(Self {
            standard: Arc::new(Marks::load(dir, Book::Standard)?),
            early: Arc::new(Marks::load(dir, Book::Early)?),
        })
    }

    /// Failed writes of either file.
    pub(crate) fn write_failures(&self) -> u64 {
        self.standard
            .write_failures()
            .saturating_add(self.early.write_failures())
    }
}

impl Marks {
    /// Admits early data `e` (verified under the root `anchor`): its TCB info, QE identity and
    /// evaluation data numbers list, as [`Self::admit`] does. Meant for the early book.
    pub(crate) fn admit_early(
        &self,
        anchor: &CertSha256,
        e: &VerifiedEarly,
    ) -> Result<(), Refused> {
        let mut levels = documents("early ", &e.tcb_info, &e.qe_identity);
        if let Some(n) = &e.evaluation_numbers {
            levels.push(LevelMark {
                slot: Slot::Numbers,
                key: tee_name(n.tee).to_owned(),
                what: format!("{} evaluation data numbers list", tee_name(n.tee)),
                level: Level {
                    evaluation: n.highest().unwrap_or(0),
                    issued: n.issue_date.0,
                },
            });
        }
        self.admit_marks(anchor, levels, Vec::new())
    }
}
