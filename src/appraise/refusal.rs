//! The stable refusal codes: JSON `code`, log field and metric label.
//!
//! Users script against these strings; a test pins every one. Every error type in
//! the crate maps onto exactly one code through an exhaustive `match`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::dcap::collateral::CollateralError;
use crate::dcap::error::VerifyError;

/// Why a connection or quote was refused, as a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalCode {
    /// The quote or certificate could not be parsed, or uses an unsupported format.
    QuoteMalformed,
    /// The certificate carries no quote.
    NoQuote,
    /// A signature over the quote, QE report or signed collateral does not verify.
    SignatureInvalid,
    /// A certificate or CRL chain does not lead to the pinned root, or a CRL does not cover the certificate.
    ChainInvalid,
    /// The RA-TLS certificate is outside its validity period at the verification time.
    CertificateExpired,
    /// The RA-TLS certificate was issued longer ago than the entry's `max_cert_age_secs`.
    CertificateTooOld,
    /// The PCK certificate, its CA or the platform's TCB is revoked.
    Revoked,
    /// Collateral is outside its validity window at the verification time.
    CollateralExpired,
    /// The collateral was issued longer ago than `[collateral] max_age_secs`.
    CollateralTooOld,
    /// The only collateral to be had is older than what was already seen for this platform
    /// or CA (a replay would hide a TCB recovery or a revocation).
    CollateralRollback,
    /// Collateral for this platform could not be obtained or parsed.
    CollateralUnavailable,
    /// The TCB info belongs to another platform (FMSPC, PCE ID or TEE type).
    FmspcMismatch,
    /// The quoting enclave does not match Intel's QE identity.
    QeIdentityMismatch,
    /// The TDX module is not the one Intel's TCB info describes, or has no TCB level.
    TdxModuleMismatch,
    /// REPORTDATA does not commit to the certificate's public key.
    BindingMismatch,
    /// The entry says SGX and the quote is TDX, or the reverse.
    TeeMismatch,
    /// The enclave or TD runs in debug mode and the policy does not allow it.
    DebugEnclave,
    /// TD_ATTRIBUTES has a bit the policy does not allow, lacks SEPT_VE_DISABLE, or the TD
    /// is bound to a service TD.
    TdAttributesNotAllowed,
    /// XFAM (the TD's enabled CPU extended features) is not in the allow-list.
    XfamMismatch,
    /// MRENCLAVE is not in the allow-list.
    MrenclaveMismatch,
    /// MRSIGNER is not in the allow-list.
    MrsignerMismatch,
    /// ISVPRODID differs from the policy's.
    IsvProdIdMismatch,
    /// ISVSVN is below the policy's minimum.
    IsvSvnTooLow,
    /// MRTD is not in the allow-list.
    MrtdMismatch,
    /// An RTMR is not in its allow-list.
    RtmrMismatch,
    /// MRCONFIGID is not in the allow-list.
    MrconfigidMismatch,
    /// MROWNER is not in the allow-list.
    MrownerMismatch,
    /// MROWNERCONFIG is not in the allow-list.
    MrownerconfigMismatch,
    /// MRSEAM is not in the allow-list.
    MrseamMismatch,
    /// dstack: the app id (RTMR3's `app-id` event) is not in the allow-list, or absent.
    AppIdMismatch,
    /// dstack: the compose hash (RTMR3's `compose-hash` event) is not in the allow-list, or
    /// absent.
    ComposeHashMismatch,
    /// dstack: the measured OS image hash (RTMR3's `os-image-hash` event) is not in the
    /// allow-list, or absent.
    OsImageHashMismatch,
    /// dstack: the instance id (RTMR3's `instance-id` event) is not in the allow-list, or
    /// absent.
    InstanceIdMismatch,
    /// dstack: the key provider (RTMR3's `key-provider` event) is not in the allow-list, or
    /// absent.
    KeyProviderMismatch,
    /// SEV-SNP: MEASUREMENT (the launch digest) is not in the allow-list.
    MeasurementMismatch,
    /// SEV-SNP: HOST_DATA is not in the allow-list.
    HostDataMismatch,
    /// SEV-SNP: ID_KEY_DIGEST is not in the allow-list.
    IdKeyMismatch,
    /// SEV-SNP: FAMILY_ID or IMAGE_ID of the ID block differs from the policy's.
    IdBlockMismatch,
    /// SEV-SNP: AUTHOR_KEY_DIGEST is not in the allow-list, or absent.
    AuthorKeyMismatch,
    /// SEV-SNP: GUEST_SVN is below the policy's minimum.
    GuestSvnTooLow,
    /// A TEE_TCB_SVN component is below the policy's minimum.
    TeeTcbSvnTooLow,
    /// SEV-SNP: a component of REPORTED_TCB or LAUNCH_TCB is below `min_tcb`.
    TcbBelowMinimum,
    /// SEV-SNP: the report comes from a VMPL above `max_vmpl`.
    VmplNotAllowed,
    /// SEV-SNP: a guest POLICY bit the entry does not accept.
    GuestPolicyNotAllowed,
    /// SEV-SNP: PLATFORM_INFO lacks a required bit or has a forbidden one.
    PlatformInfoNotAllowed,
    /// AWS Nitro: a PCR (0, 1, 2, 3, 4 or 8) is not in its allow-list, or absent.
    PcrMismatch,
    /// AWS Nitro: the attestation document is older than `max_cert_age_secs`, or stamped
    /// in the future beyond clock skew.
    DocumentTooOld,
    /// The platform's TCB status is not among the accepted ones.
    TcbStatusNotAllowed,
    /// The TCB level carries an advisory the policy does not list.
    AdvisoryNotAllowed,
    /// With `early = "enforce"`: Intel's early TCB data (the next TCB recovery) would refuse
    /// the enclave.
    TcbAtRisk,
    /// A host an enclave entry names, at a port no entry lists: never tunnelled.
    EnclavePortNotConfigured,
    /// A passthrough destination resolved to an enclave entry's address.
    EnclaveAddressNotAttested,
    /// A passthrough destination is loopback, link-local, unspecified, multicast or the
    /// proxy itself.
    LocalDestinationDenied,
    /// No upstream connection could be had under `max_upstream_connections`.
    UpstreamCapacity,
    /// The evidence's event log does not replay to the quote's measurement registers.
    EventLogMismatch,
    /// The evidence is of a TEE this build does not verify yet.
    UnsupportedTee,
}

