//! PURE. The one CBOR (RFC 8949) reader: Gramine's TCG DICE tagged evidence and AWS Nitro's
//! COSE_Sign1 attestation documents. Borrowed, bounded, strict where strictness costs no
//! real evidence:
//!
//! - every length and count is checked against the bytes left before anything is read or
//!   allocated (a definite count above the bytes left is refused at once: every item takes
//!   at least one byte), and nesting stops at [`MAX_DEPTH`];
//! - indefinite-length *strings* are refused (chunked strings cannot be borrowed, and neither
//!   format emits them); indefinite-length *arrays and maps* are read only where a caller asks
//!   for them ([`Cbor::array_len`], [`Cbor::map_len`]), because the Nitro hypervisor encodes
//!   the attestation document itself as an indefinite map (`bf … ff`);
//! - reserved additional information (28–30) and a break outside an indefinite container are
//!   refused;
//! - non-minimal ("non-preferred") integer and length encodings are accepted: the Nitro
//!   document's timestamp is always an 8-byte integer (`uint .size 8`), and every signature is
//!   checked over the exact bytes received, never over a re-encoding, so a longer head
//!   changes no meaning;
//! - duplicate map keys are the callers' to refuse: only they know which keys they read.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

/// A CBOR problem, with a short description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CBOR: {0}")]
pub struct CborError(pub &'static str);

/// Deepest nesting [`Cbor::skip`] follows (COSE_Sign1 inside a tag is 2 deep; the Nitro
/// document 3).
pub const MAX_DEPTH: usize = 16;

/// Major type 0: unsigned integer.
pub const UINT: u8 = 0;
/// Major type 1: negative integer.
pub const NINT: u8 = 1;
/// Major type 2: byte string.
pub const BYTES: u8 = 2;
/// Major type 3: text string.
pub const TEXT: u8 = 3;
/// Major type 4: array.
pub const ARRAY: u8 = 4;
/// Major type 5: map.
pub const MAP: u8 = 5;
/// Major type 6: tag.
pub const TAG: u8 = 6;
/// Major type 7: simple values and floats.
pub const SIMPLE: u8 = 7;

/// The encoding of `null`.
pub const NULL: u8 = 0xf6;
/// The "break" that ends an indefinite-length array or map.
pub const BREAK: u8 = 0xff;

/// One decoded item header: major type and argument (`None`: indefinite length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Major type, 0–7.
    pub major: u8,
    /// The argument: a value, a length or a count; `None` for an indefinite length.
    pub arg: Option<u64>,
}

/// How many items an array or map holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// A count of items (pairs, for a map).
    Definite(u64),
    /// Items until a break.
    Indefinite,
}

/// A cursor over CBOR bytes. Every method consumes exactly the item it reads, or fails.
#[derive(Clone, Debug)]
pub struct Cbor<'a> {
    rest: &'a [u8],
}

