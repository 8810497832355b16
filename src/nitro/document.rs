//! The attestation document (AWS "Nitro Enclaves attestation process" §2.2, §3.2.2) as a
//! borrowed view over the COSE payload.
//!
//! What is accepted, and why:
//! - the document map definite or indefinite: the hypervisor sends an indefinite map
//!   (`bf … ff`); the `pcrs` map and `cabundle` array likewise either way;
//! - exactly the nine fields AWS lists, each once: an unknown field is refused (AWS §3.2.2.1
//!   lists the allowed fields; a verifier that skipped unknown ones would sign off on data it
//!   never looked at), and so is a duplicate;
//! - `null` for the three optional fields only, meaning absent: AWS writes "no field content
//!   can be null", yet the hypervisor itself sends `public_key: null` and `nonce: null` when
//!   they were not requested (the real fixtures do); for a mandatory field `null` is refused;
//! - every bound of AWS §3.2.2.2, plus the caps of [`crate::nitro::limits`] where AWS sets
//!   none; `digest` must be `"SHA384"`;
//! - no tags, no floats, no trailing bytes after the map.

use std::fmt;

use crate::cbor::{Cbor, Items};
use crate::nitro::error::DocumentError;
use crate::nitro::limits::{
    MAX_CABUNDLE, MAX_CERT_LEN, MAX_MODULE_ID_LEN, MAX_NONCE_LEN, MAX_PCRS, MAX_PUBLIC_KEY_LEN,
    MAX_USER_DATA_LEN, PCR_LENS,
};

/// The digest the PCRs are computed with; AWS defines only SHA-384.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// `"SHA384"`.
    Sha384,
}

/// One PCR's value: 32, 48 or 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pcr<'a>(pub &'a [u8]);

impl Pcr<'_> {
    /// True when every byte is zero (what a debug-mode enclave reports for PCR0–2).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Display for Pcr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Pcr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({self})")
    }
}

/// The locked PCRs, by index 0–31.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pcrs<'a> {
    slots: [Option<&'a [u8]>; MAX_PCRS],
}

impl<'a> Pcrs<'a> {
    /// PCR `index`, if the document has it.
    pub fn get(&self, index: usize) -> Option<Pcr<'a>> {
        self.slots.get(index).copied().flatten().map(Pcr)
    }

    /// Every PCR present, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Pcr<'a>)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|v| (i, Pcr(v))))
    }

    /// How many PCRs the document has.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// True when there is none (never for a parsed document).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Pcrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A parsed attestation document. Nothing in it is verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDoc<'a> {
    /// The issuing Nitro hypervisor module (`i-…-enc…`).
    pub module_id: &'a str,
    /// The PCR digest.
    pub digest: Digest,
    /// When the document was made: milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: u64,
    /// The locked PCRs.
    pub pcrs: Pcrs<'a>,
    /// The signing certificate, DER.
    pub certificate: &'a [u8],
    /// The CA bundle, DER, root first: `[ROOT, INTERM_1, …, INTERM_N]` (AWS §3.2.3).
    pub cabundle: Vec<&'a [u8]>,
    /// The key the enclave asked to be attested, DER.
    pub public_key: Option<&'a [u8]>,
    /// Data the enclave asked to be signed.
    pub user_data: Option<&'a [u8]>,
    /// The verifier's nonce the enclave passed on.
    pub nonce: Option<&'a [u8]>,
}

/// The fields AWS defines, in its order; the index is the field's bit in the `seen` mask.
const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

/// The first six are mandatory.
const MANDATORY: u16 = 0b11_1111;

