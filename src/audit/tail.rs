//! EDGE. The end of a trail file, read backwards in small chunks: its last record and what
//! follows it. Opening a trail (at start, and at every reopen for rotation) reads a bounded
//! window at its end, so its time and memory do not depend on the file's size.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::verify::MAX_LINE;

/// Bytes read at a time, backwards and forwards.
const CHUNK: u64 = 64 << 10;

/// A length as a file offset.
fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The end of a trail file: its length, its last record (the last line that is a JSON object
/// with a `seq`), and what follows it.
pub(super) struct Tail {
    /// The file's length.
    pub(super) len: u64,
    /// The last record's bytes, without its newline.
    pub(super) last: Option<Vec<u8>>,
    /// What follows the last record: nothing, or what a crash or a full disk left.
    pub(super) junk: Junk,
}

/// The bytes after the last record: empty, or a torn line (after a second failure, more
/// than one line). At most [`MAX_LINE`] bytes: a torn write of this proxy leaves less.
#[derive(Default)]
pub(super) struct Junk {
    /// Their length.
    pub(super) len: u64,
    /// They are one line without a newline that is a whole record.
    pub(super) whole_record: Option<Vec<u8>>,
    /// They end with a newline.
    pub(super) ends_with_newline: bool,
    /// SHA-256 of what `audit verify` sees as torn: the junk without the newline ending it.
    pub(super) torn_sha256: [u8; 32],
    /// Its length.
    pub(super) torn_bytes: u64,
}

/// True if `line` is a JSON object with a whole-number `seq`.
fn is_record(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line).is_ok_and(|v| v["seq"].is_u64())
}

/// Reads `file`'s tail: at most two lines' worth of bytes ([`MAX_LINE`] of junk and a record
/// of at most [`MAX_LINE`]), in chunks of [`CHUNK`].
pub(super) fn read_tail(file: &mut File) -> std::io::Result<Tail> {
    let len = file.metadata()?.len();
    let max_line = MAX_LINE;
    // Junk, then a record, then the newline before it.
    let floor = len.saturating_sub(max_line.saturating_mul(2).saturating_add(2));
    let mut back = Backwards::new(file, floor);
    // Newest line first: each ends at `nl` (its newline) and begins after the one before.
    let mut nl = back.newline_before(len)?;
    let mut last = None;
    while let Some(end) = nl {
        let after = end.saturating_add(1);
        if len.saturating_sub(after) > max_line {
            break;
        }
        let before = back.newline_before(end)?;
        let begin = match before {
            Some(b) => b.saturating_add(1),
            None if floor == 0 => 0,
            // Its beginning lies before the window: longer than any record.
            None => break,
        };
        if end.saturating_sub(begin) <= max_line {
            let line = back.read_at(begin, end)?;
            if is_record(&line) {
                last = Some((line, after));
                break;
            }
        }
        nl = before;
    }
    let junk_from = match &last {
        Some((_, after)) => *after,
        None if len <= max_line => 0,
        None => {
            return Err(std::io::Error::other(format!(
                "no record in the trail's last {max_line} bytes: more than a torn write leaves; not a trail this proxy wrote (move it aside)"
            )))
        }
    };
    let junk = junk(back.file, junk_from, len)?;
    Ok(Tail {
        len,
        last: last.map(|(line, _)| line),
        junk,
    })
}

