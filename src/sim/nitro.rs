//! The simulated AWS Nitro platform (feature `sim`): a test root standing in for AWS Nitro
//! Enclaves Root-G1, the three intermediates a hypervisor's bundle carries (regional,
//! zonal, instance, path lengths 2, 1, 0, the first two naming CRL distribution points as
//! AWS's do), a signing certificate minted per document, CRLs, and attestation documents
//! encoded the way the hypervisor encodes them (an indefinite map, the timestamp as an
//! 8-byte integer, `null` for what was not asked), signed ES384.
//!
//! Only the hypervisor is simulated: the certificates, CRLs and signatures are real, and the
//! knobs ([`ChainSpec`], [`LeafSpec`], [`DocSpec`]) exist so tests can make each check fail.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use time::{Duration, OffsetDateTime};

use super::SimError;

mod dir;
use crate::cbor;
use crate::dcap::time::UnixTime;
use crate::nitro::cose::CoseSign1;
use crate::nitro::NitroRoot;

/// How long the hypervisor's signing certificates live (AWS: about three hours).
pub const LEAF_LIFETIME_SECS: i64 = 3 * 3600;

/// A CA of the sim chain: its parameters (to sign with), key and certificate.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// The shape of the sim chain; [`ChainSpec::default`] is AWS's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    /// The pathLenConstraint of the regional, zonal and instance CAs.
    pub path_lens: [Option<u8>; 3],
    /// One more CA below the instance CA (so the instance CA's path length 0 is broken).
    pub extra_intermediate: bool,
    /// The intermediates' keyUsage includes keyCertSign.
    pub key_cert_sign: bool,
}

impl Default for ChainSpec {
    fn default() -> Self {
        Self {
            path_lens: [Some(2), Some(1), Some(0)],
            extra_intermediate: false,
            key_cert_sign: true,
        }
    }
}

/// The signing certificate a document is signed with; [`LeafSpec::default`] is AWS's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// Mint it as a CA (basicConstraints cA) — what no signing certificate may be.
    pub is_ca: bool,
    /// Its keyUsage has digitalSignature.
    pub digital_signature: bool,
    /// Valid from this many seconds before the document's timestamp (AWS: ~3 s).
    pub before_secs: i64,
    /// Valid this long after its start.
    pub lifetime_secs: i64,
}

impl Default for LeafSpec {
    fn default() -> Self {
        Self {
            is_ca: false,
            digital_signature: true,
            before_secs: 3,
            lifetime_secs: LEAF_LIFETIME_SECS,
        }
    }
}

/// A document to forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocSpec {
    /// `module_id`.
    pub module_id: String,
    /// `timestamp`, milliseconds.
    pub timestamp_ms: u64,
    /// `pcrs`.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// `public_key` (`null` when `None`).
    pub public_key: Option<Vec<u8>>,
    /// `user_data` (`null` when `None`).
    pub user_data: Option<Vec<u8>>,
    /// `nonce` (`null` when `None`).
    pub nonce: Option<Vec<u8>>,
    /// The signing certificate.
    pub leaf: LeafSpec,
}

/// Fixed, recognisable sim measurements for PCR1 (kernel) and PCR2 (application).
pub const SIM_PCR1: [u8; 48] = [0x11; 48];
/// See [`SIM_PCR1`].
pub const SIM_PCR2: [u8; 48] = [0x22; 48];
/// The sim parent instance's PCR4.
pub const SIM_PCR4: [u8; 48] = [0x44; 48];

impl DocSpec {
    /// A production-mode enclave measured `pcr0`, at `timestamp_ms`: PCRs 0–15 like the
    /// hypervisor's (PCR1, PCR2, PCR4 the sim's, the rest zeros).
    pub fn new(timestamp_ms: u64, pcr0: [u8; 48]) -> Self {
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..16).map(|i| (i, vec![0; 48])).collect();
        pcrs.insert(0, pcr0.to_vec());
        pcrs.insert(1, SIM_PCR1.to_vec());
        pcrs.insert(2, SIM_PCR2.to_vec());
        pcrs.insert(4, SIM_PCR4.to_vec());
        Self {
            module_id: "i-0123456789abcdef0-enc0123456789abcdef".into(),
            timestamp_ms,
            pcrs,
            public_key: None,
            user_data: None,
            nonce: None,
            leaf: LeafSpec::default(),
        }
    }

    /// A debug-mode enclave: PCR0–2 all zeros, as the hypervisor reports them.
    pub fn debug(timestamp_ms: u64) -> Self {
        let mut spec = Self::new(timestamp_ms, [0; 48]);
        spec.pcrs.insert(1, vec![0; 48]);
        spec.pcrs.insert(2, vec![0; 48]);
        spec
    }

    /// The timestamp in whole seconds.
    pub fn at(&self) -> UnixTime {
        UnixTime(i64::try_from(self.timestamp_ms / 1000).unwrap_or(i64::MAX))
    }
}

