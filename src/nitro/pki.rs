//! PURE. The X.509 pieces a Nitro chain needs: ECDSA P-384 with SHA-384 and nothing else
//! (ring, the crate's one signature provider), and the certificate profile AWS's §3.2.3 and
//! RFC 5280 §4.2 ask for.
//!
//! Every certificate AWS's Nitro PKI issues is ECDSA P-384 signed with SHA-384, so that is
//! the only algorithm accepted; anything else is an error rather than a fallback.

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA384,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Version};

use crate::dcap::pki::{count_verification, is_exact_envelope};
use crate::dcap::time::UnixTime;

/// DER of `AlgorithmIdentifier { ecdsa-with-SHA384 }` (no parameters, RFC 5758 §3.2).
const ECDSA_WITH_SHA384_ALG_ID: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];

/// An uncompressed P-384 point: `04 ‖ X ‖ Y`.
const P384_POINT_LEN: usize = 97;

/// Where a certificate stands in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A CA: the root or an intermediate.
    Ca,
    /// The signing ("target") certificate.
    Leaf,
}

/// What a certificate's profile allows, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// A CA's pathLenConstraint (`None`: unlimited).
    pub path_len: Option<u32>,
}

/// The uncompressed P-384 point of an `id-ecPublicKey` / `secp384r1` key.
pub fn p384_point<'a>(spki: &'a SubjectPublicKeyInfo<'a>) -> Result<&'a [u8], String> {
    let alg = &spki.algorithm;
    let curve_ok = alg
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == OID_NIST_EC_P384);
    let point = spki.subject_public_key.data.as_ref();
    if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || !curve_ok {
        return Err("the key is not ECDSA P-384".into());
    }
    if point.len() != P384_POINT_LEN || point.first() != Some(&0x04) {
        return Err("the P-384 key is not an uncompressed point".into());
    }
    Ok(point)
}

fn is_ecdsa_sha384(alg: &AlgorithmIdentifier<'_>) -> bool {
    alg.algorithm == OID_SIG_ECDSA_WITH_SHA384 && alg.parameters.is_none()
}

/// Checks that `cert` is signed by the holder of `issuer_point`, with ecdsa-with-SHA384
/// inside and outside the signed part (RFC 5280 §4.1.1.2 wants both the same), in an exact
/// envelope.
pub fn verify_cert_signature(
    cert: &X509Certificate<'_>,
    issuer_point: &[u8],
) -> Result<(), String> {
    verify_signed(
        cert.as_raw(),
        cert.tbs_certificate.as_ref(),
        &cert.tbs_certificate.signature,
        cert.signature_value.data.as_ref(),
        issuer_point,
    )
}

/// Checks that `crl` is signed by the holder of `issuer_point` (same rules as a certificate).
pub fn verify_crl_signature(
    crl: &CertificateRevocationList<'_>,
    issuer_point: &[u8],
) -> Result<(), String> {
    verify_signed(
        crl.as_raw(),
        crl.tbs_cert_list.as_ref(),
        &crl.tbs_cert_list.signature,
        crl.signature_value.data.as_ref(),
        issuer_point,
    )
}

fn verify_signed(
    der: &[u8],
    tbs: &[u8],
    inner_alg: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    issuer_point: &[u8],
) -> Result<(), String> {
    if !is_ecdsa_sha384(inner_alg)
        || !is_exact_envelope(der, tbs, &ECDSA_WITH_SHA384_ALG_ID, signature)
    {
        return Err("not signed with ecdsa-with-SHA384 in a well-formed envelope".into());
    }
    count_verification();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, issuer_point)
        .verify(tbs, signature)
        .map_err(|_| "the signature does not verify under the issuer's key".into())
}

/// Checks what RFC 5280 §4.2 and AWS §3.2.3.2–3 ask of a certificate in `role`: version 3;
/// no extension twice, none unparseable, no critical one we do not process; a CA has a
/// critical basicConstraints with cA and a keyUsage with keyCertSign; the leaf is not a CA
/// (no cA, no pathLenConstraint) and has a keyUsage with digitalSignature.
pub fn check_profile(cert: &X509Certificate<'_>, role: Role) -> Result<Profile, String> {
    if cert.version() != X509Version::V3 {
        return Err("not an X.509 version 3 certificate".into());
    }
    let mut seen = Vec::new();
    for ext in cert.extensions() {
        if seen.contains(&&ext.oid) {
            return Err(format!("extension {} appears twice", ext.oid));
        }
        seen.push(&ext.oid);
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(format!("extension {} does not parse: {error}", ext.oid));
        }
        let processed =
            ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS || ext.oid == OID_X509_EXT_KEY_USAGE;
        if ext.critical && !processed {
            return Err(format!("unknown critical extension {}", ext.oid));
        }
    }
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("basicConstraints: {e}"))?;
    let ku = cert
        .key_usage()
        .map_err(|e| format!("keyUsage: {e}"))?
        .map(|k| *k.value);
    match role {
        Role::Ca => {
            let bc = bc.ok_or("a CA without basicConstraints")?;
            if !bc.critical || !bc.value.ca {
                return Err("a CA whose basicConstraints is not critical with cA set".into());
            }
            if !ku.is_some_and(|k| k.key_cert_sign()) {
                return Err("a CA whose keyUsage lacks keyCertSign".into());
            }
            Ok(Profile {
                path_len: bc.value.path_len_constraint,
            })
        }
        Role::Leaf => {
            if let Some(bc) = bc {
                if bc.value.ca || bc.value.path_len_constraint.is_some() {
                    return Err("the signing certificate is a CA".into());
                }
            }
            if !ku.is_some_and(|k| k.digital_signature()) {
                return Err("the signing certificate's keyUsage lacks digitalSignature".into());
            }
            if ku.is_some_and(|k| k.key_cert_sign() || k.crl_sign()) {
                return Err("the signing certificate may sign certificates or CRLs".into());
            }
            Ok(Profile { path_len: None })
        }
    }
}

/// A certificate's validity as Unix seconds, both ends inclusive.
pub fn validity(cert: &X509Certificate<'_>) -> (UnixTime, UnixTime) {
    let v = cert.validity();
    (
        UnixTime(v.not_before.timestamp()),
        UnixTime(v.not_after.timestamp()),
    )
}
