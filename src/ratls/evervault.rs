//! PURE. Evervault's carrier of an AWS Nitro attestation document: the COSE_Sign1, hex, as
//! the leftmost label of a DNS subjectAltName (`<hex>.<cage>.<app>.cages.evervault.com`;
//! `evervault/attestation-doc-validation`, `cert.rs`), bound to the certificate by
//! `user_data` = its SubjectPublicKeyInfo DER (`nitro::binding::user_data_is_spki`).
//!
//! Evervault's reader takes the longest leftmost label of any DNS name and hex-decodes it,
//! whatever else the certificate says. Ours is stricter, so one certificate has one reading:
//! a label longer than DNS's 63 bytes (RFC 1035 §2.3.4: no host name has one, so it can only
//! be a carrier) is a document; it must be the leftmost label, lowercase hex (what
//! Evervault's `hex::encode` writes: one spelling per document), of even length and within
//! the COSE cap; at most one name may carry one; the DNS names together stay under a cap.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::nitro::limits::MAX_COSE_LEN;

/// The longest label a host name has (RFC 1035 §2.3.4); a longer one is a carrier.
pub const MAX_DNS_LABEL: usize = 63;

/// The longest hex label read: the COSE cap, two digits a byte.
pub const MAX_HEX_LEN: usize = 2 * MAX_COSE_LEN;

/// All DNS names of one certificate together: one document and room for host names.
pub const MAX_SAN_BYTES: usize = MAX_HEX_LEN + 4096;

/// Why a certificate's subjectAltName carries no usable document (`quote_malformed`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvervaultError {
    /// The extension does not parse or appears twice.
    #[error("the subjectAltName extension is malformed or appears more than once")]
    BadExtension,
    /// The DNS names add up to more than the cap.
    #[error("the subjectAltName DNS names total more than {MAX_SAN_BYTES} bytes")]
    TooLarge,
    /// A long label is not the leftmost one (a document split over labels, or misplaced).
    #[error("a DNS name has a label of {0} bytes that is not its leftmost: a document split over labels or misplaced (Evervault reads the leftmost label only)")]
    NotLeftmost(usize),
    /// A long label holds a character other than `0-9a-f`.
    #[error("the {len}-byte leftmost label of a DNS name is not lowercase hex (byte {at}: {byte:#04x}){}", if *uppercase { "; uppercase hex is refused: one spelling per document" } else { "" })]
    NotHex {
        /// The label's length.
        len: usize,
        /// The first offending offset.
        at: usize,
        /// The offending byte.
        byte: u8,
        /// It is `A-F`.
        uppercase: bool,
    },
    /// An odd number of hex digits.
    #[error("the hex document has an odd number of digits ({0})")]
    OddLength(usize),
    /// The hex label is longer than the COSE cap allows.
    #[error("the hex document is {0} digits, above the {MAX_HEX_LEN}-digit limit")]
    Oversized(usize),
    /// Two DNS names carry a document.
    #[error("two DNS names carry an attestation document: which one is attested is ambiguous")]
    TwoDocuments,
}

/// A validated hex document in a DNS name (lowercase, even, bounded): decoding cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvervaultSan<'a> {
    hex: &'a str,
}

impl EvervaultSan<'_> {
    /// The COSE_Sign1 bytes (`hex.len() / 2` of them).
    pub fn decode(&self) -> Vec<u8> {
        // Every digit was checked by `check_label`, so a pair is two nibbles with no error
        // path: a verdict-cache hit decodes ~9.5 KB per connection, and `hex::decode`'s
        // per-digit `Result` cost 3× this loop.
        let (pairs, _) = self.hex.as_bytes().as_chunks::<2>();
        pairs
            .iter()
            .map(|&[hi, lo]| nibble(hi) << 4 | nibble(lo))
            .collect()
    }

    /// The hex label as it stands in the certificate.
    pub fn hex(&self) -> &str {
        self.hex
    }
}

/// The value of a lowercase hex digit (`check_label` admits no other byte).
fn nibble(digit: u8) -> u8 {
    match digit {
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'0'),
    }
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

fn check_label(label: &str) -> Result<(), EvervaultError> {
    if label.len() > MAX_HEX_LEN {
        return Err(EvervaultError::Oversized(label.len()));
    }
    // A fold has no early exit, so the compiler checks many bytes at once (a cache hit reads
    // ~9.5 KB of digits); the offender is looked for only when there is one.
    if !label.bytes().fold(true, |ok, b| ok & is_lower_hex(b)) {
        let (at, byte) = label
            .bytes()
            .enumerate()
            .find(|&(_, b)| !is_lower_hex(b))
            .unwrap_or_default();
        return Err(EvervaultError::NotHex {
            len: label.len(),
            at,
            byte,
            uppercase: byte.is_ascii_uppercase() && byte.is_ascii_hexdigit(),
        });
    }
    if !label.len().is_multiple_of(2) {
        return Err(EvervaultError::OddLength(label.len()));
    }
    Ok(())
}

