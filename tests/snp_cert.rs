//! SEV-SNP evidence in RA-TLS certificates, judged in-process for `tee = "snp"` entries
//! (`ratls::appraise_certificate_for`): the sim's dstack `.1.8` certificates (V0 and V1,
//! Milan, Genoa and Turin) are accepted under the sim ARKs and its offline KDS directory,
//! and every way to break them is refused with its own code, the cheap checks (DEBUG, the
//! binding, the certificate's window) before any collateral or signature.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::snp_policy::{MinTcb, SnpPolicy};
use ratls_proxy::appraise::snp_source::{NoSnpCollateral, SnpCollateralSource};
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::ratls::{
    appraise_certificate, appraise_certificate_for, AcceptedCert, AcceptedEvidence, BindingMode,
    CertAppraisal, SnpJudge,
};
use ratls_proxy::sim::dstack_snp::{other_chip_id, KDS_DIR};
use ratls_proxy::sim::{ratls_identity, DstackWire, SimConfig, SimPki, SnpSim, SnpSimSpec};
use ratls_proxy::snp::ids::{
    AuthorKeyDigest, FamilyId, HostData, IdKeyDigest, ImageId, Measurement,
};
use ratls_proxy::snp::report::GuestPolicy;
use ratls_proxy::snp::{Product, SnpTrust};
use ratls_proxy::SnpFiles;

const MEASUREMENT: [u8; 48] = [0x5e; 48];

struct World {
    dir: std::path::PathBuf,
    pki: SimPki,
    sim: Arc<SnpSim>,
    trust: SnpTrust,
    files: SnpFiles,
    now: UnixTime,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn world() -> World {
    let dir = common::scratch_dir();
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let sim = Arc::new(SnpSim::load_or_create(&dir, now).expect("SNP sim"));
    let trust = sim.trust().expect("trust");
    let (files, skipped) = SnpFiles::load(&dir.join(KDS_DIR), &trust).expect("KDS dir");
    assert!(skipped.is_empty(), "{skipped:?}");
    World {
        dir,
        pki,
        sim,
        trust,
        files,
        now,
    }
}

impl World {
    fn spec(&self, product: Product) -> SnpSimSpec {
        SnpSimSpec::new(Arc::clone(&self.sim), product, MEASUREMENT)
    }

    fn cert(&self, spec: SnpSimSpec) -> Vec<u8> {
        let config = SimConfig {
            snp: Some(spec),
            ..SimConfig::default()
        };
        ratls_identity(&self.pki, &config, self.now)
            .expect("certificate")
            .cert_der
    }

    fn judge_with(
        &self,
        der: &[u8],
        policy: &SnpPolicy,
        source: &dyn SnpCollateralSource,
        now: UnixTime,
    ) -> CertAppraisal {
        let judge = SnpJudge {
            policy,
            source,
            trust: &self.trust,
        };
        appraise_certificate_for(
            der,
            &no_intel(),
            (&entry(), Some(&judge)),
            BindingMode::Auto,
            now,
        )
    }

    fn judge(&self, der: &[u8], policy: &SnpPolicy) -> CertAppraisal {
        self.judge_with(der, policy, &self.files, self.now)
    }
}

fn no_intel() -> VerifyError {
    VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral for an SNP entry".into(),
    ))
}

/// The Intel side of an SNP entry, as the configuration builds it.
fn entry() -> EnclavePolicy {
    EnclavePolicy::default()
}

fn pinned() -> SnpPolicy {
    SnpPolicy {
        measurement: vec![Measurement(MEASUREMENT)],
        ..SnpPolicy::default()
    }
}

fn code(a: &CertAppraisal) -> Option<RefusalCode> {
    a.refusal().map(|r| r.code)
}

#[test]
fn the_sim_guest_is_accepted_on_every_product_and_wire() {
    let w = world();
    for product in Product::ALL {
        for wire in [DstackWire::V0, DstackWire::V1] {
            let der = w.cert(SnpSimSpec {
                wire,
                ..w.spec(product)
            });
            let a = w.judge(&der, &pinned());
            assert_eq!(code(&a), None, "{product} {wire:?}: {:?}", a.refusal());
            assert_eq!(a.tee(), Some("snp"));
            // A reader of the Intel appraisal alone never sees an acceptance.
            assert!(!a.appraisal.is_accepted());
            let accepted = AcceptedCert::of(a).expect("accepted");
            let AcceptedEvidence::Snp(snp) = accepted.evidence() else {
                panic!("not SEV-SNP evidence");
            };
            let id = &snp.report().identity;
            assert_eq!(id.measurement, Measurement(MEASUREMENT));
            assert_eq!(id.product, product);
            assert!(accepted.quote().is_none());
            assert!(accepted.evidence().valid_until() > w.now);
        }
    }
}

