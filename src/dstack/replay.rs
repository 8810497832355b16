//! The event-log replay: each RTMR the log covers is recomputed by SHA-384 extension from
//! zero (`RTMR = SHA-384(RTMR ‖ digest)`) and must equal the quote's, or the evidence is
//! refused (`event_log_mismatch`). Only a replayed log yields an app identity.
//!
//! What dstack certificates carry (`strip_tdx_lite_event_log`): RTMR3's runtime events with
//! their payloads (the digest is recomputed from them, so it is often left out), and RTMR0's
//! three ACPI DATA events as digests only, for dstack's "lite" verifier: those alone cannot
//! give RTMR0, so an RTMR whose events are all such markers is reported as carried
//! digests-only, not replayed. Any other RTMR with events must replay exactly; RTMR3 always
//! must (from zero when there are no runtime events), as dstack's own verifier insists.
//!
//! A runtime event's digest (`cc-eventlog/src/runtime_events.rs`): V1 is
//! SHA-384(`0x08000001` LE ‖ ":" ‖ name ‖ ":" ‖ payload); V2 is SHA-384 of the RFC 8785
//! JSON `{"name":<name>,"payload":"<lower-case hex>","type":134217729}`.

use sha2::{Digest, Sha384};

use super::attestation::{EventVersion, Stack, TdxEvidence};
use crate::dcap::ids::Rtmr;

/// The event type of dstack's runtime events (not a TCG type).
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// The RTMR0 events dstack keeps as digests for its lite verifier: TCG type 10
/// (EV_PLATFORM_CONFIG_FLAGS) with the payload `ACPI DATA`.
const ACPI_DATA_EVENT_TYPE: u32 = 10;
const ACPI_DATA_PAYLOAD: &[u8] = b"ACPI DATA";
/// The number of RTMRs a TD has.
const RTMRS: usize = 4;

/// What the replay found for one RTMR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtmrReplay {
    /// The events replay to the quote's value.
    Replayed {
        /// How many events were extended.
        events: usize,
    },
    /// The log carries no event for this RTMR.
    NotCarried,
    /// Only dstack's named ACPI DATA digests (the stripped RTMR0): not a full log.
    DigestsOnly {
        /// How many such events.
        events: usize,
    },
}

impl RtmrReplay {
    /// Whether the quote's value was recomputed from the log.
    pub fn is_replayed(self) -> bool {
        matches!(self, Self::Replayed { .. })
    }
}

/// One event of a replayed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedEvent<'b> {
    /// The RTMR it extends (0..=3).
    pub rtmr: usize,
    /// The event type.
    pub event_type: u32,
    /// The event name.
    pub name: &'b str,
    /// The payload, as carried.
    pub payload: &'b [u8],
    /// The digest extended (computed, for runtime events).
    pub digest: [u8; 48],
    /// The runtime digest rule.
    pub version: EventVersion,
    /// Whether its RTMR was replayed to the quote's value.
    pub replayed: bool,
}

/// A log whose covered RTMRs equal the quote's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedLog<'b> {
    /// RTMR0..RTMR3.
    pub rtmrs: [RtmrReplay; RTMRS],
    /// RTMR0–2's events in log order, then RTMR3's runtime events in extend order.
    pub events: Vec<ReplayedEvent<'b>>,
}

impl<'b> ReplayedLog<'b> {
    /// RTMR3's runtime events, in extend order.
    pub fn runtime_events(&self) -> impl Iterator<Item = &ReplayedEvent<'b>> {
        self.events.iter().filter(|e| e.rtmr == 3)
    }
}

/// The log does not give the quote's RTMRs. Always `event_log_mismatch`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// An event names a register a TD does not have.
    #[error("event {index} extends RTMR {imr}; a TD has RTMR0-3")]
    ImrOutOfRange {
        /// Position in the log.
        index: usize,
        /// The register it names.
        imr: u32,
    },
    /// A dstack runtime event outside RTMR3, where dstack never extends one.
    #[error("event {index} is a dstack runtime event in RTMR{imr}; they belong in RTMR3")]
    RuntimeEventOutsideRtmr3 {
        /// Position in the log.
        index: usize,
        /// The register it names.
        imr: u32,
    },
    /// A boot event in RTMR3, which only dstack's runtime events extend.
    #[error("event {index} in RTMR3 is not a dstack runtime event")]
    BootEventInRtmr3 {
        /// Position in the log.
        index: usize,
    },
    /// A boot event whose digest is not 48 bytes (SHA-384).
    #[error("event {index} has a {len}-byte digest, not a 48-byte SHA-384")]
    BadDigest {
        /// Position in the log.
        index: usize,
        /// The digest length.
        len: usize,
    },
    /// A runtime event whose carried digest is not the digest of its payload.
    #[error("event {index} ({name}) carries a digest that is not the digest of its payload")]
    DigestMismatch {
        /// Position in the log.
        index: usize,
        /// The event name.
        name: String,
    },
    /// The event log's RTMR3 events and the attestation's runtime events disagree.
    #[error("the event log's RTMR3 events differ from the attestation's runtime events: {0}")]
    RuntimeEventsDiffer(String),
    /// The replay does not give the quote's value.
    #[error("RTMR{rtmr} replays to {replayed}, the quote says {quoted}")]
    RtmrMismatch {
        /// Which RTMR.
        rtmr: usize,
        /// The quote's value, hex.
        quoted: String,
        /// The replayed value, hex.
        replayed: String,
    },
}

