//! A simulated dstack guest on AWS Nitro Enclaves: the RA-TLS certificate's dstack `.1.8`
//! extension carries a `VersionedAttestation::V0` of the `NitroEnclave` platform (SCALE:
//! `00 02`, the NSM document, no runtime events, `report_data`, the config), with dstack's
//! binding: `report_data` = SHA-512(`"ratls-cert:"` ‖ SPKI DER) (`QuoteContentType::RaTlsCert`)
//! and the NSM document's `user_data` = that `report_data` (dstack `dstack-attest`
//! `attestation.rs`: "NSM user_data does not match report_data"). The document is forged by
//! the sim Nitro PKI (`sim/nitro.rs`); each check can be made to fail: another image (PCRs),
//! a debug enclave, a key other than the certificate's, an old document. The same spec
//! serves Evervault's carrier instead, or both at once (`sim/evervault.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use rcgen::{CustomExtension, KeyPair, PublicKeyData};

use super::dstack::{compact, scale_bytes, vm_config};
use super::nitro::{DocSpec, SimNitro};
use super::SimError;
use crate::dcap::time::UnixTime;
use crate::dstack::binding::ratls_cert_report_data;
use crate::ratls::evidence::OID_DSTACK_ATTESTATION;

/// The PCRs `sim_enclave --tee nitro` may set besides PCR0.
pub const SETTABLE_PCRS: [u8; 5] = [1, 2, 3, 4, 8];

/// Where the sim's certificate carries its document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimNitroCarrier {
    /// dstack's `.1.8` extension.
    #[default]
    Dstack,
    /// Evervault's hex label in a DNS subjectAltName.
    Evervault,
    /// Both, each a valid document for the key (ambiguous: a verifier must refuse it).
    Both,
}

impl std::str::FromStr for SimNitroCarrier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dstack" => Ok(Self::Dstack),
            "evervault" => Ok(Self::Evervault),
            "both" => Ok(Self::Both),
            other => Err(format!(
                "unknown Nitro carrier `{other}` (dstack, evervault, both)"
            )),
        }
    }
}

/// A simulated Nitro enclave behind dstack's RA-TLS (or Evervault's carrier).
#[derive(Clone)]
pub struct NitroEnclaveSpec {
    /// The sim Nitro PKI signing its documents.
    pub pki: Arc<SimNitro>,
    /// PCR0, the enclave image (ignored for a debug enclave: PCR0–2 are zeros then).
    pub pcr0: [u8; 48],
    /// PCR1, 2, 3, 4 or 8 values replacing the sim's (`SETTABLE_PCRS`).
    pub pcrs: BTreeMap<u8, [u8; 48]>,
    /// A debug-mode enclave: PCR0, PCR1 and PCR2 all zeros.
    pub debug: bool,
    /// Bind the document to another key than the certificate's (`binding_mismatch`).
    pub wrong_key: bool,
    /// The document was made this many seconds before the certificate (`document_too_old`
    /// under `max_cert_age_secs`; beyond the signing certificate's three hours, expired).
    pub age_secs: u64,
    /// Which carrier the certificate uses.
    pub carrier: SimNitroCarrier,
    /// Evervault's carrier: the DNS names made of the document's hex, replacing the genuine
    /// `<hex>.enclave.localhost` (a test breaks the carrier with them).
    pub evervault_names: Option<fn(&str) -> Vec<String>>,
}

impl std::fmt::Debug for NitroEnclaveSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NitroEnclaveSpec")
            .field("pcr0", &hex::encode(self.pcr0))
            .field("debug", &self.debug)
            .field("wrong_key", &self.wrong_key)
            .field("age_secs", &self.age_secs)
            .field("carrier", &self.carrier)
            .finish_non_exhaustive()
    }
}

impl NitroEnclaveSpec {
    /// A production-mode enclave measured `pcr0`, bound to its key, fresh.
    pub fn new(pki: Arc<SimNitro>, pcr0: [u8; 48]) -> Self {
        Self {
            pki,
            pcr0,
            pcrs: BTreeMap::new(),
            debug: false,
            wrong_key: false,
            age_secs: 0,
            carrier: SimNitroCarrier::Dstack,
            evervault_names: None,
        }
    }

