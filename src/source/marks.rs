//! EDGE. Collateral high-water marks: the newest signed collateral ever admitted, so a replay
//! of older, validly signed collateral (a TCB info from before a TCB recovery, a CRL from
//! before a revocation) is refused after a reload or a restart too, not only while one cache
//! holds a newer snapshot.
//!
//! Per trust root: TCB info per (TEE, FMSPC) and QE identity per TEE, ordered by
//! `tcbEvaluationDataNumber`, then `issueDate` (Intel's early TCB data has a higher number
//! and an older date than the standard data it supersedes); CRLs per issuing CA (the root,
//! the PCK Platform CA, the PCK Processor CA) by `thisUpdate`. Keys are coarser than the
//! cache's (FMSPC, PCK CA, TEE) wherever the document is the same for all of them: the
//! coarser the key, the fewer places a replay can hide.
//!
//! Intel's early TCB data (`update=early`) has marks of its own, in a book of its own
//! ([`Book::Early`]): TCB info and QE identity as above, and the evaluation data numbers list
//! per TEE. Early data never raises (nor is held to) the standard marks, so fetching it never
//! blocks the standard data, and a source cannot raise the standard marks through it.
//!
//! Each book is kept in its own file in the state directory (`collateral-marks.json`,
//! `collateral-marks-early.json`): written to a temporary file, fsynced, renamed over the old
//! one and the directory fsynced, so a crash leaves the old marks or the new ones, never a
//! mix. Read once at start; a file that is unreadable, corrupt, oversized or writable by
//! others stops the start (see [`Marks::load`]).

mod early;
mod nitro;
mod snp;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub(crate) use self::early::Books;

use crate::dcap::collateral::pcs::PckCa;
use crate::dcap::collateral::qe_identity::QeIdentity;
use crate::dcap::collateral::tcb_info::CollateralTee;
use crate::dcap::collateral::tcb_info::TcbInfo;
use crate::dcap::collateral::CollateralItem;
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::dcap::verified::VerifiedCollateral;

/// The standard marks file, in the state directory.
pub(crate) const MARKS_FILE: &str = "collateral-marks.json";
/// The early data's marks file, in the state directory.
pub(crate) const EARLY_MARKS_FILE: &str = "collateral-marks-early.json";

/// Which marks: the standard data's or the early data's (two books that never meet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Book {
    /// What verdicts are made under.
    Standard,
    /// Intel's early TCB data.
    Early,
}

impl Book {
    fn file(self) -> &'static str {
        match self {
            Self::Standard => MARKS_FILE,
            Self::Early => EARLY_MARKS_FILE,
        }
    }
}
/// A larger file is not read (a few thousand marks take well under this).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Marks kept at most, all roots together; beyond it new platforms are refused rather than
/// admitted unguarded (only platforms whose PCK chain verified to the root ever get here).
pub(crate) const MAX_MARKS: usize = 4096;
const VERSION: u32 = 1;

/// How new a TCB info or QE identity is: its evaluation data number, then its issue date
/// (the derived order compares the fields in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Level {
    /// `tcbEvaluationDataNumber`.
    pub evaluation: u32,
    /// `issueDate`, Unix seconds.
    pub issued: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootMarks {
    /// `"<tee>/<fmspc>"` → the newest TCB info.
    #[serde(default)]
    tcb_info: BTreeMap<String, Level>,
    /// `"<tee>"` → the newest QE identity.
    #[serde(default)]
    qe_identity: BTreeMap<String, Level>,
    /// Issuing CA (`root`, `platform`, `processor`) → the newest CRL `thisUpdate`.
    #[serde(default)]
    crl: BTreeMap<String, i64>,
    /// `"<tee>"` → the newest evaluation data numbers list (its highest number, its issue
    /// date). Early book only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    numbers: BTreeMap<String, Level>,
}

impl RootMarks {
    fn len(&self) -> usize {
        self.tcb_info
            .len()
            .saturating_add(self.qe_identity.len())
            .saturating_add(self.crl.len())
            .saturating_add(self.numbers.len())
    }

    fn levels(&self, slot: Slot) -> &BTreeMap<String, Level> {
        match slot {
            Slot::TcbInfo => &self.tcb_info,
            Slot::QeIdentity => &self.qe_identity,
            Slot::Numbers => &self.numbers,
        }
    }

    fn levels_mut(&mut self, slot: Slot) -> &mut BTreeMap<String, Level> {
        match slot {
            Slot::TcbInfo => &mut self.tcb_info,
            Slot::QeIdentity => &mut self.qe_identity,
            Slot::Numbers => &mut self.numbers,
        }
    }
}