/// Summarises the bytes `from..len` (at most [`MAX_LINE`]), reading them forwards.
fn junk(file: &mut File, from: u64, len: u64) -> std::io::Result<Junk> {
    if from >= len {
        return Ok(Junk::default());
    }
    let bytes = len.saturating_sub(from);
    let mut out = Junk {
        len: bytes,
        ..Junk::default()
    };
    file.seek(SeekFrom::Start(from))?;
    let mut reader = file.take(bytes);
    let mut hash = Sha256::new();
    let mut chunk = vec![0u8; usize::try_from(CHUNK).unwrap_or(4096)];
    let mut newline = false;
    let mut first = Vec::new();
    let mut held_newline = false;
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let got = chunk.get(..n).unwrap_or_default();
        // A newline is hashed only once a byte follows it: the last one ends the torn part.
        if held_newline {
            hash.update(b"\n");
        }
        let (body, ends) = match got.split_last() {
            Some((b'\n', body)) => (body, true),
            _ => (got, false),
        };
        hash.update(body);
        held_newline = ends;
        newline |= got.contains(&b'\n');
        if wide(first.len()) < MAX_LINE {
            first.extend_from_slice(got);
        }
    }
    out.ends_with_newline = held_newline;
    out.torn_bytes = if held_newline {
        bytes.saturating_sub(1)
    } else {
        bytes
    };
    out.torn_sha256 = hash.finalize().into();
    if !newline && is_record(&first) {
        out.whole_record = Some(first);
    }
    Ok(out)
}

/// Reads a file backwards from its end, a chunk at a time, never before `floor`.
struct Backwards<'f> {
    file: &'f mut File,
    floor: u64,
    /// The chunk read last, and where in the file it starts.
    buf: Vec<u8>,
    at: u64,
}

impl<'f> Backwards<'f> {
    fn new(file: &'f mut File, floor: u64) -> Self {
        Self {
            file,
            floor,
            buf: Vec::new(),
            at: floor,
        }
    }

    /// Where the last newline before `before` is, if there is one after the floor.
    fn newline_before(&mut self, mut before: u64) -> std::io::Result<Option<u64>> {
        loop {
            if before <= self.floor {
                return Ok(None);
            }
            let held = self.at.saturating_add(wide(self.buf.len()));
            if !(self.at < before && before <= held) {
                let start = before.saturating_sub(CHUNK).max(self.floor);
                self.buf = self.read_at(start, before)?;
                self.at = start;
            }
            let upto = usize::try_from(before.saturating_sub(self.at)).unwrap_or(usize::MAX);
            let held = self.buf.get(..upto).unwrap_or_default();
            if let Some(i) = held.iter().rposition(|b| *b == b'\n') {
                return Ok(Some(self.at.saturating_add(wide(i))));
            }
            before = self.at;
        }
    }