#[test]
fn each_policy_field_refuses_with_its_own_code() {
    let w = world();
    let base = w.spec(Product::Milan);
    let der = w.cert(base.clone());
    let tcb = MinTcb {
        bootloader: 4,
        tee: 1,
        snp: 23,
        microcode: 213,
        fmc: None,
    };
    let cases: Vec<(&str, SnpPolicy, RefusalCode)> = vec![
        (
            "measurement",
            SnpPolicy {
                measurement: vec![Measurement([0x11; 48])],
                ..SnpPolicy::default()
            },
            RefusalCode::MeasurementMismatch,
        ),
        (
            "host_data",
            SnpPolicy {
                host_data: vec![HostData([0x22; 32])],
                ..pinned()
            },
            RefusalCode::HostDataMismatch,
        ),
        (
            "id_key_digest",
            SnpPolicy {
                id_key_digest: vec![IdKeyDigest([0x33; 48])],
                ..pinned()
            },
            RefusalCode::IdKeyMismatch,
        ),
        (
            "author_key_digest",
            SnpPolicy {
                author_key_digest: vec![AuthorKeyDigest([0x44; 48])],
                ..pinned()
            },
            RefusalCode::AuthorKeyMismatch,
        ),
        (
            "family_id",
            SnpPolicy {
                family_id: Some(FamilyId([0x55; 16])),
                ..pinned()
            },
            RefusalCode::IdBlockMismatch,
        ),
        (
            "image_id",
            SnpPolicy {
                image_id: Some(ImageId([0x66; 16])),
                ..pinned()
            },
            RefusalCode::IdBlockMismatch,
        ),
        (
            "min_guest_svn",
            SnpPolicy {
                min_guest_svn: Some(2),
                ..pinned()
            },
            RefusalCode::GuestSvnTooLow,
        ),
    ];
    let mut cases = cases;
    for (name, min) in [
        (
            "min_tcb.bootloader",
            MinTcb {
                bootloader: 5,
                ..tcb
            },
        ),
        ("min_tcb.tee", MinTcb { tee: 2, ..tcb }),
        ("min_tcb.snp", MinTcb { snp: 24, ..tcb }),
        (
            "min_tcb.microcode",
            MinTcb {
                microcode: 214,
                ..tcb
            },
        ),
    ] {
        cases.push((
            name,
            SnpPolicy {
                min_tcb: Some(min),
                ..pinned()
            },
            RefusalCode::TcbBelowMinimum,
        ));
    }
    for (name, policy, want) in &cases {
        let a = w.judge(&der, policy);
        assert_eq!(code(&a), Some(*want), "{name}: {:?}", a.refusal());
        // Refused after verification: the report's fields are shown.
        assert!(
            a.snp.as_ref().is_some_and(|s| s.identity.is_some()),
            "{name}"
        );
    }
    // The minimum met exactly is accepted.
    let exact = SnpPolicy {
        min_tcb: Some(tcb),
        min_guest_svn: Some(1),
        ..pinned()
    };
    assert_eq!(code(&w.judge(&der, &exact)), None);
    // The guest's own fields: VMPL, DEBUG, a migration agent.
    let mut vmpl = base.clone();
    vmpl.report.vmpl = 1;
    assert_eq!(
        code(&w.judge(&w.cert(vmpl), &pinned())),
        Some(RefusalCode::VmplNotAllowed)
    );
    let mut ma = base.clone();
    ma.report.policy |= GuestPolicy::MIGRATE_MA;
    assert_eq!(
        code(&w.judge(&w.cert(ma), &pinned())),
        Some(RefusalCode::GuestPolicyNotAllowed)
    );
    let mut debug = base;
    debug.report.policy |= GuestPolicy::DEBUG;
    let debug = w.cert(debug);
    assert_eq!(
        code(&w.judge(&debug, &pinned())),
        Some(RefusalCode::DebugEnclave)
    );
    let allowed = SnpPolicy {
        allow_debug: true,
        ..pinned()
    };
    assert_eq!(code(&w.judge(&debug, &allowed)), None);
}

