//! AWS Nitro revocation under hostile or flaky networks (an independent review's findings
//! R2-1..R2-4, each shown failing before its fix): a CRL whose fetch failed stays wanted and
//! is fetched once it is back, so an `if_available` chain accepted unchecked becomes checked;
//! the refresher honours the backoff; a CRL stored on a handshake's miss signals a change, so
//! open exchanges judge their verdict again; the PCR policy is judged before revocation, so an
//! enclave outside the allow-list is `pcr_mismatch` and never makes the proxy fetch CRLs.

#![cfg(feature = "sim")]

use std::sync::Arc;

use ratls_proxy::appraise::nitro_policy::{NitroPolicy, PcrValue};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::NitroCollateral;
use ratls_proxy::ratls::verifier::NitroVerifier;
use ratls_proxy::ratls::{AcceptedEvidence, BindingMode, RaTlsVerifier, VerdictCache};
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{ratls_identity, NitroEnclaveSpec, SimConfig, SimPki};
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};

const PCR0: [u8; 48] = [0x5a; 48];

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ratls-review2-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn no_intel() -> VerifyError {
    VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral".into(),
    ))
}

fn unchecked(v: &ratls_proxy::ratls::cache::CachedVerdict) -> Vec<String> {
    match v.accepted.evidence() {
        AcceptedEvidence::Nitro(n) => n.revocation().unchecked.clone(),
        _ => panic!("not a Nitro acceptance"),
    }
}

#[tokio::test]
async fn if_available_a_point_whose_fetch_failed_once_is_fetched_once_the_crl_is_back() {
    let dir = tmp("ifavail");
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    let der = ratls_identity(
        &pki,
        &SimConfig {
            nitro: Some(NitroEnclaveSpec::new(Arc::clone(&nitro), PCR0)),
            ..SimConfig::default()
        },
        now,
    )
    .expect("certificate")
    .cert_der;
    // The CRL source: empty at first (S3 unreachable), the real CRLs later.
    let source = dir.join("mirror");
    std::fs::create_dir_all(&source).expect("mirror dir");
    let crls = Arc::new(
        NitroCrlCache::new(
            nitro.root().expect("root"),
            &NitroCrlSpec::Dir(source.clone()),
            Revocation::IfSupplied,
            RefreshPolicy::default(),
        )
        .expect("cache"),
    );
    let shared: Arc<dyn NitroCollateral + Send + Sync> = crls.clone();
    let v = RaTlsVerifier::new(
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
        policy: NitroPolicy {
            pcr0: vec![PcrValue::from(PCR0)],
            ..NitroPolicy::default()
        },
        collateral: shared,
    }));

    let first = v.verdict_for(&der, now).expect("accepted unchecked");
    let unchecked_first = unchecked(&first);
    println!("accepted at t0, unchecked: {unchecked_first:?}");
    assert!(!unchecked_first.is_empty());

    // The background task's pass while S3 is unreachable: the fetch fails.
    let stored = crls.fetch_missing(now).await;
    println!(
        "t0: fetch_missing stored {stored}, stats {:?}",
        crls.stats()
    );
    assert_eq!(stored, 0);

    // S3 is back a moment later: the CRLs are there.
    for f in std::fs::read_dir(dir.join("collateral/nitro")).expect("sim CRLs") {
        let f = f.expect("entry");
        std::fs::copy(f.path(), source.join(f.file_name())).expect("copy CRL");
    }

    // Ten minutes of background passes (every 10 s; the backoff, 5 s doubling, is long
    // over) and handshakes to the same enclave.
    let mut fetched = 0;
    let mut t = now;
    for _ in 0..60 {
        t = UnixTime(t.0 + 10);
        fetched += crls.refresh(t).await + crls.fetch_missing(t).await;
        let _ = v.verdict_for(&der, t);
    }
    let later = v.verdict_for(&der, t).expect("accepted");
    println!(
        "after 10 min: CRLs stored {fetched}, held {}, stats {:?}, unchecked {:?}",
        crls.held(),
        crls.stats(),
        unchecked(&later)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        fetched > 0,
        "the remembered points were never fetched again"
    );
    assert!(
        unchecked(&later).is_empty(),
        "the chain is still accepted unchecked"
    );
}

/// Finding R2-2: `NitroCrlCache::refresh` never consults the backoff that `fetch_for`
/// keeps. docs/nitro.md: "a point whose fetch failed is not asked again before its backoff
/// ends (5 s doubling to 300 s)". While the CRL source is down, every held point that is
/// due is asked again on every background pass (10 s), forever: 30 passes in 5 minutes are
/// 30 requests per point instead of about 6.
#[tokio::test]
async fn a_failing_refresh_backs_off_like_a_failing_fetch() {
    let dir = tmp("refresh");
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    let der = ratls_identity(
        &pki,
        &SimConfig {
            nitro: Some(NitroEnclaveSpec::new(Arc::clone(&nitro), PCR0)),
            ..SimConfig::default()
        },
        now,
    )
    .expect("certificate")
    .cert_der;
    let source = dir.join("mirror");
    std::fs::create_dir_all(&source).expect("mirror dir");
    for f in std::fs::read_dir(dir.join("collateral/nitro")).expect("sim CRLs") {
        let f = f.expect("entry");
        std::fs::copy(f.path(), source.join(f.file_name())).expect("copy CRL");
    }
    let crls = NitroCrlCache::new(
        nitro.root().expect("root"),
        &NitroCrlSpec::Dir(source.clone()),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache");
    // A full verification remembers the two points; the fetch stores both.
    let policy = NitroPolicy {
        pcr0: vec![PcrValue::from(PCR0)],
        ..NitroPolicy::default()
    };
    let judge = ratls_proxy::ratls::NitroJudge {
        policy: &policy,
        collateral: &crls,
    };
    let entry = EnclavePolicy::default();
    let _ = ratls_proxy::ratls::appraise_certificate_judged(
        &der,
        &no_intel(),
        ratls_proxy::ratls::EntryJudges {
            policy: &entry,
            snp: None,
            nitro: Some(&judge),
        },
        BindingMode::Auto,
        now,
    );
    assert_eq!(crls.fetch_missing(now).await, 2);
    // The source goes down; six hours later both held CRLs are due for refresh.
    for f in std::fs::read_dir(&source).expect("mirror") {
        std::fs::remove_file(f.expect("entry").path()).expect("remove");
    }
    let before = crls.stats().fetches;
    let mut t = UnixTime(now.0 + 6 * 3600 + 10);
    for _ in 0..30 {
        crls.refresh(t).await;
        t = UnixTime(t.0 + 10);
    }
    let asked = crls.stats().fetches - before;
    println!("5 minutes of passes with the source down: {asked} requests for 2 points");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        asked <= 2 * 8,
        "{asked} requests: the backoff (5 s doubling to 300 s) allows about 12"
    );
}

