//! The dstack app-identity keys of a `tee = "tdx"` `[[enclave]]`: `app_id`, `compose_hash`,
//! `os_image_hash`, `instance_id`, `key_provider` allow-lists. RTMR3, where these values are
//! measured, is written by the guest OS, so an identity is only as good as the OS under it:
//! an entry pinning any of them must pin MRTD and RTMR0–2 as well.

use toml::Spanned;

use super::checker::Checker;
use crate::appraise::app_identity::{AppIdentityPolicy, KeyProviderPin, OS_RULE};
use crate::appraise::td_policy::TdPolicy;
use crate::dcap::quote::TeeType;

/// The keys of one `[[enclave]]` this module reads, as written.
pub(super) struct AppKeys<'a> {
    pub(super) app_id: &'a [Spanned<String>],
    pub(super) compose_hash: &'a [Spanned<String>],
    pub(super) os_image_hash: &'a [Spanned<String>],
    pub(super) instance_id: &'a [Spanned<String>],
    pub(super) key_provider: &'a [Spanned<String>],
}

impl AppKeys<'_> {
    fn first(&self) -> Option<&Spanned<String>> {
        [
            self.app_id,
            self.compose_hash,
            self.os_image_hash,
            self.instance_id,
            self.key_provider,
        ]
        .into_iter()
        .find_map(<[_]>::first)
    }
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

/// Validates the app-identity keys `raw` of an entry of TEE `tee` whose TD policy is `td`;
/// the policy, empty when nothing is pinned.
pub(super) fn check(
    c: &mut Checker<'_>,
    raw: &AppKeys<'_>,
    tee: Option<TeeType>,
    td: &TdPolicy,
) -> AppIdentityPolicy {
    let Some(first) = raw.first() else {
        return AppIdentityPolicy::default();
    };
    if tee != Some(TeeType::Tdx) {
        c.error(
            first,
            "dstack app-identity keys (app_id, compose_hash, os_image_hash, instance_id, key_provider) need tee = \"tdx\"",
        );
    }
    let app = AppIdentityPolicy {
        app_id: bytes_list(c, "app_id", raw.app_id, 20),
        compose_hash: bytes_list(c, "compose_hash", raw.compose_hash, 32),
        os_image_hash: bytes_list(c, "os_image_hash", raw.os_image_hash, 32),
        instance_id: bytes_list(c, "instance_id", raw.instance_id, 20),
        key_provider: raw
            .key_provider
            .iter()
            .filter_map(|s| c.parse(s, |v| v.parse::<KeyProviderPin>()))
            .collect(),
    };
    let missing: Vec<&str> = app.unpinned_os(td).into_iter().map(|m| m.key()).collect();
    if !missing.is_empty() {
        c.error(
            first,
            format!(
                "{OS_RULE}: an entry pinning app_id, compose_hash, os_image_hash, instance_id or key_provider must also pin {} (see docs/dstack.md)",
                missing.join(", ")
            ),
        );
    }
    app
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::appraise::app_identity::KeyProviderPin;
    use crate::config::Config;

    fn entry(keys: &str) -> String {
        format!(
            "[[enclave]]\nhosts = [\"app.dstack.test\"]\ntee = \"tdx\"\n{keys}app_id = [\"{}\"]\n",
            "a1".repeat(20)
        )
    }

    fn os(skip: &str) -> String {
        ["mrtd", "rtmr0", "rtmr1", "rtmr2"]
            .iter()
            .filter(|k| **k != skip)
            .map(|k| format!("{k} = [\"{}\"]\n", "7d".repeat(48)))
            .collect()
    }

    #[test]
    fn app_identity_keys_require_the_os_measurements() {
        for skip in ["mrtd", "rtmr0", "rtmr1", "rtmr2"] {
            let err = Config::from_toml(&entry(&os(skip)), "p.toml", Path::new("."))
                .expect_err("an app identity without the OS pinned");
            let all = err.to_string();
            assert!(all.contains(&format!("must also pin {skip}")), "{all}");
            assert!(all.contains("p.toml:7:"), "named at the key: {all}");
        }
        let err = Config::from_toml(&entry(""), "p.toml", Path::new(".")).expect_err("none");
        assert!(
            err.to_string().contains("mrtd, rtmr0, rtmr1, rtmr2"),
            "{err}"
        );
        // rtmr3 is what the app identity replaces: not required.
        let c = Config::from_toml(&entry(&os("")), "p.toml", Path::new(".")).expect("valid");
        assert_eq!(c.enclaves[0].policy.app.app_id, vec![vec![0xa1; 20]]);
    }

    #[test]
    fn every_key_is_read_and_checked() {
        let keys = format!(
            "{}compose_hash = [\"{}\"]\nos_image_hash = [\"{}\"]\ninstance_id = [\"{}\"]\nkey_provider = [\"kms:AB\", \"none\"]\n",
            os(""),
            "c0".repeat(32),
            "05".repeat(32),
            "1d".repeat(20)
        );
        let c = Config::from_toml(&entry(&keys), "p.toml", Path::new(".")).expect("valid");
        let app = &c.enclaves[0].policy.app;
        assert_eq!(app.compose_hash, vec![vec![0xc0; 32]]);
        assert_eq!(app.os_image_hash, vec![vec![0x05; 32]]);
        assert_eq!(app.instance_id, vec![vec![0x1d; 20]]);
        assert_eq!(
            app.key_provider,
            vec![
                KeyProviderPin {
                    name: "kms".into(),
                    id: "ab".into()
                },
                KeyProviderPin {
                    name: "none".into(),
                    id: String::new()
                }
            ]
        );
        for bad in [
            "compose_hash = [\"c0\"]\n",
            "os_image_hash = [\"zz\"]\n",
            "instance_id = [\"1d1d\"]\n",
            "key_provider = [\":ab\"]\n",
        ] {
            let text = entry(&format!("{}{bad}", os("")));
            assert!(
                Config::from_toml(&text, "p.toml", Path::new(".")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn app_identity_keys_need_a_tdx_entry() {
        let text = format!(
            "[[enclave]]\nhosts = [\"a.test\"]\nmrenclave = [\"{}\"]\ncompose_hash = [\"{}\"]\n",
            "e1".repeat(32),
            "c0".repeat(32)
        );
        let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err("sgx");
        assert!(err.to_string().contains("need tee = \"tdx\""), "{err}");
    }
}
