//! The keys of a `tee = "snp"` `[[enclave]]` (AMD SEV-SNP): `measurement`, `host_data`,
//! `id_key_digest`, `author_key_digest` allow-lists, `family_id`, `image_id`,
//! `min_guest_svn`, `min_tcb`, `max_vmpl`, `allow_migration_agent` (and the shared
//! `allow_debug`). An entry must pin the guest's launch identity (a measurement, its host
//! data or its ID key): an SNP entry that pins nothing would admit any guest on any AMD host.

use serde::Deserialize;
use toml::Spanned;

use super::checker::{list, Checker};
use crate::appraise::snp_policy::{MinTcb, SnpPolicy};
use crate::snp::ids::{AuthorKeyDigest, FamilyId, HostData, IdKeyDigest, ImageId, Measurement};

/// `min_tcb = { bootloader, tee, snp, microcode, fmc }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMinTcb {
    bootloader: Option<Spanned<i64>>,
    tee: Option<Spanned<i64>>,
    snp: Option<Spanned<i64>>,
    microcode: Option<Spanned<i64>>,
    fmc: Option<Spanned<i64>>,
}

/// The SEV-SNP keys of one `[[enclave]]`, as written.
pub(super) struct SnpKeys<'a> {
    pub(super) measurement: &'a [Spanned<String>],
    pub(super) host_data: &'a [Spanned<String>],
    pub(super) id_key_digest: &'a [Spanned<String>],
    pub(super) author_key_digest: &'a [Spanned<String>],
    pub(super) family_id: Option<&'a Spanned<String>>,
    pub(super) image_id: Option<&'a Spanned<String>>,
    pub(super) min_guest_svn: Option<&'a Spanned<i64>>,
    pub(super) min_tcb: Option<&'a Spanned<RawMinTcb>>,
    pub(super) max_vmpl: Option<&'a Spanned<i64>>,
    pub(super) allow_migration_agent: Option<&'a Spanned<bool>>,
    pub(super) allow_debug: bool,
}

/// The names of the keys only an SNP entry takes, for error messages.
const SNP_KEYS: &str = "measurement, host_data, id_key_digest, author_key_digest, family_id, image_id, min_guest_svn, min_tcb, max_vmpl, allow_migration_agent";

impl SnpKeys<'_> {
    /// Where the first SNP-only key is written, if any is.
    fn first(&self) -> Option<std::ops::Range<usize>> {
        [
            self.measurement,
            self.host_data,
            self.id_key_digest,
            self.author_key_digest,
        ]
        .into_iter()
        .find_map(<[_]>::first)
        .map(Spanned::span)
        .or_else(|| self.family_id.map(Spanned::span))
        .or_else(|| self.image_id.map(Spanned::span))
        .or_else(|| self.min_guest_svn.map(Spanned::span))
        .or_else(|| self.min_tcb.map(Spanned::span))
        .or_else(|| self.max_vmpl.map(Spanned::span))
        .or_else(|| self.allow_migration_agent.map(Spanned::span))
    }
}

/// An SPL (one byte) of `min_tcb`.
fn spl(c: &mut Checker<'_>, name: &str, v: Option<&Spanned<i64>>) -> u8 {
    u8::try_from(c.range(name, v, 0, u64::from(u8::MAX), 0)).unwrap_or(0)
}

