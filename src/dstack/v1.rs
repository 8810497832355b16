//! dstack's `VersionedAttestation::V1`: MessagePack with named fields (rmp-serde
//! `to_vec_named`, `dstack-attest/src/v1.rs`):
//!
//! ```text
//! {version: 1,
//!  platform: {kind: "tdx"|"gcp-tdx"|"nitro-enclave"|"aws-nitro-tpm"|"sev-snp", data: {…}},
//!  stack:    {kind: "dstack"|"dstack-pod",
//!             data: {report_data, runtime_events: [{event, payload, version?}], config,
//!                    report_data_payload (pod only)}}}
//! tdx data: {quote, event_log: [{imr, event_type, digest?, event, event_payload, version?,
//!            preimage?}]}
//! ```
//! Byte fields come as `bin` or as arrays of small integers (serde's `Vec<u8>`: dstack
//! writes the quote and the report data that way). Keys may come in any order; a repeated
//! key, an unknown key or trailing bytes are refused, so every accepted byte has one meaning.

use std::borrow::Cow;

use super::attestation::{Event, EventVersion, Platform, RuntimeEvent, Stack, TdxEvidence, Wire};
use super::limits::{MAX_EVENTS, MAX_FIELD_LEN, MAX_ITEMS};
use super::msgpack::{once, required, Mp};
use super::{Attestation, AttestationError};
use crate::dcap::quote::limits::MAX_QUOTE_LEN;

/// The longest map key or enum tag read (dstack's longest is `report_data_payload`).
const MAX_KEY_LEN: usize = 64;
/// The most keys read from one map: above any map dstack writes, so that a repeated or
/// unknown key is reported as such.
const MAX_KEYS: usize = 32;

/// Reads a map whose keys are strings, handing each key and the reader to `field`, which
/// reads the value and returns `false` for a key it does not know (refused).
fn fields<'a>(
    m: &mut Mp<'a>,
    map: &'static str,
    mut field: impl FnMut(&'a str, &mut Mp<'a>) -> Result<bool, AttestationError>,
) -> Result<(), AttestationError> {
    for _ in 0..m.map(MAX_KEYS, map)? {
        let key = m.str(MAX_KEY_LEN, map)?;
        if !field(key, m)? {
            return Err(AttestationError::UnknownKey {
                map,
                key: key.to_owned(),
            });
        }
    }
    Ok(())
}

