//! PURE. What an SEV-SNP guest must look like (a `tee = "snp"` entry, phase 2 wires the
//! config keys): allow-lists for its launch identity, minimum guest SVN and TCB, the VMPL it
//! reports from, and the guest policy and platform it runs under. Every violation is typed
//! and names the refusal code (DESIGN.md) it becomes; all are listed, none short-circuits.
//!
//! Which TCB counts: REPORTED_TCB, because the signing key is derived from it (a VCEK for
//! an old TCB whose firmware leaked its key can sign any CURRENT/COMMITTED values), and
//! LAUNCH_TCB, because a guest launched on vulnerable firmware stays exposed after a live
//! firmware update. CURRENT_TCB and COMMITTED_TCB are signed by the same key and are never
//! below REPORTED_TCB on honest firmware: shown, not judged.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::snp::error::{SnpError, TcbComponent};
use crate::snp::ids::{AuthorKeyDigest, FamilyId, HostData, IdKeyDigest, ImageId, Measurement};
use crate::snp::report::{GuestPolicy, PlatformInfo, Report};
use crate::snp::verified::{SnpIdentity, VerifiedReport};
use crate::snp::Tcb;

/// Minimum SPLs per TCB component; `fmc` applies to Turin only (other products have none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinTcb {
    /// PSP bootloader.
    pub bootloader: u8,
    /// PSP OS (TEE).
    pub tee: u8,
    /// SNP firmware.
    pub snp: u8,
    /// Microcode.
    pub microcode: u8,
    /// FMC (Turin).
    pub fmc: Option<u8>,
}

/// A policy for SEV-SNP guests: every non-empty list is an allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpPolicy {
    /// Allowed MEASUREMENT values.
    pub measurement: Vec<Measurement>,
    /// Allowed HOST_DATA values.
    pub host_data: Vec<HostData>,
    /// Allowed ID_KEY_DIGEST values.
    pub id_key_digest: Vec<IdKeyDigest>,
    /// Allowed AUTHOR_KEY_DIGEST values (the report must have AUTHOR_KEY_EN set).
    pub author_key_digest: Vec<AuthorKeyDigest>,
    /// Required FAMILY_ID.
    pub family_id: Option<FamilyId>,
    /// Required IMAGE_ID.
    pub image_id: Option<ImageId>,
    /// Minimum GUEST_SVN.
    pub min_guest_svn: Option<u32>,
    /// Minimum TCB, component-wise, of REPORTED_TCB and LAUNCH_TCB.
    pub min_tcb: Option<MinTcb>,
    /// Highest VMPL a report may come from (0: only the most privileged guest code).
    pub max_vmpl: u8,
    /// Accept guests the host may debug (POLICY.DEBUG).
    pub allow_debug: bool,
    /// Accept guests that may be tied to a migration agent (POLICY.MIGRATE_MA).
    pub allow_migration_agent: bool,
    /// Accept guests whose policy lets the host run SMT (POLICY.SMT; most do).
    pub allow_smt: bool,
    /// Require POLICY.SINGLE_SOCKET.
    pub require_single_socket: bool,
    /// PLATFORM_INFO bits that must be set (e.g. `PlatformInfo::TSME_EN`).
    pub platform_info_required: u64,
    /// PLATFORM_INFO bits that must be clear (e.g. `PlatformInfo::SMT_EN`).
    pub platform_info_forbidden: u64,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        Self {
            measurement: Vec::new(),
            host_data: Vec::new(),
            id_key_digest: Vec::new(),
            author_key_digest: Vec::new(),
            family_id: None,
            image_id: None,
            min_guest_svn: None,
            min_tcb: None,
            max_vmpl: 0,
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            require_single_socket: false,
            platform_info_required: 0,
            platform_info_forbidden: 0,
        }
    }
}