/// Validates the SEV-SNP keys of an entry; `Some` policy for a `tee = "snp"` entry
/// (`is_snp`), `None` otherwise, with an error if an SNP-only key is written there.
/// `hosts` locates errors about the entry as a whole.
pub(super) fn check(
    c: &mut Checker<'_>,
    keys: &SnpKeys<'_>,
    is_snp: bool,
    hosts: &Spanned<Vec<Spanned<String>>>,
) -> Option<SnpPolicy> {
    if !is_snp {
        if let Some(span) = keys.first() {
            c.error(
                &Spanned::new(span, ()),
                format!("SEV-SNP keys ({SNP_KEYS}) need tee = \"snp\""),
            );
        }
        return None;
    }
    let min_tcb = keys.min_tcb.map(|t| {
        let t = t.get_ref();
        MinTcb {
            bootloader: spl(c, "min_tcb.bootloader", t.bootloader.as_ref()),
            tee: spl(c, "min_tcb.tee", t.tee.as_ref()),
            snp: spl(c, "min_tcb.snp", t.snp.as_ref()),
            microcode: spl(c, "min_tcb.microcode", t.microcode.as_ref()),
            fmc: t.fmc.as_ref().map(|f| spl(c, "min_tcb.fmc", Some(f))),
        }
    });
    let policy = SnpPolicy {
        measurement: list(c, keys.measurement, Measurement::from_hex),
        host_data: list(c, keys.host_data, HostData::from_hex),
        id_key_digest: list(c, keys.id_key_digest, IdKeyDigest::from_hex),
        author_key_digest: list(c, keys.author_key_digest, AuthorKeyDigest::from_hex),
        family_id: keys
            .family_id
            .and_then(|s| c.parse(s, |v| FamilyId::from_hex(v))),
        image_id: keys
            .image_id
            .and_then(|s| c.parse(s, |v| ImageId::from_hex(v))),
        min_guest_svn: keys.min_guest_svn.map(|s| {
            u32::try_from(c.range("min_guest_svn", Some(s), 0, u64::from(u32::MAX), 0)).unwrap_or(0)
        }),
        min_tcb,
        // VMPL 0..=3 exist; a host-requested report (0xFFFFFFFF) is never admitted.
        max_vmpl: keys
            .max_vmpl
            .map(|s| u8::try_from(c.range("max_vmpl", Some(s), 0, 3, 0)).unwrap_or(0))
            .unwrap_or(0),
        allow_debug: keys.allow_debug,
        allow_migration_agent: keys.allow_migration_agent.is_some_and(|b| *b.get_ref()),
        ..SnpPolicy::default()
    };
    if keys.measurement.is_empty() && keys.host_data.is_empty() && keys.id_key_digest.is_empty() {
        c.error(
            hosts,
            "a tee = \"snp\" [[enclave]] needs measurement (an allow-list), unless host_data or id_key_digest pins the guest",
        );
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::appraise::snp_policy::MinTcb;
    use crate::config::Config;

    fn snp(keys: &str) -> String {
        format!("[[enclave]]\nhosts = [\"snp.test\"]\ntee = \"snp\"\n{keys}")
    }

    fn m() -> String {
        format!("measurement = [\"{}\"]\n", "ab".repeat(48))
    }

    #[test]
    fn an_snp_entry_reads_every_key() {
        let text = snp(&format!(
            "{}host_data = [\"{}\"]\nid_key_digest = [\"{}\"]\nauthor_key_digest = [\"{}\"]\nfamily_id = \"{}\"\nimage_id = \"{}\"\nmin_guest_svn = 3\nmin_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}\nmax_vmpl = 1\nallow_debug = true\nallow_migration_agent = true\n",
            m(),
            "cd".repeat(32),
            "ef".repeat(48),
            "01".repeat(48),
            "02".repeat(16),
            "03".repeat(16)
        ));
        let config = Config::from_toml(&text, "p.toml", Path::new(".")).expect("valid");
        let e = &config.enclaves[0];
        let p = e.snp.as_ref().expect("an snp policy");
        assert_eq!(p.measurement[0].0, [0xab; 48]);
        assert_eq!(p.host_data[0].0, [0xcd; 32]);
        assert_eq!(p.id_key_digest[0].0, [0xef; 48]);
        assert_eq!(p.author_key_digest[0].0, [0x01; 48]);
        assert_eq!(p.family_id.map(|f| f.0), Some([0x02; 16]));
        assert_eq!(p.image_id.map(|f| f.0), Some([0x03; 16]));
        assert_eq!(p.min_guest_svn, Some(3));
        assert_eq!(
            p.min_tcb,
            Some(MinTcb {
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
                fmc: None
            })
        );
        assert_eq!(p.max_vmpl, 1);
        assert!(p.allow_debug && p.allow_migration_agent);
        // The Intel side of the entry pins nothing and expects no Intel TEE: the verifier
        // refuses Intel evidence for an SNP entry (tee_mismatch).
        assert!(e.policy.tee.is_none());
    }

    #[test]
    fn the_secure_defaults() {
        let config = Config::from_toml(&snp(&m()), "p.toml", Path::new(".")).expect("valid");
        let p = config.enclaves[0].snp.as_ref().expect("snp");
        assert!(!p.allow_debug && !p.allow_migration_agent);
        assert_eq!(p.max_vmpl, 0);
        assert_eq!(p.min_tcb, None);
    }

    #[test]
    fn an_snp_entry_must_pin_the_guest() {
        let err = Config::from_toml(&snp("min_guest_svn = 1\n"), "p.toml", Path::new("."))
            .expect_err("nothing pinned");
        assert!(err.to_string().contains("needs measurement"), "{err}");
        for pin in [
            format!("host_data = [\"{}\"]\n", "cd".repeat(32)),
            format!("id_key_digest = [\"{}\"]\n", "ef".repeat(48)),
        ] {
            Config::from_toml(&snp(&pin), "p.toml", Path::new(".")).expect(&pin);
        }
    }

    #[test]
    fn bad_values_are_located() {
        for (keys, needle) in [
            ("measurement = [\"abcd\"]\n".to_owned(), "p.toml:4"),
            (format!("{}max_vmpl = 4\n", m()), "max_vmpl"),
            (format!("{}min_tcb = {{ snp = 256 }}\n", m()), "min_tcb.snp"),
            (format!("{}min_tcb = {{ sev = 1 }}\n", m()), "unknown field"),
            (format!("{}min_guest_svn = -1\n", m()), "min_guest_svn"),
            (format!("{}family_id = \"00\"\n", m()), "p.toml:5"),
        ] {
            let err = Config::from_toml(&snp(&keys), "p.toml", Path::new(".")).expect_err(&keys);
            assert!(err.to_string().contains(needle), "{keys}: {err}");
        }
    }

    #[test]
    fn keys_of_another_tee_are_refused() {
        let intel = [
            format!("mrenclave = [\"{}\"]\n", "e1".repeat(32)),
            format!("mrtd = [\"{}\"]\n", "7d".repeat(48)),
            "tcb_status = [\"UpToDate\"]\n".to_owned(),
            "early = \"warn\"\n".to_owned(),
            "min_tcb_evaluation_data_number = 17\n".to_owned(),
        ];
        for k in intel {
            let text = snp(&format!("{}{k}", m()));
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(&k);
            assert!(
                err.to_string().contains("do not apply to tee = \"snp\""),
                "{k}: {err}"
            );
        }
        let app = snp(&format!("{}app_id = [\"{}\"]\n", m(), "a1".repeat(20)));
        let err = Config::from_toml(&app, "p.toml", Path::new(".")).expect_err("app_id");
        assert!(err.to_string().contains("need tee = \"tdx\""), "{err}");
        for tee in ["sgx", "tdx"] {
            let text = format!(
                "[[enclave]]\nhosts = [\"a.test\"]\ntee = \"{tee}\"\nmrenclave = [\"{}\"]\nmrtd = [\"{}\"]\n{}",
                "e1".repeat(32),
                "7d".repeat(48),
                m()
            );
            let err = Config::from_toml(&text, "p.toml", Path::new(".")).expect_err(tee);
            assert!(
                err.to_string().contains("need tee = \"snp\""),
                "{tee}: {err}"
            );
        }
    }

    #[test]
    fn amd_kds_is_a_url_or_a_directory() {
        use crate::source::AmdKdsSpec;
        let dir = std::env::temp_dir();
        let at = |v: &str| {
            Config::from_toml(
                &format!("[collateral]\namd_kds = \"{v}\"\n"),
                "p.toml",
                &dir,
            )
        };
        assert_eq!(
            at("https://kds.example").expect("url").source.amd_kds,
            Some(AmdKdsSpec::Url("https://kds.example".into()))
        );
        assert_eq!(
            at(".").expect("dir").source.amd_kds,
            Some(AmdKdsSpec::Dir(dir.join(".")))
        );
        let err = at("no-such-dir-for-kds").expect_err("missing");
        assert!(err.to_string().contains("collateral.amd_kds"), "{err}");
        let none = Config::from_toml("", "p.toml", &dir).expect("empty");
        assert_eq!(none.source.amd_kds, None);
    }

    #[cfg(feature = "sim")]
    #[test]
    fn amd_trust_root_is_a_file_and_its_arks_load() {
        let dir = std::env::temp_dir().join(format!("ratls-amd-root-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let now = crate::dcap::time::UnixTime::now();
        let sim = crate::sim::SnpSim::load_or_create(&dir, now).expect("sim");
        let at = |v: &str| {
            Config::from_toml(
                &format!("[collateral]\namd_trust_root = \"{v}\"\n"),
                "p.toml",
                &dir,
            )
        };
        let c = at("amd-ark.pem").expect("a file");
        let path = c.source.amd_trust_root.clone().expect("set");
        assert_eq!(path, dir.join("amd-ark.pem"));
        let trust = crate::source::snp_setup::arks_from_pem(&path).expect("ARKs");
        assert_eq!(trust.arks().len(), 3);
        assert_eq!(
            trust
                .ark(crate::snp::Product::Milan)
                .map(|a| a.der().to_vec()),
            sim.ark(crate::snp::Product::Milan).ok()
        );
        let err = at("no-such-file.pem").expect_err("missing");
        assert!(
            err.to_string().contains("collateral.amd_trust_root"),
            "{err}"
        );
        // A certificate that is no ARK (the ASK) is refused, not trusted.
        let ask = dir.join("ask.pem");
        let chain = std::fs::read_to_string(dir.join("collateral/amd/milan-cert_chain.pem"))
            .expect("chain");
        let first = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .expect("ASK");
        std::fs::write(&ask, first).expect("write");
        assert!(crate::source::snp_setup::arks_from_pem(&ask).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
