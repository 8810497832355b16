//! dstack evidence in a certificate, once its key binding holds: the event log replayed
//! against the quote's RTMRs (`event_log_mismatch`), and what `verify` reports of it (the
//! app identity, each RTMR's replay, each event), owned so that a verdict can carry it.

use serde::Serialize;

use crate::appraise::app_identity::AppClaims;
use crate::appraise::refusal::{Refusal, RefusalCode};
use crate::dcap::quote::TdReport;
use crate::dstack::app::{AppIdentity, KeyProvider};
use crate::dstack::replay::{self, ReplayedEvent, RtmrReplay};
use crate::dstack::{vm_config, Attestation, Platform};

/// The key provider the app identity names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyProviderReport {
    /// `kms`, `local`, `none`, … (null when the payload is not dstack's JSON).
    pub name: Option<String>,
    /// For a KMS its root public key, hex (null when the payload is not dstack's JSON).
    pub id: Option<String>,
    /// The measured payload, hex.
    pub payload: String,
}

/// The app identity read from RTMR3's replayed runtime events; hex, null when absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppReport {
    /// `app-id`.
    pub app_id: Option<String>,
    /// `compose-hash`: SHA-256 of the app's compose file.
    pub compose_hash: Option<String>,
    /// `instance-id`.
    pub instance_id: Option<String>,
    /// `os-image-hash` as the guest measured it.
    pub os_image_hash: Option<String>,
    /// `key-provider`.
    pub key_provider: Option<KeyProviderReport>,
    /// Every `init-script-hash`, in order.
    pub init_script_hashes: Vec<String>,
    /// Whether the guest reached `system-ready`.
    pub system_ready: bool,
    /// dstack's `mr_system`.
    pub mr_system: String,
    /// dstack's `mr_aggregated`.
    pub mr_aggregated: String,
}

/// One RTMR and what the event log did for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RtmrReport {
    /// 0..=3.
    pub rtmr: usize,
    /// The quote's value, hex.
    pub value: String,
    /// `replayed` (the events give the quote's value), `digests_only` (dstack's ACPI DATA
    /// digests of a stripped log) or `not_carried`.
    pub replay: &'static str,
    /// How many events the log carries for it.
    pub events: usize,
}

/// One event of the log, as replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventReport {
    /// The RTMR it extends.
    pub rtmr: usize,
    /// The event type.
    pub event_type: u32,
    /// The event name.
    pub name: String,
    /// The digest extended, hex.
    pub digest: String,
    /// The payload as carried, hex.
    pub payload: String,
    /// Whether its RTMR was recomputed from the log.
    pub replayed: bool,
}

/// What a dstack certificate's evidence showed, for reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DstackReport {
    /// The wire form: `v0`, `v1` or `legacy`.
    #[serde(rename = "dstack_wire")]
    pub wire: &'static str,
    /// The app identity.
    pub app: AppReport,
    /// RTMR0..RTMR3.
    #[serde(rename = "rtmr_replay")]
    pub rtmrs: Vec<RtmrReport>,
    /// Every event, RTMR0–2's in log order, then RTMR3's runtime events.
    #[serde(rename = "event_log")]
    pub events: Vec<EventReport>,
    /// The VM configuration's `os_image_hash`, hex: the guest's claim, measured by nothing.
    pub vm_config_os_image_hash: Option<String>,
}

fn hex_of(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(hex::encode)
}

fn label(replay: RtmrReplay) -> (&'static str, usize) {
    match replay {
        RtmrReplay::Replayed { events } => ("replayed", events),
        RtmrReplay::DigestsOnly { events } => ("digests_only", events),
        RtmrReplay::NotCarried => ("not_carried", 0),
    }
}

impl EventReport {
    fn of(e: &ReplayedEvent<'_>) -> Self {
        Self {
            rtmr: e.rtmr,
            event_type: e.event_type,
            name: e.name.to_owned(),
            digest: hex::encode(e.digest),
            payload: hex::encode(e.payload),
            replayed: e.replayed,
        }
    }
}

impl KeyProviderReport {
    fn of(k: &KeyProvider<'_>) -> Self {
        Self {
            name: k.name.clone(),
            id: k.id.clone(),
            payload: hex::encode(k.raw),
        }
    }
}

/// What an entry's app-identity policy judges, read from `id`.
pub fn claims<'b>(id: &'b AppIdentity<'_>) -> AppClaims<'b> {
    AppClaims {
        app_id: id.app_id,
        compose_hash: id.compose_hash,
        os_image_hash: id.os_image_hash,
        instance_id: id.instance_id,
        key_provider: id
            .key_provider
            .as_ref()
            .and_then(|k| Some((k.name.as_deref()?, k.id.as_deref()?))),
    }
}

/// Replays `att`'s event log against `td` (the verified quote's TD report) and reads the
/// app identity from it (returned for the policy, and in the report). The key binding must
/// have been checked first.
pub fn check<'b>(
    att: &'b Attestation<'_>,
    td: &TdReport<'_>,
) -> Result<(DstackReport, AppIdentity<'b>), Refusal> {
    let Platform::Tdx(tdx) = &att.platform else {
        // `evidence::find` admits TDX only.
        return Err(Refusal::new(
            RefusalCode::UnsupportedTee,
            format!(
                "the dstack attestation carries {} evidence",
                att.platform.name()
            ),
        ));
    };
    let log = replay::replay(tdx, &att.stack, &td.rtmr)
        .map_err(|e| Refusal::new(RefusalCode::EventLogMismatch, e.to_string()))?;
    let id = AppIdentity::derive(&log, td);
    let app = AppReport {
        app_id: hex_of(id.app_id),
        compose_hash: hex_of(id.compose_hash),
        instance_id: hex_of(id.instance_id),
        os_image_hash: hex_of(id.os_image_hash),
        key_provider: id.key_provider.as_ref().map(KeyProviderReport::of),
        init_script_hashes: id.init_script_hashes.iter().map(hex::encode).collect(),
        system_ready: id.system_ready,
        mr_system: hex::encode(id.mr_system),
        mr_aggregated: hex::encode(id.mr_aggregated),
    };
    let rtmrs = log
        .rtmrs
        .iter()
        .zip(&td.rtmr)
        .enumerate()
        .map(|(rtmr, (replay, value))| {
            let (replay, events) = label(*replay);
            RtmrReport {
                rtmr,
                value: value.to_string(),
                replay,
                events,
            }
        })
        .collect();
    let report = DstackReport {
        wire: att.wire.as_str(),
        app,
        rtmrs,
        events: log.events.iter().map(EventReport::of).collect(),
        // The configuration is reported, never judged: one that does not parse is shown as
        // absent.
        vm_config_os_image_hash: vm_config::parse(&att.stack.config)
            .ok()
            .and_then(|c| c.os_image_hash)
            .map(hex::encode),
    };
    Ok((report, id))
}
