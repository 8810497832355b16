//! PURE. The quote's PCK certificate chain: verified up to the pinned root and covered by the
//! snapshot's PCK CRL ([`verify_pck_chain`], whose proof value `dcap::known` remembers), checked
//! for signatures only before any collateral is fetched ([`pck_platform_under`]), or only read
//! to choose collateral ([`pck_fmspc`], [`pck_platform`]); and the PCK key's signature over
//! the QE report ([`verify_qe_report_signature`], whose proof `dcap::known` remembers too).

use super::quote::limits::PCK_CHAIN_LEN;
use super::quote::pck_extension::{self, PckTcb};
use super::quote::Quote;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::pki;
use crate::dcap::root::{check_root_copy, verify_under_root, VerifiedCa};
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;

/// What a snapshot verified that a quote's PCK chain is judged under: the root, the root
/// CRL's serials, the PCK CA that issued the PCK CRL, and that CRL's issuer and serials.
pub(crate) struct PckTrust<'a> {
    pub(crate) anchor: &'a TrustAnchor,
    pub(crate) root_crl_revoked: &'a [Vec<u8>],
    pub(crate) pck_ca: &'a VerifiedCa,
    pub(crate) pck_crl_issuer: &'a [u8],
    pub(crate) pck_crl_revoked: &'a [Vec<u8>],
}

/// The PCK leaf's key and TCB, once its chain verified under one snapshot (root, CRLs):
/// constructed only by [`verify_pck_chain`]; `dcap::known` remembers it by the chain's bytes.
/// Its validity windows depend on the time and are checked at every use, by [`Self::at`].
#[derive(Clone, Debug)]
pub(crate) struct VerifiedPck {
    point: Vec<u8>,
    tcb: PckTcb,
    /// The PCK CA's then the leaf's validity, checked at every use (they depend on the time).
    validity: [(&'static str, (i64, i64)); 2],
}

impl VerifiedPck {
    /// The leaf's key and TCB if the PCK CA and the leaf are valid at `now` (in the order of
    /// the chain check): the only way to read them.
    pub(crate) fn at(&self, now: UnixTime) -> Result<(&[u8], &PckTcb), VerifyError> {
        for &(what, window) in &self.validity {
            check_window(window, now, what)?;
        }
        Ok((&self.point, &self.tcb))
    }
}

/// E: the quote's PCK chain [leaf, CA, root] up to the pinned root, fresh, not revoked,
/// and covered by the collateral's PCK CRL.
pub(crate) fn verify_pck_chain(
    quote: &Quote<'_>,
    c: &PckTrust<'_>,
    now: UnixTime,
) -> Result<VerifiedPck, VerifyError> {
    let what = "PCK certificate chain";
    let [leaf_der, ca_der, root_der] = chain_ders(quote, what)?;
    check_root_copy(&root_der, c.anchor, what)?;
    let leaf =
        pki::parse_cert(&leaf_der, "PCK certificate").map_err(|e| VerifyError::chain(what, e))?;
    let ca =
        pki::parse_cert(&ca_der, "PCK CA certificate").map_err(|e| VerifyError::chain(what, e))?;
    let validity = [
        ("PCK CA certificate", pki::validity(&ca)),
        ("PCK certificate", pki::validity(&leaf)),
    ];
    for (what, window) in validity {
        check_window(window, now, what)?;
    }

    // The CA is normally the very certificate the collateral's CRL chain verified.
    let ca_point = if ca_der == c.pck_ca.der {
        c.pck_ca.point.clone()
    } else {
        verify_under_root(&ca, c.anchor, c.root_crl_revoked, what)?.point
    };

    if !pki::common_name(&leaf).contains("PCK Certificate") {
        return Err(VerifyError::Chain {
            what,
            detail: format!("leaf `{}` is not a PCK certificate", leaf.subject()),
        });
    }
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Err(VerifyError::Chain {
            what,
            detail: format!(
                "leaf issued by `{}`, chain CA is `{}`",
                leaf.issuer(),
                ca.subject()
            ),
        });
    }
    pki::verify_cert_signature(&leaf, &ca_point, "PCK certificate")
        .map_err(|e| VerifyError::chain(what, e))?;

    // A Platform-CA CRL says nothing about a Processor-CA certificate: same issuer name
    // and same key, or the revocation status is unknown.
    if leaf.issuer().as_raw() != c.pck_crl_issuer || ca_point != c.pck_ca.point {
        return Err(VerifyError::Chain {
            what: "PCK CRL",
            detail: format!(
                "revocation status unknown: the PCK CRL is issued by a different CA than the PCK certificate (`{}`)",
                leaf.issuer()
            ),
        });
    }
    if c.pck_crl_revoked
        .iter()
        .any(|s| s.as_slice() == leaf.raw_serial())
    {
        return Err(VerifyError::Revoked {
            what: "PCK certificate",
            serial: leaf.raw_serial_as_string(),
        });
    }

    let point = pki::p256_point(leaf.public_key(), "PCK certificate key")
        .map_err(|e| VerifyError::chain(what, e))?
        .to_vec();
    let tcb = pck_extension::parse(&leaf).map_err(|detail| VerifyError::Chain {
        what: "PCK certificate SGX extension",
        detail,
    })?;
    Ok(VerifiedPck {
        point,
        tcb,
        validity,
    })
}

/// Proof that a QE report's signature verified under a PCK key: constructed only by
/// [`verify_qe_report_signature`]; `dcap::known` remembers it by the bytes it covered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignedQeReport(());

/// What a QE report signature's verification depended on, byte for byte: the report, its
/// signature and the PCK key.
pub(crate) fn qe_report_key(quote: &Quote<'_>, pck_point: &[u8]) -> Vec<u8> {
    [
        quote.qe.report.raw.as_slice(),
        quote.qe.report_signature,
        pck_point,
    ]
    .concat()
}

/// F: the PCK key signed the QE report.
pub(crate) fn verify_qe_report_signature(
    quote: &Quote<'_>,
    pck_point: &[u8],
) -> Result<SignedQeReport, VerifyError> {
    if pki::verify_raw_signature(pck_point, quote.qe.report.raw, quote.qe.report_signature) {
        Ok(SignedQeReport(()))
    } else {
        Err(VerifyError::Signature("QE report"))
    }
}

/// The FMSPC and PCK CA name of a quote whose PCK chain verifies up to `anchor` (signatures
/// only: no CRL, no validity window). Decides whether a quote may make anyone fetch
/// collateral: a forged chain must not send the proxy to Intel for made-up platforms.
pub fn pck_platform_under(
    quote: &Quote<'_>,
    anchor: &TrustAnchor,
) -> Result<(Fmspc, String), VerifyError> {
    let what = "PCK certificate chain";
    let [leaf_der, ca_der, root_der] = chain_ders(quote, what)?;
    check_root_copy(&root_der, anchor, what)?;
    let leaf =
        pki::parse_cert(&leaf_der, "PCK certificate").map_err(|e| VerifyError::chain(what, e))?;
    let ca =
        pki::parse_cert(&ca_der, "PCK CA certificate").map_err(|e| VerifyError::chain(what, e))?;
    let ca_point = verify_under_root(&ca, anchor, &[], what)?.point;
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Err(VerifyError::Chain {
            what,
            detail: "the PCK certificate is not issued by the chain's CA".into(),
        });
    }
    pki::verify_cert_signature(&leaf, &ca_point, "PCK certificate")
        .map_err(|e| VerifyError::chain(what, e))?;
    let tcb = pck_extension::parse(&leaf).map_err(|detail| VerifyError::Chain {
        what: "PCK certificate SGX extension",
        detail,
    })?;
    Ok((tcb.fmspc, pki::common_name(&ca)))
}

