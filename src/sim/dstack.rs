//! A simulated dstack app's evidence: RTMR3's runtime events naming an app (app id, compose
//! hash, instance id, measured OS image hash, key provider), and the writers of the three
//! forms a dstack certificate carries them in: SCALE `V0` and MessagePack `V1` in
//! `1.3.6.1.4.1.62397.1.8`, and the legacy `.1.1` quote with its `.1.2` JSON event log.
//! Each check can be made to fail: another app (any identity value), a log that does not
//! replay, a report data bound to another key. The pure parser in `crate::dstack` reads all
//! of this back; nothing here is shared with it but the digest rule.

use sha2::{Digest, Sha384};

use crate::dstack::replay::{runtime_digest, RUNTIME_EVENT_TYPE};
use crate::dstack::EventVersion;

/// Which form the certificate carries the attestation in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DstackWire {
    /// SCALE `V0` in `.1.8`.
    V0,
    /// MessagePack `V1` in `.1.8`.
    V1,
    /// The legacy pair: the quote in `.1.1`, the event log (JSON) in `.1.2`.
    #[default]
    Legacy,
}

impl std::str::FromStr for DstackWire {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v0" => Ok(Self::V0),
            "v1" => Ok(Self::V1),
            "legacy" => Ok(Self::Legacy),
            other => Err(format!("unknown dstack wire `{other}` (v0, v1, legacy)")),
        }
    }
}

/// The app a simulated dstack guest measures into RTMR3, and how its evidence is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstackSpec {
    /// The form of the attestation.
    pub wire: DstackWire,
    /// `app-id` (20 bytes in dstack).
    pub app_id: Vec<u8>,
    /// `compose-hash` (32 bytes).
    pub compose_hash: Vec<u8>,
    /// `instance-id` (20 bytes).
    pub instance_id: Vec<u8>,
    /// `os-image-hash` (32 bytes); empty: no such event (dstack without a KMS).
    pub os_image_hash: Vec<u8>,
    /// The key provider's name (`kms`, `none`, …) and id (hex).
    pub key_provider: (String, String),
    /// Carry a compose hash other than the one measured: the log no longer replays to the
    /// quote's RTMR3 (`event_log_mismatch`).
    pub break_replay: bool,
    /// Bind the report data to another key than the certificate's (`binding_mismatch`).
    pub wrong_key: bool,
}

impl Default for DstackSpec {
    fn default() -> Self {
        Self {
            wire: DstackWire::default(),
            app_id: vec![0xa1; 20],
            compose_hash: vec![0xc0; 32],
            instance_id: vec![0x1d; 20],
            os_image_hash: vec![0x05; 32],
            key_provider: ("kms".into(), "ab".repeat(33)),
            break_replay: false,
            wrong_key: false,
        }
    }
}

/// One runtime event: name and payload (version 1 digests, as SCALE carries).
pub type SimEvent = (String, Vec<u8>);

impl DstackSpec {
    /// The runtime events as a dstack guest extends them, up to `system-ready`.
    pub fn measured_events(&self) -> Vec<SimEvent> {
        let provider = format!(
            r#"{{"name":"{}","id":"{}"}}"#,
            self.key_provider.0, self.key_provider.1
        );
        let mut events = vec![
            ("system-preparing".to_owned(), Vec::new()),
            ("app-id".to_owned(), self.app_id.clone()),
            ("compose-hash".to_owned(), self.compose_hash.clone()),
            ("instance-id".to_owned(), self.instance_id.clone()),
            ("boot-mr-done".to_owned(), Vec::new()),
        ];
        if !self.os_image_hash.is_empty() {
            events.push(("os-image-hash".to_owned(), self.os_image_hash.clone()));
        }
        events.push(("key-provider".to_owned(), provider.into_bytes()));
        events.push(("system-ready".to_owned(), Vec::new()));
        events
    }

    /// The events the certificate carries: the measured ones, or (`break_replay`) with
    /// another compose hash than the one extended into RTMR3.
    pub fn carried_events(&self) -> Vec<SimEvent> {
        let mut events = self.measured_events();
        if self.break_replay {
            for (name, payload) in &mut events {
                if name == "compose-hash" {
                    payload.iter_mut().for_each(|b| *b ^= 0xff);
                }
            }
        }
        events
    }

