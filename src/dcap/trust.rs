//! The trust anchor: the Intel SGX Root CA compiled in, or an explicitly configured
//! root (the sim's test PKI). Quotes never supply their own root: the copy inside a
//! quote is only compared with this one. An anchor remembers the root's signatures it has
//! verified (`dcap::anchor_memo`), shared by its clones, so re-verified collateral skips them;
//! the Intel root's anchor also knows the CAs it signed that every real chain carries
//! (`dcap::preloaded`), so even its first verification skips their signatures.

use std::fmt;
use std::sync::Arc;

use crate::dcap::anchor_memo::{AnchorMemo, AnchorMemoStats};
use crate::dcap::ids::CertSha256;
use crate::dcap::pinned::PinnedRoot;
use crate::dcap::pki::{self, PkiError};
use crate::dcap::preloaded;
use crate::dcap::time::UnixTime;

/// DER of the Intel SGX Root CA (SHA-256 `44a0196b…74d3`), as published by Intel.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("trust/intel_sgx_root_ca.der");

/// SHA-256 of [`INTEL_SGX_ROOT_CA_DER`], checked by a test.
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/// A pinned root certificate with the parts verification needs, pre-extracted. Its clones
/// share one memo of the root's verified signatures; equality and `Debug` ignore the memo.
#[derive(Clone)]
pub struct TrustAnchor {
    root: PinnedRoot,
    point: Vec<u8>,
    /// Objects this root is known to have signed, compiled in: Intel's CAs for Intel's root
    /// (by its bytes, however the anchor was made), nothing for any other root.
    preloaded: &'static [&'static [u8]],
    memo: Arc<AnchorMemo>,
}

impl PartialEq for TrustAnchor {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.point == other.point
    }
}

impl Eq for TrustAnchor {}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchor")
            .field("root", &self.root)
            .field("point", &self.point)
            .finish_non_exhaustive()
    }
}

impl TrustAnchor {
    /// The Intel SGX Root CA.
    pub fn intel() -> Self {
        // The compiled-in constant is a valid P-256 certificate; `intel_root_parses` proves it.
        // It is trusted for its bytes (pinned by fingerprint): its self-signature would prove
        // nothing more, so it is not verified on every start.
        #[allow(clippy::expect_used)]
        Self::pinned(INTEL_SGX_ROOT_CA_DER.to_vec(), false)
            .expect("the compiled-in Intel root parses")
    }

    /// A root from its DER encoding; it must be a self-signed P-256 certificate (a configured
    /// file that is not one is a mistake worth reporting, though the pin is the bytes).
    pub fn from_der(der: Vec<u8>) -> Result<Self, PkiError> {
        Self::pinned(der, true)
    }

    fn pinned(der: Vec<u8>, check_self_signature: bool) -> Result<Self, PkiError> {
        let (subject, point, not_before, not_after) = {
            let cert = pki::parse_cert(&der, "trust root")?;
            let point = pki::p256_point(cert.public_key(), "trust root key")?;
            if check_self_signature {
                pki::verify_cert_signature(&cert, point, "trust root self-signature")?;
            }
            let (nb, na) = pki::validity(&cert);
            (cert.subject().as_raw().to_vec(), point.to_vec(), nb, na)
        };
        let preloaded: &'static [&'static [u8]] = if der == INTEL_SGX_ROOT_CA_DER {
            &preloaded::SIGNED_BY_INTEL_ROOT
        } else {
            &[]
        };
        Ok(Self {
            root: PinnedRoot::new(der, subject, (UnixTime(not_before), UnixTime(not_after))),
            point,
            preloaded,
            memo: Arc::default(),
        })
    }

    /// A root from a PEM text holding exactly one certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        let mut chain = pki::pem_chain(pem, "trust root PEM")?;
        if chain.len() != 1 {
            return Err(PkiError::Malformed {
                what: "trust root PEM",
                detail: format!("{} certificates, expected exactly one", chain.len()),
            });
        }
        Self::from_der(chain.remove(0))
    }

    /// The root's DER.
    pub fn der(&self) -> &[u8] {
        self.root.der()
    }

    /// The root's subject name, DER-encoded.
    pub fn subject(&self) -> &[u8] {
        self.root.subject()
    }

    /// The root's P-256 public key point.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// The root's validity (inclusive).
    pub fn validity(&self) -> (i64, i64) {
        let (not_before, not_after) = self.root.validity();
        (not_before.0, not_after.0)
    }

    /// SHA-256 of the root's DER.
    pub fn sha256(&self) -> CertSha256 {
        self.root.sha256()
    }

    /// Checks a signature the root made (`parts` of a certificate or CRL it issued): a
    /// preloaded object, or an exact signature this anchor verified before, is not verified
    /// again.
    pub(crate) fn verify_root_signature(
        &self,
        parts: &pki::SignedParts<'_>,
        what: &'static str,
    ) -> Result<(), PkiError> {
        // `parts` come from an exact envelope, so equal whole bytes are the same algorithm,
        // signed bytes and signature as the preloaded object's.
        if preloaded::is_one_of(self.preloaded, parts.whole()) {
            return Ok(());
        }
        self.memo
            .check_or_verify(parts.bytes(), || parts.verify(&self.point, what))
    }

    /// How many of the root's signatures this anchor (and its clones) remember and reused.
    pub fn remembered_signatures(&self) -> AnchorMemoStats {
        self.memo.stats()
    }

    /// True for the compiled-in Intel root.
    pub fn is_intel(&self) -> bool {
        self.root.is(INTEL_SGX_ROOT_CA_DER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_root_parses_and_has_the_published_fingerprint() {
        let root = TrustAnchor::intel();
        assert_eq!(root.sha256().to_string(), INTEL_SGX_ROOT_CA_SHA256);
        assert!(root.is_intel());
        // The self-signature `intel()` does not re-check holds all the same.
        assert_eq!(
            TrustAnchor::from_der(INTEL_SGX_ROOT_CA_DER.to_vec()),
            Ok(root)
        );
    }

    #[test]
    fn garbage_is_not_a_root() {
        assert!(TrustAnchor::from_der(vec![0x30, 0x03, 1, 2, 3]).is_err());
        assert!(TrustAnchor::from_pem(b"not pem").is_err());
    }
}
