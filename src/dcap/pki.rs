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

/// Decodes every `CERTIFICATE` block of a PEM text into DER, strictly: exact BEGIN and
/// END lines, canonical base64, and nothing but whitespace between blocks. (x509-parser's
/// reader ignores the END label; a lenient decoder would accept text the references refuse.)
pub fn pem_chain(pem: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, PkiError> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let malformed = |detail: &str| PkiError::Malformed {
        what,
        detail: detail.to_owned(),
    };
    let text = std::str::from_utf8(pem).map_err(|_| malformed("PEM text is not UTF-8"))?;
    let mut out = Vec::new();
    // One buffer for every block's base64 (the base64 decoder checks its alphabet and
    // padding: whatever is not canonical base64 is refused there).
    let mut body = Vec::with_capacity(pem.len());
    let mut in_block = false;
    for line in text.lines().map(str::trim) {
        match (in_block, line) {
            (false, "") => {}
            (false, BEGIN) => in_block = true,
            (false, _) => return Err(malformed("text outside a CERTIFICATE block")),
            (true, END) => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(&body)
                    .map_err(|e| malformed(&format!("bad base64: {e}")))?;
                out.push(der);
                body.clear();
                in_block = false;
            }
            (true, "") => return Err(malformed("unexpected line inside a CERTIFICATE block")),
            (true, l) => body.extend_from_slice(l.as_bytes()),
        }
    }
    if in_block {
        return Err(malformed("CERTIFICATE block without END line"));
    }
    if out.is_empty() {
        return Err(malformed("no certificate in PEM text"));
    }
    Ok(out)
}

/// Parses a DER certificate, refusing trailing bytes.
pub fn parse_cert<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
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
        Ok(([], crl)) => Ok(crl),
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

thread_local! {
    /// ECDSA verifications run on this thread (a const-initialised cell: no cost to speak
    /// of beside a verification).
    static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one ECDSA verification on this thread (DCAP's P-256 here, Nitro's P-384 too).
pub(crate) fn count_verification() {
    VERIFICATIONS.with(|c| c.set(c.get().wrapping_add(1)));
}

/// How many ECDSA verifications this thread has run (tests and benches count the work a
/// verification does with it).
pub fn ecdsa_verifications_on_this_thread() -> u64 {
    VERIFICATIONS.with(std::cell::Cell::get)
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
    count_verification();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_point)
        .verify(signed, signature)
        .map_err(|_| PkiError::BadSignature(what))
}

/// Checks a raw `r‖s` ECDSA P-256/SHA-256 signature (quotes and Intel's signed JSON).
pub fn verify_raw_signature(point: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    count_verification();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed, signature)
        .is_ok()
}

/// What an issuer's signature covers in a certificate or CRL whose envelope is exact: the
/// signed bytes, the signature and its algorithm (made only by [`cert_parts`], [`crl_parts`]).
pub(crate) struct SignedParts<'a> {
    whole: &'a [u8],
    signed: &'a [u8],
    signature: &'a [u8],
    algorithm: &'a AlgorithmIdentifier<'a>,
}

impl SignedParts<'_> {
    /// The algorithm's OID (DER content), the signed bytes and the signature: everything
    /// the verification depends on besides the key.
    pub(crate) fn bytes(&self) -> [&[u8]; 3] {
        [
            self.algorithm.algorithm.as_bytes(),
            self.signed,
            self.signature,
        ]
    }

    /// The whole certificate or CRL, DER: exactly the envelope of the three parts above.
    pub(crate) fn whole(&self) -> &[u8] {
        self.whole
    }

    /// Checks the signature under `issuer_point`.
    pub(crate) fn verify(&self, issuer_point: &[u8], what: &'static str) -> Result<(), PkiError> {
        verify_der_signature(
            issuer_point,
            self.algorithm,
            self.signed,
            self.signature,
            what,
        )
    }
}

/// The signed parts of `cert`, once its envelope is exact.
pub(crate) fn cert_parts<'a>(
    cert: &'a X509Certificate<'a>,
    what: &'static str,
) -> Result<SignedParts<'a>, PkiError> {
    let parts = SignedParts {
        whole: cert.as_raw(),
        signed: cert.tbs_certificate.as_ref(),
        signature: cert.signature_value.data.as_ref(),
        algorithm: &cert.signature_algorithm,
    };
    check_envelope(parts.whole, parts.signed, parts.signature, what)?;
    check_signed_algorithm(&cert.tbs_certificate.signature, what)?;
    Ok(parts)
}

/// The signed parts of `crl`, once its envelope is exact.
pub(crate) fn crl_parts<'a>(
    crl: &'a CertificateRevocationList<'a>,
    what: &'static str,
) -> Result<SignedParts<'a>, PkiError> {
    let parts = SignedParts {
        whole: crl.as_raw(),
        signed: crl.tbs_cert_list.as_ref(),
        signature: crl.signature_value.data.as_ref(),
        algorithm: &crl.signature_algorithm,
    };
    check_envelope(parts.whole, parts.signed, parts.signature, what)?;
    check_signed_algorithm(&crl.tbs_cert_list.signature, what)?;
    Ok(parts)
}

