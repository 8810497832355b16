//! The X.509 pieces AMD's SEV-SNP PKI needs, with ring as the only signature provider:
//! every certificate and the CRL are signed RSASSA-PSS with SHA-384 (MGF1 SHA-384, salt 48),
//! issuer keys are RSA (ARK, ASK, ASVK), the VCEK/VLEK key is ECDSA P-384.
//!
//! The unsigned envelope must be exactly `SEQUENCE { tbs, alg, BIT STRING { 0, sig } }` with
//! `alg` one of AMD's two byte-exact PSS encodings and equal to the signed one inside `tbs`:
//! a lenient parser must not decide what is trusted (see `dcap::pki` for the same rule).

use ring::signature::{UnparsedPublicKey, RSA_PSS_2048_8192_SHA384};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::error::{CertRole, SnpError};
use crate::dcap::pki::{exact_tlv, tlv};
use crate::dcap::time::UnixTime;

/// `AlgorithmIdentifier { id-RSASSA-PSS, { sha384, mgf1(sha384), saltLength 48, trailerField 1 } }`
/// as the ARK, ASK and ASVK are signed.
const PSS_SHA384_WITH_TRAILER: [u8; 72] = [
    0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

/// The same without the (default) trailer field, as KDS signs VCEKs and VLEKs.
const PSS_SHA384: [u8; 67] = [
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30,
];

/// The two encodings of RSASSA-PSS/SHA-384 AMD uses, for the sim to sign with.
pub const PSS_SHA384_ALGORITHMS: [&[u8]; 2] = [&PSS_SHA384_WITH_TRAILER, &PSS_SHA384];

/// The largest certificate or CRL accepted (AMD's are under 2 KiB; a CRL with many
/// entries stays well under this).
pub const MAX_DER_LEN: usize = 64 * 1024;

/// Parses a DER certificate, refusing trailing bytes and oversized input.
pub(crate) fn parse_cert(der: &[u8], role: CertRole) -> Result<X509Certificate<'_>, SnpError> {
    if der.len() > MAX_DER_LEN {
        return Err(SnpError::cert(
            role,
            format!("{} bytes, above the {MAX_DER_LEN}-byte limit", der.len()),
        ));
    }
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SnpError::cert(role, "trailing bytes after the certificate")),
        Err(e) => Err(SnpError::cert(role, e.to_string())),
    }
}

/// Parses a DER CRL, refusing trailing bytes and oversized input.
pub(crate) fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, SnpError> {
    if der.len() > MAX_DER_LEN {
        return Err(SnpError::cert(
            CertRole::Crl,
            format!("{} bytes, above the {MAX_DER_LEN}-byte limit", der.len()),
        ));
    }
    match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => Ok(crl),
        Ok(_) => Err(SnpError::cert(
            CertRole::Crl,
            "trailing bytes after the CRL",
        )),
        Err(e) => Err(SnpError::cert(CertRole::Crl, e.to_string())),
    }
}

/// The PKCS#1 `RSAPublicKey` of an RSA subject key (ARK, ASK, ASVK).
pub(crate) fn rsa_key<'a>(
    cert: &'a X509Certificate<'a>,
    role: CertRole,
) -> Result<&'a [u8], SnpError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(SnpError::cert(role, "the key is not an RSA key"));
    }
    Ok(spki.subject_public_key.data.as_ref())
}

/// The uncompressed SEC1 point of a P-384 subject key (VCEK, VLEK).
pub(crate) fn p384_point<'a>(
    cert: &'a X509Certificate<'a>,
    role: CertRole,
) -> Result<&'a [u8], SnpError> {
    let spki = cert.public_key();
    let curve_ok = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == OID_NIST_EC_P384);
    let point = spki.subject_public_key.data.as_ref();
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || !curve_ok {
        return Err(SnpError::cert(role, "the key is not an ECDSA P-384 key"));
    }
    if point.len() != 97 || point.first() != Some(&0x04) {
        return Err(SnpError::cert(
            role,
            "the P-384 key is not an uncompressed point",
        ));
    }
    Ok(point)
}

/// Checks that `cert` is signed by the holder of the RSA key `issuer_key` (RSA-PSS SHA-384).
pub(crate) fn verify_cert_signature(
    cert: &X509Certificate<'_>,
    issuer_key: &[u8],
    role: CertRole,
) -> Result<(), SnpError> {
    let signature = cert.signature_value.data.as_ref();
    let tbs = cert.tbs_certificate.as_ref();
    check_envelope(cert.as_raw(), tbs, signed_algorithm(tbs), signature, role)?;
    verify_pss(issuer_key, tbs, signature, role)
}