    /// The document this enclave's NSM returns at `now` for `user_data`.
    pub fn doc_spec(&self, user_data: &[u8], now: UnixTime) -> DocSpec {
        let made = u64::try_from(now.0)
            .unwrap_or(0)
            .saturating_sub(self.age_secs);
        let ms = made.saturating_mul(1000);
        let mut spec = if self.debug {
            DocSpec::debug(ms)
        } else {
            DocSpec::new(ms, self.pcr0)
        };
        for (i, v) in &self.pcrs {
            // A debug enclave measures nothing: PCR0–2 stay zero whatever was asked.
            if !(self.debug && *i <= 2) {
                spec.pcrs.insert(*i, v.to_vec());
            }
        }
        spec.user_data = Some(user_data.to_vec());
        spec
    }
}

/// dstack's `VersionedAttestation::V0` of the `NitroEnclave` platform: the NSM document,
/// no runtime events, `report_data`, `config`.
pub fn v0(nsm_quote: &[u8], report_data: &[u8; 64], config: &str) -> Vec<u8> {
    let mut out = vec![0x00, 0x02]; // V0, AttestationQuote::DstackNitroEnclave
    scale_bytes(&mut out, nsm_quote);
    compact(&mut out, 0);
    out.extend_from_slice(report_data);
    scale_bytes(&mut out, config.as_bytes());
    out
}

/// The SPKI DER the document names: the certificate's, or another key's (`wrong_key`).
pub(super) fn bound_spki(spec: &NitroEnclaveSpec, key: &KeyPair) -> Result<Vec<u8>, SimError> {
    Ok(if spec.wrong_key {
        KeyPair::generate()?.subject_public_key_info()
    } else {
        key.subject_public_key_info()
    })
}

/// The `.1.8` extension of a Nitro sim's certificate for `key` at `now` (none when the spec
/// uses Evervault's carrier alone).
pub fn evidence(
    spec: &NitroEnclaveSpec,
    key: &KeyPair,
    now: UnixTime,
) -> Result<Vec<CustomExtension>, SimError> {
    if spec.carrier == SimNitroCarrier::Evervault {
        return Ok(Vec::new());
    }
    let spki = bound_spki(spec, key)?;
    let rd = ratls_cert_report_data(&spki);
    let document = spec.pki.document(&spec.doc_spec(&rd, now))?;
    let attestation = v0(&document, &rd, &vm_config());
    // dstack wraps every extension's content in an OCTET STRING of its own.
    Ok(vec![CustomExtension::from_oid_content(
        OID_DSTACK_ATTESTATION,
        super::der::octets(&attestation),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::{Attestation, Platform};
    use crate::nitro::{parse, verify};

    #[test]
    fn the_envelope_parses_back_and_the_document_verifies_bound_to_the_key() {
        let now = UnixTime(1_800_000_000);
        let pki = Arc::new(SimNitro::generate(now).expect("pki"));
        let key = KeyPair::generate().expect("key");
        let rd = ratls_cert_report_data(&key.subject_public_key_info());
        let spec = NitroEnclaveSpec::new(Arc::clone(&pki), [0xab; 48]);
        let document = pki.document(&spec.doc_spec(&rd, now)).expect("doc");
        let bytes = v0(&document, &rd, &vm_config());
        let att = Attestation::parse(&bytes).expect("dstack parses it");
        let Platform::NitroEnclave { nsm_quote } = &att.platform else {
            panic!("not the Nitro platform: {}", att.platform.name());
        };
        assert_eq!(nsm_quote.as_ref(), document.as_slice());
        assert_eq!(att.stack.report_data, rd);
        let parsed = parse(nsm_quote).expect("parses");
        let verified = verify(&parsed, &pki.root().expect("root"), now).expect("verifies");
        assert_eq!(verified.doc().user_data, Some(&rd[..]));
        assert!(
            crate::nitro::binding::user_data_is_dstack_report_data(verified.doc(), &rd).is_ok()
        );
    }

    #[test]
    fn debug_keeps_pcr0_to_2_zero_and_age_moves_the_timestamp() {
        let now = UnixTime(1_800_000_000);
        let pki = Arc::new(SimNitro::generate(now).expect("pki"));
        let mut spec = NitroEnclaveSpec::new(pki, [0xab; 48]);
        spec.debug = true;
        spec.age_secs = 600;
        spec.pcrs.insert(2, [0x22; 48]);
        spec.pcrs.insert(3, [0x33; 48]);
        let d = spec.doc_spec(&[7; 64], now);
        assert_eq!(d.pcrs.get(&0), Some(&vec![0; 48]));
        assert_eq!(d.pcrs.get(&2), Some(&vec![0; 48]));
        assert_eq!(d.pcrs.get(&3), Some(&vec![0x33; 48]));
        assert_eq!(d.timestamp_ms, (1_800_000_000 - 600) * 1000);
    }
}
