//! The bounded byte cursor both wire readers (SCALE, MessagePack) stand on: every read is
//! checked against what is left and names what it was reading.

use super::AttestationError;

/// A position in untrusted bytes that never reads past their end.
pub(super) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next byte, not consumed.
    pub(super) fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Takes the next `n` bytes.
    pub(super) fn take(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<&'a [u8], AttestationError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(AttestationError::Truncated {
                what,
                needed: n,
                available: self.rest.len(),
            })?;
        self.rest = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<&'a [u8; N], AttestationError> {
        let bytes = self.take(N, what)?;
        bytes.try_into().map_err(|_| AttestationError::Truncated {
            what,
            needed: N,
            available: bytes.len(),
        })
    }

    /// One byte.
    pub(super) fn byte(&mut self, what: &'static str) -> Result<u8, AttestationError> {
        self.array::<1>(what).map(|b| b[0])
    }

    /// A declared length or count, refused above `max` or above the bytes left (every
    /// byte, element or pair the formats define takes at least one byte), so no count can
    /// make us allocate or loop beyond the input.
    pub(super) fn fits(
        &self,
        n: u64,
        max: usize,
        what: &'static str,
    ) -> Result<usize, AttestationError> {
        let len = usize::try_from(n).unwrap_or(usize::MAX);
        if len > max {
            return Err(AttestationError::FieldTooLarge { what, len: n, max });
        }
        if len > self.rest.len() {
            return Err(AttestationError::Truncated {
                what,
                needed: len,
                available: self.rest.len(),
            });
        }
        Ok(len)
    }

    /// Where the cursor is, for [`Self::since`].
    pub(super) fn mark(&self) -> &'a [u8] {
        self.rest
    }

    /// The bytes read since `mark`.
    pub(super) fn since(&self, mark: &'a [u8]) -> &'a [u8] {
        let used = mark.len().saturating_sub(self.rest.len());
        mark.get(..used).unwrap_or_default()
    }

    /// Succeeds only if every byte was consumed.
    pub(super) fn finish(self, what: &'static str) -> Result<(), AttestationError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(AttestationError::TrailingBytes {
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
    fn reads_stop_at_the_end_and_finish_reports_leftovers() {
        let mut c = Cursor::new(&[1, 2, 3]);
        let mark = c.mark();
        assert_eq!(c.byte("a"), Ok(1));
        assert_eq!(c.since(mark), &[1]);
        assert!(matches!(
            c.array::<4>("b"),
            Err(AttestationError::Truncated {
                needed: 4,
                available: 2,
                ..
            })
        ));
        assert!(matches!(
            c.fits(3, 10, "n"),
            Err(AttestationError::Truncated { .. })
        ));
        assert!(matches!(
            c.fits(2, 1, "n"),
            Err(AttestationError::FieldTooLarge { .. })
        ));
        assert_eq!(c.fits(2, 10, "n"), Ok(2));
        assert_eq!(
            c.finish("t"),
            Err(AttestationError::TrailingBytes {
                what: "t",
                extra: 2
            })
        );
    }
}