/// A minted signing certificate and its key.
pub struct SimLeaf {
    /// The certificate, DER.
    pub der: Vec<u8>,
    key_pkcs8: Vec<u8>,
}

/// The sim Nitro PKI (kept in a PKI directory by [`SimNitro::load_or_create`], `nitro/dir.rs`).
pub struct SimNitro {
    root: Ca,
    intermediates: Vec<Ca>,
    created_at: UnixTime,
}

impl std::fmt::Debug for SimNitro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNitro")
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(
        DnType::OrganizationName,
        "ratls-proxy simulation (not Amazon)",
    );
    dn.push(DnType::CommonName, cn);
    dn
}

fn odt(t: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

const CA_NAMES: [&str; 4] = [
    "sim.us-east-1.aws.nitro-enclaves",
    "sim.zonal.us-east-1.aws.nitro-enclaves",
    "i-0123456789abcdef0.us-east-1.aws.nitro-enclaves",
    "sim extra CA below the instance CA",
];

/// The sim root's parameters for a PKI created at `created` (30 years, from a year back).
fn root_params(created: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("sim.nitro-enclaves");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.not_before = created - Duration::days(365);
    p.not_after = created + Duration::days(30 * 365);
    p.serial_number = Some(SerialNumber::from(1u64));
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

/// Intermediate `i`'s parameters (30 days, from a day back), `spec`'s shape.
fn intermediate_params(i: usize, spec: &ChainSpec, created: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(CA_NAMES.get(i).copied().unwrap_or("sim CA"));
    p.is_ca = match spec.path_lens.get(i).copied().flatten() {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = if spec.key_cert_sign {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    if i < 2 {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![format!("http://crl.sim.invalid/{}", crl_file(i))],
        }];
    }
    p.not_before = created - Duration::days(1);
    p.not_after = created + Duration::days(30);
    p.serial_number = Some(SerialNumber::from(u64::try_from(i).unwrap_or(0) + 0x10));
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p
}

/// The file name of the CRL covering intermediate `i` (issued by its parent, CA `i`):
/// the last segment of its distribution point, as the offline directory holds it.
pub fn crl_file(i: usize) -> String {
    format!("{i}.crl")
}

impl SimNitro {
    /// AWS's chain shape, created at `now` (root: 30 years; intermediates: 30 days).
    pub fn generate(now: UnixTime) -> Result<Self, SimError> {
        Self::generate_with(now, &ChainSpec::default())
    }

    /// A chain of the given shape, created at `now`.
    pub fn generate_with(now: UnixTime, spec: &ChainSpec) -> Result<Self, SimError> {
        let created = odt(now);
        let p = root_params(created);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let der = p.self_signed(&key)?.der().to_vec();
        let root = Ca {
            params: p,
            key,
            der,
        };

        let count = if spec.extra_intermediate { 4 } else { 3 };
        let mut intermediates: Vec<Ca> = Vec::with_capacity(count);
        for i in 0..count {
            let p = intermediate_params(i, spec, created);
            let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
            let parent = intermediates.last().unwrap_or(&root);
            let der = p.signed_by(&key, &parent.issuer())?.der().to_vec();
            intermediates.push(Ca {
                params: p,
                key,
                der,
            });
        }
        Ok(Self {
            root,
            intermediates,
            created_at: now,
        })
    }

    /// The sim root, to pin instead of AWS's.
    pub fn root(&self) -> Result<NitroRoot, SimError> {
        NitroRoot::from_der(self.root.der.clone()).map_err(|e| SimError::Format(e.to_string()))
    }

    /// The CA bundle a document carries: root first, then the intermediates.
    pub fn bundle(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.root)
            .chain(&self.intermediates)
            .map(|c| c.der.clone())
            .collect()
    }

    /// A signing certificate under the last intermediate, valid around `at`.
    pub fn leaf(&self, spec: &LeafSpec, at: UnixTime) -> Result<SimLeaf, SimError> {
        let issuer = self
            .intermediates
            .last()
            .ok_or_else(|| SimError::Format("no intermediate".into()))?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn("i-0123456789abcdef0-enc0123456789abcdef.us-east-1.aws");
        p.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = if spec.digital_signature {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ]
        } else {
            vec![KeyUsagePurpose::ContentCommitment]
        };
        let start = odt(at) - Duration::seconds(spec.before_secs);
        p.not_before = start;
        p.not_after = start + Duration::seconds(spec.lifetime_secs);
        p.serial_number = Some(SerialNumber::from(0x1eafu64));
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let der = p.signed_by(&key, &issuer.issuer())?.der().to_vec();
        Ok(SimLeaf {
            der,
            key_pkcs8: key.serialize_der(),
        })
    }

    /// A complete COSE_Sign1 attestation document for `spec`, signed by a fresh leaf.
    pub fn document(&self, spec: &DocSpec) -> Result<Vec<u8>, SimError> {
        let leaf = self.leaf(&spec.leaf, spec.at())?;
        let payload = encode_document(spec, &leaf.der, &self.bundle());
        sign_document(&payload, &leaf)
    }

    /// A CRL from CA `issuer` (0: the root, 1–3: the intermediates) listing `revoked`
    /// serials, valid `this_update ..= next_update`.
    pub fn crl(
        &self,
        issuer: usize,
        revoked: &[&[u8]],
        this_update: UnixTime,
        next_update: UnixTime,
    ) -> Result<Vec<u8>, SimError> {
        let ca = match issuer {
            0 => &self.root,
            i => self
                .intermediates
                .get(i.saturating_sub(1))
                .ok_or_else(|| SimError::Format(format!("no CA {i}")))?,
        };
        let params = CertificateRevocationListParams {
            this_update: odt(this_update),
            next_update: odt(next_update),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: odt(this_update),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&ca.issuer())?.der().to_vec())
    }
}