/// The DER of the quote's PCK chain: exactly leaf, PCK CA and root.
fn chain_ders(
    quote: &Quote<'_>,
    what: &'static str,
) -> Result<[Vec<u8>; PCK_CHAIN_LEN], VerifyError> {
    let ders =
        pki::pem_chain(quote.qe.pck_chain_pem, what).map_err(|e| VerifyError::chain(what, e))?;
    <[Vec<u8>; PCK_CHAIN_LEN]>::try_from(ders).map_err(|v| VerifyError::Chain {
        what,
        detail: format!("{} certificates, expected leaf, PCK CA and root", v.len()),
    })
}

fn check_window(
    (from, until): (i64, i64),
    now: UnixTime,
    what: &'static str,
) -> Result<(), VerifyError> {
    if now.0 < from || now.0 > until {
        return Err(VerifyError::Chain {
            what,
            detail: format!(
                "valid {} .. {}, not at {now}",
                UnixTime(from),
                UnixTime(until)
            ),
        });
    }
    Ok(())
}

/// The FMSPC in the quote's PCK certificate (to choose collateral), if it parses.
/// Nothing is verified here; verification checks the same certificate fully.
pub fn pck_fmspc(quote: &Quote<'_>) -> Option<Fmspc> {
    let ders = pki::pem_chain(quote.qe.pck_chain_pem, "PCK certificate chain").ok()?;
    let leaf = pki::parse_cert(ders.first()?, "PCK certificate").ok()?;
    pck_extension::parse(&leaf).ok().map(|t| t.fmspc)
}

/// The quote's platform: FMSPC and the issuer CN of its PCK certificate, if they parse.
/// Nothing is verified here; it only chooses which collateral to use.
pub fn pck_platform(quote: &Quote<'_>) -> Option<(Fmspc, String)> {
    let ders = pki::pem_chain(quote.qe.pck_chain_pem, "PCK certificate chain").ok()?;
    let leaf = pki::parse_cert(ders.first()?, "PCK certificate").ok()?;
    let issuer = leaf
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    pck_extension::parse(&leaf).ok().map(|t| (t.fmspc, issuer))
}
