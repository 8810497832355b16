//! A bounded MessagePack reader for dstack's `V1` wire form (rmp-serde's named encoding):
//! maps, arrays, strings, binaries and integers; byte strings as either `bin` or an array of
//! small integers (serde's `Vec<u8>`). Counts are capped and can never outrun the input;
//! skipping an unknown value is depth-limited. Floats and extension types are read only to
//! be skipped.

use std::borrow::Cow;

use super::cursor::Cursor;
use super::limits::MAX_DEPTH;
use super::AttestationError;

/// Reads MessagePack values from a byte slice without ever panicking.
pub(super) struct Mp<'a> {
    c: Cursor<'a>,
}

fn type_error(what: &'static str, expected: &'static str) -> AttestationError {
    AttestationError::Type { what, expected }
}

impl<'a> Mp<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            c: Cursor::new(bytes),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AttestationError> {
        self.c.take(n, what)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, AttestationError> {
        self.c.byte(what)
    }

    fn fits(&self, n: u64, max: usize, what: &'static str) -> Result<usize, AttestationError> {
        self.c.fits(n, max, what)
    }

    /// A big-endian unsigned integer of `n` (1, 2, 4 or 8) bytes.
    fn be(&mut self, n: usize, what: &'static str) -> Result<u64, AttestationError> {
        Ok(self
            .take(n, what)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// The number of pairs of a map.
    pub(super) fn map(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<usize, AttestationError> {
        let n = match self.byte(what)? {
            m @ 0x80..=0x8f => u64::from(m & 0x0f),
            0xde => self.be(2, what)?,
            0xdf => self.be(4, what)?,
            _ => return Err(type_error(what, "a map")),
        };
        self.fits(n, max, what)
    }

    /// The number of elements of an array.
    pub(super) fn array(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<usize, AttestationError> {
        let n = match self.byte(what)? {
            m @ 0x90..=0x9f => u64::from(m & 0x0f),
            0xdc => self.be(2, what)?,
            0xdd => self.be(4, what)?,
            _ => return Err(type_error(what, "an array")),
        };
        self.fits(n, max, what)
    }

    /// A string, borrowed.
    pub(super) fn str(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a str, AttestationError> {
        let n = match self.byte(what)? {
            m @ 0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 => self.be(1, what)?,
            0xda => self.be(2, what)?,
            0xdb => self.be(4, what)?,
            _ => return Err(type_error(what, "a string")),
        };
        let len = self.fits(n, max, what)?;
        std::str::from_utf8(self.take(len, what)?).map_err(|_| AttestationError::NotUtf8(what))
    }

    /// A non-negative integer in any of MessagePack's integer encodings.
    pub(super) fn uint(&mut self, what: &'static str) -> Result<u64, AttestationError> {
        let negative = || type_error(what, "a non-negative integer");
        match self.byte(what)? {
            m @ 0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1, what),
            0xcd => self.be(2, what),
            0xce => self.be(4, what),
            0xcf => self.be(8, what),
            // Signed encodings of non-negative values are what some encoders write.
            m @ 0xd0..=0xd3 => {
                let width = match m {
                    0xd0 => 1,
                    0xd1 => 2,
                    0xd2 => 4,
                    _ => 8,
                };
                let bytes = self.take(width, what)?;
                if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                    return Err(negative());
                }
                Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            }
            0xe0..=0xff => Err(negative()),
            _ => Err(type_error(what, "an integer")),
        }
    }

    /// A u32 field.
    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, AttestationError> {
        u32::try_from(self.uint(what)?).map_err(|_| type_error(what, "an integer below 2^32"))
    }

    /// A byte string: `bin` (borrowed) or an array of integers 0..=255 (copied; serde's
    /// encoding of `Vec<u8>`, which is how dstack writes quotes and report data).
    pub(super) fn bytes(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<Cow<'a, [u8]>, AttestationError> {
        let n = match self.c.peek() {
            Some(0xc4) => {
                self.byte(what)?;
                self.be(1, what)?
            }
            Some(0xc5) => {
                self.byte(what)?;
                self.be(2, what)?
            }
            Some(0xc6) => {
                self.byte(what)?;
                self.be(4, what)?
            }
            Some(0x90..=0x9f | 0xdc | 0xdd) => {
                let n = self.array(max, what)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let b = self.uint(what)?;
                    out.push(u8::try_from(b).map_err(|_| type_error(what, "bytes (0..=255)"))?);
                }
                return Ok(Cow::Owned(out));
            }
            _ => return Err(type_error(what, "a byte string")),
        };
        let len = self.fits(n, max, what)?;
        self.take(len, what).map(Cow::Borrowed)
    }

    /// Skips one value of any type, refusing nesting deeper than [`MAX_DEPTH`], and returns
    /// its exact bytes.
    pub(super) fn raw(&mut self, what: &'static str) -> Result<&'a [u8], AttestationError> {
        let mark = self.c.mark();
        self.skip(what, 0)?;
        Ok(self.c.since(mark))
    }

    fn skip(&mut self, what: &'static str, depth: usize) -> Result<(), AttestationError> {
        if depth > MAX_DEPTH {
            return Err(AttestationError::TooDeep(what));
        }
        let marker = self.c.peek().ok_or(AttestationError::Truncated {
            what,
            needed: 1,
            available: 0,
        })?;
        let (children, n) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => {
                self.byte(what)?;
                return Ok(());
            }
            0x80..=0x8f | 0xde | 0xdf => (2u64, self.map(usize::MAX, what)?),
            0x90..=0x9f | 0xdc | 0xdd => (1, self.array(usize::MAX, what)?),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.str(usize::MAX, what)?;
                return Ok(());
            }
            0xc4..=0xc6 => {
                self.bytes(usize::MAX, what)?;
                return Ok(());
            }
            0xcc..=0xd3 => {
                self.uint(what).map(drop).or_else(|e| match e {
                    // A negative signed integer is still a well-formed value to skip.
                    AttestationError::Type { .. } => Ok(()),
                    other => Err(other),
                })?;
                return Ok(());
            }
            // float 32 and float 64: the marker and 4 or 8 bytes.
            0xca | 0xcb => {
                self.take(if marker == 0xca { 5 } else { 9 }, what)?;
                return Ok(());
            }
            // fixext 1, 2, 4, 8, 16: marker, type, data.
            0xd4..=0xd8 => {
                let data: usize = match marker {
                    0xd4 => 1,
                    0xd5 => 2,
                    0xd6 => 4,
                    0xd7 => 8,
                    _ => 16,
                };
                self.take(data.saturating_add(2), what)?;
                return Ok(());
            }
            0xc7..=0xc9 => {
                self.byte(what)?;
                let width = match marker {
                    0xc7 => 1,
                    0xc8 => 2,
                    _ => 4,
                };
                let n = self.be(width, what)?;
                let len = self.fits(n.saturating_add(1), usize::MAX, what)?;
                self.take(len, what)?;
                return Ok(());
            }
            _ => return Err(type_error(what, "a MessagePack value (0xc1 is never used)")),
        };
        for _ in 0..n {
            for _ in 0..children {
                self.skip(what, depth.saturating_add(1))?;
            }
        }
        Ok(())
    }

    /// Succeeds only if every byte was consumed.
    pub(super) fn finish(self, what: &'static str) -> Result<(), AttestationError> {
        self.c.finish(what)
    }
}