impl RefusalCode {
    /// Every code, in ranking order (the first applicable one is the headline).
    pub const ALL: [RefusalCode; 56] = [
        Self::QuoteMalformed,
        Self::NoQuote,
        Self::SignatureInvalid,
        Self::ChainInvalid,
        Self::CertificateExpired,
        Self::CertificateTooOld,
        Self::Revoked,
        Self::CollateralExpired,
        Self::CollateralTooOld,
        Self::CollateralRollback,
        Self::CollateralUnavailable,
        Self::FmspcMismatch,
        Self::QeIdentityMismatch,
        Self::TdxModuleMismatch,
        Self::BindingMismatch,
        Self::TeeMismatch,
        Self::DebugEnclave,
        Self::TdAttributesNotAllowed,
        Self::XfamMismatch,
        Self::MrenclaveMismatch,
        Self::MrsignerMismatch,
        Self::IsvProdIdMismatch,
        Self::IsvSvnTooLow,
        Self::MrtdMismatch,
        Self::RtmrMismatch,
        Self::MrconfigidMismatch,
        Self::MrownerMismatch,
        Self::MrownerconfigMismatch,
        Self::MrseamMismatch,
        Self::AppIdMismatch,
        Self::ComposeHashMismatch,
        Self::OsImageHashMismatch,
        Self::InstanceIdMismatch,
        Self::KeyProviderMismatch,
        Self::MeasurementMismatch,
        Self::HostDataMismatch,
        Self::IdKeyMismatch,
        Self::IdBlockMismatch,
        Self::AuthorKeyMismatch,
        Self::GuestSvnTooLow,
        Self::TeeTcbSvnTooLow,
        Self::TcbBelowMinimum,
        Self::VmplNotAllowed,
        Self::GuestPolicyNotAllowed,
        Self::PlatformInfoNotAllowed,
        Self::PcrMismatch,
        Self::DocumentTooOld,
        Self::TcbStatusNotAllowed,
        Self::AdvisoryNotAllowed,
        Self::TcbAtRisk,
        Self::EnclavePortNotConfigured,
        Self::EnclaveAddressNotAttested,
        Self::LocalDestinationDenied,
        Self::UpstreamCapacity,
        Self::EventLogMismatch,
        Self::UnsupportedTee,
    ];

