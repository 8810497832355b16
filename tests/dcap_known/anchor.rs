//! The trust anchor's memo of the root's signatures (`dcap::anchor_memo`): the root CA CRL,
//! the TCB Signing certificate and the PCK CA are verified once per anchor; everything else
//! about them (names, revocation, validity, the CRL's content) at every use. Intel's anchor
//! also knows the CAs its root signed that real chains carry (`dcap::preloaded`): those are
//! never verified by ECDSA, cold or warm, and never remembered.

use super::*;
use ratls_proxy::appraise::Unverified;
use ratls_proxy::dcap::anchor_memo::AnchorMemoStats;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::pki::pem_chain;
use ratls_proxy::dcap::preloaded::SIGNED_BY_INTEL_ROOT;
use ratls_proxy::dcap::trust::INTEL_SGX_ROOT_CA_DER;
use ratls_proxy::dcap::verified::Window;

/// A full verification (collateral + quote) under `anchor`, and the ECDSA it ran.
pub(super) fn full(
    quote: &[u8],
    c: &Collateral,
    anchor: &TrustAnchor,
    at: UnixTime,
) -> (Appraisal, u64) {
    let before = ecdsa_verifications_on_this_thread();
    let source = Unverified {
        collateral: c,
        anchor,
    };
    let a = appraise(quote, &source, &common::permissive(true), at);
    (a, ecdsa_verifications_on_this_thread() - before)
}

/// The collateral's verification under `anchor`: its windows or its refusal, and the
/// ECDSA it ran.
pub(super) fn collateral(
    c: &Collateral,
    anchor: &TrustAnchor,
) -> (Result<Vec<Window>, VerifyError>, u64) {
    let before = ecdsa_verifications_on_this_thread();
    let v = VerifiedCollateral::verify(c, anchor).map(|v| v.windows().to_vec());
    (v, ecdsa_verifications_on_this_thread() - before)
}

/// A PEM chain of `ders`, 64 base64 characters a line.
pub(super) fn pem(ders: &[Vec<u8>]) -> String {
    common::pem_of(ders)
}

/// The first certificate of a PEM chain replaced by `f` of it.
fn with_first_cert(chain: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut ders = pem_chain(chain.as_bytes(), "test chain").expect("chain");
    f(&mut ders[0]);
    pem(&ders)
}

/// Collateral with one byte of a certificate or CRL the root signed flipped.
#[derive(Clone, Copy, Debug)]
enum Target {
    RootCrl,
    TcbSigner,
    PckCa,
}

fn target_len(c: &Collateral, t: Target) -> usize {
    let first = |chain: &str| pem_chain(chain.as_bytes(), "t").expect("chain")[0].len();
    match t {
        Target::RootCrl => c.root_ca_crl.len(),
        Target::TcbSigner => first(&c.tcb_info_issuer_chain),
        Target::PckCa => first(&c.pck_crl_issuer_chain),
    }
}

fn mutated(c: &Collateral, t: Target, at: usize) -> Collateral {
    let mut m = c.clone();
    let flip = |der: &mut Vec<u8>| der[at] ^= 0x01;
    match t {
        Target::RootCrl => flip(&mut m.root_ca_crl),
        Target::TcbSigner => {
            // Both documents' chains name the same signer in the real collateral.
            let same = m.qe_identity_issuer_chain == m.tcb_info_issuer_chain;
            m.tcb_info_issuer_chain = with_first_cert(&m.tcb_info_issuer_chain, flip);
            if same {
                m.qe_identity_issuer_chain = m.tcb_info_issuer_chain.clone();
            }
        }
        Target::PckCa => m.pck_crl_issuer_chain = with_first_cert(&m.pck_crl_issuer_chain, flip),
    }
    m
}