#[test]
fn debug_and_the_binding_refuse_before_any_collateral() {
    let w = world();
    let mut debug = w.spec(Product::Genoa);
    debug.report.policy |= GuestPolicy::DEBUG;
    for (spec, want) in [
        (debug, RefusalCode::DebugEnclave),
        (
            SnpSimSpec {
                wrong_key: true,
                ..w.spec(Product::Genoa)
            },
            RefusalCode::BindingMismatch,
        ),
        (
            SnpSimSpec {
                wrong_host_data: true,
                ..w.spec(Product::Genoa)
            },
            RefusalCode::BindingMismatch,
        ),
    ] {
        // No collateral at all: the refusal is the cheap one, not collateral_unavailable.
        let a = w.judge_with(&w.cert(spec), &pinned(), &NoSnpCollateral, w.now);
        assert_eq!(code(&a), Some(want), "{:?}", a.refusal());
        assert!(a.snp.as_ref().is_some_and(|s| s.identity.is_none()));
    }
    // And without any, a sound guest cannot be checked.
    let a = w.judge_with(
        &w.cert(w.spec(Product::Genoa)),
        &pinned(),
        &NoSnpCollateral,
        w.now,
    );
    assert_eq!(code(&a), Some(RefusalCode::CollateralUnavailable));
}

#[test]
fn the_certificate_window_and_age_apply_as_for_intel() {
    let w = world();
    let der = w.cert(w.spec(Product::Milan));
    let later = UnixTime(w.now.0 + 3 * 86_400);
    let a = w.judge_with(&der, &pinned(), &w.files, later);
    assert_eq!(code(&a), Some(RefusalCode::CertificateExpired));
    let aged = EnclavePolicy {
        max_cert_age_secs: Some(60),
        ..entry()
    };
    let judge = SnpJudge {
        policy: &pinned(),
        source: &w.files,
        trust: &w.trust,
    };
    let a = appraise_certificate_for(
        &der,
        &no_intel(),
        (&aged, Some(&judge)),
        BindingMode::Auto,
        w.now,
    );
    assert_eq!(code(&a), Some(RefusalCode::CertificateTooOld));
    // A binding mode other than dstack's refuses the dstack carrier.
    let a = appraise_certificate_for(
        &der,
        &no_intel(),
        (&entry(), Some(&judge)),
        BindingMode::Cosmian,
        w.now,
    );
    assert_eq!(code(&a), Some(RefusalCode::BindingMismatch));
}

#[test]
fn another_chips_key_a_revoked_ask_and_a_foreign_ark_are_refused() {
    let w = world();
    // Signed by another chip's VCEK (carried), the report naming the sim chip: the source's
    // VCEK for the sim chip does not verify the signature.
    let other = w.cert(SnpSimSpec {
        other_chip: true,
        ..w.spec(Product::Milan)
    });
    assert_eq!(
        code(&w.judge(&other, &pinned())),
        Some(RefusalCode::SignatureInvalid)
    );
    // The same, with only the chain held (no VCEK for the chip): the carried key is
    // verified under the held chain and is not this chip's.
    let chain_only = w.dir.join("chain-only");
    std::fs::create_dir_all(&chain_only).expect("dir");
    for f in ["milan-cert_chain.pem", "milan.crl"] {
        std::fs::copy(w.dir.join(KDS_DIR).join(f), chain_only.join(f)).expect("copy");
    }
    let (held, _) = SnpFiles::load(&chain_only, &w.trust).expect("chain only");
    let a = w.judge_with(&other, &pinned(), &held, w.now);
    assert_eq!(
        code(&a),
        Some(RefusalCode::ChainInvalid),
        "{:?}",
        a.refusal()
    );
    // A guest carrying its own (sim-chip) VCEK is accepted under the held chain alone.
    let carried = w.cert(SnpSimSpec {
        carry_chain: true,
        ..w.spec(Product::Milan)
    });
    assert_eq!(code(&w.judge_with(&carried, &pinned(), &held, w.now)), None);
    // ...and without a held chain the carried key is never trusted on its own.
    let a = w.judge_with(&carried, &pinned(), &NoSnpCollateral, w.now);
    assert_eq!(code(&a), Some(RefusalCode::CollateralUnavailable));
    // A carried ARK copy must be the pinned one, byte for byte: under AMD's real ARKs the
    // sim's copy is refused (the held chain itself is the sim's).
    let with_ark = w.cert(SnpSimSpec {
        carry_chain: true,
        carry_ark: true,
        ..w.spec(Product::Milan)
    });
    assert_eq!(
        code(&w.judge_with(&with_ark, &pinned(), &held, w.now)),
        None
    );
    let amd = SnpTrust::amd();
    let judge = SnpJudge {
        policy: &pinned(),
        source: &held,
        trust: &amd,
    };
    let a = appraise_certificate_for(
        &with_ark,
        &no_intel(),
        (&entry(), Some(&judge)),
        BindingMode::Auto,
        w.now,
    );
    assert_eq!(
        code(&a),
        Some(RefusalCode::ChainInvalid),
        "{:?}",
        a.refusal()
    );
    // The product CRL revokes the ASK: every Milan guest is refused.
    let revoked = w.dir.join("revoked");
    w.sim
        .write_kds_dir(&revoked, &[Product::Milan])
        .expect("revoking dir");
    let (files, skipped) = SnpFiles::load(&revoked, &w.trust).expect("other products load");
    assert!(skipped.iter().any(|s| s.contains("revoked")), "{skipped:?}");
    let a = w.judge_with(&w.cert(w.spec(Product::Milan)), &pinned(), &files, w.now);
    assert_eq!(code(&a), Some(RefusalCode::Revoked), "{:?}", a.refusal());
    let a = w.judge_with(&w.cert(w.spec(Product::Genoa)), &pinned(), &files, w.now);
    assert_eq!(code(&a), None, "{:?}", a.refusal());
    // The other chip's CHIP_ID is not the sim chip's.
    assert_ne!(
        other_chip_id(Product::Milan).0,
        w.spec(Product::Milan).report.chip_id
    );
}

