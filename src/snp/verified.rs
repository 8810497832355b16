//! PURE. What a verified report says, owned: the identity the policy judges, when it was
//! verified, until when the collateral holds, and what the collateral was.

use super::chain::ChainDigests;
use super::ids::{
    AuthorKeyDigest, ChipId, FamilyId, HostData, IdKeyDigest, ImageId, Measurement, ReportId,
};
use super::product::Product;
use super::report::{
    Cpuid, FirmwareVersion, GuestPolicy, PlatformInfo, Report, ReportTcbs, ReportVersion,
    SigningKey,
};
use crate::dcap::ids::ReportData;
use crate::dcap::time::UnixTime;

/// The fields of a report a policy judges and a user is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpIdentity {
    /// VERSION.
    pub version: ReportVersion,
    /// The product line (CPUID, or the VCEK's for version 2).
    pub product: Product,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID.
    pub family_id: FamilyId,
    /// IMAGE_ID.
    pub image_id: ImageId,
    /// VMPL.
    pub vmpl: u32,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// KEY_INFO.AUTHOR_KEY_EN.
    pub author_key_en: bool,
    /// REPORT_DATA.
    pub report_data: ReportData,
    /// MEASUREMENT.
    pub measurement: Measurement,
    /// HOST_DATA.
    pub host_data: HostData,
    /// ID_KEY_DIGEST.
    pub id_key_digest: IdKeyDigest,
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: AuthorKeyDigest,
    /// REPORT_ID.
    pub report_id: ReportId,
    /// REPORT_ID_MA.
    pub report_id_ma: ReportId,
    /// CHIP_ID.
    pub chip_id: ChipId,
    /// CURRENT, REPORTED, COMMITTED and LAUNCH TCB, decoded.
    pub tcb: ReportTcbs,
    /// The firmware version running.
    pub current_version: FirmwareVersion,
    /// The committed firmware version.
    pub committed_version: FirmwareVersion,
    /// CPUID fields (version 3 and later).
    pub cpuid: Option<Cpuid>,
    /// LAUNCH_MIT_VECTOR (version 5).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5).
    pub current_mit_vector: Option<u64>,
}

impl SnpIdentity {
    /// The identity of `report`, its TCBs decoded for `product`.
    pub fn of(report: &Report<'_>, product: Product, tcb: ReportTcbs) -> Self {
        Self {
            version: report.version,
            product,
            signing_key: report.signing_key,
            guest_svn: report.guest_svn,
            policy: report.policy,
            family_id: report.family_id,
            image_id: report.image_id,
            vmpl: report.vmpl,
            platform_info: report.platform_info,
            author_key_en: report.author_key_en,
            report_data: report.report_data,
            measurement: report.measurement,
            host_data: report.host_data,
            id_key_digest: report.id_key_digest,
            author_key_digest: report.author_key_digest,
            report_id: report.report_id,
            report_id_ma: report.report_id_ma,
            chip_id: report.chip_id,
            tcb,
            current_version: report.current_version,
            committed_version: report.committed_version,
            cpuid: report.cpuid,
            launch_mit_vector: report.launch_mit_vector,
            current_mit_vector: report.current_mit_vector,
        }
    }
}

/// SHA-256 of the collateral a verdict was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpDigests {
    /// The ASK/ASVK and the CRL.
    pub chain: ChainDigests,
    /// The VCEK's or VLEK's DER.
    pub vek: [u8; 32],
}

/// A report whose chain, key and signature verified. The only constructor is
/// [`crate::snp::verify::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedReport {
    /// What the report says.
    pub identity: SnpIdentity,
    /// The verification time.
    pub verified_at: UnixTime,
    /// The last second at which the key and its chain are valid.
    pub valid_until: UnixTime,
    /// What the collateral was, byte for byte.
    pub collateral: SnpDigests,
}

impl VerifiedReport {
    pub(crate) fn new(
        identity: SnpIdentity,
        verified_at: UnixTime,
        valid_until: UnixTime,
        collateral: SnpDigests,
    ) -> Self {
        Self {
            identity,
            verified_at,
            valid_until,
            collateral,
        }
    }
}