/// How many of the collateral's two root-signed certificates (the TCB Signing certificate
/// and the PCK CA) are Intel's preloaded ones.
fn preloaded_in(c: &Collateral) -> u64 {
    let first = |chain: &str| pem_chain(chain.as_bytes(), "t").expect("chain").remove(0);
    [
        first(&c.tcb_info_issuer_chain),
        first(&c.pck_crl_issuer_chain),
    ]
    .iter()
    .filter(|der| SIGNED_BY_INTEL_ROOT.contains(&der.as_slice()))
    .map(|_| 1)
    .sum()
}

/// Nine signatures cold less the preloaded CAs (seven with the current TCB Signing
/// certificate, eight with the one that expired in 2025), six on the same anchor (or a
/// clone: the refresh's), the cold count again on a new anchor of the same bytes; every real
/// fixture's verdict the same each time.
#[test]
fn a_warm_anchor_skips_the_roots_three_signatures_and_changes_no_verdict() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let mut accepted = 0;
    let mut preloaded_counts = std::collections::BTreeSet::new();
    for case in cases(&dir) {
        let name = &case.name;
        let preloaded = preloaded_in(&case.collateral);
        let anchor = TrustAnchor::intel();
        let (cold, cold_ecdsa) = full(&case.quote, &case.collateral, &anchor, case.at);
        let (warm, warm_ecdsa) = full(&case.quote, &case.collateral, &anchor, case.at);
        let (clone, clone_ecdsa) = full(&case.quote, &case.collateral, &anchor.clone(), case.at);
        let fresh = TrustAnchor::from_der(INTEL_SGX_ROOT_CA_DER.to_vec()).expect("root");
        assert_eq!(fresh, anchor, "equality ignores the memo");
        assert_eq!(fresh.remembered_signatures(), AnchorMemoStats::default());
        let (anew, anew_ecdsa) = full(&case.quote, &case.collateral, &fresh, case.at);
        for other in [&warm, &clone, &anew] {
            assert_eq!(verdict(other), verdict(&cold), "{name}");
            assert_eq!(other.tcb, cold.tcb, "{name}");
            assert_eq!(other.collateral, cold.collateral, "{name}");
        }
        if cold.is_accepted() {
            accepted += 1;
            preloaded_counts.insert(preloaded);
            let cold = 9 - preloaded;
            assert_eq!(
                (cold_ecdsa, warm_ecdsa, clone_ecdsa, anew_ecdsa),
                (cold, 6, 6, cold),
                "{name}"
            );
            let remembered = 3 - preloaded;
            assert_eq!(
                anchor.remembered_signatures(),
                AnchorMemoStats {
                    signatures: usize::try_from(remembered).expect("three at most"),
                    hits: 2 * remembered
                },
                "{name}: root CRL and any CA not preloaded; hit twice each"
            );
        }
    }
    assert!(accepted >= 7, "most real cases accept: {accepted}");
    // Both kinds of real chain ran: the preloaded CAs alone, and beside a TCB Signing
    // certificate Intel has since re-issued (verified by ECDSA, then remembered).
    assert_eq!(
        preloaded_counts.into_iter().collect::<Vec<_>>(),
        [1, 2],
        "preloaded CAs per accepted fixture"
    );
}

/// Every byte of the root CA CRL, the TCB Signing certificate and the PCK CA flipped in
/// turn (signed part, signature, envelope): refused by a warm anchor exactly as by a cold
/// one, and nothing refused is remembered.
#[test]
fn a_root_signed_item_with_one_byte_changed_is_refused_warm_as_cold() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let case = cases(&dir).remove(0);
    let warm = TrustAnchor::intel();
    assert!(collateral(&case.collateral, &warm).0.is_ok());
    let remembered = warm.remembered_signatures().signatures;
    // The root CRL's: this fixture's TCB Signing certificate and PCK CA are preloaded, and
    // their flipped copies below are not those bytes.
    assert_eq!(preloaded_in(&case.collateral), 2);
    assert_eq!(remembered, 1);
    let mut bad_signatures = 0;
    for target in [Target::RootCrl, Target::TcbSigner, Target::PckCa] {
        for at in 0..target_len(&case.collateral, target) {
            let m = mutated(&case.collateral, target, at);
            let (hot, _) = collateral(&m, &warm);
            let (cold, _) = collateral(&m, &TrustAnchor::intel());
            let label = format!("{target:?} byte {at}");
            assert!(hot.is_err(), "{label}: accepted");
            assert_eq!(hot, cold, "{label}");
            if hot
                .as_ref()
                .is_err_and(|e| e.to_string().contains("signature does not verify"))
            {
                bad_signatures += 1;
            }
        }
    }
    // Most flips reach the signature check (the memo's miss), not only the parser.
    assert!(bad_signatures > 1000, "{bad_signatures}");
    assert_eq!(warm.remembered_signatures().signatures, remembered);
    // And the genuine collateral is still verified from the memo.
    assert_eq!(collateral(&case.collateral, &warm).1, 3);
}