impl<'a> Cbor<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(CborError("truncated"))?;
        self.rest = tail;
        Ok(head)
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one item header. Indefinite lengths come back as `arg: None` for arrays and
    /// maps only; for strings, and for reserved values, this fails.
    pub fn head(&mut self) -> Result<Head, CborError> {
        let first = *self.take(1)?.first().ok_or(CborError("truncated"))?;
        let major = first >> 5;
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                // 24..=27 announce 1, 2, 4 or 8 argument bytes.
                let n = 1usize << (info & 0x03);
                Some(
                    self.take(n)?
                        .iter()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                )
            }
            31 if major == ARRAY || major == MAP => None,
            31 if major == SIMPLE => return Err(CborError("break outside an indefinite item")),
            31 => return Err(CborError("indefinite-length strings are not accepted")),
            _ => return Err(CborError("reserved additional information")),
        };
        Ok(Head { major, arg })
    }

    fn len(arg: Option<u64>) -> Result<usize, CborError> {
        arg.and_then(|a| usize::try_from(a).ok())
            .ok_or(CborError("length too large"))
    }

    fn expect_major(&mut self, major: u8, what: &'static str) -> Result<Option<u64>, CborError> {
        let h = self.head()?;
        if h.major == major {
            Ok(h.arg)
        } else {
            Err(CborError(what))
        }
    }

    /// A byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let arg = self.expect_major(BYTES, "expected a byte string")?;
        self.take(Self::len(arg)?)
    }

    /// A text string (UTF-8).
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let arg = self.expect_major(TEXT, "expected a text string")?;
        std::str::from_utf8(self.take(Self::len(arg)?)?).map_err(|_| CborError("text is not UTF-8"))
    }

    /// An unsigned integer.
    pub fn uint(&mut self) -> Result<u64, CborError> {
        self.expect_major(UINT, "expected an unsigned integer")?
            .ok_or(CborError("expected an unsigned integer"))
    }

    /// An integer of either sign that fits an `i64`.
    pub fn int(&mut self) -> Result<i64, CborError> {
        let h = self.head()?;
        let arg = h
            .arg
            .and_then(|a| i64::try_from(a).ok())
            .ok_or(CborError("integer out of range"))?;
        match h.major {
            UINT => Ok(arg),
            // -1 - arg cannot overflow for 0 <= arg <= i64::MAX.
            NINT => Ok(arg
                .checked_neg()
                .and_then(|n| n.checked_sub(1))
                .unwrap_or(i64::MIN)),
            _ => Err(CborError("expected an integer")),
        }
    }

    /// A definite-length array header; returns the element count.
    pub fn array(&mut self) -> Result<u64, CborError> {
        match self.array_len()? {
            Length::Definite(n) => Ok(n),
            Length::Indefinite => Err(CborError("indefinite-length array")),
        }
    }

    /// A definite-length map header; returns the pair count.
    pub fn map(&mut self) -> Result<u64, CborError> {
        match self.map_len()? {
            Length::Definite(n) => Ok(n),
            Length::Indefinite => Err(CborError("indefinite-length map")),
        }
    }

    /// An array header, definite or not.
    pub fn array_len(&mut self) -> Result<Length, CborError> {
        let arg = self.expect_major(ARRAY, "expected an array")?;
        self.length(arg, 1)
    }

    /// A map header, definite or not.
    pub fn map_len(&mut self) -> Result<Length, CborError> {
        let arg = self.expect_major(MAP, "expected a map")?;
        self.length(arg, 2)
    }

    /// A count is refused at once when its items could not fit in the bytes left.
    fn length(&self, arg: Option<u64>, per_item: u64) -> Result<Length, CborError> {
        let Some(n) = arg else {
            return Ok(Length::Indefinite);
        };
        let min_bytes = n
            .checked_mul(per_item)
            .ok_or(CborError("count too large"))?;
        if usize::try_from(min_bytes).map_or(true, |m| m > self.rest.len()) {
            return Err(CborError("count exceeds the bytes left"));
        }
        Ok(Length::Definite(n))
    }

    /// A tag; returns its number.
    pub fn tag(&mut self) -> Result<u64, CborError> {
        self.expect_major(TAG, "expected a tag")?
            .ok_or(CborError("expected a tag"))
    }

    /// Consumes a `null` if one comes next.
    pub fn null(&mut self) -> bool {
        if self.peek() == Some(NULL) {
            self.rest = self.rest.get(1..).unwrap_or_default();
            true
        } else {
            false
        }
    }

    /// Skips one complete item of any type.
    pub fn skip(&mut self) -> Result<(), CborError> {
        self.skip_at(0)
    }

    /// One complete item, as the exact bytes it was encoded with.
    pub fn item(&mut self) -> Result<&'a [u8], CborError> {
        let before = self.rest;
        self.skip()?;
        let used = before.len().saturating_sub(self.rest.len());
        before.get(..used).ok_or(CborError("truncated"))
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError("nested too deeply"));
        }
        let Head { major, arg } = self.head()?;
        match major {
            UINT | NINT | SIMPLE => Ok(()),
            BYTES | TEXT => self.take(Self::len(arg)?).map(drop),
            ARRAY | MAP => {
                let per = if major == MAP { 2 } else { 1 };
                let mut items = Items::new(self.length(arg, per)?, per);
                while items.more(self)? {
                    self.skip_at(depth.saturating_add(1))?;
                }
                Ok(())
            }
            _ => self.skip_at(depth.saturating_add(1)), // tag: skip the tagged item
        }
    }
}

