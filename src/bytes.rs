//! The one bounded reader over untrusted bytes that every binary parser stands on (DCAP
//! quotes, dstack's SCALE and MessagePack, SEV-SNP reports): every read is checked against
//! what is left, names what it was reading, and fails with the format's own error, so each
//! format keeps its own messages and refusal codes.

use std::marker::PhantomData;

/// How a format says a field runs past the end of its input.
pub(crate) trait Truncated {
    /// `what` needed `needed` bytes; `available` were left.
    fn truncated(what: &'static str, needed: usize, available: usize) -> Self;
}

/// How a format refuses a declared length or count above its cap.
pub(crate) trait TooLarge {
    /// `what` declared `len`, above `max`.
    fn too_large(what: &'static str, len: u64, max: usize) -> Self;
}

/// How a format refuses bytes left over after its last field.
pub(crate) trait Trailing {
    /// `extra` bytes were left after `what`.
    fn trailing(what: &'static str, extra: usize) -> Self;
}

/// A position in borrowed untrusted bytes that never reads past their end; `E` is the
/// format's error.
pub(crate) struct Reader<'a, E> {
    rest: &'a [u8],
    // `fn() -> E`: the reader holds no `E`, so it is `Send`/`Sync` whatever `E` is.
    error: PhantomData<fn() -> E>,
}

impl<'a, E: Truncated> Reader<'a, E> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            error: PhantomData,
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next byte, not consumed.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], E> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| E::truncated(what, n, self.rest.len()))?;
        self.rest = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<&'a [u8; N], E> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| E::truncated(what, N, self.rest.len()))?;
        self.rest = tail;
        Ok(head)
    }

    /// One byte.
    pub(crate) fn byte(&mut self, what: &'static str) -> Result<u8, E> {
        self.array::<1>(what).map(|[b]| *b)
    }

    /// A little-endian u16.
    pub(crate) fn u16_le(&mut self, what: &'static str) -> Result<u16, E> {
        self.array(what).map(|b| u16::from_le_bytes(*b))
    }

    /// A little-endian u32.
    pub(crate) fn u32_le(&mut self, what: &'static str) -> Result<u32, E> {
        self.array(what).map(|b| u32::from_le_bytes(*b))
    }

    /// A little-endian u64.
    pub(crate) fn u64_le(&mut self, what: &'static str) -> Result<u64, E> {
        self.array(what).map(|b| u64::from_le_bytes(*b))
    }

    /// Where the reader is, for [`Self::since`].
    pub(crate) fn mark(&self) -> &'a [u8] {
        self.rest
    }

    /// The bytes read since `mark`.
    pub(crate) fn since(&self, mark: &'a [u8]) -> &'a [u8] {
        let used = mark.len().saturating_sub(self.rest.len());
        mark.get(..used).unwrap_or_default()
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }
}

impl<E: Truncated + TooLarge> Reader<'_, E> {
    /// A declared length or count, refused above `max` or above the bytes left (every
    /// byte, element or pair the formats define takes at least one byte), so no count can
    /// make us allocate or loop beyond the input.
    pub(crate) fn fits(&self, n: u64, max: usize, what: &'static str) -> Result<usize, E> {
        let len = usize::try_from(n).unwrap_or(usize::MAX);
        if len > max {
            return Err(E::too_large(what, n, max));
        }
        if len > self.rest.len() {
            return Err(E::truncated(what, len, self.rest.len()));
        }
        Ok(len)
    }
}

impl<'a, E: Truncated + TooLarge> Reader<'a, E> {
    /// A little-endian u32 length, then that many bytes; lengths above `max` are refused.
    pub(crate) fn sized_u32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], E> {
        let n = self.u32_le(what)?;
        let len = self.fits(u64::from(n), max, what)?;
        self.take(len, what)
    }
}

