//! AWS Nitro evidence in RA-TLS certificates, judged in-process for `tee = "nitro"` entries
//! (`ratls::appraise_certificate_judged`, `RaTlsVerifier::with_nitro`): the sim's dstack
//! `.1.8` certificates are accepted under the sim Nitro root and its offline CRLs; a
//! handshake's missing CRLs are remembered, fetched, and then accept (a new snapshot); the
//! accepted verdict lasts no longer than the signing certificate, the CRLs and the
//! document's age limit; every pairing of an entry with another TEE's evidence is
//! `tee_mismatch`.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::nitro_policy::{NitroPolicy, PcrValue};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::snp_policy::SnpPolicy;
use ratls_proxy::appraise::snp_source::NoSnpCollateral;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::quote::TeeType;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::NitroCollateral;
use ratls_proxy::ratls::verifier::NitroVerifier;
use ratls_proxy::ratls::{
    appraise_certificate_judged, AcceptedEvidence, BindingMode, CertAppraisal, EntryJudges,
    NitroJudge, RaTlsVerifier, SnpJudge, VerdictCache,
};
use ratls_proxy::sim::nitro::{SimNitro, LEAF_LIFETIME_SECS};
use ratls_proxy::sim::{
    ratls_identity, NitroEnclaveSpec, SimConfig, SimPki, SnpSim, SnpSimSpec, TdSpec,
};
use ratls_proxy::snp::Product;
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};

const PCR0: [u8; 48] = [0x5a; 48];

struct World {
    dir: std::path::PathBuf,
    pki: SimPki,
    nitro: Arc<SimNitro>,
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
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    World {
        dir,
        pki,
        nitro,
        now,
    }
}

impl World {
    fn cert(&self, config: SimConfig) -> Vec<u8> {
        ratls_identity(&self.pki, &config, self.now)
            .expect("certificate")
            .cert_der
    }

    fn nitro_cert(&self) -> Vec<u8> {
        self.cert(SimConfig {
            nitro: Some(NitroEnclaveSpec::new(Arc::clone(&self.nitro), PCR0)),
            ..SimConfig::default()
        })
    }

    /// The offline CRLs the sim PKI wrote, revocation required.
    fn crls(&self) -> NitroCrlCache {
        NitroCrlCache::new(
            self.nitro.root().expect("root"),
            &NitroCrlSpec::Dir(self.dir.join("collateral/nitro")),
            Revocation::Required,
            RefreshPolicy::default(),
        )
        .expect("cache")
    }
}

fn policy(max_age_secs: Option<u64>) -> NitroPolicy {
    NitroPolicy {
        pcr0: vec![PcrValue::from(PCR0)],
        max_age_secs,
        ..NitroPolicy::default()
    }
}

fn no_intel() -> VerifyError {
    VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral".into(),
    ))
}

fn judged(der: &[u8], judges: EntryJudges<'_>, now: UnixTime) -> CertAppraisal {
    appraise_certificate_judged(der, &no_intel(), judges, BindingMode::Auto, now)
}

fn code(c: &CertAppraisal) -> Option<RefusalCode> {
    c.refusal().map(|r| r.code)
}

#[tokio::test]
async fn missing_crls_are_remembered_fetched_and_then_accept() {
    let w = world();
    let der = w.nitro_cert();
    let crls = w.crls();
    let p = policy(None);
    let judge = NitroJudge {
        policy: &p,
        collateral: &crls,
    };
    let entry = EnclavePolicy::default();
    let judges = EntryJudges {
        policy: &entry,
        snp: None,
        nitro: Some(&judge),
    };
    let first = judged(&der, judges, w.now);
    assert_eq!(
        code(&first),
        Some(RefusalCode::CollateralUnavailable),
        "{first:?}"
    );
    // The document verified before revocation refused it: what it shows is known.
    assert!(first.nitro.as_ref().is_some_and(|n| n.identity.is_some()));
    let before = crls.snapshot_id();
    assert_eq!(crls.fetch_missing(w.now).await, 2, "both points' CRLs");
    assert_ne!(crls.snapshot_id(), before, "a new snapshot");
    assert_eq!(
        crls.fetch_missing(w.now).await,
        0,
        "nothing more is missing"
    );
    let second = judged(&der, judges, w.now);
    assert_eq!(code(&second), None, "{second:?}");
    assert_eq!(second.tee(), Some("nitro"));
    assert_eq!(second.quote_sha256.map(|_| ()), Some(()));
}