/// Finding R2-3 (mechanism): open exchanges are judged again only when `Changes` is bumped,
/// and for Nitro only the background task bumps it (`refresh_loop`'s `changed`, generation.rs
/// start_refresher). A handshake's miss (`pool/attest.rs` attest_fetching, called on any
/// `collateral_unavailable`, Intel's and SEV-SNP's too) runs `fetch_missing` itself and bumps
/// nothing; it also drains the remembered points, so the background pass that follows finds
/// nothing to fetch and never calls `changed`. Under `if_available`, an exchange accepted
/// unchecked whose CRL is then stored this way (revoking it, say) is never judged again.
#[tokio::test]
async fn a_crl_stored_outside_the_background_pass_still_signals_a_change() {
    let dir = tmp("changes");
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    let der = ratls_identity(
        &pki,
        &SimConfig {
            nitro: Some(NitroEnclaveSpec::new(Arc::clone(&nitro), PCR0)),
            ..SimConfig::default()
        },
        now,
    )
    .expect("certificate")
    .cert_der;
    let crls = Arc::new(
        NitroCrlCache::new(
            nitro.root().expect("root"),
            &NitroCrlSpec::Dir(dir.join("collateral/nitro")),
            Revocation::IfSupplied,
            RefreshPolicy::default(),
        )
        .expect("cache"),
    );
    let policy = NitroPolicy {
        pcr0: vec![PcrValue::from(PCR0)],
        ..NitroPolicy::default()
    };
    let judge = ratls_proxy::ratls::NitroJudge {
        policy: &policy,
        collateral: crls.as_ref(),
    };
    let entry = EnclavePolicy::default();
    let judged = ratls_proxy::ratls::appraise_certificate_judged(
        &der,
        &no_intel(),
        ratls_proxy::ratls::EntryJudges {
            policy: &entry,
            snp: None,
            nitro: Some(&judge),
        },
        BindingMode::Auto,
        now,
    );
    assert!(judged.refusal().is_none(), "accepted unchecked");
    // What the generation registers: every CRL stored, wherever its fetch came from, is a
    // change open exchanges judge their verdict again on.
    let changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let changes = Arc::clone(&changes);
        crls.on_change(move || {
            changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    // A handshake's miss elsewhere fetches first (what attest_fetching does).
    let snapshot = crls.snapshot_id();
    let stored = crls.fetch_missing(UnixTime::now()).await;
    let signalled = changes.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "stored {stored} CRLs on the miss; snapshot {snapshot} -> {}; changes signalled: {signalled}",
        crls.snapshot_id()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stored, 2);
    assert!(
        signalled > 0,
        "new CRLs were stored and no change was signalled: exchanges in flight are not judged again"
    );
}

/// Finding R2-4 (low, misleading code): revocation is judged before the policy, so an
/// enclave the entry would never admit (another PCR0) is refused `collateral_unavailable`
/// while no CRL is held (a first connection, or S3 down), and the proxy fetches CRLs for it
/// (`attest_fetching` fetches on that code). The operator reads "collateral" where the answer
/// is "not your image"; the policy (no I/O, no signature) could be judged first.
#[test]
fn an_enclave_outside_the_allow_list_is_refused_pcr_mismatch_whatever_the_crls() {
    let dir = tmp("order");
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&dir, now).expect("sim PKI");
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    let der = ratls_identity(
        &pki,
        &SimConfig {
            nitro: Some(NitroEnclaveSpec::new(Arc::clone(&nitro), [0x77; 48])),
            ..SimConfig::default()
        },
        now,
    )
    .expect("certificate")
    .cert_der;
    let crls = NitroCrlCache::new(
        nitro.root().expect("root"),
        &NitroCrlSpec::Dir(dir.join("collateral/nitro")),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("cache");
    let policy = NitroPolicy {
        pcr0: vec![PcrValue::from(PCR0)],
        ..NitroPolicy::default()
    };
    let judge = ratls_proxy::ratls::NitroJudge {
        policy: &policy,
        collateral: &crls,
    };
    let entry = EnclavePolicy::default();
    let judged = ratls_proxy::ratls::appraise_certificate_judged(
        &der,
        &no_intel(),
        ratls_proxy::ratls::EntryJudges {
            policy: &entry,
            snp: None,
            nitro: Some(&judge),
        },
        BindingMode::Auto,
        now,
    );
    let refusal = judged.refusal().expect("refused");
    println!("PCR0 77…77 on a 5a…5a entry, no CRL held: {refusal:?}");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        refusal.code,
        ratls_proxy::appraise::refusal::RefusalCode::PcrMismatch
    );
}