    /// The stable string used in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QuoteMalformed => "quote_malformed",
            Self::NoQuote => "no_quote",
            Self::SignatureInvalid => "signature_invalid",
            Self::ChainInvalid => "chain_invalid",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateTooOld => "certificate_too_old",
            Self::Revoked => "revoked",
            Self::CollateralExpired => "collateral_expired",
            Self::CollateralTooOld => "collateral_too_old",
            Self::CollateralRollback => "collateral_rollback",
            Self::CollateralUnavailable => "collateral_unavailable",
            Self::FmspcMismatch => "fmspc_mismatch",
            Self::QeIdentityMismatch => "qe_identity_mismatch",
            Self::TdxModuleMismatch => "tdx_module_mismatch",
            Self::BindingMismatch => "binding_mismatch",
            Self::TeeMismatch => "tee_mismatch",
            Self::DebugEnclave => "debug_enclave",
            Self::TdAttributesNotAllowed => "td_attributes_not_allowed",
            Self::XfamMismatch => "xfam_mismatch",
            Self::MrenclaveMismatch => "mrenclave_mismatch",
            Self::MrsignerMismatch => "mrsigner_mismatch",
            Self::IsvProdIdMismatch => "isv_prod_id_mismatch",
            Self::IsvSvnTooLow => "isv_svn_too_low",
            Self::MrtdMismatch => "mrtd_mismatch",
            Self::RtmrMismatch => "rtmr_mismatch",
            Self::MrconfigidMismatch => "mrconfigid_mismatch",
            Self::MrownerMismatch => "mrowner_mismatch",
            Self::MrownerconfigMismatch => "mrownerconfig_mismatch",
            Self::MrseamMismatch => "mrseam_mismatch",
            Self::AppIdMismatch => "app_id_mismatch",
            Self::ComposeHashMismatch => "compose_hash_mismatch",
            Self::OsImageHashMismatch => "os_image_hash_mismatch",
            Self::InstanceIdMismatch => "instance_id_mismatch",
            Self::KeyProviderMismatch => "key_provider_mismatch",
            Self::MeasurementMismatch => "measurement_mismatch",
            Self::HostDataMismatch => "host_data_mismatch",
            Self::IdKeyMismatch => "id_key_mismatch",
            Self::IdBlockMismatch => "id_block_mismatch",
            Self::AuthorKeyMismatch => "author_key_mismatch",
            Self::GuestSvnTooLow => "guest_svn_too_low",
            Self::TeeTcbSvnTooLow => "tee_tcb_svn_too_low",
            Self::TcbBelowMinimum => "tcb_below_minimum",
            Self::VmplNotAllowed => "vmpl_not_allowed",
            Self::GuestPolicyNotAllowed => "guest_policy_not_allowed",
            Self::PlatformInfoNotAllowed => "platform_info_not_allowed",
            Self::PcrMismatch => "pcr_mismatch",
            Self::DocumentTooOld => "document_too_old",
            Self::TcbStatusNotAllowed => "tcb_status_not_allowed",
            Self::AdvisoryNotAllowed => "advisory_not_allowed",
            Self::TcbAtRisk => "tcb_at_risk",
            Self::EnclavePortNotConfigured => "enclave_port_not_configured",
            Self::EnclaveAddressNotAttested => "enclave_address_not_attested",
            Self::LocalDestinationDenied => "local_destination_denied",
            Self::UpstreamCapacity => "upstream_capacity",
            Self::EventLogMismatch => "event_log_mismatch",
            Self::UnsupportedTee => "unsupported_tee",
        }
    }
    /// What the operator (or the enclave's owner) can change, for a browser's refusal page.
    pub fn hint(self) -> &'static str {
        match self {
            Self::DebugEnclave => "The enclave runs in DEBUG mode: its memory is open to the host, so its attestation proves nothing. Deploy a production (non-debug) build; only for development may the operator set allow_debug = true in the host's [[enclave]] entry.",
            Self::MrenclaveMismatch | Self::MrsignerMismatch | Self::IsvProdIdMismatch | Self::MrtdMismatch | Self::RtmrMismatch | Self::MrconfigidMismatch | Self::MrownerMismatch | Self::MrownerconfigMismatch | Self::MrseamMismatch => "The server runs code (or a configuration) other than the one this proxy's policy allows. If this build is the one to trust, the operator adds its measurement to the host's [[enclave]] entry (`ratls-proxy verify https://HOST` prints it); otherwise the host serves something else than expected.",
            Self::MeasurementMismatch | Self::HostDataMismatch | Self::IdKeyMismatch | Self::IdBlockMismatch | Self::AuthorKeyMismatch => "The SEV-SNP guest was launched with another image, host data or signing key than this proxy's policy allows. If this launch is the one to trust, the operator adds its value to the host's [[enclave]] entry (`ratls-proxy verify --quote` on its report prints them); otherwise the host runs something else than expected.",
            Self::GuestSvnTooLow => "The SEV-SNP guest's security version (GUEST_SVN) is below the policy's minimum: deploy the updated guest image, or the operator lowers min_guest_svn in the host's [[enclave]] entry.",
            Self::TcbBelowMinimum => "The AMD platform's firmware or microcode (its reported or launch TCB) is below the policy's min_tcb: the host's owner updates the firmware and relaunches the guest, or the operator lowers min_tcb.",
            Self::VmplNotAllowed | Self::GuestPolicyNotAllowed => "The SEV-SNP guest's report comes from a less privileged VMPL, or its launch policy allows what the host's [[enclave]] entry refuses (a migration agent, SMT, several sockets): the guest's owner relaunches it with the expected policy, or the operator relaxes max_vmpl / allow_migration_agent knowingly.",
            Self::PlatformInfoNotAllowed => "The AMD host's platform configuration (PLATFORM_INFO: TSME, SMT, ECC …) is not the one the policy requires: the host's operator changes it; the guest cannot.",
            Self::IsvSvnTooLow | Self::TeeTcbSvnTooLow => "The enclave's security version is below the policy's minimum: deploy the updated enclave, or the operator lowers the minimum in the host's [[enclave]] entry.",
            Self::TcbStatusNotAllowed | Self::AdvisoryNotAllowed | Self::Revoked => "The platform (for a TD whose status is TDRelaunchAdvised: the TDX module it launched on) is out of date or revoked by Intel: its owner updates microcode and firmware, or relaunches a TD advised to, or the operator accepts that status or advisory in the host's [[enclave]] entry (tcb_status, allowed_advisories).",
            Self::TcbAtRisk => "Intel's next TCB recovery (its early TCB data) refuses this platform, and the proxy enforces it ahead of time (early = \"enforce\"): the platform's owner updates microcode, firmware or the TDX module now (the admin listener's GET /tcb says what and from when), or the operator sets early = \"warn\".",
            Self::CollateralExpired | Self::CollateralTooOld | Self::CollateralUnavailable => "The proxy could not get current Intel collateral for this platform: the operator checks the [collateral] source and the proxy's path to it.",
            Self::CollateralRollback => "The collateral source served Intel collateral older than what this proxy has already seen for this platform (a replay would hide a TCB recovery or a revocation): the operator checks the [collateral] source (a stale or hostile PCCS); the proxy keeps refusing until the source serves current collateral.",
            Self::CertificateExpired | Self::CertificateTooOld => "The enclave's RA-TLS certificate is outside its validity or older than max_cert_age_secs: restart the enclave so it issues a fresh one, and check both clocks.",
            Self::PcrMismatch => "The AWS Nitro enclave runs another image, kernel, application, IAM role, instance or signing certificate (PCR0-4, PCR8) than this proxy's policy allows. If this build is the one to trust, the operator adds its PCR value to the host's [[enclave]] entry (`ratls-proxy verify --quote` on its document prints them); otherwise the host runs something else than expected.",
            Self::DocumentTooOld => "The AWS Nitro attestation document is older than the host's max_cert_age_secs (or stamped in the future): restart the enclave so it presents a fresh document, and check both clocks.",
            Self::TdAttributesNotAllowed | Self::TeeMismatch => "The TEE or its attributes differ from what the host's [[enclave]] entry declares: the operator checks the entry's tee and the TD's configuration.",
            Self::XfamMismatch => "The TD enables CPU features (XFAM) other than those the host's [[enclave]] entry allows: the TD's owner launches it with the expected features, or the operator adds this XFAM (`ratls-proxy verify https://HOST` prints it) to the entry's xfam list.",
            Self::QuoteMalformed | Self::NoQuote | Self::SignatureInvalid | Self::ChainInvalid | Self::BindingMismatch | Self::FmspcMismatch | Self::QeIdentityMismatch | Self::TdxModuleMismatch => "The attestation evidence does not verify: this server is not the enclave it claims to be, or not an RA-TLS server at all. Do not work around it; the operator checks where the host name points.",
            Self::EnclavePortNotConfigured => "This port is not listed for the host: the operator adds it to the host's [[enclave]] entry, or you use a listed port.",
            Self::EnclaveAddressNotAttested => "This address belongs to an enclave: reach it by its configured host name, so that it is attested.",
            Self::LocalDestinationDenied => "Local addresses are not reachable through this proxy; the operator may set allow_local_destinations = true for development only.",
            Self::UpstreamCapacity => "The enclave is down, unreachable or overloaded: try again later; the operator checks that it runs and is reachable from the proxy (or raises [limits] max_upstream_connections).",
            Self::EventLogMismatch => "The event log the server sent does not replay to the measurements its quote signs: the evidence was altered, so what it names (the app, its compose hash) cannot be believed. Do not work around it; the operator checks where the host name points.",
            Self::AppIdMismatch | Self::ComposeHashMismatch | Self::OsImageHashMismatch | Self::InstanceIdMismatch | Self::KeyProviderMismatch => "The dstack app is not the one this proxy's policy pins (its app id, compose file, OS image, instance or key provider differ, or the server sent no dstack app identity at all). If this deployment is the one to trust, the operator adds its value to the host's [[enclave]] entry (`ratls-proxy verify --cert` on the app's certificate prints them); otherwise the host serves another app.",
            Self::UnsupportedTee => "The server attests with a TEE this proxy does not verify yet (NitroTPM or GCP TDX inside dstack evidence): this build cannot admit it.",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RefusalCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A refusal: one headline code and every human-readable reason found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The headline code (the highest-ranked violation).
    pub code: RefusalCode,
    /// One sentence per violation, naming expected and actual values.
    pub reasons: Vec<String>,
}

