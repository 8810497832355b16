//! A simulated Evervault enclave: the AWS Nitro document (forged by the sim Nitro PKI, its
//! `user_data` the certificate's SubjectPublicKeyInfo DER) as the leftmost label of a DNS
//! subjectAltName, lowercase hex (`<hex>.enclave.localhost`), as Evervault's enclaves serve
//! it (`evervault/attestation-doc-validation`, `cert.rs`). Tests replace the names to break
//! the carrier (uppercase, split, odd, two documents, oversized).

use rcgen::{KeyPair, SanType};

use super::dstack_nitro::{bound_spki, NitroEnclaveSpec, SimNitroCarrier};
use super::SimError;
use crate::dcap::time::UnixTime;

/// Evervault's names for a document's hex: one DNS name, the document its leftmost label.
pub fn genuine_names(hex: &str) -> Vec<String> {
    vec![format!("{hex}.enclave.localhost")]
}

/// The COSE_Sign1 the sim's NSM returns at `now` for a certificate with `key`.
pub fn document(
    spec: &NitroEnclaveSpec,
    key: &KeyPair,
    now: UnixTime,
) -> Result<Vec<u8>, SimError> {
    let spki = bound_spki(spec, key)?;
    spec.pki.document(&spec.doc_spec(&spki, now))
}

/// The subjectAltNames carrying the document for `key` at `now` (none for dstack's carrier
/// alone).
pub fn names(
    spec: &NitroEnclaveSpec,
    key: &KeyPair,
    now: UnixTime,
) -> Result<Vec<SanType>, SimError> {
    if spec.carrier == SimNitroCarrier::Dstack {
        return Ok(Vec::new());
    }
    let hex = hex::encode(document(spec, key, now)?);
    spec.evervault_names.unwrap_or(genuine_names)(&hex)
        .into_iter()
        .map(|n| Ok(SanType::DnsName(n.try_into()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rcgen::PublicKeyData;

    use super::*;
    use crate::nitro::binding::user_data_is_spki;
    use crate::nitro::{parse, verify};
    use crate::sim::nitro::SimNitro;

    #[test]
    fn the_label_decodes_to_a_document_naming_the_certificate_key() {
        let now = UnixTime(1_800_000_000);
        let pki = Arc::new(SimNitro::generate(now).expect("pki"));
        let key = KeyPair::generate().expect("key");
        let mut spec = NitroEnclaveSpec::new(pki.clone(), [0xab; 48]);
        spec.carrier = SimNitroCarrier::Evervault;
        let sans = names(&spec, &key, now).expect("names");
        let [SanType::DnsName(name)] = sans.as_slice() else {
            panic!("one DNS name: {sans:?}");
        };
        let name: &str = name.as_ref();
        let label = name.split('.').next().expect("label");
        assert!(label.len() > 63 && name.ends_with(".enclave.localhost"));
        let bytes = hex::decode(label).expect("hex");
        let parsed = parse(&bytes).expect("parses");
        let verified = verify(&parsed, &pki.root().expect("root"), now).expect("verifies");
        assert!(user_data_is_spki(verified.doc(), &key.subject_public_key_info()).is_ok());
        spec.carrier = SimNitroCarrier::Dstack;
        assert!(names(&spec, &key, now).expect("none").is_empty());
    }
}