    /// The bytes `from..to` (a line or a chunk: at most [`MAX_LINE`]).
    fn read_at(&mut self, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(from))?;
        let mut out = Vec::new();
        (&mut *self.file)
            .take(to.saturating_sub(from))
            .read_to_end(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use serde_json::Value;
    use sha2::{Digest, Sha256};

    use crate::audit::verify::tests::{chain, verdict_record};
    use crate::audit::verify_file;

    /// `text` after `filler` zero bytes and a newline; the zeros are a hole in a sparse file,
    /// so a trail of gigabytes costs no disk (and reading it all would show).
    fn after_hole(name: &str, filler: u64, text: &str) -> std::path::PathBuf {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let path = std::env::temp_dir().join(format!("ratls-audit-{name}-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).expect("create");
        f.set_len(filler).expect("hole");
        f.seek(SeekFrom::End(0)).expect("seek");
        f.write_all(b"\n").expect("write");
        f.write_all(text.as_bytes()).expect("write");
        path
    }

    /// The file's last line (without its newline), read from the end.
    fn last_line(path: &std::path::Path) -> Value {
        use std::io::{Seek as _, SeekFrom};
        let mut f = std::fs::File::open(path).expect("open");
        let len = f.metadata().expect("len").len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))
            .expect("seek");
        let mut tail = Vec::new();
        f.read_to_end(&mut tail).expect("read");
        let text = String::from_utf8_lossy(&tail);
        let line = text
            .trim_end_matches('\n')
            .rsplit('\n')
            .next()
            .unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn opening_a_huge_trail_reads_its_tail_only() {
        // 8 GiB before the last records: reading it all would take minutes and the memory.
        let text = chain(vec![
            Ok(verdict_record(true)),
            Ok(verdict_record(false)),
            Ok(verdict_record(true)),
        ]);
        let path = after_hole("huge", 8 << 30, &text);
        let last = text.lines().last().unwrap_or("");
        let want: [u8; 32] = Sha256::digest(last.as_bytes()).into();
        let log = crate::audit::AuditLog::open(&path, None).expect("opens");
        {
            let mut s = log.lock().expect("lock");
            assert_eq!((s.seq, s.prev), (3, want));
            log.append(&mut s, verdict_record(false), b"")
                .expect("appends");
        }
        log.reopen().expect("reopens");
        let next = last_line(&path);
        assert_eq!(next["seq"], 4);
        assert_eq!(next["prev_sha256"], hex::encode(want));
        assert_eq!(log.lock().expect("lock").seq, 4);
        drop(log);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_torn_tail_is_closed_and_named_however_long_the_trail() {
        // Torn lines longer than one read of the tail (64 KiB), the last without its newline.
        let records = chain(vec![Ok(verdict_record(true)), Ok(verdict_record(false))]);
        let junk = format!(
            "{}\n\u{0}\u{0}not json\n{{\"cert_sha256\":\"0a",
            "x".repeat(100_000)
        );
        let small = std::env::temp_dir().join(format!("ratls-audit-torn-{}", std::process::id()));
        std::fs::write(&small, format!("{records}{junk}")).expect("write");
        let huge = after_hole("torn-huge", 4 << 30, &format!("{records}{junk}"));
        for path in [&small, &huge] {
            drop(crate::audit::AuditLog::open(path, None).expect("opens"));
            let recovered = last_line(path);
            assert_eq!(recovered["event"], "recovered");
            assert_eq!(recovered["seq"], 3);
            assert_eq!(recovered["torn_bytes"], junk.len());
            assert_eq!(
                recovered["torn_sha256"],
                hex::encode(Sha256::digest(junk.as_bytes()))
            );
        }
        // What `audit verify` checks end to end: the recovered record names exactly the torn
        // lines, chained to the record before them.
        let checked = verify_file(&small, None, None);
        let _ = std::fs::remove_file(&small);
        let _ = std::fs::remove_file(&huge);
        let checked = checked.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((checked.records, checked.recovered), (3, 1));
    }

    #[test]
    fn a_hostile_tail_is_refused_or_recovered_never_read_whole() {
        let records = chain(vec![Ok(verdict_record(true))]);
        let open = |name: &str, tail: &str| {
            let path = after_hole(name, 1 << 30, &format!("{records}{tail}"));
            let r = crate::audit::AuditLog::open(&path, None).map(drop);
            let last = r.as_ref().ok().map(|()| last_line(&path));
            let _ = std::fs::remove_file(&path);
            (r, last)
        };
        // More bytes after the last record than any torn write leaves: a line of 3 MiB, or a
        // "record" longer than any the proxy writes followed by a newline.
        let huge = "x".repeat(3 << 20);
        let long_record = format!("{{\"seq\":9,\"pad\":\"{}\"}}\n", "y".repeat(3 << 19));
        for (name, tail) in [("huge-line", huge.as_str()), ("long-record", &long_record)] {
            let (r, _) = open(name, tail);
            let err = r.expect_err(name).to_string();
            assert!(
                err.contains("no record in the trail's last"),
                "{name}: {err}"
            );
        }
        // Not JSON, NULs, empty lines, a JSON object without `seq`: closed and named.
        for (name, tail) in [
            ("not-json", "\u{0}\u{0}\u{0}"),
            ("empty-lines", "\n\n\n"),
            ("no-seq", "{\"verdict\":\"accepted\"}\n"),
            ("seq-string", "{\"seq\":\"9\"}"),
        ] {
            let (r, last) = open(name, tail);
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
            let last = last.unwrap_or_default();
            assert_eq!(last["event"], "recovered", "{name}");
            assert_eq!(last["seq"], 2, "{name}");
        }
    }
}
