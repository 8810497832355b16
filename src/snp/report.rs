//! The ATTESTATION_REPORT (SEV-SNP Firmware ABI, table "ATTESTATION_REPORT Structure") as a
//! borrowed, typed view over exactly 1184 untrusted bytes: versions 2, 3 and 5, every field
//! by name, reserved fields checked to be zero so a layout we do not know is refused rather
//! than misread. Version 4 exists on some firmware but AMD has not published it: refused.

use std::fmt;

use super::error::ReportError;
use super::ids::{
    AuthorKeyDigest, ChipId, FamilyId, HostData, IdKeyDigest, ImageId, Measurement, ReportId,
};
use super::product::{Product, Tcb, TcbVersion};
use crate::bytes::{Reader, Truncated};
use crate::dcap::ids::ReportData;

/// The report's size.
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part: bytes 0x000–0x29F.
pub const SIGNED_LEN: usize = 0x2A0;

/// Report format versions this verifier reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportVersion {
    /// Firmware before 1.55: no CPUID fields.
    V2,
    /// Adds CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP.
    V3,
    /// Adds LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (ABI 1.58).
    V5,
}

impl ReportVersion {
    /// The number in the VERSION field.
    pub fn number(self) -> u32 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V5 => 5,
        }
    }
}

/// The guest policy the owner set at launch (POLICY); the firmware enforces it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bit 16: the host may run the guest with SMT enabled.
    pub const SMT: u64 = 1 << 16;
    /// Bit 17: reserved, must be one.
    pub const RESERVED_ONE: u64 = 1 << 17;
    /// Bit 18: the guest may be associated with a migration agent.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19: the host may debug (decrypt and change) the guest.
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20: the guest may only be activated on one socket.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// Bits 26–63: reserved, must be zero.
    pub const RESERVED_ZERO: u64 = !((1 << 26) - 1);

    /// Minimum ABI major version the guest requires.
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// Minimum ABI minor version the guest requires.
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// The host may debug the guest.
    pub fn debug(self) -> bool {
        self.0 & Self::DEBUG != 0
    }
    /// A migration agent may be associated.
    pub fn migrate_ma(self) -> bool {
        self.0 & Self::MIGRATE_MA != 0
    }
    /// SMT may be enabled on the host.
    pub fn smt(self) -> bool {
        self.0 & Self::SMT != 0
    }
    /// The guest is bound to a single socket.
    pub fn single_socket(self) -> bool {
        self.0 & Self::SINGLE_SOCKET != 0
    }
}

impl fmt::Debug for GuestPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPolicy({:#x})", self.0)
    }
}

impl fmt::Display for GuestPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The platform's configuration when the report was made (PLATFORM_INFO). Bits AMD has
/// not named yet are kept, not refused: real Turin firmware sets bit 6.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// Bit 0: SMT is enabled.
    pub const SMT_EN: u64 = 1;
    /// Bit 1: transparent SME is enabled.
    pub const TSME_EN: u64 = 1 << 1;
    /// Bit 2: ECC memory is in use.
    pub const ECC_EN: u64 = 1 << 2;
    /// Bit 3: RAPL is disabled.
    pub const RAPL_DIS: u64 = 1 << 3;
    /// Bit 4: ciphertext hiding is enabled.
    pub const CIPHERTEXT_HIDING_EN: u64 = 1 << 4;
    /// Bit 5: alias detection completed since the last reset, no aliasing found.
    pub const ALIAS_CHECK_COMPLETE: u64 = 1 << 5;
    /// Bit 7: SEV-TIO is enabled.
    pub const TIO_EN: u64 = 1 << 7;

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u64) -> bool {
        self.0 & mask == mask
    }
}