/// One way a verified SEV-SNP guest fails its policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnpViolation {
    /// POLICY.DEBUG is set and debug is not allowed.
    #[error("the guest policy {0} lets the host debug the guest (DEBUG, bit 19) and the policy does not allow debug guests")]
    Debug(GuestPolicy),
    /// MEASUREMENT not allowed.
    #[error("MEASUREMENT {actual} is not in the allow-list [{}]", join(.allowed))]
    Measurement {
        /// From the report.
        actual: Measurement,
        /// The policy's list.
        allowed: Vec<Measurement>,
    },
    /// HOST_DATA not allowed.
    #[error("HOST_DATA {actual} is not in the allow-list [{}]", join(.allowed))]
    HostData {
        /// From the report.
        actual: HostData,
        /// The policy's list.
        allowed: Vec<HostData>,
    },
    /// ID_KEY_DIGEST not allowed.
    #[error("ID_KEY_DIGEST {actual} is not in the allow-list [{}]", join(.allowed))]
    IdKey {
        /// From the report.
        actual: IdKeyDigest,
        /// The policy's list.
        allowed: Vec<IdKeyDigest>,
    },
    /// FAMILY_ID or IMAGE_ID (from the ID block the ID key signed) differs.
    #[error("{field} is {actual}, the policy requires {expected}")]
    IdBlock {
        /// `FAMILY_ID` or `IMAGE_ID`.
        field: &'static str,
        /// From the report, hex.
        actual: String,
        /// The policy's, hex.
        expected: String,
    },
    /// AUTHOR_KEY_DIGEST not allowed, or absent (AUTHOR_KEY_EN clear).
    #[error("AUTHOR_KEY_DIGEST {} is not in the allow-list [{}]", .actual.map_or("(none: AUTHOR_KEY_EN is 0)".to_owned(), |a| a.to_string()), join(.allowed))]
    AuthorKey {
        /// From the report, when AUTHOR_KEY_EN is set.
        actual: Option<AuthorKeyDigest>,
        /// The policy's list.
        allowed: Vec<AuthorKeyDigest>,
    },
    /// GUEST_SVN below the minimum.
    #[error("GUEST_SVN {actual} is below the policy minimum {min}")]
    GuestSvn {
        /// From the report.
        actual: u32,
        /// The policy's minimum.
        min: u32,
    },
    /// A TCB component below the minimum.
    #[error("{field} {component} SPL {actual} is below the policy minimum {min} (tcb: {tcb})")]
    Tcb {
        /// `REPORTED_TCB` or `LAUNCH_TCB`.
        field: &'static str,
        /// The component.
        component: TcbComponent,
        /// Its SPL.
        actual: u8,
        /// The minimum.
        min: u8,
        /// The whole TCB, for the message.
        tcb: Tcb,
    },
    /// VMPL above the maximum (a host-requested report has VMPL 0xFFFFFFFF).
    #[error("the report comes from VMPL {actual}, the policy allows at most {max}{}", if *.actual > 3 { " (a host-requested report speaks for no guest code)" } else { "" })]
    Vmpl {
        /// From the report.
        actual: u32,
        /// The policy's maximum.
        max: u8,
    },
    /// A guest policy bit the entry does not accept.
    #[error("guest policy {policy}: {why}")]
    GuestPolicy {
        /// POLICY.
        policy: GuestPolicy,
        /// Which bit and why.
        why: &'static str,
    },
    /// PLATFORM_INFO lacks a required bit or has a forbidden one.
    #[error("platform info {:#x}: {why}", .info.0)]
    Platform {
        /// PLATFORM_INFO.
        info: PlatformInfo,
        /// What is wrong.
        why: String,
    },
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    crate::appraise::violation::join(items)
}

impl SnpViolation {
    /// The refusal code this violation becomes (DESIGN.md "More TEEs").
    pub fn code(&self) -> RefusalCode {
        match self {
            Self::Debug(_) => RefusalCode::DebugEnclave,
            Self::Measurement { .. } => RefusalCode::MeasurementMismatch,
            Self::HostData { .. } => RefusalCode::HostDataMismatch,
            Self::IdKey { .. } => RefusalCode::IdKeyMismatch,
            // The same ID key may sign several families and images: a wrong image from the
            // right owner is not a wrong owner.
            Self::IdBlock { .. } => RefusalCode::IdBlockMismatch,
            Self::AuthorKey { .. } => RefusalCode::AuthorKeyMismatch,
            Self::GuestSvn { .. } => RefusalCode::GuestSvnTooLow,
            Self::Tcb { .. } => RefusalCode::TcbBelowMinimum,
            Self::Vmpl { .. } => RefusalCode::VmplNotAllowed,
            Self::GuestPolicy { .. } => RefusalCode::GuestPolicyNotAllowed,
            // The host's configuration, not the guest owner's choice: another party fixes it.
            Self::Platform { .. } => RefusalCode::PlatformInfoNotAllowed,
        }
    }

