//! The bounded byte cursor both wire readers (SCALE, MessagePack) stand on: the crate's one
//! reader ([`crate::bytes`]), failing with dstack's own errors.

use super::AttestationError;
use crate::bytes::{Reader, TooLarge, Trailing, Truncated};

/// A position in untrusted bytes that never reads past their end.
pub(super) type Cursor<'a> = Reader<'a, AttestationError>;

impl Truncated for AttestationError {
    fn truncated(what: &'static str, needed: usize, available: usize) -> Self {
        Self::Truncated {
            what,
            needed,
            available,
        }
    }
}

impl TooLarge for AttestationError {
    fn too_large(what: &'static str, len: u64, max: usize) -> Self {
        Self::FieldTooLarge { what, len, max }
    }
}

impl Trailing for AttestationError {
    fn trailing(what: &'static str, extra: usize) -> Self {
        Self::TrailingBytes { what, extra }
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
