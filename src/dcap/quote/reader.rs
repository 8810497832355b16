//! The bounded cursor over a quote's untrusted bytes: the crate's one reader
//! ([`crate::bytes`]), failing with [`QuoteError`]. Nothing else in `quote/` touches slice
//! positions.

use super::QuoteError;
use crate::bytes::{TooLarge, Trailing, Truncated};

/// Reads little-endian fields from a byte slice without ever panicking.
pub(crate) type Reader<'a> = crate::bytes::Reader<'a, QuoteError>;

impl Truncated for QuoteError {
    fn truncated(what: &'static str, needed: usize, available: usize) -> Self {
        Self::Truncated {
            what,
            needed,
            available,
        }
    }
}

impl TooLarge for QuoteError {
    fn too_large(what: &'static str, len: u64, max: usize) -> Self {
        // Quote lengths are u32 fields, so `len` always fits a usize.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Self::FieldTooLarge { what, len, max }
    }
}

impl Trailing for QuoteError {
    fn trailing(what: &'static str, extra: usize) -> Self {
        Self::TrailingBytes { what, extra }
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
