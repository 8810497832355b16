//! The SEV-SNP collateral's metrics (`tee="snp"`): KDS fetches, failures, rollbacks, and
//! the chains and VCEKs held.

use super::count;
use crate::metrics::Sample;
use crate::source::kds::KdsCache;

/// The samples of a KDS cache.
pub(super) fn kds_samples(kds: &KdsCache) -> Vec<Sample> {
    let mut out = Vec::new();
    let st = kds.stats();
    let (chains, veks) = kds.counts();
    let snp = || vec![("tee", "snp".to_owned())];
    for (name, help, v) in [
        (
            "ratls_snp_collateral_fetches_total",
            "SEV-SNP KDS fetches (a chain with its CRL counts once, a VCEK once).",
            st.fetches,
        ),
        (
            "ratls_snp_collateral_fetch_failures_total",
            "Failed SEV-SNP KDS fetches (network, status, content, verification, rollback).",
            st.failures,
        ),
        (
            "ratls_snp_collateral_rollbacks_total",
            "Fetched AMD CRLs refused as older than the high-water mark.",
            st.rollbacks,
        ),
    ] {
        out.push(Sample {
            name,
            kind: "counter",
            help,
            values: vec![(snp(), count(v))],
        });
    }
    out.push(Sample {
        name: "ratls_snp_collateral_held",
        kind: "gauge",
        help: "Verified SEV-SNP chains (ASK with CRL, per product) and VCEKs held.",
        values: vec![
            (
                vec![("tee", "snp".to_owned()), ("kind", "chain".to_owned())],
                count(u64::try_from(chains).unwrap_or(u64::MAX)),
            ),
            (
                vec![("tee", "snp".to_owned()), ("kind", "vcek".to_owned())],
                count(u64::try_from(veks).unwrap_or(u64::MAX)),
            ),
        ],
    });
    out
}

/// The samples of the AWS Nitro CRL cache.
pub(super) fn nitro_samples(crls: &crate::source::nitro::NitroCrlCache) -> Vec<Sample> {
    let st = crls.stats();
    let nitro = || vec![("tee", "nitro".to_owned())];
    let mut out: Vec<Sample> = [
        (
            "ratls_nitro_crl_fetches_total",
            "AWS Nitro CRL reads (network or directory), successful or not.",
            st.fetches,
        ),
        (
            "ratls_nitro_crl_fetch_failures_total",
            "Failed AWS Nitro CRL reads (network, status, size, content, signature, window, rollback).",
            st.failures,
        ),
        (
            "ratls_nitro_crl_rollbacks_total",
            "AWS Nitro CRLs refused as older than the high-water mark.",
            st.rollbacks,
        ),
    ]
    .into_iter()
    .map(|(name, help, v)| Sample {
        name,
        kind: "counter",
        help,
        values: vec![(nitro(), count(v))],
    })
    .collect();
    out.push(Sample {
        name: "ratls_nitro_crl_held",
        kind: "gauge",
        help: "AWS Nitro CRLs held (one per distribution point).",
        values: vec![(
            nitro(),
            count(u64::try_from(crls.held()).unwrap_or(u64::MAX)),
        )],
    });
    out
}
