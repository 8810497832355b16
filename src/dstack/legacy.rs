//! The legacy pair dstack still falls back to: a raw TDX quote in `.1.1` and the event log
//! as JSON in `.1.2` (dstack's `TdxEvent` list: `digest` and `event_payload` hex, optional
//! `version` and `preimage`), turned into the same typed view. The report data is the
//! quote's; the runtime events are the log's; there is no VM configuration.

use std::borrow::Cow;

use serde::Deserialize;

use super::attestation::{Event, EventVersion, Platform, RuntimeEvent, Stack, TdxEvidence, Wire};
use super::limits::{MAX_EVENTS, MAX_EVENT_LOG_JSON_LEN};
use super::replay::RUNTIME_EVENT_TYPE;
use super::{Attestation, AttestationError};
use crate::dcap::quote::{Body, Quote};

/// One event as dstack's serde writes it to JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent<'a> {
    imr: u32,
    event_type: u32,
    #[serde(default, borrow)]
    digest: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    event_payload: Cow<'a, str>,
    #[serde(default)]
    version: Option<u64>,
    // Derivable from the other fields, which are what the replay hashes.
    #[serde(default, borrow, rename = "preimage")]
    _preimage: Option<Cow<'a, str>>,
}

fn unhex(text: &str, what: &'static str) -> Result<Cow<'static, [u8]>, AttestationError> {
    hex::decode(text)
        .map(Cow::Owned)
        .map_err(|_| AttestationError::BadHex(what))
}

impl<'a> Attestation<'a> {
    /// Builds the view from the legacy pair: `quote` from `.1.1` and `event_log_json` from
    /// `.1.2` (each after [`super::extension_value`]).
    pub fn from_legacy(
        quote: &'a [u8],
        event_log_json: &'a [u8],
    ) -> Result<Self, AttestationError> {
        if event_log_json.len() > MAX_EVENT_LOG_JSON_LEN {
            return Err(AttestationError::TooLarge {
                what: "the legacy event log",
                len: event_log_json.len(),
                max: MAX_EVENT_LOG_JSON_LEN,
            });
        }
        let report_data = match Quote::parse(quote).map_err(AttestationError::Quote)?.body {
            Body::Td(td) => td.report_data.0,
            Body::Sgx(_) => return Err(AttestationError::NotTdx),
        };
        let json: Vec<JsonEvent<'a>> = serde_json::from_slice(event_log_json)
            .map_err(|e| AttestationError::Json(e.to_string()))?;
        if json.len() > MAX_EVENTS {
            return Err(AttestationError::FieldTooLarge {
                what: "the legacy event log",
                len: u64::try_from(json.len()).unwrap_or(u64::MAX),
                max: MAX_EVENTS,
            });
        }
        let mut event_log = Vec::with_capacity(json.len());
        for e in json {
            event_log.push(Event {
                imr: e.imr,
                event_type: e.event_type,
                digest: unhex(&e.digest, "an event digest")?,
                name: e.event,
                payload: unhex(&e.event_payload, "an event payload")?,
                version: e
                    .version
                    .map_or(Ok(EventVersion::V1), EventVersion::from_number)?,
            });
        }
        // As dstack does: the runtime events are the log's runtime-type events (the replay
        // then insists they sit in RTMR3).
        let runtime_events = event_log
            .iter()
            .filter(|e| e.event_type == RUNTIME_EVENT_TYPE)
            .map(|e| RuntimeEvent {
                name: e.name.clone(),
                payload: e.payload.clone(),
                version: e.version,
            })
            .collect();
        Ok(Attestation {
            wire: Wire::Legacy,
            platform: Platform::Tdx(TdxEvidence {
                quote: Cow::Borrowed(quote),
                event_log,
            }),
            stack: Stack {
                report_data,
                runtime_events,
                config: Cow::Borrowed(""),
                report_data_payload: None,
            },
        })
    }
}
