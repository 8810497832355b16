//! PURE. Certificates directly under the pinned root: the chain's copy of the root is
//! compared by bytes (its self-signature proves nothing beyond the pin), a CA is checked for
//! the root's name, signature and CRL (the signature remembered by the anchor, the name and
//! the CRL checked at every use).

use x509_parser::certificate::X509Certificate;

use crate::dcap::error::VerifyError;
use crate::dcap::pki;
use crate::dcap::trust::TrustAnchor;

/// A CA certificate verified directly under the root: its DER and key.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedCa {
    pub(crate) der: Vec<u8>,
    pub(crate) point: Vec<u8>,
}

/// The chain's copy of the root must be byte-identical to the pinned root.
pub(crate) fn check_root_copy(
    root_der: &[u8],
    anchor: &TrustAnchor,
    what: &'static str,
) -> Result<(), VerifyError> {
    if root_der == anchor.der() {
        Ok(())
    } else {
        Err(VerifyError::Chain {
            what,
            detail: "the chain ends in a root other than the pinned trust root".into(),
        })
    }
}

/// Checks that `cert` is issued and signed by the root and not revoked by it.
pub(crate) fn verify_under_root(
    cert: &X509Certificate<'_>,
    anchor: &TrustAnchor,
    root_crl_revoked: &[Vec<u8>],
    what: &'static str,
) -> Result<VerifiedCa, VerifyError> {
    if cert.issuer().as_raw() != anchor.subject() {
        return Err(VerifyError::Chain {
            what,
            detail: format!(
                "`{}` is issued by `{}`, not by the pinned root",
                cert.subject(),
                cert.issuer()
            ),
        });
    }
    pki::cert_parts(cert, what)
        .and_then(|parts| anchor.verify_root_signature(&parts, what))
        .map_err(|e| VerifyError::chain(what, e))?;
    if root_crl_revoked
        .iter()
        .any(|s| s.as_slice() == cert.raw_serial())
    {
        return Err(VerifyError::Revoked {
            what,
            serial: cert.raw_serial_as_string(),
        });
    }
    let point =
        pki::p256_point(cert.public_key(), what).map_err(|e| VerifyError::chain(what, e))?;
    Ok(VerifiedCa {
        der: cert.as_raw().to_vec(),
        point: point.to_vec(),
    })
}