impl<'a> AttestationDoc<'a> {
    /// Parses a COSE payload as one attestation document.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DocumentError> {
        let err = DocumentError::cbor("attestation document");
        let mut c = Cbor::new(payload);
        let len = c.map_len().map_err(&err)?;
        let mut items = Items::new(len, 2);
        let mut seen = 0u16;
        let mut doc = Self {
            module_id: "",
            digest: Digest::Sha384,
            timestamp_ms: 0,
            pcrs: Pcrs {
                slots: [None; MAX_PCRS],
            },
            certificate: &[],
            cabundle: Vec::new(),
            public_key: None,
            user_data: None,
            nonce: None,
        };
        while items.more(&mut c).map_err(&err)? {
            let key = c.text().map_err(DocumentError::cbor("a document key"))?;
            let Some(index) = FIELDS.iter().position(|f| *f == key) else {
                return Err(DocumentError::UnknownField(key.chars().take(64).collect()));
            };
            let bit = 1u16 << index;
            if seen & bit != 0 {
                return Err(DocumentError::DuplicateField(key.to_owned()));
            }
            seen |= bit;
            items.more(&mut c).map_err(&err)?;
            doc.read_field(index, &mut c)?;
        }
        if !c.is_empty() {
            return Err(DocumentError::TrailingBytes {
                what: "the attestation document",
                extra: c.rest().len(),
            });
        }
        if let Some(missing) = FIELDS
            .iter()
            .enumerate()
            .find(|(i, _)| MANDATORY & !seen & (1 << i) != 0)
        {
            return Err(DocumentError::MissingField(missing.1));
        }
        Ok(doc)
    }

    fn read_field(&mut self, index: usize, c: &mut Cbor<'a>) -> Result<(), DocumentError> {
        let field = FIELDS.get(index).copied().unwrap_or("?");
        let is_optional = MANDATORY & (1 << index) == 0;
        if c.null() {
            return if is_optional {
                Ok(())
            } else {
                Err(DocumentError::field(field, "is null"))
            };
        }
        let err = DocumentError::cbor(field);
        match index {
            0 => {
                let id = c.text().map_err(&err)?;
                if id.is_empty() || id.len() > MAX_MODULE_ID_LEN {
                    return Err(DocumentError::field(
                        field,
                        format!("is {} bytes, not 1..={MAX_MODULE_ID_LEN}", id.len()),
                    ));
                }
                self.module_id = id;
            }
            1 => {
                let digest = c.text().map_err(&err)?;
                if digest != "SHA384" {
                    return Err(DocumentError::field(
                        field,
                        format!("is `{}`, only `SHA384` is defined", digest.escape_debug()),
                    ));
                }
            }
            2 => {
                self.timestamp_ms = c.uint().map_err(&err)?;
                if self.timestamp_ms == 0 {
                    return Err(DocumentError::field(field, "is 0"));
                }
            }
            3 => self.pcrs = read_pcrs(c)?,
            4 => self.certificate = sized(c, field, 1, MAX_CERT_LEN)?,
            5 => self.cabundle = read_cabundle(c)?,
            6 => self.public_key = Some(sized(c, field, 1, MAX_PUBLIC_KEY_LEN)?),
            7 => self.user_data = Some(sized(c, field, 0, MAX_USER_DATA_LEN)?),
            _ => self.nonce = Some(sized(c, field, 0, MAX_NONCE_LEN)?),
        }
        Ok(())
    }

    /// True for a debug-mode enclave: the hypervisor reports PCR0, PCR1 and PCR2 as zeros
    /// (AWS: "in debug mode, PCRs 0, 1 and 2 are all zeros"). Absent PCRs are not zeros.
    pub fn is_debug(&self) -> bool {
        (0..3).all(|i| self.pcrs.get(i).is_some_and(|p| p.is_zero()))
    }

    /// The document's time, in whole seconds since the epoch (rounded down).
    pub fn timestamp_secs(&self) -> i64 {
        i64::try_from(self.timestamp_ms / 1000).unwrap_or(i64::MAX)
    }
}

/// A byte string of `min..=max` bytes.
fn sized<'a>(
    c: &mut Cbor<'a>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<&'a [u8], DocumentError> {
    let b = c.bytes().map_err(DocumentError::cbor(field))?;
    if b.len() < min || b.len() > max {
        return Err(DocumentError::field(
            field,
            format!("is {} bytes, not {min}..={max}", b.len()),
        ));
    }
    Ok(b)
}

fn read_pcrs<'a>(c: &mut Cbor<'a>) -> Result<Pcrs<'a>, DocumentError> {
    let err = DocumentError::cbor("pcrs");
    let mut items = Items::new(c.map_len().map_err(&err)?, 2);
    let mut slots = [None; MAX_PCRS];
    let mut count = 0usize;
    while items.more(c).map_err(&err)? {
        let index = c
            .uint()
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < MAX_PCRS)
            .ok_or_else(|| DocumentError::field("pcrs", "has an index that is not 0..=31"))?;
        items.more(c).map_err(&err)?;
        let value = c.bytes().map_err(&err)?;
        if !PCR_LENS.contains(&value.len()) {
            return Err(DocumentError::field(
                "pcrs",
                format!("PCR{index} is {} bytes, not 32, 48 or 64", value.len()),
            ));
        }
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| DocumentError::field("pcrs", "index out of range"))?;
        if slot.replace(value).is_some() {
            return Err(DocumentError::DuplicateField(format!("pcrs[{index}]")));
        }
        count = count.saturating_add(1);
    }
    if count == 0 {
        return Err(DocumentError::field("pcrs", "is empty"));
    }
    Ok(Pcrs { slots })
}

fn read_cabundle<'a>(c: &mut Cbor<'a>) -> Result<Vec<&'a [u8]>, DocumentError> {
    let err = DocumentError::cbor("cabundle");
    let mut items = Items::new(c.array_len().map_err(&err)?, 1);
    let mut bundle = Vec::new();
    while items.more(c).map_err(&err)? {
        if bundle.len() == MAX_CABUNDLE {
            return Err(DocumentError::field(
                "cabundle",
                format!("has more than {MAX_CABUNDLE} certificates"),
            ));
        }
        bundle.push(sized(c, "cabundle", 1, MAX_CERT_LEN)?);
    }
    if bundle.is_empty() {
        return Err(DocumentError::field("cabundle", "is empty"));
    }
    Ok(bundle)
}
