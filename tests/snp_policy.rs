//! The SEV-SNP guest policy on verified sim reports: each field refuses what it should,
//! with its own violation and refusal code; the defaults refuse debug, migration agents and
//! VMPL above 0; the code strings are pinned (DESIGN.md "More TEEs").

#![cfg(feature = "sim")]

use ratls_proxy::appraise::snp_policy::{snp_error_code, MinTcb, SnpPolicy, SnpViolation};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::snp::{sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, VekSpec};
use ratls_proxy::snp::collateral::{verify_with_collateral, SnpCollateral};
use ratls_proxy::snp::ids::{
    AuthorKeyDigest, FamilyId, HostData, IdKeyDigest, ImageId, Measurement,
};
use ratls_proxy::snp::report::{PlatformInfo, SigningKey};
use ratls_proxy::snp::verified::SnpIdentity;
use ratls_proxy::snp::{
    CertRole, Product, Report, ReportError, SnpError, TcbComponent, TcbVersion,
};

const NOW: UnixTime = UnixTime(1_790_000_000);

/// The verified identity of a sim report built from `spec` on `product`.
fn identity(product: Product, spec: &ReportSpec) -> SnpIdentity {
    let pki = SimSnpPki::new(product, NOW).expect("pki");
    let trust = SimSnpPki::trust(&[&pki]).expect("trust");
    let key = pki
        .vek(&VekSpec::vcek(sim_chip_id(product), sim_tcb(product)))
        .expect("vek");
    let bytes = spec.sign(&key).expect("sign");
    let c = SnpCollateral::from_pem(
        pki.cert_chain_pem(SigningKey::Vcek).as_bytes(),
        key.pem.as_bytes(),
        None,
    )
    .expect("pem");
    let report = Report::parse(&bytes).expect("parse");
    verify_with_collateral(&report, &c, &trust, NOW)
        .expect("verifies")
        .identity
}

fn codes(policy: &SnpPolicy, id: &SnpIdentity) -> Vec<&'static str> {
    policy
        .violations(id)
        .iter()
        .map(SnpViolation::refusal_code)
        .collect()
}

#[test]
fn the_default_policy_accepts_a_plain_guest_and_pins_nothing() {
    let id = identity(Product::Milan, &ReportSpec::new(Product::Milan));
    assert_eq!(codes(&SnpPolicy::default(), &id), Vec::<&str>::new());
    assert!(!SnpPolicy::default().pins_identity());
}

#[test]
fn debug_guests_are_refused_before_any_signature_and_after_verification() {
    let spec = ReportSpec {
        policy: 0x3_0000 | 1 << 19,
        ..ReportSpec::new(Product::Genoa)
    };
    let bytes = spec.bytes(); // unsigned: the early check needs no signature
    let report = Report::parse(&bytes).expect("parse");
    let policy = SnpPolicy::default();
    assert!(matches!(
        policy.check_early(&report),
        Err(SnpViolation::Debug(_))
    ));
    let id = identity(Product::Genoa, &spec);
    assert_eq!(codes(&policy, &id), ["debug_enclave"]);
    let allow = SnpPolicy {
        allow_debug: true,
        ..SnpPolicy::default()
    };
    assert!(allow.check_early(&report).is_ok());
    assert_eq!(codes(&allow, &id), Vec::<&str>::new());
}

#[test]
fn each_identity_allow_list_refuses_other_values_with_its_code() {
    let spec = ReportSpec {
        host_data: [0x44; 32],
        id_key_digest: [0x1d; 48],
        author_key_digest: [0xa0; 48],
        key_info: 1, // AUTHOR_KEY_EN
        family_id: [0xf0; 16],
        image_id: [0x1a; 16],
        ..ReportSpec::new(Product::Milan)
    };
    let id = identity(Product::Milan, &spec);
    let exact = SnpPolicy {
        measurement: vec![Measurement([0x5e; 48])],
        host_data: vec![HostData([0x44; 32])],
        id_key_digest: vec![IdKeyDigest([0x1d; 48])],
        author_key_digest: vec![AuthorKeyDigest([0xa0; 48])],
        family_id: Some(FamilyId([0xf0; 16])),
        image_id: Some(ImageId([0x1a; 16])),
        ..SnpPolicy::default()
    };
    assert!(exact.pins_identity());
    assert_eq!(codes(&exact, &id), Vec::<&str>::new());
    let cases: [(SnpPolicy, &str); 6] = [
        (
            SnpPolicy {
                measurement: vec![Measurement([0; 48])],
                ..exact.clone()
            },
            "measurement_mismatch",
        ),
        (
            SnpPolicy {
                host_data: vec![HostData([0; 32])],
                ..exact.clone()
            },
            "host_data_mismatch",
        ),
        (
            SnpPolicy {
                id_key_digest: vec![IdKeyDigest([0; 48])],
                ..exact.clone()
            },
            "id_key_mismatch",
        ),
        (
            SnpPolicy {
                author_key_digest: vec![AuthorKeyDigest([0; 48])],
                ..exact.clone()
            },
            "author_key_mismatch",
        ),
        (
            SnpPolicy {
                family_id: Some(FamilyId([0; 16])),
                ..exact.clone()
            },
            "id_block_mismatch",
        ),
        (
            SnpPolicy {
                image_id: Some(ImageId([0; 16])),
                ..exact.clone()
            },
            "id_block_mismatch",
        ),
    ];
    for (policy, code) in cases {
        assert_eq!(codes(&policy, &id), [code]);
    }
    // AUTHOR_KEY_EN clear: a pinned author key is never met, even by a matching digest field.
    let no_author = identity(
        Product::Milan,
        &ReportSpec {
            key_info: 0,
            ..spec
        },
    );
    assert!(matches!(
        exact.violations(&no_author).as_slice(),
        [SnpViolation::AuthorKey { actual: None, .. }]
    ));
}

