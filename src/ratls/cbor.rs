//! A minimal, strict CBOR reader for Gramine's TCG DICE tagged evidence: definite
//! lengths only, bounded nesting, every length checked against the input.

/// A CBOR problem, with a short description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CBOR: {0}")]
pub struct CborError(pub &'static str);

/// One decoded item header: major type and argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) major: u8,
    pub(crate) arg: u64,
}

const MAX_DEPTH: usize = 8;

/// A cursor over CBOR bytes.
pub(crate) struct Cbor<'a> {
    rest: &'a [u8],
}

impl<'a> Cbor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(CborError("truncated"))?;
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn head(&mut self) -> Result<Head, CborError> {
        let first = *self.take(1)?.first().ok_or(CborError("truncated"))?;
        let major = first >> 5;
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                self.take(n)?
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => {
                return Err(CborError(
                    "indefinite lengths and reserved values are not accepted",
                ))
            }
        };
        Ok(Head { major, arg })
    }

    fn len(arg: u64) -> Result<usize, CborError> {
        usize::try_from(arg).map_err(|_| CborError("length too large"))
    }

    /// A byte string.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        match self.head()? {
            Head { major: 2, arg } => self.take(Self::len(arg)?),
            _ => Err(CborError("expected a byte string")),
        }
    }

    /// A text string.
    pub(crate) fn text(&mut self) -> Result<&'a str, CborError> {
        match self.head()? {
            Head { major: 3, arg } => std::str::from_utf8(self.take(Self::len(arg)?)?)
                .map_err(|_| CborError("text is not UTF-8")),
            _ => Err(CborError("expected a text string")),
        }
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self) -> Result<u64, CborError> {
        match self.head()? {
            Head { major: 0, arg } => Ok(arg),
            _ => Err(CborError("expected an unsigned integer")),
        }
    }

    /// An array header; returns the element count.
    pub(crate) fn array(&mut self) -> Result<u64, CborError> {
        match self.head()? {
            Head { major: 4, arg } => Ok(arg),
            _ => Err(CborError("expected an array")),
        }
    }

    /// A map header; returns the pair count.
    pub(crate) fn map(&mut self) -> Result<u64, CborError> {
        match self.head()? {
            Head { major: 5, arg } => Ok(arg),
            _ => Err(CborError("expected a map")),
        }
    }

    /// A tag; returns its number.
    pub(crate) fn tag(&mut self) -> Result<u64, CborError> {
        match self.head()? {
            Head { major: 6, arg } => Ok(arg),
            _ => Err(CborError("expected a tag")),
        }
    }

    /// Skips one complete item of any type.
    pub(crate) fn skip(&mut self) -> Result<(), CborError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError("nested too deeply"));
        }
        let Head { major, arg } = self.head()?;
        match major {
            0 | 1 | 7 => Ok(()),
            2 | 3 => self.take(Self::len(arg)?).map(drop),
            4 | 5 => {
                let items = if major == 5 {
                    arg.checked_mul(2).ok_or(CborError("map too large"))?
                } else {
                    arg
                };
                for _ in 0..items {
                    self.skip_at(depth.saturating_add(1))?;
                }
                Ok(())
            }
            _ => self.skip_at(depth.saturating_add(1)), // tag: skip the tagged item
        }
    }
}

#[cfg(test)]
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
}
