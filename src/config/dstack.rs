//! The dstack app-identity keys of a `tee = "tdx"` `[[enclave]]`: `app_id`, `compose_hash`,
//! `os_image_hash`, `instance_id`, `key_provider` allow-lists. RTMR3, where these values are
//! measured, is written by the guest OS, so an identity is only as good as the OS under it:
//! an entry pinning any of them must pin MRTD and RTMR0–2 as well.

use toml::Spanned;

use super::checker::Checker;
use super::enclave::RawEnclave;
use crate::appraise::app_identity::{AppIdentityPolicy, KeyProviderPin};
use crate::dcap::quote::TeeType;

fn first_key(e: &RawEnclave) -> Option<&Spanned<String>> {
    [
        &e.app_id,
        &e.compose_hash,
        &e.os_image_hash,
        &e.instance_id,
        &e.key_provider,
    ]
    .into_iter()
    .find_map(|v| v.first())
}

fn bytes_list(c: &mut Checker<'_>, key: &str, v: &[Spanned<String>], len: usize) -> Vec<Vec<u8>> {
    v.iter()
        .filter_map(|s| {
            c.parse(s, |text| match hex::decode(text) {
                Ok(b) if b.len() == len => Ok(b),
                _ => Err(format!(
                    "{key} `{text}`: expected {} hex digits ({len} bytes)",
                    len.saturating_mul(2)
                )),
            })
        })
        .collect()
}

/// Validates the app-identity keys of `raw`, an entry of TEE `tee`; the policy, empty when
/// nothing is pinned.
pub(super) fn check(
    c: &mut Checker<'_>,
    raw: &RawEnclave,
    tee: Option<TeeType>,
) -> AppIdentityPolicy {
    let Some(first) = first_key(raw) else {
        return AppIdentityPolicy::default();
    };
    if tee != Some(TeeType::Tdx) {
        c.error(
            first,
            "dstack app-identity keys (app_id, compose_hash, os_image_hash, instance_id, key_provider) need tee = \"tdx\"",
        );
    }
    let os = [
        ("mrtd", &raw.mrtd),
        ("rtmr0", &raw.rtmr0),
        ("rtmr1", &raw.rtmr1),
        ("rtmr2", &raw.rtmr2),
    ];
    let missing: Vec<&str> = os
        .iter()
        .filter(|(_, list)| list.is_empty())
        .map(|(key, _)| *key)
        .collect();
    if !missing.is_empty() {
        c.error(
            first,
            format!(
                "an app identity is only as trustworthy as the OS that measured it (RTMR3 is written by the guest): an entry pinning app_id, compose_hash, os_image_hash, instance_id or key_provider must also pin {} (see docs/dstack.md)",
                missing.join(", ")
            ),
        );
    }
    AppIdentityPolicy {
        app_id: bytes_list(c, "app_id", &raw.app_id, 20),
        compose_hash: bytes_list(c, "compose_hash", &raw.compose_hash, 32),
        os_image_hash: bytes_list(c, "os_image_hash", &raw.os_image_hash, 32),
        instance_id: bytes_list(c, "instance_id", &raw.instance_id, 20),
        key_provider: raw
            .key_provider
            .iter()
            .filter_map(|s| c.parse(s, |v| v.parse::<KeyProviderPin>()))
            .collect(),
    }
}
