//! A small X.509 writer for the simulated SEV-SNP PKI: AMD signs with RSASSA-PSS SHA-384,
//! which rcgen cannot do, so the sim builds its certificates and CRLs itself (DER by hand,
//! signed with ring). Test PKI only.

use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA384};
use time::OffsetDateTime;

use super::der::{octets, oid, seq, tlv, uint};
use super::pki::SimError;
use crate::dcap::time::UnixTime;
use crate::snp::PSS_SHA384_ALGORITHMS;

/// `commonName`, `organizationName`.
const CN: &[u64] = &[2, 5, 4, 3];
const O: &[u64] = &[2, 5, 4, 10];

/// A certificate's subject or issuer: the sim's organisation and a common name.
pub(crate) fn name(cn: &str) -> Vec<u8> {
    let rdn = |arcs: &[u64], text: &str| tlv(0x31, &seq(&[oid(arcs), tlv(0x0c, text.as_bytes())]));
    seq(&[rdn(O, "ratls-proxy simulation (not AMD)"), rdn(CN, cn)])
}

/// UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
fn time(t: UnixTime) -> Vec<u8> {
    let t = OffsetDateTime::from_unix_timestamp(t.0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let body = |year: String| {
        format!(
            "{year}{:02}{:02}{:02}{:02}{:02}Z",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    if (1950..2050).contains(&t.year()) {
        tlv(
            0x17,
            body(format!("{:02}", t.year().rem_euclid(100))).as_bytes(),
        )
    } else {
        tlv(0x18, body(format!("{:04}", t.year())).as_bytes())
    }
}

/// BIT STRING with no unused bits.
fn bits(content: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(content);
    tlv(0x03, &b)
}

/// An RSA SubjectPublicKeyInfo from a PKCS#1 RSAPublicKey.
pub(crate) fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    seq(&[
        seq(&[oid(&[1, 2, 840, 113_549, 1, 1, 1]), tlv(0x05, &[])]),
        bits(rsa_public_key),
    ])
}

/// A P-384 SubjectPublicKeyInfo from an uncompressed point.
pub(crate) fn p384_spki(point: &[u8]) -> Vec<u8> {
    seq(&[
        seq(&[oid(&[1, 2, 840, 10_045, 2, 1]), oid(&[1, 3, 132, 0, 34])]),
        bits(point),
    ])
}

/// One extension: `SEQUENCE { OID, [critical,] OCTET STRING value }`.
pub(crate) fn extension(arcs: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(arcs)];
    if critical {
        parts.push(tlv(0x01, &[0xff]));
    }
    parts.push(octets(value));
    seq(&parts)
}

/// basicConstraints CA:TRUE, critical.
pub(crate) fn ca_extension() -> Vec<u8> {
    extension(&[2, 5, 29, 19], true, &seq(&[tlv(0x01, &[0xff])]))
}

/// What goes into one certificate.
pub(crate) struct CertSpec<'a> {
    pub(crate) serial: u64,
    pub(crate) issuer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
    pub(crate) spki: Vec<u8>,
    pub(crate) extensions: Vec<Vec<u8>>,
    /// Index into [`PSS_SHA384_ALGORITHMS`]: 0 with the trailer field (ARK, ASK), 1 without (VEK).
    pub(crate) algorithm: usize,
}

/// Signs `tbs` with RSA-PSS SHA-384 and wraps it with `alg`.
fn signed(tbs: Vec<u8>, alg: &[u8], key: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PSS_SHA384, &SystemRandom::new(), &tbs, &mut sig)
        .map_err(|e| SimError::Ring(e.to_string()))?;
    Ok(seq(&[tbs, alg.to_vec(), bits(&sig)]))
}

/// A certificate signed by `key`.
pub(crate) fn certificate(spec: &CertSpec<'_>, key: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let alg = PSS_SHA384_ALGORITHMS
        .get(spec.algorithm)
        .copied()
        .unwrap_or_default();
    let tbs = seq(&[
        tlv(0xa0, &uint(2)),
        uint(spec.serial),
        alg.to_vec(),
        name(spec.issuer),
        seq(&[time(spec.not_before), time(spec.not_after)]),
        name(spec.subject),
        spec.spki.clone(),
        tlv(0xa3, &seq(&spec.extensions)),
    ]);
    signed(tbs, alg, key)
}

/// A v2 CRL by `issuer`, signed by `key`, listing `revoked` serials.
pub(crate) fn crl(
    issuer: &str,
    this_update: UnixTime,
    next_update: UnixTime,
    revoked: &[u64],
    key: &RsaKeyPair,
) -> Result<Vec<u8>, SimError> {
    let alg = PSS_SHA384_ALGORITHMS.first().copied().unwrap_or_default();
    let mut parts = vec![
        uint(1),
        alg.to_vec(),
        name(issuer),
        time(this_update),
        time(next_update),
    ];
    if !revoked.is_empty() {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|s| seq(&[uint(*s), time(this_update)]))
            .collect();
        parts.push(seq(&entries));
    }
    signed(seq(&parts), alg, key)
}