/// The digest dstack extends for a runtime event.
pub fn runtime_digest(name: &str, payload: &[u8], version: EventVersion) -> [u8; 48] {
    let mut h = Sha384::new();
    match version {
        EventVersion::V1 => {
            h.update(RUNTIME_EVENT_TYPE.to_le_bytes());
            h.update(b":");
            h.update(name.as_bytes());
            h.update(b":");
            h.update(payload);
        }
        EventVersion::V2 => h.update(canonical_json_v2(name, payload).as_bytes()),
    }
    h.finalize().into()
}

/// The RFC 8785 (JCS) form of a V2 runtime event: keys sorted, no whitespace, the string
/// escaped as ECMAScript's JSON.stringify does (`"` `\` and control characters only).
fn canonical_json_v2(name: &str, payload: &[u8]) -> String {
    let mut out = String::with_capacity(
        name.len()
            .saturating_add(payload.len().saturating_mul(2))
            .saturating_add(48),
    );
    out.push_str("{\"name\":\"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push_str("\",\"payload\":\"");
    out.push_str(&hex::encode(payload));
    out.push_str("\",\"type\":");
    out.push_str(&RUNTIME_EVENT_TYPE.to_string());
    out.push('}');
    out
}

fn extend<'x>(digests: impl Iterator<Item = &'x [u8; 48]>) -> [u8; 48] {
    digests.fold([0u8; 48], |mr, d| {
        let mut h = Sha384::new();
        h.update(mr);
        h.update(d);
        h.finalize().into()
    })
}

fn is_acpi_marker(e: &ReplayedEvent<'_>) -> bool {
    e.rtmr == 0 && e.event_type == ACPI_DATA_EVENT_TYPE && e.payload == ACPI_DATA_PAYLOAD
}

fn mismatch(rtmr: usize, quoted: &Rtmr, replayed: &[u8; 48]) -> ReplayError {
    ReplayError::RtmrMismatch {
        rtmr,
        quoted: quoted.to_string(),
        replayed: hex::encode(replayed),
    }
}