#[test]
fn guest_svn_and_tcb_minimums_are_component_wise_on_reported_and_launch_tcb() {
    let p = Product::Turin;
    let id = identity(
        p,
        &ReportSpec {
            guest_svn: 3,
            ..ReportSpec::new(p)
        },
    );
    let t = sim_tcb(p);
    let at_least = MinTcb {
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
        fmc: t.fmc,
    };
    let ok = SnpPolicy {
        min_guest_svn: Some(3),
        min_tcb: Some(at_least),
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&ok, &id), Vec::<&str>::new());
    assert_eq!(
        codes(
            &SnpPolicy {
                min_guest_svn: Some(4),
                ..ok.clone()
            },
            &id
        ),
        ["guest_svn_too_low"]
    );
    for (component, min) in [
        (
            TcbComponent::Bootloader,
            MinTcb {
                bootloader: t.bootloader + 1,
                ..at_least
            },
        ),
        (
            TcbComponent::Tee,
            MinTcb {
                tee: t.tee + 1,
                ..at_least
            },
        ),
        (
            TcbComponent::Snp,
            MinTcb {
                snp: t.snp + 1,
                ..at_least
            },
        ),
        (
            TcbComponent::Microcode,
            MinTcb {
                microcode: t.microcode + 1,
                ..at_least
            },
        ),
        (
            TcbComponent::Fmc,
            MinTcb {
                fmc: Some(2),
                ..at_least
            },
        ),
    ] {
        let v = SnpPolicy {
            min_tcb: Some(min),
            ..ok.clone()
        }
        .violations(&id);
        // Both REPORTED_TCB and LAUNCH_TCB are below.
        assert_eq!(v.len(), 2, "{component}");
        for x in &v {
            assert!(matches!(x, SnpViolation::Tcb { component: c, .. } if *c == component));
            assert_eq!(x.refusal_code(), "tcb_below_minimum");
        }
    }
    // A guest launched on old firmware: LAUNCH_TCB alone is below.
    let mut old = t;
    old.snp -= 1;
    let launched_old = identity(
        p,
        &ReportSpec {
            guest_svn: 3,
            launch_tcb: TcbVersion::encode(&old, p.tcb_layout()),
            ..ReportSpec::new(p)
        },
    );
    assert!(matches!(
        ok.violations(&launched_old).as_slice(),
        [SnpViolation::Tcb {
            field: "LAUNCH_TCB",
            component: TcbComponent::Snp,
            ..
        }]
    ));
    // FMC exists on Turin only: a minimum for it is met vacuously elsewhere.
    let milan = identity(Product::Milan, &ReportSpec::new(Product::Milan));
    let fmc_only = SnpPolicy {
        min_tcb: Some(MinTcb {
            fmc: Some(9),
            ..MinTcb::default()
        }),
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&fmc_only, &milan), Vec::<&str>::new());
}