/// Sets a map field once: a second occurrence of the key is refused.
pub(super) fn once<T>(
    slot: &mut Option<T>,
    value: T,
    map: &'static str,
    key: &str,
) -> Result<(), AttestationError> {
    if slot.is_some() {
        return Err(AttestationError::DuplicateKey {
            map,
            key: key.to_owned(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// A field that must have been present.
pub(super) fn required<T>(
    slot: Option<T>,
    map: &'static str,
    key: &'static str,
) -> Result<T, AttestationError> {
    slot.ok_or(AttestationError::MissingKey { map, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_every_encoding() {
        for (bytes, v) in [
            (&[0x05][..], 5u64),
            (&[0xcc, 0xff], 255),
            (&[0xcd, 0x01, 0x00], 256),
            (&[0xce, 0x08, 0x00, 0x00, 0x01], 0x0800_0001),
            (&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 32),
            (&[0xd0, 0x7f], 127),
            (&[0xd1, 0x00, 0x80], 128),
        ] {
            assert_eq!(Mp::new(bytes).uint("i"), Ok(v));
        }
        for bytes in [&[0xff][..], &[0xd0, 0x80], &[0xc0], &[0xa1, b'x']] {
            assert!(Mp::new(bytes).uint("i").is_err());
        }
        assert!(Mp::new(&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]).u32("i").is_err());
    }

    #[test]
    fn byte_strings_as_bin_or_small_integers() {
        assert_eq!(
            Mp::new(&[0xc4, 2, 7, 8]).bytes(10, "b").as_deref(),
            Ok(&[7u8, 8][..])
        );
        assert_eq!(
            Mp::new(&[0x93, 0x01, 0xcc, 0xff, 0x00])
                .bytes(10, "b")
                .as_deref(),
            Ok(&[1u8, 255, 0][..])
        );
        assert!(Mp::new(&[0x91, 0xcd, 0x01, 0x00]).bytes(10, "b").is_err());
        assert!(Mp::new(&[0xc4, 20, 1]).bytes(100, "b").is_err());
        assert!(matches!(
            Mp::new(&[0xc6, 0xff, 0xff, 0xff, 0xff]).bytes(100, "b"),
            Err(AttestationError::FieldTooLarge { .. })
        ));
    }

    #[test]
    fn counts_cannot_outrun_the_input() {
        assert!(matches!(
            Mp::new(&[0xdd, 0x7f, 0xff, 0xff, 0xff]).array(usize::MAX, "a"),
            Err(AttestationError::Truncated { .. })
        ));
        assert!(matches!(
            Mp::new(&[0xdf, 0x00, 0x00, 0x00, 0x09, 0x01]).map(4, "m"),
            Err(AttestationError::FieldTooLarge { .. })
        ));
    }

    #[test]
    fn skipping_is_bounded_and_exact() {
        // {"a": [1, 2.0f32, nil], "b": ext8(1 byte)} then one trailing byte.
        let v = [
            0x82, 0xa1, b'a', 0x93, 0x01, 0xca, 0, 0, 0, 0, 0xc0, 0xa1, b'b', 0xc7, 1, 5, 9, 0xff,
        ];
        let mut m = Mp::new(&v);
        assert_eq!(m.raw("v").map(<[u8]>::len), Ok(17));
        assert_eq!(
            m.finish("v"),
            Err(AttestationError::TrailingBytes {
                what: "v",
                extra: 1
            })
        );
        let deep = [0x91; 40];
        assert_eq!(Mp::new(&deep).raw("d"), Err(AttestationError::TooDeep("d")));
        assert!(Mp::new(&[0xc1]).raw("x").is_err());
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let mut slot = None;
        assert_eq!(once(&mut slot, 1, "m", "k"), Ok(()));
        assert!(matches!(
            once(&mut slot, 2, "m", "k"),
            Err(AttestationError::DuplicateKey { .. })
        ));
        assert_eq!(slot, Some(1));
    }
}
