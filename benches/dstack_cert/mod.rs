//! `verify/dstack_cert` (a module of the `verify` bench, kept apart so it merges easily): one RA-TLS certificate judged
//! whole (`appraise_certificate`: find the evidence, bind the key, verify the quote against
//! collateral already verified, and for dstack parse the attestation and replay its event
//! log), for the same simulated TD under each carrier:
//! - `raw_tdx_1337_8`: Cosmian's raw TDX quote, the baseline;
//! - `dstack_v0`, `dstack_v1`, `dstack_legacy`: dstack's `.1.8` SCALE and MessagePack forms,
//!   and the `.1.1` + `.1.2` pair, with eight runtime events replayed into RTMR3 and an app
//!   identity policy judged.
//!
//! The quotes are signed by the sim's test PKI (the real dstack certificates' FMSPC has no
//! collateral in the fixtures): the difference between rows is what dstack evidence costs.

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use ratls_proxy::appraise::app_identity::AppIdentityPolicy;
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::verified::VerifiedCollateral;
use ratls_proxy::ratls::{appraise_certificate, BindingMode};
use ratls_proxy::sim::{
    ratls_identity, DstackSpec, DstackWire, SimBinding, SimConfig, SimPki, SimPlatform, TdSpec,
};

/// The benchmark group.
pub(crate) fn bench_dstack(c: &mut Criterion) {
    let now = UnixTime(1_800_000_000);
    let Ok(pki) = SimPki::generate(now) else {
        eprintln!("NOTICE: sim PKI failed; dstack rows skipped");
        return;
    };
    let collateral = pki
        .collateral_for(SimPlatform::Tdx, UnixTime(now.0 - 60), &[])
        .ok()
        .and_then(|c| VerifiedCollateral::verify(&c, &pki.anchor().ok()?).ok())
        .map(Arc::new);
    let Some(collateral) = collateral else {
        eprintln!("NOTICE: sim collateral failed; dstack rows skipped");
        return;
    };
    let app = DstackSpec::default();
    let mut g = c.benchmark_group("verify/dstack_cert");
    for (row, binding, wire) in [
        ("raw_tdx_1337_8", SimBinding::Cosmian, DstackWire::V0),
        ("dstack_v0", SimBinding::Dstack, DstackWire::V0),
        ("dstack_v1", SimBinding::Dstack, DstackWire::V1),
        ("dstack_legacy", SimBinding::Dstack, DstackWire::Legacy),
    ] {
        let config = SimConfig {
            td: Some(TdSpec::default()),
            binding,
            dstack: DstackSpec {
                wire,
                ..app.clone()
            },
            ..SimConfig::default()
        };
        let Ok(cert) = ratls_identity(&pki, &config, now) else {
            eprintln!("NOTICE: {row}: certificate failed; skipped");
            continue;
        };
        let mut policy = EnclavePolicy {
            tee: Some(ratls_proxy::dcap::quote::TeeType::Tdx),
            ..EnclavePolicy::default()
        };
        if binding == SimBinding::Dstack {
            policy.app = AppIdentityPolicy {
                app_id: vec![app.app_id.clone()],
                compose_hash: vec![app.compose_hash.clone()],
                ..AppIdentityPolicy::default()
            };
        }
        let judge =
            || appraise_certificate(&cert.cert_der, &collateral, &policy, BindingMode::Auto, now);
        // What is measured must be the accepting path.
        eprintln!(
            "dstack_cert/{row}: accepted={} ({} bytes)",
            judge().appraisal.is_accepted(),
            cert.cert_der.len()
        );
        g.bench_function(row, |b| b.iter(|| black_box(judge())));
    }
    g.finish();
}