impl Refusal {
    /// A refusal with a single reason.
    pub fn new(code: RefusalCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reasons.join("; "))
    }
}

impl std::error::Error for Refusal {}

impl VerifyError {
    /// The stable refusal code.
    pub fn code(&self) -> RefusalCode {
        match self {
            Self::Quote(_) => RefusalCode::QuoteMalformed,
            Self::Collateral(CollateralError::Rollback(_)) => RefusalCode::CollateralRollback,
            Self::Collateral(_) => RefusalCode::CollateralUnavailable,
            Self::Chain { .. } => RefusalCode::ChainInvalid,
            Self::Signature(_) | Self::QeReportData => RefusalCode::SignatureInvalid,
            Self::Revoked { .. } | Self::TcbRevoked => RefusalCode::Revoked,
            Self::NotYetValid { .. } | Self::Expired { .. } => RefusalCode::CollateralExpired,
            Self::TdxModule(_) => RefusalCode::TdxModuleMismatch,
            Self::FmspcMismatch { .. } | Self::PceIdMismatch { .. } | Self::TcbInfoTee { .. } => {
                RefusalCode::FmspcMismatch
            }
            Self::QeIdentity(_) => RefusalCode::QeIdentityMismatch,
            Self::TcbNotSupported => RefusalCode::TcbStatusNotAllowed,
        }
    }
}

