//! PURE. The dstack app identity a `tee = "tdx"` entry pins: allow-lists for the values
//! read from RTMR3's replayed runtime events (`app-id`, `compose-hash`, the measured
//! `os-image-hash`, `instance-id`, `key-provider`), each refused with a code of its own.
//!
//! Fail closed: a pinned value the evidence does not carry (the event is absent, or the
//! evidence is a plain TDX quote with no app identity at all) is a mismatch. RTMR3 is written
//! by the guest OS, so an identity needs MRTD and RTMR0–2 pinned beside it
//! ([`AppIdentityPolicy::unpinned_os`], which the configuration and `verify` both apply).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::refusal::{Refusal, RefusalCode};
use super::td_policy::TdPolicy;

/// Why an app identity needs the OS measurements pinned beside it.
pub const OS_RULE: &str =
    "an app identity is only as trustworthy as the OS that measured it (RTMR3 is written by the guest)";

/// An OS measurement an app identity needs pinned beside it: a host that boots its own OS
/// image in a TD can extend any app id into RTMR3, and the quote is still genuine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsMeasurement {
    /// MRTD: the TD's firmware.
    Mrtd,
    /// RTMR0: firmware configuration.
    Rtmr0,
    /// RTMR1: the kernel.
    Rtmr1,
    /// RTMR2: the kernel command line and initrd.
    Rtmr2,
}

impl OsMeasurement {
    /// Its configuration key; `verify`'s flag is `--` and the key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Mrtd => "mrtd",
            Self::Rtmr0 => "rtmr0",
            Self::Rtmr1 => "rtmr1",
            Self::Rtmr2 => "rtmr2",
        }
    }
}

/// One pinned key provider: dstack's `{"name": …, "id": …}` payload, both fields compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyProviderPin {
    /// `kms`, `local-sgx`, `none`, …
    pub name: String,
    /// The provider's id (for a KMS its root public key), lower-case hex; empty for none.
    pub id: String,
}

impl std::fmt::Display for KeyProviderPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.id)
    }
}

impl std::str::FromStr for KeyProviderPin {
    type Err = String;
    /// `NAME:ID` (`kms:3059…`), or `NAME` alone for a provider without an id (`none`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, id) = s.split_once(':').unwrap_or((s, ""));
        if name.is_empty() {
            return Err(format!(
                "key_provider `{s}`: expected NAME:ID (kms:<hex>) or NAME alone (none)"
            ));
        }
        if hex::decode(id).is_err() {
            return Err(format!("key_provider `{s}`: the id after `:` must be hex"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: id.to_ascii_lowercase(),
        })
    }
}

/// What the evidence says of the app: `None` for a value whose event is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppClaims<'a> {
    /// `app-id`.
    pub app_id: Option<&'a [u8]>,
    /// `compose-hash`.
    pub compose_hash: Option<&'a [u8]>,
    /// `os-image-hash` (the measured event; never the VM configuration's copy).
    pub os_image_hash: Option<&'a [u8]>,
    /// `instance-id`.
    pub instance_id: Option<&'a [u8]>,
    /// `key-provider`: its name and id, when the payload is dstack's JSON.
    pub key_provider: Option<(&'a str, &'a str)>,
}

/// The app-identity allow-lists of one entry; every non-empty list must hold the value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppIdentityPolicy {
    /// Allowed app ids.
    pub app_id: Vec<Vec<u8>>,
    /// Allowed compose hashes.
    pub compose_hash: Vec<Vec<u8>>,
    /// Allowed measured OS image hashes.
    pub os_image_hash: Vec<Vec<u8>>,
    /// Allowed instance ids.
    pub instance_id: Vec<Vec<u8>>,
    /// Allowed key providers.
    pub key_provider: Vec<KeyProviderPin>,
}

fn hex_list(list: &[Vec<u8>]) -> String {
    list.iter().map(hex::encode).collect::<Vec<_>>().join(", ")
}