    /// [`Self::code`] as its stable string.
    pub fn refusal_code(&self) -> &'static str {
        self.code().as_str()
    }
}

/// The refusal code a verification failure becomes: parse errors are `quote_malformed`, the report's signature
/// `signature_invalid`, expired collateral `collateral_expired`, a revoked ASK/ASVK
/// `revoked`, everything about the chain and the key's binding to the report `chain_invalid`.
pub fn snp_error_code(e: &SnpError) -> &'static str {
    snp_refusal_code(e).as_str()
}

/// [`snp_error_code`] as a [`RefusalCode`] (one `match`, exhaustive over [`SnpError`]).
pub fn snp_refusal_code(e: &SnpError) -> RefusalCode {
    match e {
        SnpError::Report(_) => RefusalCode::QuoteMalformed,
        SnpError::SignatureEncoding(_) | SnpError::ReportSignature(_) => {
            RefusalCode::SignatureInvalid
        }
        SnpError::Expired { .. } => RefusalCode::CollateralExpired,
        SnpError::Revoked { .. } => RefusalCode::Revoked,
        SnpError::Certificate { .. }
        | SnpError::Algorithm { .. }
        | SnpError::NotPinned { .. }
        | SnpError::CertificateSignature(_)
        | SnpError::KeyKind { .. }
        | SnpError::ProductMismatch { .. }
        | SnpError::Extension { .. }
        | SnpError::ChipIdMismatch { .. }
        | SnpError::TcbMismatch { .. } => RefusalCode::ChainInvalid,
    }
}

fn allowed<T: PartialEq>(list: &[T], actual: &T) -> bool {
    list.is_empty() || list.contains(actual)
}

impl SnpPolicy {
    /// True when the entry pins the guest's launch identity (a measurement, the host data
    /// or the ID key); config validation (phase 2) requires it.
    pub fn pins_identity(&self) -> bool {
        !self.measurement.is_empty() || !self.host_data.is_empty() || !self.id_key_digest.is_empty()
    }

    /// The check that needs no signature: a debug guest is refused before any crypto.
    pub fn check_early(&self, report: &Report<'_>) -> Result<(), SnpViolation> {
        if report.policy.debug() && !self.allow_debug {
            return Err(SnpViolation::Debug(report.policy));
        }
        Ok(())
    }