/// Which documents a level mark is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    TcbInfo,
    QeIdentity,
    Numbers,
}

/// One document to admit: its slot, key, name in messages and level.
pub(super) struct LevelMark {
    slot: Slot,
    key: String,
    what: String,
    level: Level,
}

/// One CRL to admit: its issuing CA, name in messages and `thisUpdate`.
pub(super) struct CrlMark {
    issuer: String,
    what: &'static str,
    from: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    version: u32,
    /// By trust root (hex SHA-256 of its DER): marks under one root say nothing of another's.
    roots: BTreeMap<String, RootMarks>,
}

impl Table {
    fn len(&self) -> usize {
        self.roots
            .values()
            .fold(0usize, |n, r| n.saturating_add(r.len()))
    }
}

/// The marks of a TCB info and a QE identity, named with `prefix` (`"early "` or none).
fn documents(prefix: &str, tcb_info: &TcbInfo, qe: &QeIdentity) -> Vec<LevelMark> {
    let tcb_key = format!("{}/{}", tee_name(tcb_info.tee), tcb_info.fmspc);
    let qe_key = tee_name(qe.tee).to_owned();
    vec![
        LevelMark {
            slot: Slot::TcbInfo,
            what: format!("{prefix}TCB info for {tcb_key}"),
            key: tcb_key,
            level: Level {
                evaluation: tcb_info.tcb_evaluation_data_number,
                issued: tcb_info.issue_date.0,
            },
        },
        LevelMark {
            slot: Slot::QeIdentity,
            what: format!("{prefix}{qe_key} QE identity"),
            key: qe_key,
            level: Level {
                evaluation: qe.tcb_evaluation_data_number,
                issued: qe.issue_date.0,
            },
        },
    ]
}

/// Why the marks file cannot be used: the proxy does not start.
#[derive(Debug, thiserror::Error)]
#[error("collateral high-water marks {path}: {detail}")]
pub(crate) struct MarksError {
    path: String,
    detail: String,
}

/// Why collateral was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It is older than what was already admitted (`collateral_rollback`).
    Rollback(String),
    /// No room for another platform's marks.
    Full,
}

/// The high-water marks, in memory or kept in a file.
#[derive(Debug)]
pub(crate) struct Marks {
    file: Option<PathBuf>,
    table: Mutex<Table>,
    write_failures: AtomicU64,
}

pub(super) fn tee_name(t: CollateralTee) -> &'static str {
    match t {
        CollateralTee::Sgx => "sgx",
        CollateralTee::Tdx => "tdx",
    }
}

impl Marks {
    /// Marks held in memory only (`verify`, tests, a proxy built in-process).
    pub(crate) fn in_memory() -> Self {
        Self {
            file: None,
            table: Mutex::new(Table {
                version: VERSION,
                roots: BTreeMap::new(),
            }),
            write_failures: AtomicU64::new(0),
        }
    }

