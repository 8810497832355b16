//! PURE. The certificates Intel's SGX Root CA signed that every real chain carries, compiled
//! in beside the root: the PCK Platform CA and the PCK Processor CA (2018–2033) and the TCB
//! Signing certificate Intel has served since May 2025 (to 2032). A chain presenting one of
//! them byte for byte needs no ECDSA for the root's signature over it: that exact signature
//! over those exact bytes was checked under the pinned root by this module's tests, the same
//! trust as the root's own pin (its bytes). What the bytes cannot say for all time is checked
//! by the caller at every use, exactly as for any other CA: the issuer name, revocation by the
//! root CA CRL and the validity window. A certificate Intel re-issues (new bytes) is simply
//! not here: it is verified by ECDSA and then remembered by the anchor's memo. Only an anchor
//! whose root is Intel's, byte for byte, consults this list (`dcap::trust`).

/// The PCK Platform CA (SHA-256 `22eb770d…a0e1`), as published by Intel.
pub const INTEL_SGX_PCK_PLATFORM_CA_DER: &[u8] =
    include_bytes!("trust/intel_sgx_pck_platform_ca.der");

/// The PCK Processor CA (SHA-256 `13b2dcce…09fb`), as published by Intel.
pub const INTEL_SGX_PCK_PROCESSOR_CA_DER: &[u8] =
    include_bytes!("trust/intel_sgx_pck_processor_ca.der");

/// The TCB Signing certificate valid 2025-05-06 to 2032-05-06 (SHA-256 `c0575e76…5aea`).
pub const INTEL_SGX_TCB_SIGNING_2025_DER: &[u8] =
    include_bytes!("trust/intel_sgx_tcb_signing_2025.der");

/// Every certificate above: the Intel root's signatures known without an ECDSA.
pub const SIGNED_BY_INTEL_ROOT: [&[u8]; 3] = [
    INTEL_SGX_PCK_PLATFORM_CA_DER,
    INTEL_SGX_PCK_PROCESSOR_CA_DER,
    INTEL_SGX_TCB_SIGNING_2025_DER,
];

/// True when `der` is exactly one of `known`: a signed object whose signature is known good.
pub(crate) fn is_one_of(known: &[&[u8]], der: &[u8]) -> bool {
    known.contains(&der)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::dcap::pki;
    use crate::dcap::trust::INTEL_SGX_ROOT_CA_DER;

    /// The proof the list stands on: each certificate is issued by the Intel root's name and
    /// its signature verifies under the root's key (ring, the same call as every chain), its
    /// envelope is exact, and the bytes are the published ones.
    #[test]
    fn every_preloaded_certificate_is_signed_by_the_intel_root() {
        let root = pki::parse_cert(INTEL_SGX_ROOT_CA_DER, "root").expect("root parses");
        let root_point = pki::p256_point(root.public_key(), "root key").expect("P-256");
        let published = [
            "22eb770dca215b607b5ccfc21a672b1da5cc660b1ad0365020567979edcaa0e1",
            "13b2dccef8fc4ec977ee5249743b0f758ebd1e28d768b2e1e12bc348adaa09fb",
            "c0575e76d0303b61d09cde8cbdb70db34a74f38318300d7c0e6ba8cf4bf45aea",
        ];
        for (der, sha256) in SIGNED_BY_INTEL_ROOT.iter().zip(published) {
            assert_eq!(hex::encode(Sha256::digest(der)), sha256);
            let cert = pki::parse_cert(der, "preloaded").expect("parses");
            assert_eq!(cert.issuer().as_raw(), root.subject().as_raw());
            assert_eq!(
                pki::verify_cert_signature(&cert, root_point, "preloaded"),
                Ok(())
            );
            let (_, not_after) = pki::validity(&cert);
            // 2032-05-06 09:25 UTC at the earliest: years after this list was made (2026-12).
            assert!(not_after >= 1_967_448_300, "{sha256}: {not_after}");
        }
    }

    #[test]
    fn only_the_exact_bytes_are_known() {
        for der in SIGNED_BY_INTEL_ROOT {
            assert!(is_one_of(&SIGNED_BY_INTEL_ROOT, der));
            assert!(!is_one_of(&SIGNED_BY_INTEL_ROOT, &der[..der.len() - 1]));
            let mut longer = der.to_vec();
            longer.push(0);
            assert!(!is_one_of(&SIGNED_BY_INTEL_ROOT, &longer));
            for at in [0, der.len() / 2, der.len() - 1] {
                let mut flipped = der.to_vec();
                flipped[at] ^= 1;
                assert!(!is_one_of(&SIGNED_BY_INTEL_ROOT, &flipped), "byte {at}");
            }
        }
        assert!(!is_one_of(&[], INTEL_SGX_PCK_PLATFORM_CA_DER));
        assert!(!is_one_of(&SIGNED_BY_INTEL_ROOT, INTEL_SGX_ROOT_CA_DER));
    }
}
