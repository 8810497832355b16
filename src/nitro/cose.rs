//! The COSE_Sign1 envelope (RFC 9052 §4.2) as a borrowed view, and its `Sig_structure`.
//!
//! What is accepted, and why:
//! - tagged (18) or untagged (AWS §3.1: "either tagged or untagged"); any other tag, or 18
//!   twice, is refused;
//! - a definite array of exactly four items, nothing after it;
//! - the protected header a definite map whose `alg` (1) is ES384 (-35) and nothing else:
//!   a text algorithm name or any other number is refused; `crit` (2) may list only `alg`,
//!   the one parameter we process; other parameters are ignored as RFC 9052 allows, a label
//!   seen twice is refused;
//! - the unprotected header the empty map AWS documents (`{}`): an algorithm or anything else
//!   outside the signed bytes has no place in an attestation document;
//! - the payload attached (a detached `nil` payload is refused) and within AWS's 16 KiB;
//! - the signature exactly 96 bytes (ES384's fixed-width `r ‖ s`).

use crate::cbor::{self, Cbor, CborError, TAG};
use crate::nitro::error::DocumentError;
use crate::nitro::limits::{
    ES384_SIGNATURE_LEN, MAX_COSE_LEN, MAX_HEADER_PARAMS, MAX_PAYLOAD_LEN, MAX_PROTECTED_LEN,
};

/// The CBOR tag of a COSE_Sign1.
pub const COSE_SIGN1_TAG: u64 = 18;
/// COSE algorithm ES384: ECDSA with SHA-384 (RFC 9053 §2.1).
pub const ALG_ES384: i64 = -35;
/// Header parameter `alg`.
const LABEL_ALG: i64 = 1;
/// Header parameter `crit`.
const LABEL_CRIT: i64 = 2;

/// A COSE_Sign1 whose structure and protected header were checked; the signature is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoseSign1<'a> {
    /// The serialized protected header, exactly as signed (the bstr's contents).
    pub protected: &'a [u8],
    /// The payload: the CBOR attestation document.
    pub payload: &'a [u8],
    /// The ES384 signature, `r ‖ s`.
    pub signature: &'a [u8; ES384_SIGNATURE_LEN],
    /// Whether the envelope carried tag 18.
    pub tagged: bool,
}

impl<'a> CoseSign1<'a> {
    /// Parses a whole input as one COSE_Sign1.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DocumentError> {
        if bytes.len() > MAX_COSE_LEN {
            return Err(DocumentError::TooLarge {
                what: "the COSE_Sign1",
                len: bytes.len(),
                max: MAX_COSE_LEN,
            });
        }
        let err = DocumentError::cbor("COSE_Sign1");
        let mut c = Cbor::new(bytes);
        let tagged = c.peek().is_some_and(|b| b >> 5 == TAG);
        if tagged && c.tag().map_err(&err)? != COSE_SIGN1_TAG {
            return Err(DocumentError::Cose("tagged with another tag than 18"));
        }
        if c.array().map_err(&err)? != 4 {
            return Err(DocumentError::Cose(
                "not an array of [protected, unprotected, payload, signature]",
            ));
        }
        let protected = c.bytes().map_err(DocumentError::cbor("protected header"))?;
        check_protected(protected)?;
        if c.map().map_err(DocumentError::cbor("unprotected header"))? != 0 {
            return Err(DocumentError::Cose(
                "the unprotected header is not empty (AWS documents `{}`)",
            ));
        }
        if c.null() {
            return Err(DocumentError::Cose("detached payload"));
        }
        let payload = c.bytes().map_err(DocumentError::cbor("payload"))?;
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
            return Err(DocumentError::TooLarge {
                what: "the payload",
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let signature = c
            .bytes()
            .map_err(DocumentError::cbor("signature"))?
            .try_into()
            .map_err(|_| DocumentError::Cose("the signature is not 96 bytes (ES384 r ‖ s)"))?;
        if !c.is_empty() {
            return Err(DocumentError::TrailingBytes {
                what: "the COSE_Sign1",
                extra: c.rest().len(),
            });
        }
        Ok(Self {
            protected,
            payload,
            signature,
            tagged,
        })
    }

    /// The untagged encoding of this envelope (the empty unprotected header, as parsed):
    /// what the hypervisor sends, and how tests rebuild one around an edited payload.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len().saturating_add(128));
        cbor::write_head(&mut out, cbor::ARRAY, 4);
        cbor::write_bytes(&mut out, self.protected);
        cbor::write_head(&mut out, cbor::MAP, 0);
        cbor::write_bytes(&mut out, self.payload);
        cbor::write_bytes(&mut out, self.signature);
        out
    }