    /// The `book` of marks kept in `dir` (none yet if its file does not exist). Refuses a
    /// file that is not a regular file, is writable by group or others, is larger than 1 MiB,
    /// does not parse, or holds more than [`MAX_MARKS`] marks: starting without the marks
    /// would silently reopen the window for replays, and atomic writes mean a crash never
    /// leaves such a file, so something else did and an operator should look.
    pub(crate) fn load(dir: &Path, book: Book) -> Result<Self, MarksError> {
        let path = dir.join(book.file());
        let fail = |detail: String| MarksError {
            path: path.display().to_string(),
            detail,
        };
        let table = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table {
                version: VERSION,
                roots: BTreeMap::new(),
            },
            Err(e) => return Err(fail(format!("cannot read: {e}"))),
            Ok(meta) => {
                if !meta.is_file() {
                    return Err(fail("not a regular file".into()));
                }
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o022 != 0 {
                        return Err(fail(format!(
                            "writable by group or others (mode {mode:o}): anyone who can rewrite it can lower the marks; run chmod 600"
                        )));
                    }
                }
                if meta.len() > MAX_FILE_BYTES {
                    return Err(fail(format!(
                        "{} bytes, more than {MAX_FILE_BYTES}",
                        meta.len()
                    )));
                }
                let bytes = std::fs::read(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
                let table: Table = serde_json::from_slice(&bytes).map_err(|e| {
                    fail(format!(
                        "corrupt ({e}); the proxy does not start without its marks. Look at the file (a hand edit? a full disk? tampering?); delete it only to accept whatever collateral the source serves next"
                    ))
                })?;
                if table.version != VERSION {
                    return Err(fail(format!(
                        "version {}, this build reads version {VERSION}",
                        table.version
                    )));
                }
                if table.len() > MAX_MARKS {
                    return Err(fail(format!(
                        "{} marks, more than {MAX_MARKS}",
                        table.len()
                    )));
                }
                table
            }
        };
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(dir) {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode();
            // Without the sticky bit, anyone who may write the directory may replace the file.
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o7777), "the state directory is writable by group or others: they can replace the collateral high-water marks; make it 0700");
            }
        }
        Ok(Self {
            file: Some(path),
            table: Mutex::new(table),
            write_failures: AtomicU64::new(0),
        })
    }

    /// Where the marks are kept, if in a file.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Failed writes of the file (the marks in memory still hold).
    pub(crate) fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// Admits `v` (verified under the root `anchor`, its PCK CRL issued by `ca`) if it moves
    /// no mark backwards, and raises the marks to it (kept before this returns, when in a
    /// file); else says why not, changing nothing.
    pub(crate) fn admit(
        &self,
        anchor: &CertSha256,
        ca: PckCa,
        v: &VerifiedCollateral,
    ) -> Result<(), Refused> {
        let levels = documents("", &v.tcb_info, &v.qe_identity);
        let crl_from = |item: CollateralItem| {
            v.windows()
                .iter()
                .find(|w| w.item == item)
                .map(|w| w.from.0)
        };
        let crls = [
            ("root", "the root CA CRL", CollateralItem::RootCaCrl),
            (ca.as_str(), "the PCK CRL", CollateralItem::PckCrl),
        ]
        .into_iter()
        .filter_map(|(issuer, what, item)| {
            crl_from(item).map(|from| CrlMark {
                issuer: issuer.to_owned(),
                what,
                from,
            })
        })
        .collect();
        self.admit_marks(anchor, levels, crls)
    }

    pub(super) fn admit_marks(
        &self,
        anchor: &CertSha256,
        levels: Vec<LevelMark>,
        crls: Vec<CrlMark>,
    ) -> Result<(), Refused> {
        let mut table = self
            .table
            .lock()
            .map_err(|_| Refused::Rollback("marks lock poisoned".into()))?;
        let root_key = anchor.to_string();
        let empty = RootMarks::default();
        let held = table.roots.get(&root_key).unwrap_or(&empty);
        for m in &levels {
            if let Some(h) = held.levels(m.slot).get(&m.key).filter(|h| m.level < **h) {
                return Err(Refused::Rollback(format!(
                    "{} has TCB evaluation data number {} issued {}; already seen {} issued {}",
                    m.what,
                    m.level.evaluation,
                    UnixTime(m.level.issued),
                    h.evaluation,
                    UnixTime(h.issued)
                )));
            }
        }
        for c in &crls {
            if let Some(h) = held.crl.get(&c.issuer).filter(|h| c.from < **h) {
                return Err(Refused::Rollback(format!(
                    "{} of the {} CA was issued {}; one issued {} was already seen",
                    c.what,
                    c.issuer,
                    UnixTime(c.from),
                    UnixTime(*h)
                )));
            }
        }
        let added = levels
            .iter()
            .filter(|m| !held.levels(m.slot).contains_key(&m.key))
            .count()
            .saturating_add(
                crls.iter()
                    .filter(|c| !held.crl.contains_key(&c.issuer))
                    .count(),
            );
        if added > 0 && table.len().saturating_add(added) > MAX_MARKS {
            return Err(Refused::Full);
        }

        let before = table.clone();
        let marks = table.roots.entry(root_key).or_default();
        for m in levels {
            let slot = marks.levels_mut(m.slot).entry(m.key).or_insert(m.level);
            *slot = (*slot).max(m.level);
        }
        for c in crls {
            let slot = marks.crl.entry(c.issuer).or_insert(c.from);
            *slot = (*slot).max(c.from);
        }
        if *table != before {
            if let Some(path) = &self.file {
                if let Err(e) = write_atomically(path, &table) {
                    // The marks in memory stand until the next restart; the file keeps the
                    // previous ones, which are lower, never wrong.
                    self.write_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(path = %path.display(), error = %e, "cannot write the collateral high-water marks; a restart would fall back to the previous ones");
                }
            }
        }
        Ok(())
    }
}

