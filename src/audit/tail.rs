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
