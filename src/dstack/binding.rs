//! Key binding as dstack does it (`QuoteContentType::RaTlsCert.to_report_data`):
//! the report data is SHA-512(`"ratls-cert"` ‖ `":"` ‖ SubjectPublicKeyInfo DER), all 64
//! bytes; and the attestation's report data must be the quote's REPORTDATA, so the quote
//! signs the key. On SEV-SNP, HOST_DATA must also be the hash of the carried `mr_config`
//! document ([`mr_config_host_data`]). Every failure is `binding_mismatch`.

use sha2::{Digest, Sha256, Sha512};

use super::Attestation;

/// dstack's content-type tag for an RA-TLS certificate key.
pub const RATLS_CERT_TAG: &str = "ratls-cert";

/// The report data dstack puts in a quote for an RA-TLS certificate with `spki_der`.
pub fn ratls_cert_report_data(spki_der: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(RATLS_CERT_TAG.as_bytes());
    h.update(b":");
    h.update(spki_der);
    h.finalize().into()
}

/// dstack's domain tag for the `mr_config` document an SEV-SNP HOST_DATA commits to.
const MR_CONFIG_V3_DOMAIN: &[u8] = b"dstack-mr-config-v3:";

/// The HOST_DATA dstack launches an SEV-SNP guest with for `mr_config` (its MrConfigV3:
/// SHA-256 of the domain tag, a zero byte and the document's exact bytes). The one copy of
/// this formula: `verify` and the proxy both call it.
pub fn mr_config_host_data(mr_config: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(MR_CONFIG_V3_DOMAIN)
        .chain_update([0])
        .chain_update(mr_config)
        .finalize()
        .into()
}

/// The key binding does not hold. Always `binding_mismatch`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The attestation's report data is not dstack's hash of this certificate's key.
    #[error("the dstack report data {attested} is not SHA-512(\"ratls-cert:\" ‖ the certificate's SPKI) ({expected})")]
    KeyNotBound {
        /// The attestation's report data, hex.
        attested: String,
        /// What this key gives, hex.
        expected: String,
    },
    /// An SEV-SNP report's HOST_DATA is not the hash of the carried `mr_config`.
    #[error("HOST_DATA {host_data} is not the hash of the carried mr_config ({expected})")]
    HostDataDiffers {
        /// The report's HOST_DATA, hex.
        host_data: String,
        /// [`mr_config_host_data`] of the carried document, hex.
        expected: String,
    },
    /// The attestation's report data is not what the platform evidence signed.
    #[error("the dstack attestation's report data {attestation} differs from the report data the platform evidence signed ({quote})")]
    QuoteDiffers {
        /// The attestation's report data, hex.
        attestation: String,
        /// The signed report data (a TDX quote's REPORTDATA), hex.
        quote: String,
    },
}

/// Checks that the attestation's report data is the one the platform evidence signed
/// (`signed`: a TDX quote's REPORTDATA, an SNP report's REPORT_DATA, a Nitro document's
/// user data).
pub fn same_report_data(
    attestation: &Attestation<'_>,
    signed: &[u8; 64],
) -> Result<(), BindingError> {
    let attested = &attestation.stack.report_data;
    if attested != signed {
        return Err(BindingError::QuoteDiffers {
            attestation: hex::encode(attested),
            quote: hex::encode(signed),
        });
    }
    Ok(())
}

/// Checks that the platform evidence signed the attestation's report data
/// ([`same_report_data`]) and that it commits to `spki_der`, the certificate's
/// SubjectPublicKeyInfo DER: the RA-TLS key binding.
pub fn check(
    attestation: &Attestation<'_>,
    spki_der: &[u8],
    signed: &[u8; 64],
) -> Result<(), BindingError> {
    same_report_data(attestation, signed)?;
    let attested = &attestation.stack.report_data;
    let expected = ratls_cert_report_data(spki_der);
    if *attested != expected {
        return Err(BindingError::KeyNotBound {
            attested: hex::encode(attested),
            expected: hex::encode(expected),
        });
    }
    Ok(())
}

/// Checks that an SEV-SNP report's `host_data` commits to the carried `mr_config`.
pub fn check_host_data(mr_config: &[u8], host_data: &[u8; 32]) -> Result<(), BindingError> {
    let expected = mr_config_host_data(mr_config);
    if *host_data != expected {
        return Err(BindingError::HostDataDiffers {
            host_data: hex::encode(host_data),
            expected: hex::encode(expected),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_data_is_sha512_of_the_tagged_key() {
        // A P-256 SPKI header and the point 00..3f; the expected value was computed
        // independently from dstack's definition: hashlib.sha512(b"ratls-cert:" + spki).
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d03010703420004")
            .unwrap_or_default();
        spki.extend(0u8..64);
        assert_eq!(
            hex::encode(ratls_cert_report_data(&spki)),
            "9beb4320d19089ccdbafc20459299c5f3d3ec7bd1187ec803954f3da5fe174895cd812e374dfefbc5ccb2de62efe17f69b5bfe709c5dcf68cce5151f480ce46a"
        );
    }

    #[test]
    fn host_data_is_the_domain_tagged_hash_of_mr_config() {
        // hashlib.sha256(b"dstack-mr-config-v3:" + b"\x00" + b"{}").hexdigest()
        assert_eq!(
            hex::encode(mr_config_host_data(b"{}")),
            "9a96e706c889f5632d9f5694e305bc398621af56d9dd768263e7cb7609f8c3f3"
        );
        let good = mr_config_host_data(b"{}");
        assert!(check_host_data(b"{}", &good).is_ok());
        assert!(matches!(
            check_host_data(b"{} ", &good),
            Err(BindingError::HostDataDiffers { .. })
        ));
    }
}