impl fmt::Debug for PlatformInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlatformInfo({:#x})", self.0)
    }
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningKey {
    /// The chip's Versioned Chip Endorsement Key.
    Vcek,
    /// A cloud provider's Versioned Loaded Endorsement Key.
    Vlek,
}

/// A firmware version (CURRENT_* and COMMITTED_* fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cpuid {
    /// Combined family.
    pub family: u8,
    /// Combined model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

/// A parsed ATTESTATION_REPORT: typed fields borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report<'a> {
    /// All 1184 bytes.
    pub raw: &'a [u8; REPORT_LEN],
    /// Bytes 0x000–0x29F, the part the signature covers.
    pub signed: &'a [u8; SIGNED_LEN],
    /// VERSION.
    pub version: ReportVersion,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID.
    pub family_id: FamilyId,
    /// IMAGE_ID.
    pub image_id: ImageId,
    /// VMPL the report was requested from (0–3; 0xFFFFFFFF when the host requested it).
    pub vmpl: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// KEY_INFO.AUTHOR_KEY_EN: AUTHOR_KEY_DIGEST is present.
    pub author_key_en: bool,
    /// KEY_INFO.SIGNING_KEY.
    pub signing_key: SigningKey,
    /// REPORT_DATA, chosen by the guest.
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
    /// REPORTED_TCB: the TCB the signing key is derived from.
    pub reported_tcb: TcbVersion,
    /// CPUID fields (version 3 and later).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID.
    pub chip_id: ChipId,
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR.
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB: the CURRENT_TCB when the guest was launched or imported.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (version 5).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5).
    pub current_mit_vector: Option<u64>,
    /// SIGNATURE.R: 72 bytes, little-endian.
    pub signature_r: &'a [u8; 72],
    /// SIGNATURE.S: 72 bytes, little-endian.
    pub signature_s: &'a [u8; 72],
}

/// A cursor over the report that reads fields in table order and never panics.
type Fields<'a> = Reader<'a, ReportError>;

/// The layout is fixed and `parse` holds exactly [`REPORT_LEN`] bytes, so a short read can
/// only mean the length is wrong.
impl Truncated for ReportError {
    fn truncated(_what: &'static str, _needed: usize, _available: usize) -> Self {
        ReportError::Length(REPORT_LEN)
    }
}

/// A TCB_VERSION, still in its raw form.
fn tcb(f: &mut Fields<'_>, what: &'static str) -> Result<TcbVersion, ReportError> {
    f.array(what).map(|b| TcbVersion(*b))
}

/// A reserved range, which must be zero.
fn zeros<const N: usize>(f: &mut Fields<'_>, what: &'static str) -> Result<(), ReportError> {
    if f.array::<N>(what)?.iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(ReportError::Reserved { what })
    }
}

/// BUILD, MINOR, MAJOR.
fn firmware_version(
    f: &mut Fields<'_>,
    what: &'static str,
) -> Result<FirmwareVersion, ReportError> {
    let build = f.byte(what)?;
    let minor = f.byte(what)?;
    let major = f.byte(what)?;
    Ok(FirmwareVersion {
        major,
        minor,
        build,
    })
}

impl<'a> Report<'a> {
    /// Parses exactly one report; anything else is a [`ReportError`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReportError> {
        let raw: &'a [u8; REPORT_LEN] = bytes
            .try_into()
            .map_err(|_| ReportError::Length(bytes.len()))?;
        let (signed, _) = raw
            .split_first_chunk::<SIGNED_LEN>()
            .ok_or(ReportError::Length(bytes.len()))?;
        let mut f = Fields::new(raw);

