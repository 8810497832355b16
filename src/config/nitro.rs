//! The keys of a `tee = "nitro"` `[[enclave]]` (AWS Nitro Enclaves): `pcr0` (required),
//! `pcr1`, `pcr2`, `pcr3`, `pcr4`, `pcr8` allow-lists, and the shared `allow_debug` and
//! `max_cert_age_secs` (for Nitro: the attestation document's age). An entry must pin PCR0,
//! the enclave image: a Nitro entry that pins nothing would admit any enclave on any host.

use toml::Spanned;

use super::checker::Checker;
use crate::appraise::nitro_policy::{NitroPolicy, PcrValue};

/// The Nitro keys of one `[[enclave]]`, as written.
pub(super) struct NitroKeys<'a> {
    /// `pcr0`, `pcr1`, `pcr2`, `pcr3`, `pcr4`, `pcr8`, in that order.
    pub(super) pcrs: [&'a [Spanned<String>]; 6],
    pub(super) allow_debug: bool,
    pub(super) max_cert_age_secs: Option<u64>,
}

/// The names of the keys only a Nitro entry takes, for error messages.
const NITRO_KEYS: &str = "pcr0, pcr1, pcr2, pcr3, pcr4, pcr8";

impl NitroKeys<'_> {
    /// Where the first Nitro-only key is written, if any is.
    fn first(&self) -> Option<std::ops::Range<usize>> {
        self.pcrs
            .into_iter()
            .find_map(<[_]>::first)
            .map(Spanned::span)
    }
}

/// One PCR allow-list: every value that parses (32, 48 or 64 bytes of hex), an error
/// located at each other.
fn pcr_list(c: &mut Checker<'_>, v: &[Spanned<String>]) -> Vec<PcrValue> {
    v.iter()
        .filter_map(|s| c.parse(s, |v| v.parse::<PcrValue>()))
        .collect()
}