    /// The bytes ES384 signs: `["Signature1", protected, b"", payload]` (RFC 9052 §4.4),
    /// the protected header and payload exactly as received.
    pub fn sig_structure(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len().saturating_add(32));
        cbor::write_head(&mut out, cbor::ARRAY, 4);
        cbor::write_text(&mut out, "Signature1");
        cbor::write_bytes(&mut out, self.protected);
        cbor::write_bytes(&mut out, &[]);
        cbor::write_bytes(&mut out, self.payload);
        out
    }
}

/// A header label: an integer or a text string (RFC 9052 §3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label<'a> {
    Int(i64),
    Text(&'a str),
}

fn label<'a>(c: &mut Cbor<'a>) -> Result<Label<'a>, CborError> {
    match c.peek().map(|b| b >> 5) {
        Some(cbor::TEXT) => c.text().map(Label::Text),
        _ => c.int().map(Label::Int),
    }
}

/// The protected header must say ES384, and nothing critical besides.
fn check_protected(protected: &[u8]) -> Result<(), DocumentError> {
    if protected.len() > MAX_PROTECTED_LEN {
        return Err(DocumentError::TooLarge {
            what: "the protected header",
            len: protected.len(),
            max: MAX_PROTECTED_LEN,
        });
    }
    let err = DocumentError::cbor("protected header");
    let mut c = Cbor::new(protected);
    let pairs = c.map().map_err(&err)?;
    if usize::try_from(pairs).map_or(true, |n| n > MAX_HEADER_PARAMS) {
        return Err(DocumentError::Algorithm(format!(
            "{pairs} parameters, above the limit of {MAX_HEADER_PARAMS}"
        )));
    }
    let mut seen: Vec<Label<'_>> = Vec::new();
    let mut alg = None;
    for _ in 0..pairs {
        let key = label(&mut c).map_err(&err)?;
        if seen.contains(&key) {
            return Err(DocumentError::Algorithm(
                "a header parameter appears twice".into(),
            ));
        }
        seen.push(key);
        match key {
            Label::Int(LABEL_ALG) => {
                alg = Some(c.int().map_err(|_| {
                    DocumentError::Algorithm("`alg` is not an integer algorithm".into())
                })?);
            }
            Label::Int(LABEL_CRIT) => check_crit(&mut c)?,
            _ => c.skip().map_err(&err)?,
        }
    }
    if !c.is_empty() {
        return Err(DocumentError::TrailingBytes {
            what: "the protected header",
            extra: c.rest().len(),
        });
    }
    match alg {
        Some(ALG_ES384) => Ok(()),
        Some(other) => Err(DocumentError::Algorithm(format!(
            "`alg` is {other}, not ES384 (-35)"
        ))),
        None => Err(DocumentError::Algorithm(
            "no `alg` in the protected header".into(),
        )),
    }
}

