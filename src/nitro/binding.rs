//! PURE. Key binding: a verified document must name the TLS key of the connection it
//! arrived on, by the rule of the carrier that brought it (`docs/nitro.md`, "Carriers").
//!
//! - `public_key` (AWS's own field, "an optional DER-encoded key"): the document's
//!   `public_key` is the TLS key's SubjectPublicKeyInfo DER, byte for byte;
//! - Evervault (`attestation-doc-validation`): `user_data` is the TLS certificate's
//!   SubjectPublicKeyInfo DER, byte for byte;
//! - dstack (`.1.8` envelope, Nitro variant): `user_data` is the envelope's 64-byte
//!   `report_data`, which the dstack layer checks is SHA-512(`"ratls-cert:"` ‖ SPKI DER);
//!   here only the Nitro half: `user_data` equals that `report_data`.
//!
//! Every rule compares whole byte strings: a prefix, a truncated hash or an absent field
//! never binds.

use crate::nitro::document::AttestationDoc;

/// The binding rule that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NitroBinding {
    /// `public_key` is the TLS key's SPKI DER.
    PublicKey,
    /// `user_data` is the TLS key's SPKI DER (Evervault).
    UserDataSpki,
    /// `user_data` is dstack's `report_data`.
    Dstack,
}

impl NitroBinding {
    /// Name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublicKey => "nitro-public-key",
            Self::UserDataSpki => "evervault",
            Self::Dstack => "dstack",
        }
    }
}

/// Why a document does not name the TLS key (`binding_mismatch`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The field the rule reads is absent (or `null`).
    #[error("the attestation document has no `{0}`")]
    Missing(&'static str),
    /// The field holds other bytes.
    #[error("the attestation document's `{field}` ({actual}) is not {expected}")]
    Mismatch {
        /// Which field.
        field: &'static str,
        /// Its value, hex (at most 64 bytes shown).
        actual: String,
        /// What it should be.
        expected: &'static str,
    },
}

fn equal(
    field: &'static str,
    value: Option<&[u8]>,
    want: &[u8],
    expected: &'static str,
) -> Result<(), BindingError> {
    let value = value.ok_or(BindingError::Missing(field))?;
    if value == want {
        Ok(())
    } else {
        Err(BindingError::Mismatch {
            field,
            actual: hex::encode(value.get(..64).unwrap_or(value)),
            expected,
        })
    }
}

/// `public_key` is exactly the TLS key's SubjectPublicKeyInfo DER.
pub fn public_key_is_spki(
    doc: &AttestationDoc<'_>,
    spki_der: &[u8],
) -> Result<NitroBinding, BindingError> {
    equal(
        "public_key",
        doc.public_key,
        spki_der,
        "the TLS key's SubjectPublicKeyInfo",
    )
    .map(|()| NitroBinding::PublicKey)
}

/// `user_data` is exactly the TLS key's SubjectPublicKeyInfo DER (Evervault's rule).
pub fn user_data_is_spki(
    doc: &AttestationDoc<'_>,
    spki_der: &[u8],
) -> Result<NitroBinding, BindingError> {
    equal(
        "user_data",
        doc.user_data,
        spki_der,
        "the TLS key's SubjectPublicKeyInfo",
    )
    .map(|()| NitroBinding::UserDataSpki)
}

/// `user_data` is exactly dstack's 64-byte `report_data` (which must itself commit to the
/// TLS key: the dstack layer's check).
pub fn user_data_is_dstack_report_data(
    doc: &AttestationDoc<'_>,
    report_data: &[u8; 64],
) -> Result<NitroBinding, BindingError> {
    equal(
        "user_data",
        doc.user_data,
        report_data,
        "the dstack envelope's report_data",
    )
    .map(|()| NitroBinding::Dstack)
}

/// Any rule of a document that carries itself (not dstack's, which needs its envelope): the
/// first that matches. Each commits to the same key, so trying both is safe.
pub fn any_spki_rule(
    doc: &AttestationDoc<'_>,
    spki_der: &[u8],
) -> Result<NitroBinding, BindingError> {
    public_key_is_spki(doc, spki_der).or_else(|first| {
        user_data_is_spki(doc, spki_der).map_err(|second| match (&first, &second) {
            // Report the field that is there: a present-but-different value says more.
            (BindingError::Missing(_), _) => second,
            _ => first,
        })
    })
}
