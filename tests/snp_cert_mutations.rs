//! A mutation probe of SEV-SNP RA-TLS certificates judged in-process: every single-byte
//! change to a sim dstack `.1.8` certificate (V0 and V1) is judged without a panic, and none
//! that changes the evidence, the key or the validity is accepted.

#![cfg(feature = "sim")]

use std::sync::Arc;

use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::snp_policy::SnpPolicy;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::ratls::{appraise_certificate_for, BindingMode, SnpJudge};
use ratls_proxy::sim::dstack_snp::KDS_DIR;
use ratls_proxy::sim::{ratls_identity, DstackWire, SimConfig, SimPki, SnpSim, SnpSimSpec};
use ratls_proxy::snp::ids::Measurement;
use ratls_proxy::snp::Product;
use ratls_proxy::SnpFiles;

const MEASUREMENT: [u8; 48] = [0x5e; 48];

#[test]
fn no_single_byte_change_to_an_snp_certificate_panics_or_is_accepted_with_other_evidence() {
    let dir = std::env::temp_dir().join(format!("ratls-snp-cert-mutations-{}", std::process::id()));
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let sim = Arc::new(SnpSim::load_or_create(&dir, now).expect("SNP sim"));
    let trust = sim.trust().expect("trust");
    let (files, _) = SnpFiles::load(&dir.join(KDS_DIR), &trust).expect("KDS dir");
    let policy = SnpPolicy {
        measurement: vec![Measurement(MEASUREMENT)],
        ..SnpPolicy::default()
    };
    let judge = SnpJudge {
        policy: &policy,
        source: &files,
        trust: &trust,
    };
    let no_intel = VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral for an SNP entry".into(),
    ));
    let intel = EnclavePolicy::default();
    let mut accepted_changes = Vec::new();
    for wire in [DstackWire::V0, DstackWire::V1] {
        let config = SimConfig {
            snp: Some(SnpSimSpec {
                wire,
                ..SnpSimSpec::new(Arc::clone(&sim), Product::Milan, MEASUREMENT)
            }),
            ..SimConfig::default()
        };
        let der = ratls_identity(&pki, &config, now)
            .expect("certificate")
            .cert_der;
        let judge_der = |d: &[u8]| {
            appraise_certificate_for(d, &no_intel, (&intel, Some(&judge)), BindingMode::Auto, now)
        };
        let base = judge_der(&der);
        assert!(base.refusal().is_none(), "{wire:?}: {:?}", base.refusal());
        for i in 0..der.len() {
            for flip in [0x01u8, 0x80] {
                let mut m = der.clone();
                m[i] ^= flip;
                let a = judge_der(&m);
                if a.refusal().is_none() {
                    // The guest signs its own leaf: a window still holding `now` is its
                    // choice; the evidence must be the same report.
                    let same_evidence = a.quote_sha256 == base.quote_sha256;
                    accepted_changes.push((wire, i, flip, same_evidence));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut ranges: Vec<(DstackWire, usize, usize)> = Vec::new();
    for (w, i, _, _) in &accepted_changes {
        match ranges.last_mut() {
            Some((lw, _, end)) if lw == w && *end + 1 >= *i => *end = *i,
            _ => ranges.push((*w, *i, *i)),
        }
    }
    eprintln!("accepted byte ranges: {ranges:?}");
    let suspicious: Vec<_> = accepted_changes.iter().filter(|c| !c.3).collect();
    eprintln!(
        "accepted single-byte changes: {} (all with the same report and window: {})",
        accepted_changes.len(),
        suspicious.is_empty()
    );
    assert!(
        suspicious.is_empty(),
        "accepted with other evidence: {suspicious:?}"
    );
}
