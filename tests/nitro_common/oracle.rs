//! The independent Nitro verifier the differential tests and the benchmark compare with:
//! AWS's `aws-nitro-enclaves-cose` (COSE_Sign1 and its Sig_structure) with ciborium (the
//! CBOR), RustCrypto's `p384` (every ECDSA check) and `rustls-webpki`'s path validation (the
//! chain, following AWS's procedure: the bundle's own root dropped, the rest as intermediates).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_nitro_enclaves_cose::crypto::{Hash, MessageDigest, SignatureAlgorithm, SigningPublicKey};
use aws_nitro_enclaves_cose::error::CoseError;
use aws_nitro_enclaves_cose::CoseSign1 as OracleCose;
use ciborium::value::Value;
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::signature::Verifier;
use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
};
use sha2::Digest as _;

/// What the oracle read from an accepted document.
#[derive(Debug, PartialEq, Eq)]
pub struct Fields {
    pub module_id: String,
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u64, Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

/// SHA-384 for the COSE crate.
pub struct Sha2;
impl Hash for Sha2 {
    fn hash(digest: MessageDigest, data: &[u8]) -> Result<Vec<u8>, CoseError> {
        match digest {
            MessageDigest::Sha384 => Ok(sha2::Sha384::digest(data).to_vec()),
            _ => Err(CoseError::UnsupportedError("only SHA-384".into())),
        }
    }
}

/// A P-384 key for the COSE crate, verified by RustCrypto.
pub struct P384Key(pub p384::ecdsa::VerifyingKey);
impl SigningPublicKey for P384Key {
    fn get_parameters(&self) -> Result<(SignatureAlgorithm, MessageDigest), CoseError> {
        Ok((SignatureAlgorithm::ES384, MessageDigest::Sha384))
    }
    fn verify(&self, digest: &[u8], signature: &[u8]) -> Result<bool, CoseError> {
        let Ok(sig) = p384::ecdsa::Signature::from_slice(signature) else {
            return Ok(false);
        };
        Ok(self.0.verify_prehash(digest, &sig).is_ok())
    }
}

/// ecdsa-with-SHA384 over P-384 for webpki, verified by RustCrypto.
#[derive(Debug)]
pub struct P384Sha384;
impl SignatureVerificationAlgorithm for P384Sha384 {
    fn verify_signature(&self, key: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), InvalidSignature> {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| InvalidSignature)?;
        let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| InvalidSignature)?;
        key.verify(msg, &sig).map_err(|_| InvalidSignature)
    }
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P384
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA384
    }
}

pub fn field<'v>(map: &'v [(Value, Value)], name: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

pub fn bytes_of(v: Option<&Value>, min: usize, max: usize) -> Result<Option<Vec<u8>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) if (min..=max).contains(&b.len()) => Ok(Some(b.clone())),
        Some(other) => Err(format!("bad optional field {other:?}")),
    }
}

/// The oracle: parse, AWS §3.2.2 syntax, webpki chain at `now`, ES384 with p384.
pub fn oracle(bytes: &[u8], root_der: &[u8], now: i64) -> Result<Fields, String> {
    let cose = OracleCose::from_bytes(bytes).map_err(|e| format!("COSE: {e}"))?;
    let payload = cose
        .get_payload::<Sha2>(None)
        .map_err(|e| format!("payload: {e}"))?;
    let doc: Value =
        ciborium::de::from_reader(payload.as_slice()).map_err(|e| format!("CBOR: {e}"))?;
    let map = doc.as_map().ok_or("not a map")?;
    let text = |n| field(map, n).and_then(Value::as_text).map(str::to_owned);
    let module_id = text("module_id")
        .filter(|m| !m.is_empty())
        .ok_or("module_id")?;
    if text("digest").as_deref() != Some("SHA384") {
        return Err("digest".into());
    }
    let timestamp_ms = field(map, "timestamp")
        .and_then(Value::as_integer)
        .and_then(|i| u64::try_from(i).ok())
        .filter(|t| *t > 0)
        .ok_or("timestamp")?;
    let mut pcrs = BTreeMap::new();
    for (k, v) in field(map, "pcrs").and_then(Value::as_map).ok_or("pcrs")? {
        let i = k
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|i| *i < 32)
            .ok_or("pcr index")?;
        let v = v
            .as_bytes()
            .filter(|b| [32, 48, 64].contains(&b.len()))
            .ok_or("pcr value")?;
        pcrs.insert(i, v.clone());
    }
    if pcrs.is_empty() || pcrs.len() > 32 {
        return Err("pcrs size".into());
    }
    let leaf = field(map, "certificate")
        .and_then(Value::as_bytes)
        .ok_or("certificate")?
        .clone();
    let bundle: Vec<Vec<u8>> = field(map, "cabundle")
        .and_then(Value::as_array)
        .ok_or("cabundle")?
        .iter()
        .map(|c| {
            c.as_bytes()
                .filter(|b| (1..=1024).contains(&b.len()))
                .cloned()
                .ok_or("cabundle entry")
        })
        .collect::<Result<_, _>>()?;
    if bundle.is_empty() || leaf.is_empty() || leaf.len() > 1024 {
        return Err("certificate sizes".into());
    }

    // The chain: AWS's procedure, the bundle's own root dropped, webpki builds the path.
    let root = CertificateDer::from(root_der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| format!("anchor: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = bundle
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let leaf_der = CertificateDer::from(leaf.clone());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("leaf: {e}"))?;
    let time = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now).map_err(|_| "time")?,
    ));
    ee.verify_for_usage(
        &[&P384Sha384],
        &[anchor],
        &intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| format!("chain: {e}"))?;

    // The COSE signature under the leaf's key.
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| format!("leaf: {e}"))?;
    let key =
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data)
            .map_err(|_| "leaf key")?;
    if !cose
        .verify_signature::<Sha2>(&P384Key(key))
        .map_err(|e| format!("COSE: {e}"))?
    {
        return Err("signature".into());
    }
    Ok(Fields {
        module_id,
        timestamp_ms,
        pcrs,
        public_key: bytes_of(field(map, "public_key"), 1, 1024)?,
        user_data: bytes_of(field(map, "user_data"), 0, 512)?,
        nonce: bytes_of(field(map, "nonce"), 0, 512)?,
    })
}