        // 0x000
        let version = match f.u32_le("VERSION")? {
            2 => ReportVersion::V2,
            3 => ReportVersion::V3,
            5 => ReportVersion::V5,
            other => return Err(ReportError::UnsupportedVersion(other)),
        };
        let guest_svn = f.u32_le("GUEST_SVN")?;
        let policy = GuestPolicy(f.u64_le("POLICY")?);
        if policy.0 & GuestPolicy::RESERVED_ONE == 0 || policy.0 & GuestPolicy::RESERVED_ZERO != 0 {
            return Err(ReportError::Reserved { what: "POLICY" });
        }
        let family_id = FamilyId(*f.array("FAMILY_ID")?);
        let image_id = ImageId(*f.array("IMAGE_ID")?);
        // 0x030
        let vmpl = f.u32_le("VMPL")?;
        let algo = f.u32_le("SIGNATURE_ALGO")?;
        if algo != 1 {
            return Err(ReportError::SignatureAlgorithm(algo));
        }
        let current_tcb = tcb(&mut f, "CURRENT_TCB")?;
        let platform_info = PlatformInfo(f.u64_le("PLATFORM_INFO")?);
        // 0x048
        let key_info = f.u32_le("KEY_INFO")?;
        if key_info >> 5 != 0 {
            return Err(ReportError::Reserved { what: "KEY_INFO" });
        }
        let author_key_en = key_info & 1 != 0;
        let mask_chip_key = key_info & 2 != 0;
        let signing_key = match (key_info >> 2) & 7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => return Err(ReportError::Unsigned),
            other => return Err(ReportError::SigningKey(u8::try_from(other).unwrap_or(0xff))),
        };
        if mask_chip_key {
            return Err(ReportError::Unsigned);
        }
        zeros::<4>(&mut f, "reserved 0x04C")?;
        // 0x050
        let report_data = ReportData(*f.array("REPORT_DATA")?);
        let measurement = Measurement(*f.array("MEASUREMENT")?);
        let host_data = HostData(*f.array("HOST_DATA")?);
        let id_key_digest = IdKeyDigest(*f.array("ID_KEY_DIGEST")?);
        let author_key_digest = AuthorKeyDigest(*f.array("AUTHOR_KEY_DIGEST")?);
        let report_id = ReportId(*f.array("REPORT_ID")?);
        let report_id_ma = ReportId(*f.array("REPORT_ID_MA")?);
        // 0x180
        let reported_tcb = tcb(&mut f, "REPORTED_TCB")?;
        let cpuid = if version >= ReportVersion::V3 {
            let [family, model, stepping] = *f.array::<3>("CPUID")?;
            zeros::<21>(&mut f, "reserved 0x18B")?;
            Some(Cpuid {
                family,
                model,
                stepping,
            })
        } else {
            zeros::<24>(&mut f, "reserved 0x188")?;
            None
        };
        // 0x1A0
        let chip_id = ChipId(*f.array("CHIP_ID")?);
        let committed_tcb = tcb(&mut f, "COMMITTED_TCB")?;
        let current_version = firmware_version(&mut f, "CURRENT_VERSION")?;
        zeros::<1>(&mut f, "reserved 0x1EB")?;
        let committed_version = firmware_version(&mut f, "COMMITTED_VERSION")?;
        zeros::<1>(&mut f, "reserved 0x1EF")?;
        let launch_tcb = tcb(&mut f, "LAUNCH_TCB")?;
        // 0x1F8
        let (launch_mit_vector, current_mit_vector) = if version >= ReportVersion::V5 {
            let launch = f.u64_le("LAUNCH_MIT_VECTOR")?;
            let current = f.u64_le("CURRENT_MIT_VECTOR")?;
            zeros::<152>(&mut f, "reserved 0x208")?;
            (Some(launch), Some(current))
        } else {
            zeros::<168>(&mut f, "reserved 0x1F8")?;
            (None, None)
        };
        // 0x2A0
        let signature_r = f.array::<72>("SIGNATURE.R")?;
        let signature_s = f.array::<72>("SIGNATURE.S")?;
        zeros::<368>(&mut f, "SIGNATURE reserved")?;
        if f.remaining() != 0 {
            return Err(ReportError::Length(bytes.len()));
        }

        let report = Self {
            raw,
            signed,
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            current_tcb,
            platform_info,
            author_key_en,
            signing_key,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            launch_mit_vector,
            current_mit_vector,
            signature_r,
            signature_s,
        };
        // With the product known, a TCB in another layout is refused here.
        if let Some(product) = report.product()? {
            report.tcbs(product)?;
        }
        Ok(report)
    }

    /// The product the CPUID fields name (version 3 and later); `None` for version 2, whose
    /// product comes from the VCEK.
    pub fn product(&self) -> Result<Option<Product>, ReportError> {
        self.cpuid
            .map(|c| {
                Product::from_cpuid(c.family, c.model).ok_or(ReportError::UnknownCpu {
                    family: c.family,
                    model: c.model,
                })
            })
            .transpose()
    }

    /// The four TCBs decoded for `product`.
    pub fn tcbs(&self, product: Product) -> Result<ReportTcbs, ReportError> {
        let layout = product.tcb_layout();
        let decode = |tcb: TcbVersion, what: &'static str| {
            tcb.decode(layout).ok_or(ReportError::Reserved { what })
        };
        Ok(ReportTcbs {
            current: decode(self.current_tcb, "CURRENT_TCB")?,
            reported: decode(self.reported_tcb, "REPORTED_TCB")?,
            committed: decode(self.committed_tcb, "COMMITTED_TCB")?,
            launch: decode(self.launch_tcb, "LAUNCH_TCB")?,
        })
    }
}

/// The report's TCB_VERSION fields, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReportTcbs {
    /// CURRENT_TCB: what the platform runs now.
    pub current: Tcb,
    /// REPORTED_TCB: what the signing key is derived from.
    pub reported: Tcb,
    /// COMMITTED_TCB: the platform's anti-rollback floor.
    pub committed: Tcb,
    /// LAUNCH_TCB: what the platform ran when the guest was launched.
    pub launch: Tcb,
}
