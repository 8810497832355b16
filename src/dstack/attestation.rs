//! The typed view of a dstack attestation, whichever wire form carried it: the platform's
//! evidence (a TDX quote and its event log, or another TEE's raw evidence), and dstack's
//! stack evidence (report data, runtime events, VM configuration).

use std::borrow::Cow;

use super::{AttestationError, UnsupportedTee};

/// Which encoding carried the attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// SCALE, `VersionedAttestation::V0` (first byte 0x00).
    ScaleV0,
    /// MessagePack, `VersionedAttestation::V1` (first byte a map marker).
    MsgpackV1,
    /// The legacy pair: a raw quote (`.1.1`) and a JSON event log (`.1.2`).
    Legacy,
}

impl Wire {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleV0 => "v0",
            Self::MsgpackV1 => "v1",
            Self::Legacy => "legacy",
        }
    }
}

/// How a runtime event's digest is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventVersion {
    /// SHA-384(event type LE ‖ ":" ‖ name ‖ ":" ‖ payload); the only form SCALE carries.
    #[default]
    V1,
    /// SHA-384 of the RFC 8785 JSON `{"name":…,"payload":"<hex>","type":134217729}`.
    V2,
}

impl EventVersion {
    pub(super) fn from_number(v: u64) -> Result<Self, AttestationError> {
        match v {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            version => Err(AttestationError::UnsupportedVersion {
                what: "event",
                version,
            }),
        }
    }
}

/// One entry of the platform's event log (dstack's `TdxEvent`), as carried: boot events
/// keep their digest (payload often stripped), runtime events their payload (digest often
/// stripped, since it is computed from the payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The measurement register index (0..=3 are RTMR0..RTMR3; checked by the replay).
    pub imr: u32,
    /// The event type (`0x08000001` for dstack's runtime events).
    pub event_type: u32,
    /// The digest extended into the register, as carried (may be empty).
    pub digest: Cow<'a, [u8]>,
    /// The event name (runtime events; dstack's labels for the ACPI DATA events).
    pub name: Cow<'a, str>,
    /// The payload, as carried.
    pub payload: Cow<'a, [u8]>,
    /// The digest rule for a runtime event.
    pub version: EventVersion,
}

/// A dstack runtime event (extended into RTMR3 by the guest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent<'a> {
    /// The event name (`app-id`, `compose-hash`, …).
    pub name: Cow<'a, str>,
    /// The payload.
    pub payload: Cow<'a, [u8]>,
    /// The digest rule.
    pub version: EventVersion,
}

/// A TDX quote with the event log the guest sent beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxEvidence<'a> {
    /// The DCAP quote bytes (parse them with `dcap::quote::Quote`).
    pub quote: Cow<'a, [u8]>,
    /// The event log, in extend order.
    pub event_log: Vec<Event<'a>>,
}

/// The platform evidence: which TEE, and its raw evidence for that TEE's verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Platform<'a> {
    /// Intel TDX (dstack on bare metal or a TDX host).
    Tdx(TdxEvidence<'a>),
    /// Intel TDX on Google Cloud, with a vTPM quote beside the TDX quote.
    GcpTdx {
        /// The TDX part.
        tdx: TdxEvidence<'a>,
        /// dstack's `TpmQuote`, exactly as encoded in this wire form (SCALE in V0, a
        /// MessagePack map in V1); not interpreted here.
        tpm_quote: &'a [u8],
    },
    /// An AWS Nitro Enclave.
    NitroEnclave {
        /// The NSM attestation document (COSE_Sign1, ES384).
        nsm_quote: Cow<'a, [u8]>,
    },
    /// An AWS EC2 instance with NitroTPM.
    AwsNitroTpm {
        /// The NitroTPM attestation document (COSE_Sign1).
        attestation_doc: Cow<'a, [u8]>,
    },
    /// AMD SEV-SNP.
    SevSnp {
        /// The signed ATTESTATION_REPORT (1184 bytes for versions 2 and later).
        report: Cow<'a, [u8]>,
        /// Certificates the guest found beside the report (DER), possibly none.
        cert_chain: Vec<Cow<'a, [u8]>>,
        /// dstack's `mr_config` document, whose hash the report's HOST_DATA commits to.
        mr_config: Cow<'a, str>,
    },
}

impl<'a> Platform<'a> {
    /// dstack's name for the platform (`kind` in V1).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tdx(_) => "tdx",
            Self::GcpTdx { .. } => "gcp-tdx",
            Self::NitroEnclave { .. } => "nitro-enclave",
            Self::AwsNitroTpm { .. } => "aws-nitro-tpm",
            Self::SevSnp { .. } => "sev-snp",
        }
    }

    /// The TDX evidence, or `unsupported_tee` for every platform this build does not verify
    /// (GCP TDX too: dstack verifies its TPM quote as well, which we do not yet).
    pub fn tdx(&self) -> Result<&TdxEvidence<'a>, UnsupportedTee> {
        match self {
            Self::Tdx(tdx) => Ok(tdx),
            other => Err(UnsupportedTee(other.name())),
        }
    }
}

/// dstack's stack evidence: what the guest's dstack system adds to the platform evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack<'a> {
    /// The 64 bytes the quote's REPORTDATA must equal (for RA-TLS, the key binding).
    pub report_data: [u8; 64],
    /// The runtime events dstack replays into RTMR3.
    pub runtime_events: Vec<RuntimeEvent<'a>>,
    /// The VM configuration (JSON; see `vm_config`), as the guest claims it: not measured.
    pub config: Cow<'a, str>,
    /// `dstack-pod` only: the payload whose app-data hash the report data is.
    pub report_data_payload: Option<Cow<'a, str>>,
}

/// A parsed dstack attestation, borrowing from the bytes it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation<'a> {
    /// The wire form it came in.
    pub wire: Wire,
    /// The platform evidence.
    pub platform: Platform<'a>,
    /// The stack evidence.
    pub stack: Stack<'a>,
}