    /// RTMR3 as the guest's extends leave it: SHA-384 extension from zero.
    pub fn rtmr3(&self) -> [u8; 48] {
        self.measured_events()
            .iter()
            .fold([0u8; 48], |mr, (name, payload)| {
                let mut h = Sha384::new();
                h.update(mr);
                h.update(runtime_digest(name, payload, EventVersion::V1));
                h.finalize().into()
            })
    }
}

/// SCALE's compact length.
pub(super) fn compact(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    match n {
        0..=0x3f => out.push(u8::try_from(n << 2).unwrap_or(0)),
        0x40..=0x3fff => {
            out.extend_from_slice(&u16::try_from(n << 2 | 1).unwrap_or(0).to_le_bytes())
        }
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(n << 2 | 2).to_le_bytes()),
        _ => {
            out.push(0b11);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub(super) fn scale_bytes(out: &mut Vec<u8>, b: &[u8]) {
    compact(out, b.len());
    out.extend_from_slice(b);
}

/// `VersionedAttestation::V0` (SCALE) of a TDX quote with `events` as its log and runtime
/// events.
pub fn v0(quote: &[u8], events: &[SimEvent], report_data: &[u8; 64], config: &str) -> Vec<u8> {
    let mut out = vec![0x00, 0x00]; // V0, AttestationQuote::Tdx
    scale_bytes(&mut out, quote);
    compact(&mut out, events.len());
    for (name, payload) in events {
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&RUNTIME_EVENT_TYPE.to_le_bytes());
        scale_bytes(&mut out, &runtime_digest(name, payload, EventVersion::V1));
        scale_bytes(&mut out, name.as_bytes());
        scale_bytes(&mut out, payload);
    }
    compact(&mut out, events.len());
    for (name, payload) in events {
        scale_bytes(&mut out, name.as_bytes());
        scale_bytes(&mut out, payload);
    }
    out.extend_from_slice(report_data);
    scale_bytes(&mut out, config.as_bytes());
    out
}

/// A MessagePack writer for the few types `V1` uses.
struct Mp(Vec<u8>);

impl Mp {
    fn head(&mut self, fix: u8, fix_max: usize, wide: [u8; 3], n: usize) {
        if n <= fix_max {
            self.0.push(fix | u8::try_from(n).unwrap_or(0));
        } else if let (Ok(n), true) = (u8::try_from(n), wide[0] != 0) {
            self.0.extend_from_slice(&[wide[0], n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.0.push(wide[1]);
            self.0.extend_from_slice(&n.to_be_bytes());
        } else {
            self.0.push(wide[2]);
            self.0
                .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    fn map(&mut self, n: usize) -> &mut Self {
        self.head(0x80, 15, [0, 0xde, 0xdf], n);
        self
    }
    fn array(&mut self, n: usize) -> &mut Self {
        self.head(0x90, 15, [0, 0xdc, 0xdd], n);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.head(0xa0, 31, [0xd9, 0xda, 0xdb], s.len());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn bin(&mut self, b: &[u8]) -> &mut Self {
        // No fix form for bin: 0xc4 from length 0.
        if let Ok(n) = u8::try_from(b.len()) {
            self.0.extend_from_slice(&[0xc4, n]);
        } else {
            self.head(0, 0, [0, 0xc5, 0xc6], b.len());
        }
        self.0.extend_from_slice(b);
        self
    }
    fn uint(&mut self, v: u32) -> &mut Self {
        match v {
            0..=0x7f => self.0.push(u8::try_from(v).unwrap_or(0)),
            _ => {
                self.0.push(0xce);
                self.0.extend_from_slice(&v.to_be_bytes());
            }
        }
        self
    }
}

/// `VersionedAttestation::V1` (MessagePack, named fields), as dstack's `to_vec_named`
/// writes it.
pub fn v1(quote: &[u8], events: &[SimEvent], report_data: &[u8; 64], config: &str) -> Vec<u8> {
    let mut m = Mp(Vec::new());
    m.map(3).str("version").uint(1);
    m.str("platform")
        .map(2)
        .str("kind")
        .str("tdx")
        .str("data")
        .map(2);
    m.str("quote").bin(quote);
    m.str("event_log").array(events.len());
    for (name, payload) in events {
        m.map(5).str("imr").uint(3);
        m.str("event_type").uint(RUNTIME_EVENT_TYPE);
        m.str("digest")
            .bin(&runtime_digest(name, payload, EventVersion::V1));
        m.str("event").str(name);
        m.str("event_payload").bin(payload);
    }
    m.str("stack")
        .map(2)
        .str("kind")
        .str("dstack")
        .str("data")
        .map(3);
    m.str("report_data").bin(report_data);
    m.str("runtime_events").array(events.len());
    for (name, payload) in events {
        m.map(2).str("event").str(name).str("payload").bin(payload);
    }
    m.str("config").str(config);
    m.0
}

/// The legacy `.1.2` event log: dstack's `TdxEvent` list as JSON.
pub fn legacy_event_log(events: &[SimEvent]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|(name, payload)| {
            serde_json::json!({
                "imr": 3,
                "event_type": RUNTIME_EVENT_TYPE,
                "digest": hex::encode(runtime_digest(name, payload, EventVersion::V1)),
                "event": name,
                "event_payload": hex::encode(payload),
            })
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

/// The VM configuration a guest reports (unmeasured; its image hash differs from the
/// measured one on purpose, so a test can tell which one a check read).
pub fn vm_config() -> String {
    format!(
        r#"{{"os_image_hash":"{}","image":"dstack-sim"}}"#,
        "ee".repeat(32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcap::ids::Rtmr;
    use crate::dstack::replay::replay;
    use crate::dstack::{Attestation, Platform, Wire};

    #[test]
    fn each_wire_parses_back_and_replays() {
        let spec = DstackSpec::default();
        let quote = vec![0x5a; 700];
        let rd = [7u8; 64];
        let events = spec.carried_events();
        for (bytes, wire) in [
            (v0(&quote, &events, &rd, &vm_config()), Wire::ScaleV0),
            (v1(&quote, &events, &rd, &vm_config()), Wire::MsgpackV1),
        ] {
            let att = Attestation::parse(&bytes);
            let Ok(att) = att else {
                panic!("{wire:?}: {att:?}")
            };
            assert_eq!(att.wire, wire);
            assert_eq!(att.stack.report_data, rd);
            let Platform::Tdx(tdx) = &att.platform else {
                panic!("not tdx")
            };
            assert_eq!(&*tdx.quote, &quote[..]);
            let rtmr = [
                Rtmr([0; 48]),
                Rtmr([0; 48]),
                Rtmr([0; 48]),
                Rtmr(spec.rtmr3()),
            ];
            let log = replay(tdx, &att.stack, &rtmr);
            assert!(log.is_ok(), "{wire:?}: {log:?}");
        }
    }

    #[test]
    fn a_broken_replay_does_not_replay() {
        let spec = DstackSpec {
            break_replay: true,
            ..DstackSpec::default()
        };
        let bytes = v1(&[1; 10], &spec.carried_events(), &[0; 64], "");
        let att = Attestation::parse(&bytes).ok();
        let rtmr = [
            Rtmr([0; 48]),
            Rtmr([0; 48]),
            Rtmr([0; 48]),
            Rtmr(spec.rtmr3()),
        ];
        let replayed = att.as_ref().and_then(|a| match &a.platform {
            Platform::Tdx(tdx) => Some(replay(tdx, &a.stack, &rtmr).is_ok()),
            _ => None,
        });
        assert_eq!(replayed, Some(false));
    }

    #[test]
    fn compact_lengths_in_each_mode() {
        for (n, want) in [
            (0usize, vec![0u8]),
            (63, vec![0xfc]),
            (64, vec![0x01, 0x01]),
            (0x4000, vec![0x02, 0x00, 0x01, 0x00]),
        ] {
            let mut out = Vec::new();
            compact(&mut out, n);
            assert_eq!(out, want, "{n}");
        }
    }
}