impl From<VerifyError> for Refusal {
    fn from(e: VerifyError) -> Self {
        Refusal::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_string_is_pinned() {
        let names: Vec<&str> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "quote_malformed",
                "no_quote",
                "signature_invalid",
                "chain_invalid",
                "certificate_expired",
                "certificate_too_old",
                "revoked",
                "collateral_expired",
                "collateral_too_old",
                "collateral_rollback",
                "collateral_unavailable",
                "fmspc_mismatch",
                "qe_identity_mismatch",
                "tdx_module_mismatch",
                "binding_mismatch",
                "tee_mismatch",
                "debug_enclave",
                "td_attributes_not_allowed",
                "xfam_mismatch",
                "mrenclave_mismatch",
                "mrsigner_mismatch",
                "isv_prod_id_mismatch",
                "isv_svn_too_low",
                "mrtd_mismatch",
                "rtmr_mismatch",
                "mrconfigid_mismatch",
                "mrowner_mismatch",
                "mrownerconfig_mismatch",
                "mrseam_mismatch",
                "app_id_mismatch",
                "compose_hash_mismatch",
                "os_image_hash_mismatch",
                "instance_id_mismatch",
                "key_provider_mismatch",
                "measurement_mismatch",
                "host_data_mismatch",
                "id_key_mismatch",
                "id_block_mismatch",
                "author_key_mismatch",
                "guest_svn_too_low",
                "tee_tcb_svn_too_low",
                "tcb_below_minimum",
                "vmpl_not_allowed",
                "guest_policy_not_allowed",
                "platform_info_not_allowed",
                "pcr_mismatch",
                "document_too_old",
                "tcb_status_not_allowed",
                "advisory_not_allowed",
                "tcb_at_risk",
                "enclave_port_not_configured",
                "enclave_address_not_attested",
                "local_destination_denied",
                "upstream_capacity",
                "event_log_mismatch",
                "unsupported_tee",
            ]
        );
    }

    #[test]
    fn ranking_is_the_declaration_order() {
        let mut sorted = RefusalCode::ALL;
        sorted.sort();
        assert_eq!(sorted, RefusalCode::ALL);
    }
}