/// A refused signature is verified (and counted) again on the next attempt.
#[test]
fn a_refused_signature_is_not_remembered() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let c = cases(&dir).remove(0).collateral;
    let anchor = TrustAnchor::intel();
    // The last byte of a CRL is its signature's.
    let bad = mutated(&c, Target::RootCrl, c.root_ca_crl.len() - 1);
    let first = collateral(&bad, &anchor);
    let second = collateral(&bad, &anchor);
    assert!(first.0.is_err());
    assert_eq!(first, second);
    assert_eq!(second.1, 1, "the root CRL's signature, verified again");
    assert_eq!(anchor.remembered_signatures(), AnchorMemoStats::default());
}

#[cfg(feature = "sim")]
mod sim {
    use super::*;
    use ratls_proxy::dcap::collateral::CollateralItem;
    use ratls_proxy::dcap::tcb::TcbStatus;
    use ratls_proxy::sim::{forge, EnclaveSpec, SimPki};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
        DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
        SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    /// A sim PKI and what its stored state holds (the root's and the PCK CA's keys),
    /// so a test can sign what the sim does not offer.
    struct Keys {
        pki: SimPki,
        state: serde_json::Value,
    }

    fn keys(tag: &str, now: UnixTime) -> Keys {
        let dir =
            std::env::temp_dir().join(format!("ratls-anchor-memo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = SimPki::load_or_create(&dir, now).expect("pki");
        let state = serde_json::from_slice(&common::read(&dir, "sim-pki.json")).expect("json");
        let _ = std::fs::remove_dir_all(&dir);
        Keys { pki, state }
    }

    impl Keys {
        fn text(&self, field: &str) -> &str {
            self.state[field].as_str().expect("field")
        }

        fn root(&self) -> Issuer<'static, KeyPair> {
            let key = KeyPair::from_pem(self.text("root_key")).expect("key");
            Issuer::from_ca_cert_pem(self.text("root_cert"), key).expect("issuer")
        }
    }

    fn odt(t: UnixTime) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(t.0).expect("time")
    }