/// Walks the items of an array or map of either length: `while items.more(&mut c)? { … }`.
/// For a map, each `more` stands for one key or one value.
#[derive(Clone, Copy, Debug)]
pub struct Items {
    left: Option<u64>,
}

impl Items {
    /// Items of a container whose header said `len`; `per` is 1 for arrays, 2 for maps.
    pub fn new(len: Length, per: u64) -> Self {
        Self {
            left: match len {
                Length::Definite(n) => Some(n.saturating_mul(per)),
                Length::Indefinite => None,
            },
        }
    }

    /// True if another item follows; consumes the break that ends an indefinite container.
    pub fn more(&mut self, c: &mut Cbor<'_>) -> Result<bool, CborError> {
        match &mut self.left {
            Some(0) => Ok(false),
            Some(n) => {
                *n = n.saturating_sub(1);
                Ok(true)
            }
            None if c.peek() == Some(BREAK) => {
                c.take(1)?;
                Ok(false)
            }
            None if c.is_empty() => Err(CborError("truncated: no break")),
            None => Ok(true),
        }
    }
}

/// Appends an item header in the shortest form (RFC 8949 preferred serialization).
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    let be = arg.to_be_bytes();
    let (info, tail) = match arg {
        0..=23 => (u8::try_from(arg).unwrap_or(0), &be[8..]),
        24..=0xff => (24, &be[7..]),
        0x100..=0xffff => (25, &be[6..]),
        0x1_0000..=0xffff_ffff => (26, &be[4..]),
        _ => (27, &be[..]),
    };
    out.push(m | info);
    out.extend_from_slice(tail);
}

/// Appends a byte string.
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, BYTES, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(bytes);
}

