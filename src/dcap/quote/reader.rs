//! A bounded cursor over untrusted bytes. The only code in `quote/` that touches
//! slice positions: every read is checked and names what it was reading.

use super::QuoteError;

/// Reads little-endian fields from a byte slice without ever panicking.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], QuoteError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(QuoteError::Truncated {
            what,
            needed: n,
            available: self.rest.len(),
        })?;
        self.rest = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as a fixed-size array reference.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<&'a [u8; N], QuoteError> {
        let bytes = self.take(N, what)?;
        // `take` returned exactly N bytes, so the conversion cannot fail; map it anyway.
        bytes.try_into().map_err(|_| QuoteError::Truncated {
            what,
            needed: N,
            available: bytes.len(),
        })
    }

    /// Reads a little-endian u16.
    pub(crate) fn u16_le(&mut self, what: &'static str) -> Result<u16, QuoteError> {
        self.array::<2>(what).map(|b| u16::from_le_bytes(*b))
    }

    /// Reads a little-endian u32.
    pub(crate) fn u32_le(&mut self, what: &'static str) -> Result<u32, QuoteError> {
        self.array::<4>(what).map(|b| u32::from_le_bytes(*b))
    }

    /// Reads a little-endian u32 length and takes that many bytes, refusing lengths above `max`.
    pub(crate) fn sized_u32(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], QuoteError> {
        let len = usize::try_from(self.u32_le(what)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(QuoteError::FieldTooLarge { what, len, max });
        }
        self.take(len, what)
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), QuoteError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(QuoteError::TrailingBytes {
                what,
                extra: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9]);
        assert_eq!(r.u16_le("a").ok(), Some(1));
        assert_eq!(r.u32_le("b").ok(), Some(2));
        assert!(matches!(
            r.u16_le("c"),
            Err(QuoteError::Truncated {
                needed: 2,
                available: 1,
                ..
            })
        ));
    }

    #[test]
    fn refuses_declared_lengths_above_the_cap() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.sized_u32(16, "x"),
            Err(QuoteError::FieldTooLarge { .. })
        ));
    }

    #[test]
    fn finish_reports_leftovers() {
        let mut r = Reader::new(&[1, 2, 3]);
        let _ = r.take(1, "a");
        assert!(matches!(
            r.finish("t"),
            Err(QuoteError::TrailingBytes { extra: 2, .. })
        ));
    }
}