    /// Every violation of this policy by a verified guest, in ranking order (debug,
    /// identity, SVN and TCB, VMPL, guest policy, platform).
    pub fn violations(&self, id: &SnpIdentity) -> Vec<SnpViolation> {
        let mut out = Vec::new();
        if id.policy.debug() && !self.allow_debug {
            out.push(SnpViolation::Debug(id.policy));
        }
        if !allowed(&self.measurement, &id.measurement) {
            out.push(SnpViolation::Measurement {
                actual: id.measurement,
                allowed: self.measurement.clone(),
            });
        }
        if !allowed(&self.host_data, &id.host_data) {
            out.push(SnpViolation::HostData {
                actual: id.host_data,
                allowed: self.host_data.clone(),
            });
        }
        if !allowed(&self.id_key_digest, &id.id_key_digest) {
            out.push(SnpViolation::IdKey {
                actual: id.id_key_digest,
                allowed: self.id_key_digest.clone(),
            });
        }
        let id_block = [
            ("FAMILY_ID", self.family_id.map(|f| f.0), id.family_id.0),
            ("IMAGE_ID", self.image_id.map(|i| i.0), id.image_id.0),
        ];
        for (field, expected, actual) in id_block {
            if let Some(expected) = expected.filter(|e| *e != actual) {
                out.push(SnpViolation::IdBlock {
                    field,
                    actual: hex::encode(actual),
                    expected: hex::encode(expected),
                });
            }
        }
        if !self.author_key_digest.is_empty() {
            let actual = id.author_key_en.then_some(id.author_key_digest);
            if !actual.is_some_and(|a| self.author_key_digest.contains(&a)) {
                out.push(SnpViolation::AuthorKey {
                    actual,
                    allowed: self.author_key_digest.clone(),
                });
            }
        }
        if let Some(min) = self.min_guest_svn.filter(|m| id.guest_svn < *m) {
            out.push(SnpViolation::GuestSvn {
                actual: id.guest_svn,
                min,
            });
        }
        if let Some(min) = &self.min_tcb {
            for (field, tcb) in [
                ("REPORTED_TCB", id.tcb.reported),
                ("LAUNCH_TCB", id.tcb.launch),
            ] {
                tcb_violations(field, &tcb, min, &mut out);
            }
        }
        if id.vmpl > u32::from(self.max_vmpl) {
            out.push(SnpViolation::Vmpl {
                actual: id.vmpl,
                max: self.max_vmpl,
            });
        }
        let policy = id.policy;
        let bits = [
            (policy.migrate_ma() && !self.allow_migration_agent, "a migration agent may be associated (MIGRATE_MA, bit 18) and the policy does not allow it"),
            (policy.smt() && !self.allow_smt, "the host may run SMT (bit 16) and the policy requires SMT off"),
            (!policy.single_socket() && self.require_single_socket, "the guest may run on several sockets (SINGLE_SOCKET, bit 20, clear) and the policy requires one"),
        ];
        for (_, why) in bits.into_iter().filter(|(bad, _)| *bad) {
            out.push(SnpViolation::GuestPolicy { policy, why });
        }
        let info = id.platform_info;
        let missing = self.platform_info_required & !info.0;
        if missing != 0 {
            out.push(SnpViolation::Platform {
                info,
                why: format!("required bits {missing:#x} are clear"),
            });
        }
        let forbidden = self.platform_info_forbidden & info.0;
        if forbidden != 0 {
            out.push(SnpViolation::Platform {
                info,
                why: format!("forbidden bits {forbidden:#x} are set"),
            });
        }
        out
    }
}

fn tcb_violations(field: &'static str, tcb: &Tcb, min: &MinTcb, out: &mut Vec<SnpViolation>) {
    let mut parts = vec![
        (TcbComponent::Bootloader, tcb.bootloader, min.bootloader),
        (TcbComponent::Tee, tcb.tee, min.tee),
        (TcbComponent::Snp, tcb.snp, min.snp),
        (TcbComponent::Microcode, tcb.microcode, min.microcode),
    ];
    // FMC exists on Turin only; elsewhere a minimum for it is met vacuously.
    if let (Some(actual), Some(min)) = (tcb.fmc, min.fmc) {
        parts.push((TcbComponent::Fmc, actual, min));
    }
    for (component, actual, min) in parts {
        if actual < min {
            out.push(SnpViolation::Tcb {
                field,
                component,
                actual,
                min,
                tcb: *tcb,
            });
        }
    }
}

/// A verified SEV-SNP report its entry's policy accepts. The only constructor is
/// [`SnpPolicy::evaluate`], which takes a [`VerifiedReport`] (itself made only by
/// `snp::verify::verify`): whatever holds one holds a verified, accepted guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpAccepted {
    report: VerifiedReport,
}

impl SnpAccepted {
    /// The verified report: the identity, the verification time, the collateral used.
    pub fn report(&self) -> &VerifiedReport {
        &self.report
    }
}

impl SnpPolicy {
    /// Accepts `verified` if it violates nothing; otherwise refuses it with every violation,
    /// in ranking order (the first names the code).
    pub fn evaluate(&self, verified: VerifiedReport) -> Result<SnpAccepted, Refusal> {
        let violations = self.violations(&verified.identity);
        match violations.first() {
            None => Ok(SnpAccepted { report: verified }),
            Some(first) => Err(Refusal {
                code: first.code(),
                reasons: violations.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}