/// Appends a text string.
pub fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, TEXT, u64::try_from(text.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shapes_gramine_emits() {
        // tag(60000) [ h'0102', h'03' ]
        let bytes = [0xd9, 0xea, 0x60, 0x82, 0x42, 1, 2, 0x41, 3];
        let mut c = Cbor::new(&bytes);
        assert_eq!(c.tag(), Ok(60000));
        assert_eq!(c.array(), Ok(2));
        assert_eq!(c.bytes(), Ok(&[1u8, 2][..]));
        assert_eq!(c.bytes(), Ok(&[3u8][..]));
        assert!(c.is_empty());
    }

    #[test]
    fn refuses_truncation_indefinite_lengths_and_deep_nesting() {
        assert!(Cbor::new(&[0x59, 0xff]).bytes().is_err());
        assert!(Cbor::new(&[0x5a, 0, 0, 0, 9, 1]).bytes().is_err());
        assert!(Cbor::new(&[0x5f]).bytes().is_err());
        assert!(Cbor::new(&[0x81; 20]).skip().is_err());
        assert!(
            Cbor::new(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
                .skip()
                .is_err()
        );
    }

    #[test]
    fn reads_an_indefinite_map_until_its_break() {
        // {_ "a": 1, "b": [_ 2, 3] }
        let bytes = [
            0xbf, 0x61, b'a', 0x01, 0x61, b'b', 0x9f, 0x02, 0x03, 0xff, 0xff,
        ];
        let mut c = Cbor::new(&bytes);
        assert_eq!(c.clone().item(), Ok(&bytes[..]));
        let len = c.map_len();
        assert_eq!(len, Ok(Length::Indefinite));
        let mut items = Items::new(Length::Indefinite, 2);
        let mut keys = Vec::new();
        while items.more(&mut c).unwrap_or(false) {
            keys.push(c.text().unwrap_or_default());
            let _ = items.more(&mut c);
            assert!(c.skip().is_ok());
        }
        assert_eq!(keys, ["a", "b"]);
        assert!(c.is_empty());
        // The definite-only readers refuse it.
        assert!(Cbor::new(&bytes).map().is_err());
    }

    #[test]
    fn refuses_a_missing_break_a_stray_break_and_reserved_values() {
        assert!(Cbor::new(&[0xbf, 0x01, 0x02]).skip().is_err());
        assert!(Cbor::new(&[0xff]).skip().is_err());
        for reserved in [0x1c, 0x1d, 0x1e, 0x3c, 0x5c, 0xfc] {
            assert!(Cbor::new(&[reserved]).skip().is_err(), "{reserved:#x}");
        }
        // A chunked byte string, as a bstr and inside a map.
        assert!(Cbor::new(&[0x5f, 0x41, 0, 0xff]).skip().is_err());
        assert!(Cbor::new(&[0xa1, 0x01, 0x5f, 0x41, 0, 0xff])
            .skip()
            .is_err());
    }

    #[test]
    fn a_count_beyond_the_bytes_left_is_refused_before_any_item_is_read() {
        // An array claiming 2^32 items in 6 bytes, and a map claiming 3 pairs in 5 bytes.
        assert_eq!(
            Cbor::new(&[0x9a, 0xff, 0xff, 0xff, 0xff, 0x00]).array(),
            Err(CborError("count exceeds the bytes left"))
        );
        assert!(Cbor::new(&[0xa3, 1, 2, 3, 4, 5]).map().is_err());
        assert_eq!(Cbor::new(&[0xa2, 1, 2, 3, 4]).map(), Ok(2));
    }

    #[test]
    fn integers_of_both_signs_and_non_minimal_heads() {
        assert_eq!(Cbor::new(&[0x38, 0x22]).int(), Ok(-35));
        assert_eq!(Cbor::new(&[0x01]).int(), Ok(1));
        assert_eq!(
            Cbor::new(&[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).int(),
            Ok(i64::MIN)
        );
        assert!(Cbor::new(&[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0]).int().is_err());
        // 1 in eight bytes: accepted, same value.
        assert_eq!(Cbor::new(&[0x1b, 0, 0, 0, 0, 0, 0, 0, 1]).uint(), Ok(1));
        assert!(Cbor::new(&[0x61, 0xff]).text().is_err(), "not UTF-8");
    }

    #[test]
    fn the_writer_uses_the_shortest_head_and_the_reader_reads_it_back() {
        for v in [
            0u64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_head(&mut out, UINT, v);
            let expected_len = match v {
                0..=23 => 1,
                24..=255 => 2,
                256..=65_535 => 3,
                65_536..=0xffff_ffff => 5,
                _ => 9,
            };
            assert_eq!(out.len(), expected_len, "{v}");
            let mut c = Cbor::new(&out);
            assert_eq!(c.uint(), Ok(v));
            assert!(c.is_empty());
        }
        let mut out = Vec::new();
        write_text(&mut out, "Signature1");
        write_bytes(&mut out, &[1, 2]);
        let mut c = Cbor::new(&out);
        assert_eq!(c.text(), Ok("Signature1"));
        assert_eq!(c.bytes(), Ok(&[1u8, 2][..]));
    }

    #[test]
    fn null_is_consumed_only_when_present() {
        let mut c = Cbor::new(&[0xf6, 0x40]);
        assert!(c.null());
        assert!(!c.null());
        assert_eq!(c.bytes(), Ok(&[][..]));
    }
}
