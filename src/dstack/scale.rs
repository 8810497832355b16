//! A bounded SCALE reader (Parity's codec, as dstack's `V0` uses it): little-endian fixed
//! integers, compact lengths in their shortest form only, UTF-8 strings. Lengths are capped
//! before anything is taken.

use super::cursor::Cursor;
use super::AttestationError;

/// Reads SCALE values from a byte slice without ever panicking.
pub(super) struct Scale<'a> {
    c: Cursor<'a>,
}

impl<'a> std::ops::Deref for Scale<'a> {
    type Target = Cursor<'a>;
    fn deref(&self) -> &Cursor<'a> {
        &self.c
    }
}

impl std::ops::DerefMut for Scale<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.c
    }
}

impl<'a> Scale<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            c: Cursor::new(bytes),
        }
    }

    /// A compact-encoded u32 (a vector length or count), refusing values above `max` and
    /// encodings longer than needed (the low two bits of the first byte pick 1, 2, 4 bytes
    /// or the big-integer form).
    pub(super) fn compact(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<usize, AttestationError> {
        let first = self.byte(what)?;
        let (value, canonical) = match first & 0b11 {
            0 => (u32::from(first >> 2), true),
            1 => {
                let second = self.byte(what)?;
                let v = u32::from(u16::from_le_bytes([first, second]) >> 2);
                (v, v > 0b0011_1111)
            }
            2 => {
                let rest = self.array::<3>(what)?;
                let v = u32::from_le_bytes([first, rest[0], rest[1], rest[2]]) >> 2;
                (v, v > 0x3fff)
            }
            // The big-integer form: (first >> 2) + 4 bytes follow; a u32 allows exactly 4.
            _ => {
                if first >> 2 != 0 {
                    return Err(AttestationError::NonCanonical(what));
                }
                let v = self.u32_le(what)?;
                (v, v > 0x3fff_ffff)
            }
        };
        if !canonical {
            return Err(AttestationError::NonCanonical(what));
        }
        let len = usize::try_from(value).unwrap_or(usize::MAX);
        if len > max {
            return Err(AttestationError::FieldTooLarge {
                what,
                len: u64::from(value),
                max,
            });
        }
        Ok(len)
    }

    /// A `Vec<u8>`: compact length (at most `max`), then the bytes, borrowed.
    pub(super) fn bytes(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], AttestationError> {
        let len = self.compact(max, what)?;
        self.take(len, what)
    }

    /// A `String`: like `bytes`, and UTF-8.
    pub(super) fn str(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a str, AttestationError> {
        std::str::from_utf8(self.bytes(max, what)?).map_err(|_| AttestationError::NotUtf8(what))
    }

    /// A vector count, at most `max` and never more than the bytes left.
    pub(super) fn count(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<usize, AttestationError> {
        let n = self.compact(max, what)?;
        self.fits(u64::try_from(n).unwrap_or(u64::MAX), max, what)
    }

    /// Runs `read` and returns, with its result, the exact bytes it consumed.
    pub(super) fn span<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, AttestationError>,
    ) -> Result<(&'a [u8], T), AttestationError> {
        let mark = self.mark();
        let value = read(self)?;
        Ok((self.since(mark), value))
    }

    /// Succeeds only if every byte was consumed.
    pub(super) fn finish(self, what: &'static str) -> Result<(), AttestationError> {
        self.c.finish(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(bytes: &[u8]) -> Result<usize, AttestationError> {
        Scale::new(bytes).compact(usize::MAX, "x")
    }

    #[test]
    fn compact_lengths_in_each_mode() {
        assert_eq!(compact(&[0x00]), Ok(0));
        assert_eq!(compact(&[0xfc]), Ok(63));
        assert_eq!(compact(&[0x01, 0x01]), Ok(64));
        assert_eq!(compact(&[0xfd, 0xff]), Ok(0x3fff));
        assert_eq!(compact(&[0x02, 0x00, 0x01, 0x00]), Ok(0x4000));
        assert_eq!(compact(&[0x03, 0x00, 0x00, 0x00, 0x40]), Ok(0x4000_0000));
    }

    #[test]
    fn non_canonical_compact_lengths_are_refused() {
        // 1 in the two-byte form, 63 in the four-byte form, 0x3fff_ffff in the big form.
        for bytes in [
            &[0x05, 0x00][..],
            &[0xfe, 0x00, 0x00, 0x00],
            &[0x03, 0xff, 0xff, 0xff, 0x3f],
            &[0x07, 0, 0, 0, 0, 0x01],
        ] {
            assert_eq!(compact(bytes), Err(AttestationError::NonCanonical("x")));
        }
    }

    #[test]
    fn a_length_above_the_cap_is_refused_before_reading() {
        let mut r = Scale::new(&[0x02, 0x00, 0x01, 0x00]);
        assert!(matches!(
            r.bytes(100, "x"),
            Err(AttestationError::FieldTooLarge { len: 0x4000, .. })
        ));
    }

    #[test]
    fn a_count_beyond_the_input_is_refused() {
        let mut r = Scale::new(&[0x10, 0x00]);
        assert!(matches!(
            r.count(100, "x"),
            Err(AttestationError::Truncated { needed: 4, .. })
        ));
    }

    #[test]
    fn strings_must_be_utf8_and_bytes_must_be_there() {
        assert_eq!(
            Scale::new(&[0x04, 0xff]).str(10, "s"),
            Err(AttestationError::NotUtf8("s"))
        );
        assert!(matches!(
            Scale::new(&[0x08, 1]).bytes(10, "b"),
            Err(AttestationError::Truncated {
                needed: 2,
                available: 1,
                ..
            })
        ));
    }

    #[test]
    fn span_returns_what_was_read_and_finish_reports_leftovers() {
        let mut r = Scale::new(&[1, 2, 3, 4, 5]);
        let (span, v) = r.span(|r| r.u32_le("v")).unwrap_or_default();
        assert_eq!((span, v), (&[1, 2, 3, 4][..], 0x0403_0201));
        assert_eq!(
            r.finish("t"),
            Err(AttestationError::TrailingBytes {
                what: "t",
                extra: 1
            })
        );
    }
}
