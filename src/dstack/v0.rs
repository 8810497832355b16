//! dstack's `VersionedAttestation::V0`, SCALE-encoded (`dstack-attest/src/attestation.rs`):
//!
//! ```text
//! 0x00 (V0) ‖ AttestationQuote ‖ runtime_events: Vec<{name: String, payload: Vec<u8>}>
//!           ‖ report_data: [u8; 64] ‖ config: String
//! AttestationQuote: 0 Tdx{quote, event_log: Vec<TdxEvent>} | 1 GcpTdx{Tdx, TpmQuote}
//!                 | 2 NitroEnclave{nsm_quote} | 3 SevSnp{report, cert_chain, mr_config}
//!                 | 4 AwsNitroTpm{attestation_doc}
//! TdxEvent: imr u32 ‖ event_type u32 ‖ digest Vec<u8> ‖ event String ‖ event_payload Vec<u8>
//! ```
//! SCALE carries no event version: every runtime event is V1.

use std::borrow::Cow;

use super::attestation::{Event, EventVersion, Platform, RuntimeEvent, Stack, TdxEvidence, Wire};
use super::limits::{MAX_EVENTS, MAX_FIELD_LEN, MAX_ITEMS};
use super::scale::Scale;
use super::{Attestation, AttestationError};
use crate::dcap::quote::limits::MAX_QUOTE_LEN;

/// Parses a whole V0 attestation; nothing may follow it.
pub(super) fn parse(bytes: &[u8]) -> Result<Attestation<'_>, AttestationError> {
    let mut r = Scale::new(bytes);
    let version = r.byte("the versioned attestation index")?;
    if version != 0 {
        return Err(AttestationError::UnknownWire(version));
    }
    let platform = match r.byte("the attestation quote variant")? {
        0 => Platform::Tdx(tdx(&mut r)?),
        1 => {
            let tdx = tdx(&mut r)?;
            let (tpm_quote, ()) = r.span(tpm_quote)?;
            Platform::GcpTdx { tdx, tpm_quote }
        }
        2 => Platform::NitroEnclave {
            nsm_quote: Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "the Nitro NSM document")?),
        },
        3 => {
            let report = Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "the SEV-SNP report")?);
            let n = r.count(MAX_ITEMS, "the SEV-SNP certificate chain")?;
            let mut cert_chain = Vec::new();
            for _ in 0..n {
                cert_chain.push(Cow::Borrowed(
                    r.bytes(MAX_FIELD_LEN, "an SEV-SNP certificate")?,
                ));
            }
            let mr_config = Cow::Borrowed(r.str(MAX_FIELD_LEN, "the SEV-SNP mr_config")?);
            Platform::SevSnp {
                report,
                cert_chain,
                mr_config,
            }
        }
        4 => Platform::AwsNitroTpm {
            attestation_doc: Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "the NitroTPM document")?),
        },
        other => return Err(AttestationError::UnknownPlatform(format!("index {other}"))),
    };
    let n = r.count(MAX_EVENTS, "the runtime events")?;
    let mut runtime_events = Vec::new();
    for _ in 0..n {
        runtime_events.push(RuntimeEvent {
            name: Cow::Borrowed(r.str(MAX_FIELD_LEN, "a runtime event name")?),
            payload: Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "a runtime event payload")?),
            version: EventVersion::V1,
        });
    }
    let report_data = *r.array::<64>("the report data")?;
    let config = Cow::Borrowed(r.str(MAX_FIELD_LEN, "the VM configuration")?);
    r.finish("the V0 attestation")?;
    Ok(Attestation {
        wire: Wire::ScaleV0,
        platform,
        stack: Stack {
            report_data,
            runtime_events,
            config,
            report_data_payload: None,
        },
    })
}

fn tdx<'a>(r: &mut Scale<'a>) -> Result<TdxEvidence<'a>, AttestationError> {
    let quote = Cow::Borrowed(r.bytes(MAX_QUOTE_LEN, "the TDX quote")?);
    let n = r.count(MAX_EVENTS, "the TDX event log")?;
    let mut event_log = Vec::new();
    for _ in 0..n {
        event_log.push(Event {
            imr: r.u32_le("an event's imr")?,
            event_type: r.u32_le("an event's type")?,
            digest: Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "an event digest")?),
            name: Cow::Borrowed(r.str(MAX_FIELD_LEN, "an event name")?),
            payload: Cow::Borrowed(r.bytes(MAX_FIELD_LEN, "an event payload")?),
            version: EventVersion::V1,
        });
    }
    Ok(TdxEvidence { quote, event_log })
}

/// Walks dstack's `TpmQuote` (message, signature, PCR values, AK certificate, platform,
/// TPM event log) only to find where it ends; its meaning is a later verifier's job.
fn tpm_quote(r: &mut Scale<'_>) -> Result<(), AttestationError> {
    r.bytes(MAX_FIELD_LEN, "the TPM quote message")?;
    r.bytes(MAX_FIELD_LEN, "the TPM quote signature")?;
    for _ in 0..r.count(MAX_ITEMS, "the TPM PCR values")? {
        r.u32_le("a PCR index")?;
        r.str(MAX_FIELD_LEN, "a PCR algorithm")?;
        r.bytes(MAX_FIELD_LEN, "a PCR value")?;
    }
    r.bytes(MAX_FIELD_LEN, "the TPM AK certificate")?;
    // dstack's Platform enum: Dstack, Gcp, NitroEnclave, AwsEc2.
    let platform = r.byte("the TPM platform")?;
    if platform > 3 {
        return Err(AttestationError::UnknownPlatform(format!(
            "TPM platform index {platform}"
        )));
    }
    for _ in 0..r.count(MAX_EVENTS, "the TPM event log")? {
        r.u32_le("a TPM event's PCR index")?;
        r.bytes(MAX_FIELD_LEN, "a TPM event digest")?;
    }
    Ok(())
}
