//! The app identity dstack users pin, read from RTMR3's runtime events of a replayed log
//! (as dstack's `decode_app_info` does): only events before `system-ready` count (later
//! ones are the app's own, emitted through the guest agent), and the first of each name.
//!
//! RTMR3's events are written by the guest OS, so these values are only as trustworthy as
//! the OS: an identity means something together with a pinned OS measurement (MRTD and
//! RTMR0–2, or an image whose measurements are known).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::replay::ReplayedLog;
use crate::dcap::quote::TdReport;

/// The key provider the guest used (the `key-provider` event's JSON payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProvider<'b> {
    /// The payload as measured.
    pub raw: &'b [u8],
    /// `name` (`kms`, `local`, `none`, …), when the payload is dstack's JSON.
    pub name: Option<String>,
    /// `id` (for a KMS, its root key, hex), when the payload is dstack's JSON.
    pub id: Option<String>,
}

/// dstack's `KeyProviderInfo`.
#[derive(Deserialize)]
struct KeyProviderInfo {
    name: String,
    id: String,
}

impl<'b> KeyProvider<'b> {
    fn read(raw: &'b [u8]) -> Self {
        let info = serde_json::from_slice::<KeyProviderInfo>(raw).ok();
        let (name, id) = info.map_or((None, None), |i| (Some(i.name), Some(i.id)));
        Self { raw, name, id }
    }
}

/// A dstack app's identity. `None`: no such event before `system-ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentity<'b> {
    /// `app-id` (20 bytes in dstack).
    pub app_id: Option<&'b [u8]>,
    /// `compose-hash`: SHA-256 of the app's compose file.
    pub compose_hash: Option<&'b [u8]>,
    /// `instance-id` (20 bytes; empty when the app runs without one).
    pub instance_id: Option<&'b [u8]>,
    /// `os-image-hash`, the OS image hash as the guest measured it (absent without a KMS).
    pub os_image_hash: Option<&'b [u8]>,
    /// `key-provider`.
    pub key_provider: Option<KeyProvider<'b>>,
    /// Every `init-script-hash`, in order.
    pub init_script_hashes: Vec<&'b [u8]>,
    /// Whether the guest reached `system-ready` (its boot completed).
    pub system_ready: bool,
    /// dstack's `mr_system`: SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ SHA-256(key provider)
    /// or 32 zeros without one).
    pub mr_system: [u8; 32],
    /// dstack's `mr_aggregated`: SHA-256(MRTD ‖ RTMR0..3, then MRCONFIGID ‖ MROWNER ‖
    /// MROWNERCONFIG when any of them is non-zero).
    pub mr_aggregated: [u8; 32],
}

impl<'b> AppIdentity<'b> {
    /// Reads the identity from `log`, which must have been replayed against `td`'s RTMRs.
    pub fn derive(log: &ReplayedLog<'b>, td: &TdReport<'_>) -> Self {
        let mut id = Self {
            app_id: None,
            compose_hash: None,
            instance_id: None,
            os_image_hash: None,
            key_provider: None,
            init_script_hashes: Vec::new(),
            system_ready: false,
            mr_system: [0; 32],
            mr_aggregated: [0; 32],
        };
        for e in log.runtime_events() {
            let first = |slot: &mut Option<&'b [u8]>| {
                slot.get_or_insert(e.payload);
            };
            match e.name {
                "system-ready" => {
                    id.system_ready = true;
                    break;
                }
                "app-id" => first(&mut id.app_id),
                "compose-hash" => first(&mut id.compose_hash),
                "instance-id" => first(&mut id.instance_id),
                "os-image-hash" => first(&mut id.os_image_hash),
                "key-provider" if id.key_provider.is_none() => {
                    id.key_provider = Some(KeyProvider::read(e.payload));
                }
                "init-script-hash" => id.init_script_hashes.push(e.payload),
                _ => {}
            }
        }
        let mr_key_provider = match &id.key_provider {
            Some(k) if !k.raw.is_empty() => Sha256::digest(k.raw).into(),
            _ => [0u8; 32],
        };
        let [rtmr0, rtmr1, rtmr2, rtmr3] = &td.rtmr;
        let mut h = Sha256::new();
        for part in [&td.mr_td.0, &rtmr0.0, &rtmr1.0, &rtmr2.0] {
            h.update(part);
        }
        h.update(mr_key_provider);
        id.mr_system = h.finalize().into();
        let mut h = Sha256::new();
        for part in [&td.mr_td.0, &rtmr0.0, &rtmr1.0, &rtmr2.0, &rtmr3.0] {
            h.update(part);
        }
        let owner = [&td.mr_config_id.0, &td.mr_owner.0, &td.mr_owner_config.0];
        if owner.iter().any(|v| v.iter().any(|b| *b != 0)) {
            for part in owner {
                h.update(part);
            }
        }
        id.mr_aggregated = h.finalize().into();
        id
    }
}
