//! PURE. The X.509 pieces DCAP needs: PEM chains, ECDSA P-256 signatures (ring),
//! certificate and CRL signature checks. No I/O, no clock.
//!
//! Intel's DCAP PKI is all ECDSA P-256 with SHA-256, so that is the only algorithm
//! accepted here; anything else is an error rather than a fallback.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// A PKI problem: unparseable, wrong algorithm, or a bad signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    /// PEM or DER that does not parse.
    #[error("{what} does not parse: {detail}")]
    Malformed {
        /// What was parsed.
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// A key or signature algorithm other than ECDSA P-256 / SHA-256.
    #[error("{0} does not use ECDSA P-256 with SHA-256")]
    Algorithm(&'static str),
    /// The signature does not verify under the issuer's key.
    #[error("{0} signature does not verify")]
    BadSignature(&'static str),
}

/// Decodes every `CERTIFICATE` block of a PEM text into DER.
pub fn pem_chain(pem: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| PkiError::Malformed {
            what,
            detail: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            return Err(PkiError::Malformed {
                what,
                detail: format!("unexpected PEM block `{}`", block.label),
            });
        }
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err(PkiError::Malformed {
            what,
            detail: "no certificate in PEM text".into(),
        });
    }
    Ok(out)
}

/// Parses a DER certificate, refusing trailing bytes.
pub fn parse_cert<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok((rest, cert)) if rest.is_empty() => Ok(cert),
        Ok(_) => Err(PkiError::Malformed {
            what,
            detail: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(PkiError::Malformed {
            what,
            detail: e.to_string(),
        }),
    }
}

/// Parses a DER CRL, refusing trailing bytes.
pub fn parse_crl<'a>(
    der: &'a [u8],
    what: &'static str,
) -> Result<CertificateRevocationList<'a>, PkiError> {
    match CertificateRevocationList::from_der(der) {
        Ok((rest, crl)) if rest.is_empty() => Ok(crl),
        Ok(_) => Err(PkiError::Malformed {
            what,
            detail: "trailing bytes after the CRL".into(),
        }),
        Err(e) => Err(PkiError::Malformed {
            what,
            detail: e.to_string(),
        }),
    }
}

/// The uncompressed SEC1 point of a P-256 public key.
pub fn p256_point<'a>(
    spki: &'a SubjectPublicKeyInfo<'a>,
    what: &'static str,
) -> Result<&'a [u8], PkiError> {
    let alg = &spki.algorithm;
    let curve_ok = alg
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == OID_EC_P256);
    if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || !curve_ok {
        return Err(PkiError::Algorithm(what));
    }
    Ok(spki.subject_public_key.data.as_ref())
}

/// Checks a DER ECDSA-with-SHA256 signature over `signed` with a P-256 point.
pub fn verify_der_signature(
    issuer_point: &[u8],
    algorithm: &AlgorithmIdentifier<'_>,
    signed: &[u8],
    signature: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    if algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(PkiError::Algorithm(what));
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_point)
        .verify(signed, signature)
        .map_err(|_| PkiError::BadSignature(what))
}

/// Checks a raw `r‖s` ECDSA P-256/SHA-256 signature (quotes and Intel's signed JSON).
pub fn verify_raw_signature(point: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed, signature)
        .is_ok()
}

/// Checks that `cert` is signed by the holder of `issuer_point`.
pub fn verify_cert_signature(
    cert: &X509Certificate<'_>,
    issuer_point: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    // The outer and inner algorithm identifiers must agree (RFC 5280 4.1.1.2).
    if cert.signature_algorithm.algorithm != cert.tbs_certificate.signature.algorithm {
        return Err(PkiError::Algorithm(what));
    }
    verify_der_signature(
        issuer_point,
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
        what,
    )
}

/// Checks that `crl` is signed by the holder of `issuer_point`.
pub fn verify_crl_signature(
    crl: &CertificateRevocationList<'_>,
    issuer_point: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    if crl.signature_algorithm.algorithm != crl.tbs_cert_list.signature.algorithm {
        return Err(PkiError::Algorithm(what));
    }
    verify_der_signature(
        issuer_point,
        &crl.signature_algorithm,
        crl.tbs_cert_list.as_ref(),
        crl.signature_value.data.as_ref(),
        what,
    )
}

/// The subject common name, or "" if absent.
pub fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A certificate's validity as Unix seconds, both ends inclusive.
pub fn validity(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}
