//! `verify/snp_cert` (a module of the `verify` bench, kept apart so it merges easily): one
//! RA-TLS certificate carrying dstack's `.1.8` SEV-SNP evidence (the sim's Milan guest),
//! judged for a `tee = "snp"` entry:
//! - `snp_v1_full`: `appraise_certificate_for` whole: find and parse the attestation and the
//!   report, DEBUG, the binding (SHA-512 of the SPKI, SHA-256 of `mr_config`), the VCEK
//!   looked up in a directory source (verified once at load), the report's ECDSA P-384
//!   signature, the VCEK's chip and TCB, the policy;
//! - `snp_v0_full`: the same in dstack's SCALE form;
//! - `snp_v1_cache_hit`: `RaTlsVerifier::verdict_for` on a warm verdict cache (what every
//!   connection after the first pays: the certificate hashed and parsed, the binding checked
//!   again).
//!
//! Beside `verify/dstack_cert` in the same run (`cargo bench --bench verify --
//! 'dstack_cert|snp_cert'`), the rows compare SEV-SNP's cost with TDX's.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::snp_policy::SnpPolicy;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::ids::CertSha256;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::ratls::verifier::{RaTlsVerifier, SnpVerifier};
use ratls_proxy::ratls::{appraise_certificate_for, BindingMode, SnpJudge, VerdictCache};
use ratls_proxy::sim::dstack_snp::KDS_DIR;
use ratls_proxy::sim::{ratls_identity, DstackWire, SimConfig, SimPki, SnpSim, SnpSimSpec};
use ratls_proxy::snp::ids::Measurement;
use ratls_proxy::snp::Product;
use ratls_proxy::SnpFiles;

/// The benchmark group.
pub(crate) fn bench_snp(c: &mut Criterion) {
    let now = UnixTime::now();
    let dir = std::env::temp_dir().join(format!("ratls-bench-snp-{}", std::process::id()));
    let (Ok(pki), Ok(sim)) = (
        SimPki::load_or_create(&dir, now),
        SnpSim::load_or_create(&dir, now),
    ) else {
        eprintln!("NOTICE: sim PKIs failed; snp_cert rows skipped");
        return;
    };
    let sim = Arc::new(sim);
    let Ok(trust) = sim.trust() else {
        return;
    };
    let Ok((files, _)) = SnpFiles::load(&dir.join(KDS_DIR), &trust) else {
        eprintln!("NOTICE: sim KDS directory failed; snp_cert rows skipped");
        return;
    };
    let files = Arc::new(files);
    let policy = SnpPolicy {
        measurement: vec![Measurement([0x5e; 48])],
        ..SnpPolicy::default()
    };
    let intel = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral for an SNP entry".into(),
    ));
    let entry = EnclavePolicy::default();
    let mut g = c.benchmark_group("verify/snp_cert");
    let mut v1 = None;
    for (row, wire) in [
        ("snp_v1_full", DstackWire::V1),
        ("snp_v0_full", DstackWire::V0),
    ] {
        let mut spec = SnpSimSpec::new(Arc::clone(&sim), Product::Milan, [0x5e; 48]);
        spec.wire = wire;
        let config = SimConfig {
            snp: Some(spec),
            ..SimConfig::default()
        };
        let Ok(cert) = ratls_identity(&pki, &config, now) else {
            eprintln!("NOTICE: {row}: certificate failed; skipped");
            continue;
        };
        let judge = SnpJudge {
            policy: &policy,
            source: files.as_ref(),
            trust: &trust,
        };
        let run = || {
            appraise_certificate_for(
                &cert.cert_der,
                &intel,
                (&entry, Some(&judge)),
                BindingMode::Auto,
                now,
            )
        };
        // What is measured must be the accepting path.
        eprintln!(
            "snp_cert/{row}: accepted={} ({} bytes)",
            run().refusal().is_none(),
            cert.cert_der.len()
        );
        g.bench_function(row, |b| b.iter(|| black_box(run())));
        if wire == DstackWire::V1 {
            v1 = Some(cert.cert_der);
        }
    }
    if let Some(der) = v1 {
        let verifier = RaTlsVerifier::new(
            entry.clone(),
            BindingMode::Auto,
            CertSha256([0; 32]),
            Arc::new(intel.clone()),
            Arc::new(VerdictCache::new(16, Duration::from_secs(3600))),
        )
        .with_snp(Some(SnpVerifier {
            policy: policy.clone(),
            source: files,
            trust: Arc::new(trust.clone()),
        }));
        eprintln!(
            "snp_cert/snp_v1_cache_hit: warm={}",
            verifier.verdict_for(&der, now).is_ok()
        );
        g.bench_function("snp_v1_cache_hit", |b| {
            b.iter(|| black_box(verifier.verdict_for(&der, now).is_ok()))
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
