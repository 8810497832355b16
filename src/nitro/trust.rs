//! The pinned root: AWS Nitro Enclaves Root-G1 compiled in, or an explicitly configured root
//! (the sim's test PKI). A document never supplies its own root: the copy at the head of its
//! CA bundle is only compared with this one.

use crate::dcap::ids::CertSha256;
use crate::dcap::pinned::PinnedRoot;
use crate::dcap::pki::parse_cert;
use crate::dcap::time::UnixTime;
use crate::nitro::error::NitroError;
use crate::nitro::pki::{self, Role};

/// DER of AWS Nitro Enclaves Root-G1 (`CN=aws.nitro-enclaves`, P-384, valid 2019-10-28 ..
/// 2049-10-28), as AWS publishes it in `AWS_NitroEnclaves_Root-G1.zip`.
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("trust/aws_nitro_enclaves_root_g1.der");

/// SHA-256 of [`AWS_NITRO_ROOT_G1_DER`], the fingerprint AWS publishes ("Verifying the root
/// of trust", Nitro Enclaves User Guide); a test checks it.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// A pinned root with the parts verification needs, pre-extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitroRoot {
    root: PinnedRoot,
    point: Vec<u8>,
    path_len: Option<u32>,
}

impl NitroRoot {
    /// AWS Nitro Enclaves Root-G1.
    pub fn aws() -> Self {
        // The compiled-in constant is a valid self-signed P-384 CA certificate;
        // `the_aws_root_is_self_signed_and_has_the_published_fingerprint` proves it.
        #[allow(clippy::expect_used)]
        Self::from_der(AWS_NITRO_ROOT_G1_DER.to_vec()).expect("the compiled-in AWS root parses")
    }

    /// A root from its DER: a self-signed P-384 CA certificate (checked here).
    pub fn from_der(der: Vec<u8>) -> Result<Self, NitroError> {
        let fail = |detail: String| NitroError::chain("the pinned root", detail);
        let (subject, point, path_len, validity) = {
            let cert = parse_cert(&der, "Nitro root").map_err(|e| fail(e.to_string()))?;
            let point = pki::p384_point(cert.public_key()).map_err(fail)?;
            if cert.issuer().as_raw() != cert.subject().as_raw() {
                return Err(fail("is not self-issued".into()));
            }
            pki::verify_cert_signature(&cert, point)
                .map_err(|e| fail(format!("its self-signature: {e}")))?;
            let profile = pki::check_profile(&cert, Role::Ca).map_err(fail)?;
            (
                cert.subject().as_raw().to_vec(),
                point.to_vec(),
                profile.path_len,
                pki::validity(&cert),
            )
        };
        Ok(Self {
            root: PinnedRoot::new(der, subject, validity),
            point,
            path_len,
        })
    }

    /// The root's DER.
    pub fn der(&self) -> &[u8] {
        self.root.der()
    }

    /// The root's subject name, DER.
    pub fn subject(&self) -> &[u8] {
        self.root.subject()
    }

    /// The root's uncompressed P-384 point.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// The root's pathLenConstraint (`None`: unlimited).
    pub fn path_len(&self) -> Option<u32> {
        self.path_len
    }

    /// The root's validity, both ends inclusive.
    pub fn validity(&self) -> (UnixTime, UnixTime) {
        self.root.validity()
    }

    /// SHA-256 of the root's DER.
    pub fn sha256(&self) -> CertSha256 {
        self.root.sha256()
    }

    /// True for the compiled-in AWS root.
    pub fn is_aws(&self) -> bool {
        self.root.is(AWS_NITRO_ROOT_G1_DER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_root_is_self_signed_and_has_the_published_fingerprint() {
        // from_der verifies the self-signature and the CA profile.
        let root = NitroRoot::from_der(AWS_NITRO_ROOT_G1_DER.to_vec());
        assert_eq!(
            root.as_ref().map(|r| r.sha256().to_string()),
            Ok(AWS_NITRO_ROOT_G1_SHA256.to_owned())
        );
        let root = NitroRoot::aws();
        assert!(root.is_aws());
        assert_eq!(root.path_len(), None);
        assert_eq!(
            root.validity(),
            (UnixTime(1_572_269_285), UnixTime(2_519_044_085))
        );
    }

    #[test]
    fn a_root_with_a_flipped_signature_byte_is_refused() {
        let mut der = AWS_NITRO_ROOT_G1_DER.to_vec();
        if let Some(last) = der.last_mut() {
            *last ^= 1;
        }
        assert!(NitroRoot::from_der(der).is_err());
        assert!(NitroRoot::from_der(vec![0x30, 0x03, 1, 2, 3]).is_err());
    }
}
