//! `verify/nitro_cert` (a module of the `verify` bench): one RA-TLS certificate carrying
//! dstack's `.1.8` AWS Nitro evidence (the sim's enclave), judged for a `tee = "nitro"` entry
//! with its CRLs held (the offline directory, fetched once before measuring):
//! - `nitro_full`: `appraise_certificate_judged` whole: find and parse the attestation and
//!   the COSE/CBOR document, the binding (SHA-512 of the SPKI, `user_data`), debug, age, the
//!   chain (its CA bundle a verified-intermediates cache hit after the first judgement, as
//!   in the proxy), the ES384 COSE signature, the CRL verdict over held CRLs, the policy;
//! - `nitro_cache_hit`: `RaTlsVerifier::verdict_for` on a warm verdict cache (every later
//!   connection: the certificate hashed and parsed, the binding checked again);
//! - `evervault_full`, `evervault_cache_hit`: the same for Evervault's carrier (the document
//!   hex-encoded in a DNS subjectAltName, `user_data` = the certificate's SPKI).
//!
//! Beside `verify/snp_cert` and `verify/dstack_cert` in the same run (`cargo bench --bench
//! verify -- 'dstack_cert|snp_cert|nitro_cert'`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use ratls_proxy::appraise::nitro_policy::{NitroPolicy, PcrValue};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::ids::CertSha256;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::NitroCollateral;
use ratls_proxy::ratls::verifier::{NitroVerifier, RaTlsVerifier};
use ratls_proxy::ratls::{
    appraise_certificate_judged, BindingMode, EntryJudges, NitroJudge, VerdictCache,
};
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{ratls_identity, NitroEnclaveSpec, SimConfig, SimNitroCarrier, SimPki};
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};

/// The benchmark group.
pub(crate) fn bench_nitro_cert(c: &mut Criterion) {
    let now = UnixTime::now();
    let dir = std::env::temp_dir().join(format!("ratls-bench-nitro-{}", std::process::id()));
    let (Ok(pki), Ok(sim)) = (
        SimPki::load_or_create(&dir, now),
        SimNitro::load_or_create(&dir, now),
    ) else {
        eprintln!("NOTICE: sim PKIs failed; nitro_cert rows skipped");
        return;
    };
    let sim = Arc::new(sim);
    let (Ok(root), Ok(runtime)) = (
        sim.root(),
        tokio::runtime::Builder::new_current_thread().build(),
    ) else {
        return;
    };
    let Ok(crls) = NitroCrlCache::new(
        root,
        &NitroCrlSpec::Dir(dir.join("collateral/nitro")),
        Revocation::Required,
        RefreshPolicy::default(),
    ) else {
        return;
    };
    let crls = Arc::new(crls);
    let shared: Arc<dyn NitroCollateral + Send + Sync> = crls.clone();
    let pcr0 = [0x5a; 48];
    let mut g = c.benchmark_group("verify/nitro_cert");
    // dstack's `.1.8` carrier, then Evervault's (the document's hex in a DNS subjectAltName,
    // bound by `user_data` = SPKI): a cache hit re-reads whichever carrier it has.
    for (name, carrier) in [
        ("nitro", SimNitroCarrier::Dstack),
        ("evervault", SimNitroCarrier::Evervault),
    ] {
        let spec = NitroEnclaveSpec {
            carrier,
            ..NitroEnclaveSpec::new(Arc::clone(&sim), pcr0)
        };
        let config = SimConfig {
            nitro: Some(spec),
            ..SimConfig::default()
        };
        let Ok(cert) = ratls_identity(&pki, &config, now) else {
            eprintln!("NOTICE: nitro_cert: {name} certificate failed; skipped");
            continue;
        };
        let policy = NitroPolicy {
            pcr0: vec![PcrValue::from(pcr0)],
            ..NitroPolicy::default()
        };
        let intel = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
            "no Intel collateral for a Nitro entry".into(),
        ));
        let entry = EnclavePolicy::default();
        let judge = NitroJudge {
            policy: &policy,
            collateral: crls.as_ref(),
        };
        let run = || {
            appraise_certificate_judged(
                &cert.cert_der,
                &intel,
                EntryJudges {
                    policy: &entry,
                    snp: None,
                    nitro: Some(&judge),
                },
                BindingMode::Auto,
                now,
            )
        };
        // The first judgement notes the missing CRLs; fetched, what is measured accepts.
        let _ = run();
        runtime.block_on(crls.fetch_missing(now));
        eprintln!(
            "nitro_cert/{name}_full: accepted={} ({} bytes)",
            run().refusal().is_none(),
            cert.cert_der.len()
        );
        g.bench_function(format!("{name}_full"), |b| b.iter(|| black_box(run())));
        let verifier = RaTlsVerifier::new(
            entry.clone(),
            BindingMode::Auto,
            CertSha256([0; 32]),
            Arc::new(intel.clone()),
            Arc::new(VerdictCache::new(16, Duration::from_secs(3600))),
        )
        .with_nitro(Some(NitroVerifier {
            policy: policy.clone(),
            collateral: Arc::clone(&shared),
        }));
        eprintln!(
            "nitro_cert/{name}_cache_hit: warm={}",
            verifier.verdict_for(&cert.cert_der, now).is_ok()
        );
        g.bench_function(format!("{name}_cache_hit"), |b| {
            b.iter(|| black_box(verifier.verdict_for(&cert.cert_der, now).is_ok()))
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