/// Checks that `crl` is signed by the holder of the RSA key `issuer_key` (RSA-PSS SHA-384).
pub(crate) fn verify_crl_signature(
    crl: &CertificateRevocationList<'_>,
    issuer_key: &[u8],
) -> Result<(), SnpError> {
    let signature = crl.signature_value.data.as_ref();
    let tbs = crl.tbs_cert_list.as_ref();
    check_envelope(
        crl.as_raw(),
        tbs,
        signed_algorithm_crl(tbs),
        signature,
        CertRole::Crl,
    )?;
    verify_pss(issuer_key, tbs, signature, CertRole::Crl)
}

fn verify_pss(key: &[u8], signed: &[u8], signature: &[u8], role: CertRole) -> Result<(), SnpError> {
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(signed, signature)
        .map_err(|_| SnpError::CertificateSignature(role))
}

/// A certificate's validity as Unix seconds, both ends inclusive.
pub(crate) fn validity(cert: &X509Certificate<'_>) -> (UnixTime, UnixTime) {
    let v = cert.validity();
    (
        UnixTime(v.not_before.timestamp()),
        UnixTime(v.not_after.timestamp()),
    )
}

/// Fails unless `now` is within `[from, until]`.
pub(crate) fn check_window(
    role: CertRole,
    (from, until): (UnixTime, UnixTime),
    now: UnixTime,
) -> Result<(), SnpError> {
    if now < from || now > until {
        return Err(SnpError::Expired {
            role,
            from,
            until,
            now,
        });
    }
    Ok(())
}

/// The whole TLV (header and content) at the start of `bytes`, and what follows.
fn whole_tlv(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    tlv(bytes).map(|t| (t.whole, t.after))
}

/// The `signature` AlgorithmIdentifier inside a TBSCertificate:
/// `SEQUENCE { [0] version, serial, signature, ... }`.
fn signed_algorithm(tbs: &[u8]) -> Option<&[u8]> {
    let body = exact_tlv(tbs, 0x30)?;
    let (_, rest) = whole_tlv(body)?; // [0] version
    let (_, rest) = whole_tlv(rest)?; // serialNumber
    whole_tlv(rest).map(|(alg, _)| alg)
}

/// The `signature` AlgorithmIdentifier inside a TBSCertList:
/// `SEQUENCE { version (INTEGER, optional), signature, ... }`.
fn signed_algorithm_crl(tbs: &[u8]) -> Option<&[u8]> {
    let body = exact_tlv(tbs, 0x30)?;
    let rest = match body.first() {
        Some(0x02) => whole_tlv(body)?.1,
        _ => body,
    };
    whole_tlv(rest).map(|(alg, _)| alg)
}

/// The envelope around `tbs` must be exactly `SEQUENCE { tbs, alg, BIT STRING { 0, sig } }`
/// with `alg` one of AMD's PSS/SHA-384 encodings and byte-equal to the one signed in `tbs`.
fn check_envelope(
    der: &[u8],
    tbs: &[u8],
    signed_alg: Option<&[u8]>,
    signature: &[u8],
    role: CertRole,
) -> Result<(), SnpError> {
    let Some(outer) = exact_tlv(der, 0x30).and_then(|body| body.strip_prefix(tbs)) else {
        return Err(SnpError::Algorithm {
            role,
            detail: "the outer SEQUENCE is not minimal DER around the signed part",
        });
    };
    let alg = PSS_SHA384_ALGORITHMS
        .into_iter()
        .find(|alg| outer.starts_with(alg));
    let Some(alg) = alg else {
        return Err(SnpError::Algorithm {
            role,
            detail: "not RSASSA-PSS with SHA-384, MGF1 SHA-384, salt 48",
        });
    };
    if signed_alg != Some(alg) {
        return Err(SnpError::Algorithm {
            role,
            detail: "the signed algorithm differs from the outer one",
        });
    }
    let sig_ok = outer
        .strip_prefix(alg)
        .and_then(|rest| exact_tlv(rest, 0x03))
        .and_then(|bits| bits.strip_prefix(&[0u8]))
        .is_some_and(|sig| sig == signature);
    if sig_ok {
        Ok(())
    } else {
        Err(SnpError::Algorithm {
            role,
            detail: "the signature BIT STRING is not minimal DER",
        })
    }
}

/// The subject common name, or "" if absent.
pub(crate) fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_refuses_non_minimal_lengths() {
        assert_eq!(exact_tlv(&[0x30, 0x01, 0xaa], 0x30), Some(&[0xaa][..]));
        assert_eq!(exact_tlv(&[0x30, 0x81, 0x01, 0xaa], 0x30), None);
        assert_eq!(exact_tlv(&[0x30, 0x02, 0xaa], 0x30), None);
        assert_eq!(exact_tlv(&[0x31, 0x01, 0xaa], 0x30), None);
        assert_eq!(exact_tlv(&[0x30, 0x01, 0xaa, 0xbb], 0x30), None);
    }
}