impl AppIdentityPolicy {
    /// The OS measurements `td` leaves unpinned while this policy pins an app identity;
    /// empty when the rule holds (or nothing is pinned).
    pub fn unpinned_os(&self, td: &TdPolicy) -> Vec<OsMeasurement> {
        if !self.is_pinned() {
            return Vec::new();
        }
        let [rtmr0, rtmr1, rtmr2, _] = &td.rtmr;
        [
            (OsMeasurement::Mrtd, td.mrtd.is_empty()),
            (OsMeasurement::Rtmr0, rtmr0.is_empty()),
            (OsMeasurement::Rtmr1, rtmr1.is_empty()),
            (OsMeasurement::Rtmr2, rtmr2.is_empty()),
        ]
        .into_iter()
        .filter_map(|(m, unpinned)| unpinned.then_some(m))
        .collect()
    }

    /// Whether any key is pinned.
    pub fn is_pinned(&self) -> bool {
        !(self.app_id.is_empty()
            && self.compose_hash.is_empty()
            && self.os_image_hash.is_empty()
            && self.instance_id.is_empty()
            && self.key_provider.is_empty())
    }

    /// The refusal `claims` earn, with every mismatch as a reason and the top-ranked code;
    /// `claims` is `None` when the evidence carries no app identity (then every pinned key
    /// is a mismatch).
    pub fn check(&self, claims: Option<&AppClaims<'_>>) -> Result<(), Refusal> {
        let mut out: Vec<(RefusalCode, String)> = Vec::new();
        let none = AppClaims::default();
        let (c, missing) = match claims {
            Some(c) => (c, "the evidence has no such event before system-ready"),
            None => (
                &none,
                "the evidence carries no dstack app identity (a plain TDX quote, or no event log)",
            ),
        };
        let bytes = [
            (RefusalCode::AppIdMismatch, "app id", &self.app_id, c.app_id),
            (
                RefusalCode::ComposeHashMismatch,
                "compose hash",
                &self.compose_hash,
                c.compose_hash,
            ),
            (
                RefusalCode::OsImageHashMismatch,
                "measured OS image hash",
                &self.os_image_hash,
                c.os_image_hash,
            ),
            (
                RefusalCode::InstanceIdMismatch,
                "instance id",
                &self.instance_id,
                c.instance_id,
            ),
        ];
        for (code, what, list, actual) in bytes {
            if list.is_empty() {
                continue;
            }
            match actual {
                Some(v) if list.iter().any(|a| a.as_slice() == v) => {}
                Some(v) => out.push((
                    code,
                    format!(
                        "{what} {} is not in the allow-list [{}]",
                        hex::encode(v),
                        hex_list(list)
                    ),
                )),
                None => out.push((
                    code,
                    format!("{what} is pinned to [{}]: {missing}", hex_list(list)),
                )),
            }
        }
        if !self.key_provider.is_empty() {
            let pins = || {
                let all: Vec<String> = self.key_provider.iter().map(|p| p.to_string()).collect();
                all.join(", ")
            };
            match c.key_provider {
                Some((name, id))
                    if self
                        .key_provider
                        .iter()
                        .any(|p| p.name == name && p.id.eq_ignore_ascii_case(id)) => {}
                Some((name, id)) => out.push((
                    RefusalCode::KeyProviderMismatch,
                    format!(
                        "key provider {name}:{id} is not in the allow-list [{}]",
                        pins()
                    ),
                )),
                None => out.push((
                    RefusalCode::KeyProviderMismatch,
                    format!(
                        "key provider is pinned to [{}]: {missing} (or its payload is not dstack's JSON)",
                        pins()
                    ),
                )),
            }
        }
        match out.iter().map(|(code, _)| *code).min() {
            None => Ok(()),
            Some(code) => Err(Refusal {
                code,
                reasons: out.into_iter().map(|(_, r)| r).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AppIdentityPolicy {
        AppIdentityPolicy {
            app_id: vec![vec![1; 20]],
            compose_hash: vec![vec![2; 32]],
            os_image_hash: vec![vec![3; 32]],
            instance_id: vec![vec![4; 20]],
            key_provider: vec!["kms:AB01".parse().unwrap_or_default()],
        }
    }

    #[test]
    fn an_identity_needs_each_os_measurement_pinned_beside_it() {
        use crate::dcap::ids::{MrTd, Rtmr};
        let mut td = TdPolicy::default();
        assert_eq!(
            policy().unpinned_os(&td),
            [
                OsMeasurement::Mrtd,
                OsMeasurement::Rtmr0,
                OsMeasurement::Rtmr1,
                OsMeasurement::Rtmr2
            ]
        );
        assert!(AppIdentityPolicy::default().unpinned_os(&td).is_empty());
        td.mrtd = vec![MrTd([1; 48])];
        td.rtmr[0] = vec![Rtmr([2; 48])];
        td.rtmr[2] = vec![Rtmr([3; 48])];
        // RTMR3 is where the identity lives: pinning it instead of RTMR1 does not count.
        td.rtmr[3] = vec![Rtmr([4; 48])];
        assert_eq!(policy().unpinned_os(&td), [OsMeasurement::Rtmr1]);
        td.rtmr[1] = vec![Rtmr([5; 48])];
        assert!(policy().unpinned_os(&td).is_empty());
    }

    fn claims() -> ([u8; 20], [u8; 32], [u8; 32], [u8; 20]) {
        ([1; 20], [2; 32], [3; 32], [4; 20])
    }

    #[test]
    fn each_field_refuses_with_its_own_code() {
        let (a, c, o, i) = claims();
        let good = AppClaims {
            app_id: Some(&a),
            compose_hash: Some(&c),
            os_image_hash: Some(&o),
            instance_id: Some(&i),
            key_provider: Some(("kms", "ab01")),
        };
        assert_eq!(policy().check(Some(&good)), Ok(()));
        let other = [9u8; 32];
        let cases = [
            (
                AppClaims {
                    app_id: Some(&other[..20]),
                    ..good
                },
                RefusalCode::AppIdMismatch,
            ),
            (
                AppClaims {
                    compose_hash: Some(&other),
                    ..good
                },
                RefusalCode::ComposeHashMismatch,
            ),
            (
                AppClaims {
                    os_image_hash: None,
                    ..good
                },
                RefusalCode::OsImageHashMismatch,
            ),
            (
                AppClaims {
                    instance_id: Some(&[]),
                    ..good
                },
                RefusalCode::InstanceIdMismatch,
            ),
            (
                AppClaims {
                    key_provider: Some(("local-sgx", "ab01")),
                    ..good
                },
                RefusalCode::KeyProviderMismatch,
            ),
            (
                AppClaims {
                    key_provider: Some(("kms", "ab02")),
                    ..good
                },
                RefusalCode::KeyProviderMismatch,
            ),
        ];
        for (claims, code) in cases {
            let refusal = policy().check(Some(&claims)).err();
            assert_eq!(refusal.map(|r| r.code), Some(code), "{claims:?}");
        }
    }

    #[test]
    fn no_identity_at_all_is_refused_when_anything_is_pinned() {
        let refusal = policy().check(None).err();
        assert_eq!(
            refusal.as_ref().map(|r| (r.code, r.reasons.len())),
            Some((RefusalCode::AppIdMismatch, 5))
        );
        assert_eq!(AppIdentityPolicy::default().check(None), Ok(()));
        assert!(!AppIdentityPolicy::default().is_pinned());
    }

    #[test]
    fn key_provider_pins_parse() {
        let p: Result<KeyProviderPin, _> = "none".parse();
        assert_eq!(
            p,
            Ok(KeyProviderPin {
                name: "none".into(),
                id: String::new()
            })
        );
        assert!(":ab".parse::<KeyProviderPin>().is_err());
        assert!("kms:zz".parse::<KeyProviderPin>().is_err());
    }
}