impl<E: Trailing> Reader<'_, E> {
    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), E> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(E::trailing(what, self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every way a read can fail, with all it carries.
    #[derive(Debug, PartialEq, Eq)]
    enum E {
        Short(&'static str, usize, usize),
        Large(&'static str, u64, usize),
        Left(&'static str, usize),
    }

    impl Truncated for E {
        fn truncated(what: &'static str, needed: usize, available: usize) -> Self {
            E::Short(what, needed, available)
        }
    }

    impl TooLarge for E {
        fn too_large(what: &'static str, len: u64, max: usize) -> Self {
            E::Large(what, len, max)
        }
    }

    impl Trailing for E {
        fn trailing(what: &'static str, extra: usize) -> Self {
            E::Left(what, extra)
        }
    }

    type R<'a> = Reader<'a, E>;

    #[test]
    fn fixed_reads_are_little_endian_and_stop_exactly_at_the_end() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        let mut r = R::new(&bytes);
        assert_eq!(r.byte("a"), Ok(1));
        assert_eq!(r.u16_le("b"), Ok(2));
        assert_eq!(r.u32_le("c"), Ok(3));
        assert_eq!(r.remaining(), 8);
        assert_eq!(r.u64_le("d"), Ok(4));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.byte("e"), Err(E::Short("e", 1, 0)));
        assert_eq!(r.u16_le("f"), Err(E::Short("f", 2, 0)));
        assert_eq!(r.take(0, "g"), Ok(&[][..]));
        assert_eq!(r.array::<0>("h"), Ok(&[]));
        assert_eq!(r.finish("end"), Ok(()));
    }

    #[test]
    fn a_read_one_past_the_end_is_refused_and_consumes_nothing() {
        let bytes = [9u8; 7];
        let mut r = R::new(&bytes);
        assert_eq!(r.u64_le("x"), Err(E::Short("x", 8, 7)));
        assert_eq!(r.take(8, "y"), Err(E::Short("y", 8, 7)));
        assert_eq!(r.take(usize::MAX, "z"), Err(E::Short("z", usize::MAX, 7)));
        assert_eq!(r.peek(), Some(9));
        assert_eq!(r.take(7, "all"), Ok(&bytes[..]));
        assert_eq!(r.peek(), None);
    }

    #[test]
    fn declared_lengths_are_capped_then_bounded_by_what_is_left() {
        let r = R::new(&[0; 4]);
        assert_eq!(r.fits(4, 4, "n"), Ok(4));
        assert_eq!(r.fits(5, 4, "n"), Err(E::Large("n", 5, 4)));
        assert_eq!(r.fits(5, 10, "n"), Err(E::Short("n", 5, 4)));
        assert_eq!(r.fits(u64::MAX, 10, "n"), Err(E::Large("n", u64::MAX, 10)));

        let mut r = R::new(&[2, 0, 0, 0, 7, 8, 9]);
        assert_eq!(r.sized_u32(2, "s"), Ok(&[7, 8][..]));
        assert_eq!(r.finish("s"), Err(E::Left("s", 1)));
        let mut r = R::new(&[3, 0, 0, 0, 7, 8]);
        assert_eq!(r.sized_u32(2, "s"), Err(E::Large("s", 3, 2)));
        let mut r = R::new(&[3, 0, 0, 0, 7, 8]);
        assert_eq!(r.sized_u32(9, "s"), Err(E::Short("s", 3, 2)));
        let mut r = R::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.sized_u32(16, "s"), Err(E::Large("s", 0xffff_ffff, 16)));
    }

    #[test]
    fn since_names_the_bytes_read_after_a_mark() {
        let bytes = [1, 2, 3, 4];
        let mut r = R::new(&bytes);
        let _ = r.byte("a");
        let mark = r.mark();
        assert!(r.since(mark).is_empty());
        let _ = r.u16_le("b");
        assert_eq!(r.since(mark), &[2, 3]);
        assert_eq!(r.rest(), &[4]);
    }

    proptest! {
        /// Any input, any sequence of reads: no panic, every success consumes exactly what
        /// it returned, every failure consumes nothing and reports what was left.
        #[test]
        fn no_read_panics_or_overruns(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec((0u8..8, 0usize..80), 0..32),
        ) {
            let mut r = R::new(&bytes);
            for (op, n) in ops {
                let before = r.remaining();
                let got: Result<usize, E> = match op {
                    0 => r.take(n, "t").map(<[u8]>::len),
                    1 => r.byte("b").map(|_| 1),
                    2 => r.u16_le("w").map(|_| 2),
                    3 => r.u32_le("d").map(|_| 4),
                    4 => r.u64_le("q").map(|_| 8),
                    5 => r.array::<48>("a").map(|a| a.len()),
                    6 => r.sized_u32(n, "s").map(|s| 4 + s.len()),
                    _ => r.fits(u64::try_from(n).unwrap_or(u64::MAX), 40, "f").map(|_| 0),
                };
                match got {
                    Ok(used) => prop_assert_eq!(r.remaining(), before - used),
                    // sized_u32 reads its length before refusing the body.
                    Err(E::Short(_, needed, available)) => {
                        prop_assert!(needed > available);
                        prop_assert!(r.remaining() == before || op == 6);
                    }
                    Err(E::Large(_, len, max)) => {
                        prop_assert!(len > u64::try_from(max).unwrap_or(u64::MAX));
                        prop_assert!(r.remaining() == before || op == 6);
                    }
                    Err(E::Left(..)) => prop_assert!(false, "no read reports leftovers"),
                }
            }
            let left = r.remaining();
            prop_assert_eq!(r.finish("end").err(), (left > 0).then_some(E::Left("end", left)));
        }
    }
}