    fn serial_of_first(chain: &str) -> Vec<u8> {
        let der = &pem_chain(chain.as_bytes(), "t").expect("chain")[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("cert");
        cert.raw_serial().to_vec()
    }

    /// A CA whose signature the anchor remembers is refused once a later root CRL
    /// revokes it (the PCK CA, and the TCB Signing certificate), warm as cold.
    #[test]
    fn a_ca_revoked_by_a_later_root_crl_is_refused_though_its_signature_is_remembered() {
        let now = UnixTime::now();
        let keys = keys("revoked", now);
        let anchor = keys.pki.anchor().expect("anchor");
        let issued = UnixTime(now.0 - 60);
        let c = keys.pki.collateral(issued, &[]).expect("c");
        assert_eq!(collateral(&c, &anchor).1, 6);
        assert_eq!(collateral(&c, &anchor).1, 3);
        for (what, serial) in [
            (
                "PCK CRL issuer chain",
                serial_of_first(&c.pck_crl_issuer_chain),
            ),
            (
                "TCB info issuer chain",
                serial_of_first(&c.tcb_info_issuer_chain),
            ),
        ] {
            let crl = CertificateRevocationListParams {
                this_update: odt(issued),
                next_update: odt(UnixTime(issued.0 + 86_400)),
                crl_number: SerialNumber::from(2u64),
                issuing_distribution_point: None,
                revoked_certs: vec![RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: odt(issued),
                    reason_code: None,
                    invalidity_date: None,
                }],
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&keys.root())
            .expect("crl");
            let revoking = Collateral {
                root_ca_crl: crl.der().to_vec(),
                ..c.clone()
            };
            let hits = anchor.remembered_signatures().hits;
            let (hot, _) = collateral(&revoking, &anchor);
            let (cold, _) = collateral(&revoking, &keys.pki.anchor().expect("anchor"));
            assert!(
                matches!(&hot, Err(VerifyError::Revoked { what: w, .. }) if *w == what),
                "{what}: {hot:?}"
            );
            assert_eq!(hot, cold, "{what}");
            assert!(
                anchor.remembered_signatures().hits > hits,
                "{what}: the revoked CA's signature came from the memo"
            );
        }
        // The old root CRL, while it is presented, still says what it said.
        assert!(collateral(&c, &anchor).0.is_ok());
    }