/// The document a DNS name carries: its leftmost label when longer than a host label.
fn carried(name: &str) -> Result<Option<&str>, EvervaultError> {
    let mut labels = name.split('.');
    let first = labels.next().unwrap_or_default();
    if let Some(long) = labels.find(|l| l.len() > MAX_DNS_LABEL) {
        return Err(EvervaultError::NotLeftmost(long.len()));
    }
    if first.len() <= MAX_DNS_LABEL {
        return Ok(None);
    }
    check_label(first)?;
    Ok(Some(first))
}

/// The document in `names` (the DNS names of a subjectAltName, in order), if one carries one.
pub fn in_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<EvervaultSan<'a>>, EvervaultError> {
    let mut total = 0usize;
    let mut found = None;
    for name in names {
        total = total.saturating_add(name.len());
        if total > MAX_SAN_BYTES {
            return Err(EvervaultError::TooLarge);
        }
        if let Some(hex) = carried(name)? {
            if found.is_some() {
                return Err(EvervaultError::TwoDocuments);
            }
            found = Some(EvervaultSan { hex });
        }
    }
    Ok(found)
}

/// The document `cert`'s subjectAltName carries, if any.
pub fn find<'a>(cert: &'a X509Certificate<'_>) -> Result<Option<EvervaultSan<'a>>, EvervaultError> {
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|_| EvervaultError::BadExtension)?
    else {
        return Ok(None);
    };
    in_names(san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::DNSName(d) => Some(*d),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_check_and_decode_agree_with_the_hex_crate_on_every_byte() {
        // Every byte pair decodes as `hex` decodes it.
        let all: Vec<u8> = (0..=255u8).collect();
        let label = hex::encode(&all).repeat(20);
        let san = in_names([label.as_str()]).expect("read").expect("carrier");
        assert_eq!(san.decode(), hex::decode(&label).expect("hex"));
        // Any byte outside `0-9a-f`, anywhere (the first, inside a vector's width, the
        // last), is refused with its offset; every byte inside is admitted.
        for byte in 0..=255u8 {
            for at in [0, 17, 64, label.len() - 1] {
                let mut bytes = label.clone().into_bytes();
                bytes[at] = byte;
                let Ok(mutated) = String::from_utf8(bytes) else {
                    continue;
                };
                let read = check_label(&mutated);
                if matches!(byte, b'0'..=b'9' | b'a'..=b'f') {
                    assert_eq!(read, Ok(()), "{byte:#04x} at {at}");
                } else {
                    assert!(
                        matches!(read, Err(EvervaultError::NotHex { at: a, byte: b, .. }) if a == at && b == byte),
                        "{byte:#04x} at {at}: {read:?}"
                    );
                }
            }
        }
    }

    fn doc(n: usize) -> String {
        "ab".repeat(n)
    }

    #[test]
    fn host_names_carry_nothing_and_a_long_leftmost_label_is_the_document() {
        assert_eq!(in_names(["localhost", "a.b.example.com"]), Ok(None));
        let long = doc(40);
        let name = format!("{long}.cage.app.cages.evervault.com");
        let found = in_names(["cage.example", name.as_str()]).expect("read");
        assert_eq!(found.map(|s| s.decode()), Some(vec![0xab; 40]));
        // 63 bytes is still a host label; 64 is a carrier.
        assert_eq!(in_names([format!("{}a", doc(31)).as_str()]), Ok(None));
        assert!(in_names([doc(32).as_str()]).expect("read").is_some());
    }

    #[test]
    fn each_malformed_spelling_is_refused_with_its_reason() {
        let upper = format!("{}AB.x", doc(40));
        assert!(matches!(
            in_names([upper.as_str()]),
            Err(EvervaultError::NotHex {
                uppercase: true,
                at: 80,
                ..
            })
        ));
        let odd = format!("{}a.x", doc(40));
        assert_eq!(in_names([odd.as_str()]), Err(EvervaultError::OddLength(81)));
        let junk = format!("{}zz.x", doc(40));
        assert!(matches!(
            in_names([junk.as_str()]),
            Err(EvervaultError::NotHex {
                uppercase: false,
                ..
            })
        ));
        let split = format!("{}.{}.x", doc(40), doc(40));
        assert_eq!(
            in_names([split.as_str()]),
            Err(EvervaultError::NotLeftmost(80))
        );
        let two = [format!("{}.x", doc(40)), format!("{}.y", doc(41))];
        assert_eq!(
            in_names(two.iter().map(String::as_str)),
            Err(EvervaultError::TwoDocuments)
        );
        let huge = doc(MAX_COSE_LEN + 1);
        assert_eq!(
            in_names([huge.as_str()]),
            Err(EvervaultError::Oversized(huge.len()))
        );
        let many: Vec<String> = (0..200)
            .map(|i| format!("{}{i}.example", "h".repeat(60)))
            .collect();
        assert!(in_names(many.iter().map(String::as_str)).is_ok());
        let many: Vec<String> = (0..700)
            .map(|i| format!("{}{i}.example", "h".repeat(60)))
            .collect();
        assert_eq!(
            in_names(many.iter().map(String::as_str)),
            Err(EvervaultError::TooLarge)
        );
    }
}