/// Checks that `cert` is signed by the holder of `issuer_point`.
pub fn verify_cert_signature(
    cert: &X509Certificate<'_>,
    issuer_point: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    cert_parts(cert, what)?.verify(issuer_point, what)
}

/// Checks that `crl` is signed by the holder of `issuer_point`.
pub fn verify_crl_signature(
    crl: &CertificateRevocationList<'_>,
    issuer_point: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    crl_parts(crl, what)?.verify(issuer_point, what)
}

/// DER of `AlgorithmIdentifier { ecdsa-with-SHA256 }` (no parameters, RFC 5758).
const ECDSA_WITH_SHA256_ALG_ID: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// One DER TLV at the start of some bytes (also read by `snp::cert`).
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    /// Header and content.
    pub(crate) whole: &'a [u8],
    pub(crate) content: &'a [u8],
    /// What follows it.
    pub(crate) after: &'a [u8],
}

/// The DER TLV at the start of `bytes`, with a minimal length encoding (up to 3 length bytes).
pub(crate) fn tlv(bytes: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = match len0 {
        0..=0x7f => (usize::from(len0), rest),
        0x81..=0x83 => {
            let (len_bytes, rest) = rest.split_at_checked(usize::from(len0 & 0x7f))?;
            if len_bytes.first() == Some(&0) {
                return None;
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return None;
            }
            (len, rest)
        }
        _ => return None,
    };
    let (content, after) = rest.split_at_checked(len)?;
    let whole_len = bytes.len().checked_sub(after.len())?;
    let (whole, _) = bytes.split_at_checked(whole_len)?;
    Some(Tlv {
        tag,
        whole,
        content,
        after,
    })
}

/// The content of a DER TLV with `tag` that spans `bytes` exactly, with a minimal length.
pub(crate) fn exact_tlv(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    tlv(bytes)
        .filter(|t| t.tag == tag && t.after.is_empty())
        .map(|t| t.content)
}

/// The unsigned envelope of a certificate or CRL must be exactly
/// `SEQUENCE { tbs, ecdsa-with-SHA256, BIT STRING { 0 unused bits, signature } }`:
/// a lenient parser (x509-parser accepts wrong outer tags) must not decide what we trust.
fn check_envelope(
    der: &[u8],
    tbs: &[u8],
    signature: &[u8],
    what: &'static str,
) -> Result<(), PkiError> {
    if is_exact_envelope(der, tbs, &ECDSA_WITH_SHA256_ALG_ID, signature) {
        Ok(())
    } else {
        Err(PkiError::Algorithm(what))
    }
}

/// The algorithm named inside the signed bytes must be the outer one (RFC 5280 4.1.1.2,
/// 5.1.1.2): ecdsa-with-SHA256 without parameters, as [`check_envelope`] required outside.
fn check_signed_algorithm(
    inner: &AlgorithmIdentifier<'_>,
    what: &'static str,
) -> Result<(), PkiError> {
    if inner.algorithm == OID_SIG_ECDSA_WITH_SHA256 && inner.parameters.is_none() {
        Ok(())
    } else {
        Err(PkiError::Algorithm(what))
    }
}

/// True when `der` is exactly `SEQUENCE { tbs, alg_id, BIT STRING { 0x00, signature } }` in
/// minimal DER, `alg_id` being the full AlgorithmIdentifier encoding (shared with `nitro`).
pub(crate) fn is_exact_envelope(der: &[u8], tbs: &[u8], alg_id: &[u8], signature: &[u8]) -> bool {
    exact_tlv(der, 0x30)
        .and_then(|body| body.strip_prefix(tbs))
        .and_then(|rest| rest.strip_prefix(alg_id))
        .and_then(|rest| exact_tlv(rest, 0x03))
        .and_then(|bits| bits.strip_prefix(&[0u8]))
        .is_some_and(|sig| sig == signature)
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

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn strict_pem_accepts_canonical_blocks() {
        assert_eq!(pem_chain(BLOCK.as_bytes(), "t"), Ok(vec![vec![0, 1, 2]]));
        let two = format!("{BLOCK}\r\n{BLOCK}");
        assert_eq!(pem_chain(two.as_bytes(), "t").map(|v| v.len()), Ok(2));
    }

    #[test]
    fn strict_pem_refuses_mangled_labels_stray_text_and_bad_base64() {
        for bad in [
            BLOCK.replace("END CERT", "END BERT"),
            BLOCK.replace("END CERT", "END  ERT"),
            format!("junk\n{BLOCK}"),
            BLOCK.replace("AAEC", "AAE D"),
            BLOCK.replace("AAEC", "AA\n\nEC"),
            BLOCK.replace("AAEC", "AA\n-----BEGIN CERTIFICATE-----\nEC"),
            BLOCK.replace("AAEC", "AA==\nAAEC"),
            BLOCK.replace("AAEC", "AAF="), // non-canonical trailing bits
            BLOCK.replace("-----END CERTIFICATE-----\n", ""),
            String::new(),
        ] {
            assert!(pem_chain(bad.as_bytes(), "t").is_err(), "{bad:?}");
        }
    }
}