    /// The PCK CA re-issued (same name and key) with a short validity: its signature
    /// remembered, it is refused outside its window at every use (time is a parameter).
    #[test]
    fn an_expired_ca_is_refused_on_a_memo_hit() {
        let now = UnixTime::now();
        let keys = keys("expired", now);
        let anchor = keys.pki.anchor().expect("anchor");
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ratls-proxy sim SGX PCK Platform CA");
        dn.push(
            DnType::OrganizationName,
            "ratls-proxy simulation (not Intel)",
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = odt(now) - Duration::days(1);
        p.not_after = odt(now) + Duration::days(2);
        p.key_identifier_method = KeyIdMethod::Sha256;
        p.use_authority_key_identifier_extension = true;
        let ca_key = KeyPair::from_pem(keys.text("pck_ca_key")).expect("key");
        let ca = p.signed_by(&ca_key, &keys.root()).expect("ca");
        let mut c = keys.pki.collateral(UnixTime(now.0 - 60), &[]).expect("c");
        c.pck_crl_issuer_chain = format!("{}{}", ca.pem(), keys.pki.root_pem());
        let cold_windows = collateral(&c, &anchor).0.expect("verifies");
        let hits = anchor.remembered_signatures().hits;
        let (warm, ecdsa) = collateral(&c, &anchor);
        assert_eq!(ecdsa, 3);
        assert_eq!(anchor.remembered_signatures().hits, hits + 3);
        assert_eq!(warm.as_ref().ok(), Some(&cold_windows));
        let snap = VerifiedCollateral::verify(&c, &anchor).expect("verifies");
        let fresh =
            VerifiedCollateral::verify(&c, &keys.pki.anchor().expect("a")).expect("verifies");
        let later = UnixTime(now.0 + 3 * 86_400);
        for v in [&snap, &fresh] {
            assert_eq!(v.check_fresh(now), Ok(()));
            assert!(
                matches!(
                    v.check_fresh(later),
                    Err(VerifyError::Expired {
                        item: CollateralItem::PckCrlIssuer,
                        ..
                    })
                ),
                "{:?}",
                v.check_fresh(later)
            );
        }
        // The same through a whole verification of a sim quote.
        let pck = keys.pki.pck_leaf(TcbStatus::UpToDate, now).expect("pck");
        let quote = forge(&EnclaveSpec::default(), &[5; 64], &pck).expect("quote");
        let (hot, _) = full(&quote, &c, &anchor, later);
        let (cold, _) = full(&quote, &c, &keys.pki.anchor().expect("a"), later);
        assert_eq!(
            hot.outcome.as_ref().err().map(|r| r.code),
            Some(RefusalCode::CollateralExpired),
            "{:?}",
            hot.outcome
        );
        assert_eq!(verdict(&hot), verdict(&cold));
    }

    /// Another root (the sim's) starts cold beside a warm Intel anchor, and Intel's
    /// remembered signatures do not help bytes the sim's root is asked about.
    #[test]
    fn another_root_never_benefits_from_intels_memo() {
        let Some(dir) = common::fixtures() else {
            return;
        };
        let real = cases(&dir).remove(0);
        let intel = TrustAnchor::intel();
        assert!(collateral(&real.collateral, &intel).0.is_ok());
        let intel_stats = intel.remembered_signatures();
        assert_eq!(
            intel_stats.signatures, 1,
            "the root CRL; the CAs are preloaded"
        );

        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let sim = pki.anchor().expect("anchor");
        let c = pki.collateral(UnixTime(now.0 - 60), &[]).expect("c");
        assert_eq!(collateral(&c, &sim).1, 6, "the sim's root starts cold");
        assert_eq!(sim.remembered_signatures().hits, 0);
        // Intel's genuine root CRL and TCB Signing chain presented under the sim's root.
        let mixed = Collateral {
            root_ca_crl: real.collateral.root_ca_crl.clone(),
            tcb_info_issuer_chain: real.collateral.tcb_info_issuer_chain.clone(),
            ..c.clone()
        };
        assert!(collateral(&mixed, &sim).0.is_err());
        let (hot, _) = collateral(&mixed, &sim);
        let (cold, _) = collateral(&mixed, &pki.anchor().expect("anchor"));
        assert_eq!(hot, cold);
        // And the sim's collateral under Intel's warm anchor.
        let (refused, _) = collateral(&c, &intel);
        assert!(refused.is_err());
        assert_eq!(refused, collateral(&c, &TrustAnchor::intel()).0);
        assert_eq!(sim.remembered_signatures().hits, 0);
        assert_eq!(intel.remembered_signatures(), intel_stats);
    }

    /// A configured root that copies the Intel root's name (not its key or bytes) gets
    /// nothing from the preloaded list: Intel's genuine TCB Signing certificate presented
    /// under it is checked by ECDSA under that root's key, and refused.
    #[test]
    fn a_root_with_intels_name_but_not_its_bytes_gets_no_preloaded_signature() {
        use ratls_proxy::dcap::preloaded::INTEL_SGX_TCB_SIGNING_2025_DER;

        let now = UnixTime::now();
        let (impostor, key) = common::intel_named_impostor();
        let anchor = TrustAnchor::from_der(impostor.der().to_vec()).expect("a root");
        assert!(!anchor.is_intel());
        let issuer = Issuer::from_ca_cert_pem(&impostor.pem(), key).expect("issuer");
        let issued = UnixTime(now.0 - 60);
        let root_crl = CertificateRevocationListParams {
            this_update: odt(issued),
            next_update: odt(UnixTime(issued.0 + 86_400)),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("crl");
        let pki = SimPki::generate(now).expect("pki");
        let c = pki.collateral(issued, &[]).expect("c");
        let mixed = Collateral {
            root_ca_crl: root_crl.der().to_vec(),
            tcb_info_issuer_chain: pem(&[
                INTEL_SGX_TCB_SIGNING_2025_DER.to_vec(),
                impostor.der().to_vec(),
            ]),
            ..c
        };
        let (refused, ecdsa) = collateral(&mixed, &anchor);
        let err = refused.expect_err("refused");
        assert!(
            matches!(
                &err,
                VerifyError::Chain {
                    what: "TCB info issuer chain",
                    ..
                }
            ) && err.to_string().contains("signature does not verify"),
            "{err}"
        );
        assert_eq!(
            ecdsa, 2,
            "the root CRL's, then the TCB Signing certificate's"
        );
        assert_eq!(
            anchor.remembered_signatures().signatures,
            1,
            "the CRL's only"
        );
    }
}
