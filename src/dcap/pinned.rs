//! PURE. What every TEE's pinned root shares (Intel's SGX Root CA here, AWS's Nitro root,
//! AMD's ARKs): its DER, which is the pin (a chain's copy of the root is compared by bytes),
//! and what reports and checks read from it: subject, validity, fingerprint.

use sha2::{Digest, Sha256};

use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;

/// A root certificate trusted for its bytes, with the parts read from it kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedRoot {
    der: Vec<u8>,
    sha256: CertSha256,
    subject: Vec<u8>,
    validity: (UnixTime, UnixTime),
}

impl PinnedRoot {
    /// A root from its DER and the subject and validity its caller parsed (and checked)
    /// from that DER.
    pub fn new(der: Vec<u8>, subject: Vec<u8>, validity: (UnixTime, UnixTime)) -> Self {
        let sha256 = CertSha256(Sha256::digest(&der).into());
        Self {
            der,
            sha256,
            subject,
            validity,
        }
    }

    /// The DER: the pin.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> CertSha256 {
        self.sha256
    }

    /// The subject name, DER.
    pub fn subject(&self) -> &[u8] {
        &self.subject
    }

    /// The validity window, both ends inclusive.
    pub fn validity(&self) -> (UnixTime, UnixTime) {
        self.validity
    }

    /// True when this root is exactly `der`, byte for byte.
    pub fn is(&self, der: &[u8]) -> bool {
        self.der == der
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_the_bytes_and_the_fingerprint_is_theirs() {
        let der = b"not parsed here".to_vec();
        let root = PinnedRoot::new(der.clone(), b"subject".to_vec(), (UnixTime(1), UnixTime(2)));
        assert!(root.is(&der));
        assert!(!root.is(&der[1..]));
        assert!(!root.is(b"not parsed herf"));
        assert_eq!(root.sha256(), CertSha256(Sha256::digest(&der).into()));
        assert_eq!(root.der(), der.as_slice());
        assert_eq!(root.subject(), b"subject");
        assert_eq!(root.validity(), (UnixTime(1), UnixTime(2)));
    }
}