#[test]
fn intel_entries_refuse_snp_evidence_and_snp_entries_refuse_intel_quotes() {
    let w = world();
    let der = w.cert(w.spec(Product::Milan));
    for tee in [
        ratls_proxy::dcap::quote::TeeType::Sgx,
        ratls_proxy::dcap::quote::TeeType::Tdx,
    ] {
        let policy = EnclavePolicy {
            tee: Some(tee),
            ..common::permissive(true)
        };
        let a = appraise_certificate(&der, &no_intel(), &policy, BindingMode::Auto, w.now);
        assert_eq!(code(&a), Some(RefusalCode::TeeMismatch), "{tee:?}");
    }
    let intel = ratls_identity(&w.pki, &SimConfig::default(), w.now)
        .expect("sgx")
        .cert_der;
    assert_eq!(
        code(&w.judge(&intel, &pinned())),
        Some(RefusalCode::TeeMismatch)
    );
}

#[test]
fn the_verifier_caches_an_snp_verdict_until_its_collateral_ends() {
    use ratls_proxy::ratls::verifier::{RaTlsVerifier, SnpVerifier};
    use ratls_proxy::ratls::VerdictCache;
    let w = world();
    let der = w.cert(w.spec(Product::Milan));
    let cache = Arc::new(VerdictCache::new(16, std::time::Duration::from_secs(3600)));
    let intel: Arc<dyn ratls_proxy::appraise::CollateralSource + Send + Sync> =
        Arc::new(no_intel());
    let (files, _) = SnpFiles::load(&w.dir.join(KDS_DIR), &w.trust).expect("dir");
    let verifier = RaTlsVerifier::new(
        entry(),
        BindingMode::Auto,
        ratls_proxy::dcap::ids::CertSha256([0; 32]),
        intel,
        Arc::clone(&cache),
    )
    .with_snp(Some(SnpVerifier {
        policy: pinned(),
        source: Arc::new(files),
        trust: Arc::new(w.trust.clone()),
    }));
    let first = verifier.verdict_for(&der, w.now).expect("accepted");
    let second = verifier.verdict_for(&der, w.now).expect("accepted again");
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second verdict is the cached one"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.verifications), (1, 1), "{stats:?}");
    // Until the certificate's notAfter at most (two days), never past the CRL's nextUpdate.
    assert!(first.valid_until > w.now);
    assert!(first.valid_until <= UnixTime(w.now.0 + 2 * 86_400));
    // The same certificate under a policy it fails: refused, nothing cached for it.
    let strict = RaTlsVerifier::new(
        entry(),
        BindingMode::Auto,
        ratls_proxy::dcap::ids::CertSha256([0; 32]),
        Arc::new(no_intel()),
        Arc::clone(&cache),
    )
    .with_snp(Some(SnpVerifier {
        policy: SnpPolicy {
            min_guest_svn: Some(9),
            ..pinned()
        },
        source: Arc::new(
            SnpFiles::load(&w.dir.join(KDS_DIR), &w.trust)
                .expect("dir")
                .0,
        ),
        trust: Arc::new(w.trust.clone()),
    }));
    let refused = strict.verdict_for(&der, w.now).expect_err("refused");
    assert_eq!(refused.refusal.code, RefusalCode::GuestSvnTooLow);
}