/// Validates the Nitro keys of an entry; `Some` policy for a `tee = "nitro"` entry
/// (`is_nitro`), `None` otherwise, with an error if a Nitro-only key is written there.
/// `hosts` locates errors about the entry as a whole.
pub(super) fn check(
    c: &mut Checker<'_>,
    keys: &NitroKeys<'_>,
    is_nitro: bool,
    hosts: &Spanned<Vec<Spanned<String>>>,
) -> Option<NitroPolicy> {
    if !is_nitro {
        if let Some(span) = keys.first() {
            c.error(
                &Spanned::new(span, ()),
                format!("AWS Nitro keys ({NITRO_KEYS}) need tee = \"nitro\""),
            );
        }
        return None;
    }
    let [pcr0, pcr1, pcr2, pcr3, pcr4, pcr8] = keys.pcrs;
    if pcr0.is_empty() {
        c.error(
            hosts,
            "a tee = \"nitro\" [[enclave]] needs pcr0 (an allow-list of enclave image measurements)",
        );
    }
    Some(NitroPolicy {
        pcr0: pcr_list(c, pcr0),
        pcr1: pcr_list(c, pcr1),
        pcr2: pcr_list(c, pcr2),
        pcr3: pcr_list(c, pcr3),
        pcr4: pcr_list(c, pcr4),
        pcr8: pcr_list(c, pcr8),
        allow_debug: keys.allow_debug,
        max_age_secs: keys.max_cert_age_secs,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn nitro(keys: &str) -> String {
        format!("[[enclave]]\nhosts = [\"nitro.test\"]\ntee = \"nitro\"\n{keys}")
    }

    fn p0() -> String {
        format!("pcr0 = [\"{}\"]\n", "ab".repeat(48))
    }

    #[test]
    fn a_nitro_entry_reads_every_key() {
        let text = nitro(&format!(
            "{}pcr1 = [\"{}\"]\npcr2 = [\"{}\", \"{}\"]\npcr3 = [\"{}\"]\npcr4 = [\"{}\"]\npcr8 = [\"{}\"]\nallow_debug = true\nmax_cert_age_secs = 600\n",
            p0(),
            "11".repeat(48),
            "22".repeat(48),
            "23".repeat(32),
            "33".repeat(48),
            "44".repeat(64),
            "88".repeat(48),
        ));
        let config = Config::from_toml(&text, "p.toml", Path::new(".")).expect("valid");
        let e = &config.enclaves[0];
        let p = e.nitro.as_ref().expect("a nitro policy");
        assert_eq!(p.pcr0[0].as_bytes(), [0xab; 48]);
        assert_eq!(p.pcr1[0].as_bytes(), [0x11; 48]);
        assert_eq!(p.pcr2.len(), 2);
        assert_eq!(p.pcr2[1].as_bytes(), [0x23; 32]);
        assert_eq!(p.pcr3[0].as_bytes(), [0x33; 48]);
        assert_eq!(p.pcr4[0].as_bytes(), [0x44; 64]);
        assert_eq!(p.pcr8[0].as_bytes(), [0x88; 48]);
        assert!(p.allow_debug);
        assert_eq!(p.max_age_secs, Some(600));
        assert!(e.snp.is_none());
        // The Intel side of the entry expects no Intel TEE and accepts no Intel TCB status:
        // Intel evidence given to a Nitro entry is refused whatever the verifier does with it.
        assert!(e.policy.expected_tee().is_none());
        assert!(e.policy.tcb_statuses.is_empty());
    }

    #[test]
    fn the_secure_defaults() {
        let config = Config::from_toml(&nitro(&p0()), "p.toml", Path::new(".")).expect("valid");
        let p = config.enclaves[0].nitro.as_ref().expect("nitro");
        assert!(!p.allow_debug);
        assert_eq!(p.max_age_secs, None);
        assert!(p.pcr1.is_empty() && p.pcr8.is_empty());
    }

    #[test]
    fn a_nitro_entry_must_pin_pcr0() {
        for keys in [
            String::new(),
            format!(
                "pcr1 = [\"{}\"]\npcr2 = [\"{}\"]\n",
                "11".repeat(48),
                "22".repeat(48)
            ),
            "pcr0 = []\n".to_owned(),
        ] {
            let err = Config::from_toml(&nitro(&keys), "p.toml", Path::new("."))
                .expect_err("nothing pinned");
            assert!(err.to_string().contains("needs pcr0"), "{keys}: {err}");
            assert!(err.to_string().starts_with("p.toml:2:"), "{keys}: {err}");
        }
    }

    #[test]
    fn bad_values_are_located() {
        for (keys, needle) in [
            ("pcr0 = [\"abcd\"]\n".to_owned(), "p.toml:4:"),
            ("pcr0 = [\"zz\"]\n".to_owned(), "not hex"),
            (
                format!("{}pcr8 = [\"{}\"]\n", p0(), "1".repeat(95)),
                "p.toml:5:",
            ),
            (format!("{}pcr4 = [\"{}\"]\n", p0(), "12".repeat(47)), "47"),
            (
                format!("{}max_cert_age_secs = 0\n", p0()),
                "max_cert_age_secs",
            ),
            (
                format!("{}pcr5 = [\"{}\"]\n", p0(), "12".repeat(48)),
                "unknown field",
            ),
        ] {
            let err = Config::from_toml(&nitro(&keys), "p.toml", Path::new(".")).expect_err(&keys);
            assert!(err.to_string().contains(needle), "{keys}: {err}");
        }
    }

    #[test]
    fn keys_of_another_tee_are_refused() {
        let intel = [
            format!("mrenclave = [\"{}\"]\n", "e1".repeat(32)),
            format!("mrsigner = [\"{}\"]\n", "e2".repeat(32)),
            "isv_prod_id = 1\n".to_owned(),
            format!("mrtd = [\"{}\"]\n", "7d".repeat(48)),
            format!("rtmr3 = [\"{}\"]\n", "7d".repeat(48)),
            "tcb_status = [\"UpToDate\"]\n".to_owned(),
            "allowed_advisories = [\"INTEL-SA-00001\"]\n".to_owned(),
            "early = \"warn\"\n".to_owned(),
            "min_tcb_evaluation_data_number = 17\n".to_owned(),
        ];
        for k in intel {
            let text = nitro(&format!("{}{k}", p0()));
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(&k);
            assert!(
                err.to_string().contains("do not apply to tee = \"nitro\""),
                "{k}: {err}"
            );
        }
        for k in [
            format!("measurement = [\"{}\"]\n", "5a".repeat(48)),
            "max_vmpl = 0\n".to_owned(),
        ] {
            let text = nitro(&format!("{}{k}", p0()));
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(&k);
            assert!(err.to_string().contains("need tee = \"snp\""), "{k}: {err}");
        }
        let app = nitro(&format!("{}app_id = [\"{}\"]\n", p0(), "a1".repeat(20)));
        let err = Config::from_toml(&app, "p.toml", Path::new(".")).expect_err("app_id");
        assert!(err.to_string().contains("need tee = \"tdx\""), "{err}");
        // And the Nitro keys on every other kind of entry, located at the key.
        for (tee, pin) in [
            ("sgx", format!("mrenclave = [\"{}\"]\n", "e1".repeat(32))),
            ("tdx", format!("mrtd = [\"{}\"]\n", "7d".repeat(48))),
            ("snp", format!("measurement = [\"{}\"]\n", "5a".repeat(48))),
        ] {
            let text = format!(
                "[[enclave]]\nhosts = [\"a.test\"]\ntee = \"{tee}\"\n{pin}pcr2 = [\"{}\"]\n",
                "22".repeat(48)
            );
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(tee);
            assert!(
                err.to_string().contains("need tee = \"nitro\""),
                "{tee}: {err}"
            );
            assert!(err.to_string().starts_with("p.toml:5:"), "{tee}: {err}");
        }
    }

    #[test]
    fn the_collateral_keys_and_their_fail_closed_defaults() {
        use crate::nitro::revocation::Revocation;
        use crate::source::nitro::NitroCrlSpec;
        let dir = std::env::temp_dir();
        let none = Config::from_toml("", "p.toml", &dir).expect("empty");
        assert_eq!(none.source.nitro_crls, NitroCrlSpec::Aws);
        assert_eq!(none.source.nitro_revocation, Revocation::Required);
        assert_eq!(none.source.nitro_trust_root, None);
        let root = dir.join(format!("nitro-root-{}.pem", std::process::id()));
        std::fs::write(&root, "x").expect("write");
        let at = |keys: &str| Config::from_toml(&format!("[collateral]\n{keys}"), "p.toml", &dir);
        let c = at(&format!(
            "nitro_trust_root = \"{}\"\nnitro_crls = \"https://mirror.example/\"\nnitro_revocation = \"if_available\"\n",
            root.display()
        ))
        .expect("valid");
        assert_eq!(c.source.nitro_trust_root.as_deref(), Some(root.as_path()));
        assert_eq!(
            c.source.nitro_crls,
            NitroCrlSpec::Mirror("https://mirror.example/".into())
        );
        assert_eq!(c.source.nitro_revocation, Revocation::IfSupplied);
        assert_eq!(
            at("nitro_crls = \".\"\n").expect("dir").source.nitro_crls,
            NitroCrlSpec::Dir(dir.join("."))
        );
        assert_eq!(
            at("nitro_crls = \"aws\"\nnitro_revocation = \"required\"\n")
                .expect("explicit")
                .source
                .nitro_revocation,
            Revocation::Required
        );
        for (keys, needle) in [
            (
                "nitro_crls = \"no-such-crl-dir\"\n",
                "collateral.nitro_crls",
            ),
            (
                "nitro_revocation = \"off\"\n",
                "\"required\" or \"if_available\"",
            ),
            ("nitro_trust_root = \"no-such-root.pem\"\n", "is not a file"),
        ] {
            let err = at(keys).expect_err(keys);
            assert!(err.to_string().contains(needle), "{keys}: {err}");
            assert!(err.to_string().starts_with("p.toml:2:"), "{keys}: {err}");
        }
        let _ = std::fs::remove_file(&root);
    }

    #[test]
    fn an_unknown_tee_names_nitro_among_the_choices() {
        let text = "[[enclave]]\nhosts = [\"a.test\"]\ntee = \"sev\"\n";
        let err = Config::from_toml(text, "p.toml", Path::new(".")).expect_err("sev");
        assert!(err.to_string().contains("\"nitro\""), "{err}");
    }
}