/// `crit` lists the parameters a recipient must understand: we understand `alg` only.
fn check_crit(c: &mut Cbor<'_>) -> Result<(), DocumentError> {
    let err = DocumentError::cbor("crit");
    let n = c.array().map_err(&err)?;
    if n == 0 {
        return Err(DocumentError::Algorithm("`crit` is empty".into()));
    }
    for _ in 0..n {
        match label(c).map_err(&err)? {
            Label::Int(LABEL_ALG) => {}
            Label::Int(other) => {
                return Err(DocumentError::Algorithm(format!(
                    "critical header parameter {other} is not understood"
                )))
            }
            Label::Text(name) => {
                return Err(DocumentError::Algorithm(format!(
                    "critical header parameter `{name}` is not understood"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A COSE_Sign1 from parts, the way the hypervisor lays it out.
    fn envelope(tag: Option<u64>, protected: &[u8], unprotected: &[u8], sig_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(t) = tag {
            cbor::write_head(&mut out, cbor::TAG, t);
        }
        cbor::write_head(&mut out, cbor::ARRAY, 4);
        cbor::write_bytes(&mut out, protected);
        out.extend_from_slice(unprotected);
        cbor::write_bytes(&mut out, b"\xa0");
        cbor::write_bytes(&mut out, &vec![7; sig_len]);
        out
    }

    const ES384: &[u8] = &[0xa1, 0x01, 0x38, 0x22];

    #[test]
    fn accepts_tagged_and_untagged_es384() {
        for tag in [None, Some(18)] {
            let bytes = envelope(tag, ES384, &[0xa0], 96);
            let cose = CoseSign1::parse(&bytes);
            assert_eq!(
                cose.map(|c| (c.tagged, c.payload)),
                Ok((tag.is_some(), &b"\xa0"[..]))
            );
        }
    }

    #[test]
    fn refuses_other_tags_other_algorithms_and_an_unprotected_alg() {
        let bad = [
            envelope(Some(98), ES384, &[0xa0], 96),
            envelope(Some(18), ES384, &[0xa0], 95),
            // ES256 (-7), ES512 (-36), a text alg, no alg at all.
            envelope(None, &[0xa1, 0x01, 0x26], &[0xa0], 96),
            envelope(None, &[0xa1, 0x01, 0x38, 0x23], &[0xa0], 96),
            envelope(
                None,
                &[0xa1, 0x01, 0x65, b'E', b'S', b'3', b'8', b'4'],
                &[0xa0],
                96,
            ),
            envelope(None, &[0xa0], &[0xa0], 96),
            envelope(None, &[], &[0xa0], 96),
            // alg only in the unprotected header, or in both.
            envelope(None, &[0xa0], ES384, 96),
            envelope(None, ES384, ES384, 96),
            // alg twice in the protected header (once as a non-minimal 1).
            envelope(
                None,
                &[0xa2, 0x01, 0x38, 0x22, 0x18, 0x01, 0x38, 0x22],
                &[0xa0],
                96,
            ),
            // crit naming something we do not understand, or empty.
            envelope(
                None,
                &[0xa2, 0x01, 0x38, 0x22, 0x02, 0x81, 0x04],
                &[0xa0],
                96,
            ),
            envelope(None, &[0xa2, 0x01, 0x38, 0x22, 0x02, 0x80], &[0xa0], 96),
            // an indefinite protected map.
            envelope(None, &[0xbf, 0x01, 0x38, 0x22, 0xff], &[0xa0], 96),
        ];
        for (i, b) in bad.iter().enumerate() {
            assert!(CoseSign1::parse(b).is_err(), "case {i}");
        }
        // crit listing alg, and an extra non-critical parameter (content type), are fine.
        let ok = envelope(
            None,
            &[0xa3, 0x01, 0x38, 0x22, 0x02, 0x81, 0x01, 0x03, 0x00],
            &[0xa0],
            96,
        );
        assert!(CoseSign1::parse(&ok).is_ok());
    }

    #[test]
    fn refuses_trailing_bytes_a_detached_payload_and_a_wrong_shape() {
        let mut trailing = envelope(None, ES384, &[0xa0], 96);
        trailing.push(0);
        assert!(matches!(
            CoseSign1::parse(&trailing),
            Err(DocumentError::TrailingBytes { extra: 1, .. })
        ));
        let mut detached = Vec::new();
        cbor::write_head(&mut detached, cbor::ARRAY, 4);
        cbor::write_bytes(&mut detached, ES384);
        detached.extend_from_slice(&[0xa0, 0xf6]);
        cbor::write_bytes(&mut detached, &[0; 96]);
        assert_eq!(
            CoseSign1::parse(&detached),
            Err(DocumentError::Cose("detached payload"))
        );
        let mut three = envelope(None, ES384, &[0xa0], 96);
        three[0] = 0x83;
        assert!(CoseSign1::parse(&three).is_err());
        assert!(CoseSign1::parse(&vec![0u8; MAX_COSE_LEN + 1]).is_err());
    }

    #[test]
    fn the_sig_structure_is_rfc_9052s_signature1_array() {
        let bytes = envelope(None, ES384, &[0xa0], 96);
        let cose = CoseSign1::parse(&bytes).map(|c| c.sig_structure());
        // 84 | "Signature1" | h'a1013822' | h'' | h'a0'
        let want = [
            &[0x84, 0x6a][..],
            b"Signature1",
            &[0x44, 0xa1, 0x01, 0x38, 0x22, 0x40, 0x41, 0xa0],
        ]
        .concat();
        assert_eq!(cose, Ok(want));
    }
}