/// An adjacently tagged enum `{kind, data}` (keys in either order): the tag and the data's
/// exact bytes, to be read once the tag is known.
fn tagged<'a>(m: &mut Mp<'a>, map: &'static str) -> Result<(&'a str, &'a [u8]), AttestationError> {
    let (mut kind, mut data) = (None, None);
    fields(m, map, |key, m| {
        match key {
            "kind" => once(&mut kind, m.str(MAX_KEY_LEN, map)?, map, key)?,
            "data" => once(&mut data, m.raw(map)?, map, key)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((required(kind, map, "kind")?, required(data, map, "data")?))
}

/// Parses a whole V1 attestation; nothing may follow it.
pub(super) fn parse(bytes: &[u8]) -> Result<Attestation<'_>, AttestationError> {
    const MAP: &str = "the V1 attestation";
    let mut m = Mp::new(bytes);
    let (mut version, mut platform, mut stack) = (None, None, None);
    fields(&mut m, MAP, |key, m| {
        match key {
            "version" => once(&mut version, m.uint("the attestation version")?, MAP, key)?,
            "platform" => once(&mut platform, platform_evidence(m)?, MAP, key)?,
            "stack" => once(&mut stack, stack_evidence(m)?, MAP, key)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    m.finish(MAP)?;
    let version = required(version, MAP, "version")?;
    if version != 1 {
        return Err(AttestationError::UnsupportedVersion {
            what: "V1 attestation",
            version,
        });
    }
    Ok(Attestation {
        wire: Wire::MsgpackV1,
        platform: required(platform, MAP, "platform")?,
        stack: required(stack, MAP, "stack")?,
    })
}

fn platform_evidence<'a>(m: &mut Mp<'a>) -> Result<Platform<'a>, AttestationError> {
    const MAP: &str = "the platform evidence";
    let (kind, data) = tagged(m, MAP)?;
    let mut d = Mp::new(data);
    let platform = match kind {
        "tdx" => Platform::Tdx(tdx(&mut d, None)?),
        "gcp-tdx" => {
            let mut tpm_quote = None;
            let tdx = tdx(&mut d, Some(&mut tpm_quote))?;
            Platform::GcpTdx {
                tdx,
                tpm_quote: required(tpm_quote, "the gcp-tdx evidence", "tpm_quote")?,
            }
        }
        "nitro-enclave" => Platform::NitroEnclave {
            nsm_quote: single_bytes(&mut d, "the nitro-enclave evidence", "nsm_quote")?,
        },
        "aws-nitro-tpm" => Platform::AwsNitroTpm {
            attestation_doc: single_bytes(&mut d, "the aws-nitro-tpm evidence", "attestation_doc")?,
        },
        "sev-snp" => sev_snp(&mut d)?,
        other => return Err(AttestationError::UnknownPlatform(other.to_owned())),
    };
    d.finish(MAP)?;
    Ok(platform)
}

/// The TDX evidence map; GCP's also holds `tpm_quote`, kept as its raw MessagePack value.
fn tdx<'a>(
    m: &mut Mp<'a>,
    mut tpm_quote: Option<&mut Option<&'a [u8]>>,
) -> Result<TdxEvidence<'a>, AttestationError> {
    const MAP: &str = "the TDX evidence";
    let (mut quote, mut event_log) = (None, None);
    fields(m, MAP, |key, m| {
        match (key, tpm_quote.as_deref_mut()) {
            ("quote", _) => once(
                &mut quote,
                m.bytes(MAX_QUOTE_LEN, "the TDX quote")?,
                MAP,
                key,
            )?,
            ("event_log", _) => once(&mut event_log, events(m)?, MAP, key)?,
            ("tpm_quote", Some(slot)) => once(slot, m.raw("the TPM quote")?, MAP, key)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(TdxEvidence {
        quote: required(quote, MAP, "quote")?,
        event_log: required(event_log, MAP, "event_log")?,
    })
}

fn events<'a>(m: &mut Mp<'a>) -> Result<Vec<Event<'a>>, AttestationError> {
    const MAP: &str = "a TDX event";
    let n = m.array(MAX_EVENTS, "the TDX event log")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let (mut imr, mut event_type, mut digest, mut name, mut payload, mut version) =
            (None, None, None, None, None, None);
        let mut preimage = None;
        fields(m, MAP, |key, m| {
            match key {
                "imr" => once(&mut imr, m.u32("an event's imr")?, MAP, key)?,
                "event_type" => once(&mut event_type, m.u32("an event's type")?, MAP, key)?,
                "digest" => once(
                    &mut digest,
                    m.bytes(MAX_FIELD_LEN, "an event digest")?,
                    MAP,
                    key,
                )?,
                "event" => once(&mut name, m.str(MAX_FIELD_LEN, "an event name")?, MAP, key)?,
                "event_payload" => once(
                    &mut payload,
                    m.bytes(MAX_FIELD_LEN, "an event payload")?,
                    MAP,
                    key,
                )?,
                "version" => once(&mut version, m.uint("an event version")?, MAP, key)?,
                // The digest's pre-image, hex: derivable from the other fields, which are
                // what the replay hashes; read (it must be text) and not trusted.
                "preimage" => once(&mut preimage, m.str(MAX_FIELD_LEN, "a preimage")?, MAP, key)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        out.push(Event {
            imr: required(imr, MAP, "imr")?,
            event_type: required(event_type, MAP, "event_type")?,
            digest: digest.unwrap_or_default(),
            name: Cow::Borrowed(required(name, MAP, "event")?),
            payload: required(payload, MAP, "event_payload")?,
            version: version.map_or(Ok(EventVersion::V1), EventVersion::from_number)?,
        });
    }
    Ok(out)
}

fn runtime_events<'a>(m: &mut Mp<'a>) -> Result<Vec<RuntimeEvent<'a>>, AttestationError> {
    const MAP: &str = "a runtime event";
    let n = m.array(MAX_EVENTS, "the runtime events")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let (mut name, mut payload, mut version) = (None, None, None);
        fields(m, MAP, |key, m| {
            match key {
                "event" => once(
                    &mut name,
                    m.str(MAX_FIELD_LEN, "a runtime event name")?,
                    MAP,
                    key,
                )?,
                "payload" => once(
                    &mut payload,
                    m.bytes(MAX_FIELD_LEN, "a runtime event payload")?,
                    MAP,
                    key,
                )?,
                "version" => once(&mut version, m.uint("a runtime event version")?, MAP, key)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        out.push(RuntimeEvent {
            name: Cow::Borrowed(required(name, MAP, "event")?),
            payload: required(payload, MAP, "payload")?,
            version: version.map_or(Ok(EventVersion::V1), EventVersion::from_number)?,
        });
    }
    Ok(out)
}

fn single_bytes<'a>(
    m: &mut Mp<'a>,
    map: &'static str,
    name: &'static str,
) -> Result<Cow<'a, [u8]>, AttestationError> {
    let mut value = None;
    fields(m, map, |key, m| {
        if key != name {
            return Ok(false);
        }
        once(&mut value, m.bytes(MAX_FIELD_LEN, map)?, map, key)?;
        Ok(true)
    })?;
    required(value, map, name)
}

fn sev_snp<'a>(m: &mut Mp<'a>) -> Result<Platform<'a>, AttestationError> {
    const MAP: &str = "the sev-snp evidence";
    let (mut report, mut cert_chain, mut mr_config) = (None, None, None);
    fields(m, MAP, |key, m| {
        match key {
            "report" => once(
                &mut report,
                m.bytes(MAX_FIELD_LEN, "the SEV-SNP report")?,
                MAP,
                key,
            )?,
            "cert_chain" => {
                let n = m.array(MAX_ITEMS, "the SEV-SNP certificate chain")?;
                let mut certs = Vec::new();
                for _ in 0..n {
                    certs.push(m.bytes(MAX_FIELD_LEN, "an SEV-SNP certificate")?);
                }
                once(&mut cert_chain, certs, MAP, key)?;
            }
            "mr_config" => once(
                &mut mr_config,
                m.str(MAX_FIELD_LEN, "the SEV-SNP mr_config")?,
                MAP,
                key,
            )?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Platform::SevSnp {
        report: required(report, MAP, "report")?,
        cert_chain: required(cert_chain, MAP, "cert_chain")?,
        mr_config: Cow::Borrowed(required(mr_config, MAP, "mr_config")?),
    })
}

fn stack_evidence<'a>(m: &mut Mp<'a>) -> Result<Stack<'a>, AttestationError> {
    const MAP: &str = "the stack evidence";
    let (kind, data) = tagged(m, MAP)?;
    let pod = match kind {
        "dstack" => false,
        "dstack-pod" => true,
        other => return Err(AttestationError::UnknownStack(other.to_owned())),
    };
    let mut d = Mp::new(data);
    let (mut report_data, mut events, mut config, mut payload) = (None, None, None, None);
    fields(&mut d, MAP, |key, m| {
        match key {
            "report_data" => once(&mut report_data, m.bytes(64, "the report data")?, MAP, key)?,
            "runtime_events" => once(&mut events, runtime_events(m)?, MAP, key)?,
            "config" => once(
                &mut config,
                m.str(MAX_FIELD_LEN, "the VM configuration")?,
                MAP,
                key,
            )?,
            "report_data_payload" if pod => once(
                &mut payload,
                m.str(MAX_FIELD_LEN, "the report data payload")?,
                MAP,
                key,
            )?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    d.finish(MAP)?;
    let report_data = required(report_data, MAP, "report_data")?;
    let report_data = <[u8; 64]>::try_from(report_data.as_ref())
        .map_err(|_| AttestationError::ReportDataLength(report_data.len()))?;
    let report_data_payload = if pod {
        Some(Cow::Borrowed(required(
            payload,
            MAP,
            "report_data_payload",
        )?))
    } else {
        None
    };
    Ok(Stack {
        report_data,
        runtime_events: required(events, MAP, "runtime_events")?,
        config: Cow::Borrowed(required(config, MAP, "config")?),
        report_data_payload,
    })
}