/// Writes `table` to `path` so that a crash at any point leaves the old file or the new one.
fn write_atomically(path: &Path, table: &Table) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut text = serde_json::to_vec_pretty(table).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(MARKS_FILE);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of a crash (never a file someone planted: `create_new` refuses to follow or
    // reuse anything at the path).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is.
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::dcap::collateral::Collateral;
    use crate::sim::SimPki;

    fn verified(pki: &SimPki, c: &Collateral) -> VerifiedCollateral {
        VerifiedCollateral::verify(c, &pki.anchor().expect("anchor")).expect("verifies")
    }

    fn with_evaluation(pki: &SimPki, c: &Collateral, n: u32) -> Collateral {
        let mut c = c.clone();
        c.tcb_info = c.tcb_info.replace(
            "\"tcbEvaluationDataNumber\":17",
            &format!("\"tcbEvaluationDataNumber\":{n}"),
        );
        c.tcb_info_signature = pki.sign_with_tcb_key(&c.tcb_info).expect("sign");
        c
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ratls-marks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_evaluation_number_orders_before_the_issue_date() {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let anchor = pki.anchor().expect("anchor").sha256();
        let standard = pki.collateral(UnixTime(now.0 - 60), &[]).expect("c");
        // Early data: a higher number, issued before the standard data.
        let early = with_evaluation(
            &pki,
            &pki.collateral(UnixTime(now.0 - 7200), &[]).expect("c"),
            19,
        );
        let marks = Marks::in_memory();
        // The CRLs of the early bundle are older: give it the standard one's.
        let mut early_fresh_crls = early.clone();
        early_fresh_crls.pck_crl = standard.pck_crl.clone();
        early_fresh_crls.root_ca_crl = standard.root_ca_crl.clone();
        early_fresh_crls.qe_identity = standard.qe_identity.clone();
        early_fresh_crls.qe_identity_signature = standard.qe_identity_signature.clone();
        marks
            .admit(&anchor, PckCa::Platform, &verified(&pki, &standard))
            .expect("first");
        marks
            .admit(&anchor, PckCa::Platform, &verified(&pki, &early_fresh_crls))
            .expect("a higher evaluation number is newer, whatever its date");
        let back = marks
            .admit(&anchor, PckCa::Platform, &verified(&pki, &standard))
            .expect_err("back to 17 is a rollback");
        assert!(
            matches!(back, Refused::Rollback(ref why) if why.contains("TCB info")),
            "{back:?}"
        );
    }

    #[test]
    fn marks_survive_a_reload_of_the_file_and_a_corrupt_file_is_refused() {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let anchor = pki.anchor().expect("anchor").sha256();
        let newer = verified(&pki, &pki.collateral(UnixTime(now.0 - 60), &[]).expect("c"));
        let older = verified(
            &pki,
            &pki.collateral(UnixTime(now.0 - 3600), &[]).expect("c"),
        );
        let d = dir("reload");
        let marks = Marks::load(&d, Book::Standard).expect("no file yet");
        marks
            .admit(&anchor, PckCa::Platform, &newer)
            .expect("admit");
        let again = Marks::load(&d, Book::Standard).expect("reads its own file");
        assert!(matches!(
            again.admit(&anchor, PckCa::Platform, &older),
            Err(Refused::Rollback(_))
        ));
        // Another root's collateral is not held to these marks.
        let other = SimPki::generate(now).expect("pki");
        let other_old = verified(
            &other,
            &other.collateral(UnixTime(now.0 - 3600), &[]).expect("c"),
        );
        again
            .admit(
                &other.anchor().expect("a").sha256(),
                PckCa::Platform,
                &other_old,
            )
            .expect("another root");

        let file = d.join(MARKS_FILE);
        let text = std::fs::read_to_string(&file).expect("read");
        for (name, bytes) in [
            ("torn", text[..text.len() / 2].to_owned()),
            ("empty", String::new()),
            (
                "unknown field",
                text.replacen("\"version\"", "\"extra\": 1, \"version\"", 1),
            ),
            (
                "wrong version",
                text.replacen("\"version\": 1", "\"version\": 2", 1),
            ),
        ] {
            std::fs::write(&file, bytes).expect("write");
            let err = Marks::load(&d, Book::Standard).expect_err(name);
            assert!(err.to_string().contains(MARKS_FILE), "{name}: {err}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(&file, &text).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
            let err = Marks::load(&d, Book::Standard).expect_err("world-writable");
            assert!(err.to_string().contains("writable"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
