//! Where the attestation bytes come from and which reader takes them: dstack's certificate
//! extensions (content wrapped in a DER OCTET STRING inside the extnValue), and the wire form
//! told by the first byte.

use super::limits::MAX_ATTESTATION_LEN;
use super::{v0, v1, Attestation, AttestationError};

/// `1.3.6.1.4.1.62397.1.8`: dstack's versioned attestation (`PHALA_RATLS_ATTESTATION`).
pub const OID_ATTESTATION: &[u64] = &[1, 3, 6, 1, 4, 1, 62_397, 1, 8];
/// `1.3.6.1.4.1.62397.1.2`: the legacy event log (JSON), beside the raw quote in `.1.1`.
pub const OID_EVENT_LOG: &[u64] = &[1, 3, 6, 1, 4, 1, 62_397, 1, 2];

impl<'a> Attestation<'a> {
    /// Parses the content of extension `.1.8` (after [`extension_value`]): SCALE `V0` when
    /// the first byte is 0x00, MessagePack `V1` when it is a map marker, as dstack decides.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_ATTESTATION_LEN {
            return Err(AttestationError::TooLarge {
                what: "the dstack attestation",
                len: bytes.len(),
                max: MAX_ATTESTATION_LEN,
            });
        }
        match bytes.first() {
            None => Err(AttestationError::Empty),
            Some(0x00) => v0::parse(bytes),
            Some(0x80..=0x8f | 0xde | 0xdf) => v1::parse(bytes),
            Some(&other) => Err(AttestationError::UnknownWire(other)),
        }
    }
}

/// The payload of a dstack certificate extension: dstack wraps every extension's content
/// in a DER OCTET STRING inside the extnValue OCTET STRING. Strict DER: definite, minimal
/// length and nothing after the content.
pub fn extension_value(ext: &[u8]) -> Result<&[u8], AttestationError> {
    const WHAT: &str = "the extension's OCTET STRING";
    let truncated = |needed| AttestationError::Truncated {
        what: WHAT,
        needed,
        available: ext.len(),
    };
    let (&tag, rest) = ext.split_first().ok_or(truncated(2))?;
    if tag != 0x04 {
        return Err(AttestationError::Type {
            what: WHAT,
            expected: "a DER OCTET STRING",
        });
    }
    let (&first, rest) = rest.split_first().ok_or(truncated(2))?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (digits, rest) = rest.split_at_checked(n).ok_or(truncated(n))?;
            let len = digits
                .iter()
                .fold(0usize, |acc, d| acc.saturating_mul(256) | usize::from(*d));
            // Minimal: no leading zero digit, and the long form only from 128 on.
            if digits.first() == Some(&0) || len < 0x80 {
                return Err(AttestationError::Type {
                    what: WHAT,
                    expected: "a minimal DER length",
                });
            }
            (len, rest)
        }
        _ => {
            return Err(AttestationError::Type {
                what: WHAT,
                expected: "a definite DER length",
            })
        }
    };
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(truncated(len)),
        std::cmp::Ordering::Greater => Err(AttestationError::TrailingBytes {
            what: WHAT,
            extra: rest.len().saturating_sub(len),
        }),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_wrapper_is_strict_der() {
        assert_eq!(extension_value(&[0x04, 0x02, 7, 8]), Ok(&[7u8, 8][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([1u8; 0x80]);
        assert_eq!(extension_value(&long).map(<[u8]>::len), Ok(0x80));
        for bad in [
            &[][..],
            &[0x04],
            &[0x0c, 0x01, 0x00],       // UTF8String, not OCTET STRING
            &[0x04, 0x81, 0x01, 0x00], // long form for a short length
            &[0x04, 0x82, 0x00, 0x01, 0x00],
            &[0x04, 0x80, 0x00, 0x00], // indefinite
            &[0x04, 0x02, 0x00],
            &[0x04, 0x01, 0x00, 0x00],
        ] {
            assert!(extension_value(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn the_first_byte_picks_the_wire_form() {
        assert_eq!(Attestation::parse(&[]), Err(AttestationError::Empty));
        assert_eq!(
            Attestation::parse(&[0x01, 0x00]),
            Err(AttestationError::UnknownWire(0x01))
        );
        assert_eq!(
            Attestation::parse(&[0x90]),
            Err(AttestationError::UnknownWire(0x90))
        );
        assert!(Attestation::parse(&vec![0u8; MAX_ATTESTATION_LEN + 1])
            .is_err_and(|e| matches!(e, AttestationError::TooLarge { .. })));
    }
}