#[tokio::test]
async fn the_verdict_lasts_no_longer_than_leaf_crl_or_document_age() {
    let w = world();
    let der = w.nitro_cert();
    let crls = Arc::new(w.crls());
    let shared: Arc<dyn NitroCollateral + Send + Sync> = crls.clone();
    let verifier = |p: NitroPolicy| {
        RaTlsVerifier::new(
            EnclavePolicy::default(),
            BindingMode::Auto,
            ratls_proxy::dcap::ids::CertSha256([0; 32]),
            Arc::new(no_intel()),
            Arc::new(VerdictCache::new(
                16,
                std::time::Duration::from_secs(86_400),
            )),
        )
        .with_nitro(Some(NitroVerifier {
            policy: p,
            collateral: Arc::clone(&shared),
        }))
    };
    let v = verifier(policy(None));
    assert!(v.verdict_for(&der, w.now).is_err(), "no CRL held yet");
    crls.fetch_missing(w.now).await;
    let hit = v.verdict_for(&der, w.now).expect("accepted");
    let AcceptedEvidence::Nitro(n) = hit.accepted.evidence() else {
        panic!("not a Nitro acceptance");
    };
    let stamped = i64::try_from(n.identity().timestamp_ms / 1000).expect("time");
    // The signing certificate (3 h from 3 s before the document) ends first: the sim's
    // CRLs hold 7 days, the intermediates 30.
    assert_eq!(hit.valid_until, UnixTime(stamped - 3 + LEAF_LIFETIME_SECS));
    assert_eq!(n.valid_until(), hit.valid_until);
    // The document's age limit, when shorter, ends it sooner.
    let aged = verifier(policy(Some(600)));
    let hit = aged.verdict_for(&der, w.now).expect("accepted");
    assert_eq!(hit.valid_until, UnixTime(stamped + 600));
    // And a verdict is never served past it: judged again, an hour after, refused.
    let later = UnixTime(stamped + 3600);
    let refused = aged.verdict_for(&der, later).expect_err("too old");
    assert_eq!(refused.refusal.code, RefusalCode::DocumentTooOld);
}

#[test]
fn every_entry_refuses_the_evidence_of_another_tee() {
    let w = world();
    let nitro_der = w.nitro_cert();
    let sgx_der = w.cert(SimConfig::default());
    let td_der = w.cert(SimConfig {
        td: Some(TdSpec::default()),
        ..SimConfig::default()
    });
    let snp_sim = Arc::new(SnpSim::load_or_create(&w.dir, w.now).expect("SNP sim"));
    let snp_der = w.cert(SimConfig {
        snp: Some(SnpSimSpec::new(snp_sim.clone(), Product::Milan, [0x5e; 48])),
        ..SimConfig::default()
    });
    let crls = w.crls();
    let np = policy(None);
    let nitro = NitroJudge {
        policy: &np,
        collateral: &crls,
    };
    let sp = SnpPolicy::default();
    let trust = snp_sim.trust().expect("trust");
    let snp = SnpJudge {
        policy: &sp,
        source: &NoSnpCollateral,
        trust: &trust,
    };
    let plain = EnclavePolicy::default();
    let tdx = EnclavePolicy {
        tee: Some(TeeType::Tdx),
        ..EnclavePolicy::default()
    };
    let sgx = EnclavePolicy {
        tee: Some(TeeType::Sgx),
        ..EnclavePolicy::default()
    };
    let nitro_entry = EntryJudges {
        policy: &plain,
        snp: None,
        nitro: Some(&nitro),
    };
    let snp_entry = EntryJudges {
        policy: &plain,
        snp: Some(&snp),
        nitro: None,
    };
    let intel = |policy| EntryJudges {
        policy,
        snp: None,
        nitro: None,
    };
    for (what, der, judges) in [
        ("SGX quote, Nitro entry", &sgx_der, nitro_entry),
        ("TDX quote, Nitro entry", &td_der, nitro_entry),
        ("SEV-SNP evidence, Nitro entry", &snp_der, nitro_entry),
        ("Nitro evidence, SNP entry", &nitro_der, snp_entry),
        ("Nitro evidence, TDX entry", &nitro_der, intel(&tdx)),
        ("Nitro evidence, SGX entry", &nitro_der, intel(&sgx)),
    ] {
        let c = judged(der, judges, w.now);
        assert_eq!(code(&c), Some(RefusalCode::TeeMismatch), "{what}: {c:?}");
        assert!(c.nitro.is_none(), "{what}: nothing judged as Nitro");
    }
    // An entry that names no TEE (never configured so) is told the evidence is unsupported.
    let c = judged(&nitro_der, intel(&plain), w.now);
    assert_eq!(code(&c), Some(RefusalCode::UnsupportedTee), "{c:?}");
}