/// Replays the TDX event log and the stack's runtime events against the quote's RTMRs
/// (`quoted`, from the signed TD report). RTMR3's log is the stack's runtime events, as in
/// dstack's verifier; when the event log carries RTMR3 events too they must be the same
/// list, so what is shown and what is replayed cannot differ.
pub fn replay<'b>(
    tdx: &'b TdxEvidence<'_>,
    stack: &'b Stack<'_>,
    quoted: &[Rtmr; RTMRS],
) -> Result<ReplayedLog<'b>, ReplayError> {
    let mut events = Vec::new();
    let mut logged_runtime = Vec::new();
    for (index, e) in tdx.event_log.iter().enumerate() {
        let rtmr = usize::try_from(e.imr)
            .ok()
            .filter(|r| *r < RTMRS)
            .ok_or(ReplayError::ImrOutOfRange { index, imr: e.imr })?;
        if e.event_type == RUNTIME_EVENT_TYPE {
            if rtmr != 3 {
                return Err(ReplayError::RuntimeEventOutsideRtmr3 { index, imr: e.imr });
            }
            let computed = runtime_digest(&e.name, &e.payload, e.version);
            if !e.digest.is_empty() && *e.digest != computed {
                return Err(ReplayError::DigestMismatch {
                    index,
                    name: e.name.to_string(),
                });
            }
            logged_runtime.push(e);
            continue;
        }
        if rtmr == 3 {
            return Err(ReplayError::BootEventInRtmr3 { index });
        }
        let digest =
            <[u8; 48]>::try_from(e.digest.as_ref()).map_err(|_| ReplayError::BadDigest {
                index,
                len: e.digest.len(),
            })?;
        events.push(ReplayedEvent {
            rtmr,
            event_type: e.event_type,
            name: &e.name,
            payload: &e.payload,
            digest,
            version: e.version,
            replayed: false,
        });
    }
    if !logged_runtime.is_empty() {
        if logged_runtime.len() != stack.runtime_events.len() {
            return Err(ReplayError::RuntimeEventsDiffer(format!(
                "{} in the event log, {} runtime events",
                logged_runtime.len(),
                stack.runtime_events.len()
            )));
        }
        for (i, (logged, runtime)) in logged_runtime.iter().zip(&stack.runtime_events).enumerate() {
            if logged.name != runtime.name
                || logged.payload != runtime.payload
                || logged.version != runtime.version
            {
                return Err(ReplayError::RuntimeEventsDiffer(format!(
                    "runtime event {i} is `{}`, the event log's is `{}`",
                    runtime.name, logged.name
                )));
            }
        }
    }
    let mut rtmrs = [RtmrReplay::NotCarried; RTMRS];
    for (rtmr, (status, quoted)) in rtmrs.iter_mut().zip(quoted).enumerate().take(3) {
        let n = events.iter().filter(|e| e.rtmr == rtmr).count();
        if n == 0 {
            continue;
        }
        if events.iter().filter(|e| e.rtmr == rtmr).all(is_acpi_marker) {
            *status = RtmrReplay::DigestsOnly { events: n };
            continue;
        }
        let value = extend(events.iter().filter(|e| e.rtmr == rtmr).map(|e| &e.digest));
        if value != quoted.0 {
            return Err(mismatch(rtmr, quoted, &value));
        }
        for e in events.iter_mut().filter(|e| e.rtmr == rtmr) {
            e.replayed = true;
        }
        *status = RtmrReplay::Replayed { events: n };
    }
    let runtime: Vec<ReplayedEvent<'b>> = stack
        .runtime_events
        .iter()
        .map(|r| ReplayedEvent {
            rtmr: 3,
            event_type: RUNTIME_EVENT_TYPE,
            name: &r.name,
            payload: &r.payload,
            digest: runtime_digest(&r.name, &r.payload, r.version),
            version: r.version,
            replayed: true,
        })
        .collect();
    let value = extend(runtime.iter().map(|e| &e.digest));
    let [.., quoted3] = quoted;
    if value != quoted3.0 {
        return Err(mismatch(3, quoted3, &value));
    }
    let [.., status3] = &mut rtmrs;
    *status3 = RtmrReplay::Replayed {
        events: runtime.len(),
    };
    events.extend(runtime);
    Ok(ReplayedLog { rtmrs, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_digest_is_the_tagged_concatenation() {
        // dstack's own vector: app-id with payload deadbeef.
        let mut h = Sha384::new();
        h.update(0x0800_0001u32.to_le_bytes());
        h.update(b":app-id:");
        h.update([0xde, 0xad, 0xbe, 0xef]);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(
            runtime_digest("app-id", &[0xde, 0xad, 0xbe, 0xef], EventVersion::V1),
            want
        );
    }

    #[test]
    fn v2_preimage_is_canonical_json() {
        // dstack's vectors (cc-eventlog runtime_events.rs tests).
        assert_eq!(
            canonical_json_v2("compose-hash", &[0xab, 0xcd]),
            r#"{"name":"compose-hash","payload":"abcd","type":134217729}"#
        );
        assert_eq!(
            canonical_json_v2("event\"with\\special\nchars", &[0xff]),
            r#"{"name":"event\"with\\special\nchars","payload":"ff","type":134217729}"#
        );
        assert_eq!(
            canonical_json_v2("\u{8}\u{c}\n\r\t\u{1}", &[]),
            r#"{"name":"\b\f\n\r\t\u0001","payload":"","type":134217729}"#
        );
        assert_eq!(
            canonical_json_v2("测试-emoji-🦀\u{7f}/", &[]),
            "{\"name\":\"测试-emoji-🦀\u{7f}/\",\"payload\":\"\",\"type\":134217729}"
        );
        let v2 = runtime_digest("compose-hash", &[0xab, 0xcd], EventVersion::V2);
        let want: [u8; 48] =
            Sha384::digest(br#"{"name":"compose-hash","payload":"abcd","type":134217729}"#).into();
        assert_eq!(v2, want);
        assert_ne!(
            v2,
            runtime_digest("compose-hash", &[0xab, 0xcd], EventVersion::V1)
        );
    }

    #[test]
    fn extension_starts_from_zero() {
        assert_eq!(extend(std::iter::empty()), [0u8; 48]);
        let d = [7u8; 48];
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(d);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(extend([&d].into_iter()), want);
    }
}