/// The payload the hypervisor would write for `spec`: an indefinite map in AWS's field
/// order, the timestamp as an 8-byte integer, `null` for absent optional fields.
pub fn encode_document(spec: &DocSpec, certificate: &[u8], cabundle: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0xbf];
    cbor::write_text(&mut out, "module_id");
    cbor::write_text(&mut out, &spec.module_id);
    cbor::write_text(&mut out, "digest");
    cbor::write_text(&mut out, "SHA384");
    cbor::write_text(&mut out, "timestamp");
    out.push(0x1b);
    out.extend_from_slice(&spec.timestamp_ms.to_be_bytes());
    cbor::write_text(&mut out, "pcrs");
    cbor::write_head(&mut out, cbor::MAP, len(spec.pcrs.len()));
    for (i, v) in &spec.pcrs {
        cbor::write_head(&mut out, cbor::UINT, u64::from(*i));
        cbor::write_bytes(&mut out, v);
    }
    cbor::write_text(&mut out, "certificate");
    cbor::write_bytes(&mut out, certificate);
    cbor::write_text(&mut out, "cabundle");
    cbor::write_head(&mut out, cbor::ARRAY, len(cabundle.len()));
    for c in cabundle {
        cbor::write_bytes(&mut out, c);
    }
    for (key, value) in [
        ("public_key", &spec.public_key),
        ("user_data", &spec.user_data),
        ("nonce", &spec.nonce),
    ] {
        cbor::write_text(&mut out, key);
        match value {
            Some(v) => cbor::write_bytes(&mut out, v),
            None => out.push(cbor::NULL),
        }
    }
    out.push(cbor::BREAK);
    out
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The protected header the hypervisor writes: `{1: -35}` (ES384).
pub const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// Signs `payload` with `leaf` into an untagged COSE_Sign1, as the hypervisor does.
pub fn sign_document(payload: &[u8], leaf: &SimLeaf) -> Result<Vec<u8>, SimError> {
    sign_cose(&PROTECTED_ES384, payload, leaf)
}

/// Signs `payload` under any protected header (to forge envelopes the verifier must refuse).
pub fn sign_cose(protected: &[u8], payload: &[u8], leaf: &SimLeaf) -> Result<Vec<u8>, SimError> {
    let unsigned = CoseSign1 {
        protected,
        payload,
        signature: &[0; 96],
        tagged: false,
    };
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &leaf.key_pkcs8, &rng)
        .map_err(|e| SimError::Ring(e.to_string()))?;
    let signature = key
        .sign(&rng, &unsigned.sig_structure())
        .map_err(|e| SimError::Ring(e.to_string()))?;
    let signature: &[u8; 96] = signature
        .as_ref()
        .try_into()
        .map_err(|_| SimError::Ring("an ES384 signature is not 96 bytes".into()))?;
    Ok(CoseSign1 {
        signature,
        ..unsigned
    }
    .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nitro::{parse, verify};

    #[test]
    fn a_forged_document_verifies_under_the_sim_root_and_not_under_aws() {
        let now = UnixTime(1_800_000_000);
        let sim = SimNitro::generate(now).expect("sim");
        let spec = DocSpec::new(1_800_000_000_123, [0xab; 48]);
        let bytes = sim.document(&spec).expect("document");
        let parsed = parse(&bytes).expect("parses");
        assert_eq!(parsed.doc.timestamp_ms, spec.timestamp_ms);
        assert_eq!(
            parsed.doc.pcrs.get(0).map(|p| p.0.to_vec()),
            Some(vec![0xab; 48])
        );
        assert!(!parsed.doc.is_debug());
        let root = sim.root().expect("root");
        assert!(verify(&parsed, &root, spec.at()).is_ok());
        assert!(verify(&parsed, &NitroRoot::aws(), spec.at()).is_err());
        let debug = sim
            .document(&DocSpec::debug(1_800_000_000_000))
            .expect("debug");
        assert!(parse(&debug).is_ok_and(|p| p.doc.is_debug()));
    }
}