#[test]
fn vmpl_above_the_maximum_and_host_requested_reports_are_refused() {
    let p = Product::Milan;
    let policy = SnpPolicy::default();
    assert_eq!(
        codes(
            &policy,
            &identity(
                p,
                &ReportSpec {
                    vmpl: 1,
                    ..ReportSpec::new(p)
                }
            )
        ),
        ["vmpl_not_allowed"]
    );
    let vmpl2 = SnpPolicy {
        max_vmpl: 2,
        ..SnpPolicy::default()
    };
    assert_eq!(
        codes(
            &vmpl2,
            &identity(
                p,
                &ReportSpec {
                    vmpl: 2,
                    ..ReportSpec::new(p)
                }
            )
        ),
        Vec::<&str>::new()
    );
    let host = identity(
        p,
        &ReportSpec {
            vmpl: u32::MAX,
            ..ReportSpec::new(p)
        },
    );
    let v = SnpPolicy {
        max_vmpl: 3,
        ..SnpPolicy::default()
    }
    .violations(&host);
    assert!(matches!(v.as_slice(), [SnpViolation::Vmpl { .. }]));
    assert!(v[0].to_string().contains("host-requested"));
}

#[test]
fn guest_policy_bits_and_platform_info_are_judged() {
    let p = Product::Genoa;
    let ma = identity(
        p,
        &ReportSpec {
            policy: 0x3_0000 | 1 << 18,
            ..ReportSpec::new(p)
        },
    );
    assert_eq!(
        codes(&SnpPolicy::default(), &ma),
        ["guest_policy_not_allowed"]
    );
    assert_eq!(
        codes(
            &SnpPolicy {
                allow_migration_agent: true,
                ..SnpPolicy::default()
            },
            &ma
        ),
        Vec::<&str>::new()
    );
    let plain = identity(p, &ReportSpec::new(p)); // SMT allowed, not single-socket
    assert_eq!(
        codes(
            &SnpPolicy {
                allow_smt: false,
                ..SnpPolicy::default()
            },
            &plain
        ),
        ["guest_policy_not_allowed"]
    );
    assert_eq!(
        codes(
            &SnpPolicy {
                require_single_socket: true,
                ..SnpPolicy::default()
            },
            &plain
        ),
        ["guest_policy_not_allowed"]
    );
    let single = identity(
        p,
        &ReportSpec {
            policy: 0x2_0000 | 1 << 20,
            ..ReportSpec::new(p)
        },
    );
    let strict = SnpPolicy {
        allow_smt: false,
        require_single_socket: true,
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&strict, &single), Vec::<&str>::new());
    // PLATFORM_INFO 0x25: SMT_EN, ECC_EN, ALIAS_CHECK_COMPLETE.
    let tsme = SnpPolicy {
        platform_info_required: PlatformInfo::TSME_EN,
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&tsme, &plain), ["platform_info_not_allowed"]);
    let no_smt = SnpPolicy {
        platform_info_forbidden: PlatformInfo::SMT_EN,
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&no_smt, &plain), ["platform_info_not_allowed"]);
    let ecc = SnpPolicy {
        platform_info_required: PlatformInfo::ECC_EN,
        ..SnpPolicy::default()
    };
    assert_eq!(codes(&ecc, &plain), Vec::<&str>::new());
}

#[test]
fn every_violation_is_listed_not_just_the_first() {
    let p = Product::Milan;
    let id = identity(
        p,
        &ReportSpec {
            policy: 0x3_0000 | 1 << 19 | 1 << 18,
            vmpl: 3,
            ..ReportSpec::new(p)
        },
    );
    let policy = SnpPolicy {
        measurement: vec![Measurement([0; 48])],
        min_guest_svn: Some(9),
        ..SnpPolicy::default()
    };
    assert_eq!(
        codes(&policy, &id),
        [
            "debug_enclave",
            "measurement_mismatch",
            "guest_svn_too_low",
            "vmpl_not_allowed",
            "guest_policy_not_allowed"
        ]
    );
}

#[test]
fn verification_errors_name_the_codes_design_md_lists() {
    let cases: [(SnpError, &str); 7] = [
        (ReportError::Length(3).into(), "quote_malformed"),
        (
            SnpError::ReportSignature(CertRole::Vcek),
            "signature_invalid",
        ),
        (SnpError::SignatureEncoding("x"), "signature_invalid"),
        (
            SnpError::Expired {
                role: CertRole::Vcek,
                from: NOW,
                until: NOW,
                now: NOW,
            },
            "collateral_expired",
        ),
        (
            SnpError::Revoked {
                role: CertRole::Ask,
                serial: "01".into(),
                product: Product::Milan,
                crl_issued: NOW,
            },
            "revoked",
        ),
        (
            SnpError::ChipIdMismatch {
                certificate: String::new(),
                report: String::new(),
            },
            "chain_invalid",
        ),
        (
            SnpError::TcbMismatch {
                role: CertRole::Vcek,
                component: TcbComponent::Snp,
                certificate: 1,
                report: 2,
            },
            "chain_invalid",
        ),
    ];
    for (e, code) in cases {
        assert_eq!(snp_error_code(&e), code, "{e}");
    }
}
