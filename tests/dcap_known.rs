//! The per-snapshot memo of known platforms (`dcap::known`) changes no verdict: every real
//! fixture, and every quote mutated to share a remembered PCK chain or QE report, gets the
//! same verdict and refusal (code and reasons) from a warm snapshot as from a cold one; a new
//! snapshot or another root starts cold; a known platform costs one ECDSA verification.
//! And the trust anchor's memo of the root's signatures (`dcap::anchor_memo`, in
//! `dcap_known/anchor.rs`): a full verification under a warm anchor costs six ECDSA instead of
//! nine, and every refusal (a byte changed, a CA revoked or expired, another root) is the same
//! warm or cold.

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::appraise::{appraise, Appraisal};
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::known::KnownStats;
use ratls_proxy::dcap::pki::ecdsa_verifications_on_this_thread;
use ratls_proxy::dcap::quote::Quote;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::dcap::verified::VerifiedCollateral;

/// One real case of `expected.json`: quote, collateral, time.
struct Case {
    name: String,
    quote: Vec<u8>,
    collateral: Collateral,
    at: UnixTime,
}

fn cases(dir: &Path) -> Vec<Case> {
    let exp: serde_json::Value =
        serde_json::from_slice(&common::read(dir, "dcap/expected.json")).expect("json");
    let cases = exp["cases"].as_array().expect("cases");
    assert!(cases.len() >= 9, "every real fixture case");
    cases
        .iter()
        .map(|c| {
            let file = |k: &str| format!("dcap/{}", c[k].as_str().expect("file"));
            Case {
                name: c["name"].as_str().expect("name").to_owned(),
                quote: common::read(dir, &file("quote_file")),
                collateral: Collateral::from_json(&common::read(dir, &file("collateral_file")))
                    .expect("collateral parses"),
                at: UnixTime(c["verified_at"].as_i64().expect("time")),
            }
        })
        .collect()
}

/// A snapshot verified now: its memo is empty.
fn snapshot(c: &Collateral, anchor: &TrustAnchor) -> Arc<VerifiedCollateral> {
    let v = VerifiedCollateral::verify(c, anchor).expect("collateral verifies");
    assert_eq!(
        v.known_platforms(),
        KnownStats::default(),
        "a new snapshot is cold"
    );
    Arc::new(v)
}

/// Everything a verdict says that the memo could change.
fn verdict(a: &Appraisal) -> String {
    match &a.outcome {
        Ok(acc) => format!(
            "accepted {} {:?} {:?}",
            acc.quote.tcb.status.as_str(),
            acc.quote.tcb.advisory_ids,
            acc.quote.identity
        ),
        Err(r) => format!("refused {:?} {:?}", r.code, r.reasons),
    }
}

/// The appraisal and the ECDSA verifications it ran.
fn judged(quote: &[u8], snap: &Arc<VerifiedCollateral>, at: UnixTime) -> (Appraisal, u64) {
    let before = ecdsa_verifications_on_this_thread();
    let a = appraise(quote, snap, &common::permissive(true), at);
    (a, ecdsa_verifications_on_this_thread() - before)
}

/// Where `part` (a view into `whole`) starts in `whole`.
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr().addr() - whole.as_ptr().addr()
}

/// The quote with one byte at `at` flipped.
fn flipped(quote: &[u8], at: usize) -> Vec<u8> {
    let mut q = quote.to_vec();
    q[at] ^= 0x01;
    q
}

/// Mutations that keep the quote parseable, each named for the part it breaks, with
/// whether the PCK chain (and the QE report) stay byte-identical, so the warm snapshot
/// answers them from its memo.
fn mutations(quote: &[u8]) -> Vec<(&'static str, Vec<u8>, bool, bool)> {
    let q = Quote::parse(quote).expect("parses");
    let pem = q.qe.pck_chain_pem;
    vec![
        // The attestation key's signature over header and body.
        (
            "quote signature",
            flipped(quote, offset(quote, q.isv_signature) + 5),
            true,
            true,
        ),
        // The signed body (the last byte of REPORTDATA).
        (
            "quote body",
            flipped(quote, offset(quote, q.signed) + q.signed.len() - 1),
            true,
            true,
        ),
        // The attestation key: the QE report no longer commits to it.
        (
            "attestation key",
            flipped(quote, offset(quote, q.attestation_key) + 7),
            true,
            true,
        ),
        // The QE authentication data: the QE report no longer commits to it either.
        (
            "QE auth data",
            flipped(quote, offset(quote, q.qe.auth_data)),
            true,
            true,
        ),
        // The QE report's body (MRENCLAVE of the QE): its signature no longer holds.
        (
            "QE report body",
            flipped(quote, offset(quote, q.qe.report.raw) + 64),
            true,
            false,
        ),
        // The PCK key's signature over the QE report.
        (
            "QE report signature",
            flipped(quote, offset(quote, q.qe.report_signature) + 3),
            true,
            false,
        ),
        // The certification data: one base64 character in the PCK leaf ('A' <-> 'B' keeps
        // the PEM well-formed, so the chain is judged, not the text).
        (
            "PCK certificate",
            {
                let at = offset(quote, pem)
                    + pem
                        .iter()
                        .enumerate()
                        .skip(400)
                        .find(|(_, b)| **b == b'A' || **b == b'B')
                        .map(|(i, _)| i)
                        .expect("a base64 A or B in the leaf");
                let mut m = quote.to_vec();
                m[at] = if m[at] == b'A' { b'B' } else { b'A' };
                m
            },
            false,
            false,
        ),
    ]
}

#[test]
fn every_fixture_gets_the_same_verdict_from_a_warm_snapshot_with_one_signature() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let anchor = TrustAnchor::intel();
    let mut accepted = 0;
    for case in cases(&dir) {
        let name = &case.name;
        let snap = snapshot(&case.collateral, &anchor);
        let (cold, cold_ecdsa) = judged(&case.quote, &snap, case.at);
        let (warm, warm_ecdsa) = judged(&case.quote, &snap, case.at);
        assert_eq!(verdict(&warm), verdict(&cold), "{name}");
        if cold.is_accepted() {
            accepted += 1;
            // PCK leaf, QE report, quote; the PCK CA was verified with the collateral.
            assert_eq!(cold_ecdsa, 3, "{name}: a new platform");
            // Nothing keyed by the quote's own signature or body is remembered, so this is
            // exactly the work of a new quote from this platform.
            assert_eq!(warm_ecdsa, 1, "{name}: a known platform");
            let known = snap.known_platforms();
            assert_eq!((known.pck_hits, known.qe_hits), (1, 1), "{name}");
            assert_eq!((known.pck_chains, known.qe_reports), (1, 1), "{name}");
        }
    }
    assert!(accepted >= 7, "most real cases accept: {accepted}");
}

#[test]
fn mutated_quotes_sharing_a_known_platform_are_refused_as_when_cold() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let anchor = TrustAnchor::intel();
    let mut checked = 0;
    for case in cases(&dir) {
        let warm = snapshot(&case.collateral, &anchor);
        if !judged(&case.quote, &warm, case.at).0.is_accepted() {
            continue;
        }
        for (what, quote, same_pck, same_qe) in mutations(&case.quote) {
            let label = format!("{}: {what}", case.name);
            let before = warm.known_platforms();
            let (hot, _) = judged(&quote, &warm, case.at);
            let after = warm.known_platforms();
            let (cold, _) = judged(&quote, &snapshot(&case.collateral, &anchor), case.at);
            assert!(!hot.is_accepted(), "{label}: accepted from the memo");
            assert_eq!(verdict(&hot), verdict(&cold), "{label}");
            // The memo was consulted where it holds the bytes, and only there.
            assert_eq!(
                after.pck_hits - before.pck_hits,
                u64::from(same_pck),
                "{label}"
            );
            assert_eq!(
                after.qe_hits - before.qe_hits,
                u64::from(same_qe),
                "{label}"
            );
            // A refusal is never remembered.
            assert_eq!(after.pck_chains, before.pck_chains, "{label}");
            assert_eq!(after.qe_reports, before.qe_reports, "{label}");
            checked += 1;
        }
        // And the genuine quote is still accepted from the memo after all that.
        assert!(judged(&case.quote, &warm, case.at).0.is_accepted());
    }
    assert!(checked >= 7 * 7, "{checked} mutated quotes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any one byte of any real quote changed: a snapshot warm with the genuine quote gives the
    /// same verdict and reasons as a cold one.
    #[test]
    fn any_mutated_quote_gets_the_same_verdict_warm_and_cold(
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let Some(dir) = common::fixtures() else {
            return Ok(());
        };
        let anchor = TrustAnchor::intel();
        let mut all = cases(&dir);
        let case = all.swap_remove(which.index(all.len()));
        let warm = snapshot(&case.collateral, &anchor);
        let _ = judged(&case.quote, &warm, case.at);
        let mut quote = case.quote.clone();
        let at = pos.index(quote.len());
        quote[at] ^= xor;
        let (hot, _) = judged(&quote, &warm, case.at);
        let (cold, _) = judged(&quote, &snapshot(&case.collateral, &anchor), case.at);
        prop_assert_eq!(verdict(&hot), verdict(&cold), "{} byte {}", case.name, at);
    }
}

/// The QE identity's issuer chain differing from the TCB info's in text only (CRLF line ends)
/// names the same TCB Signing certificate: its signature is verified once, and the snapshot
/// costs the five distinct signatures either way (under a new anchor each time: an anchor
/// remembers the root's signatures, `tests/dcap_known/anchor.rs`). The fixture is the one
/// whose TCB Signing certificate (2018-2025) is not preloaded (`dcap::preloaded`), so its
/// signature is verified here; its PCK CA is.
#[test]
fn a_signer_in_two_chains_is_verified_once() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let mut c = cases(&dir)
        .into_iter()
        .find(|case| case.name == "sgx_v3_debug_dcaprs")
        .expect("the dcaprs fixture")
        .collateral;
    let count = |c: &Collateral| {
        let anchor = TrustAnchor::intel();
        let before = ecdsa_verifications_on_this_thread();
        VerifiedCollateral::verify(c, &anchor).expect("verifies");
        ecdsa_verifications_on_this_thread() - before
    };
    // Root CRL, TCB Signing certificate, TCB info, QE identity, PCK CRL.
    assert_eq!(count(&c), 5);
    c.qe_identity_issuer_chain = c.qe_identity_issuer_chain.replace('\n', "\r\n");
    assert_ne!(c.qe_identity_issuer_chain, c.tcb_info_issuer_chain);
    assert_eq!(count(&c), 5);
}

#[test]
fn a_known_platform_is_still_judged_by_the_time() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let anchor = TrustAnchor::intel();
    let case = cases(&dir).remove(0);
    let snap = snapshot(&case.collateral, &anchor);
    assert!(judged(&case.quote, &snap, case.at).0.is_accepted());
    // Past the collateral's (and so before any certificate's) end: expired, warm or cold.
    let later = UnixTime(snap.valid_until().0 + 1);
    let (hot, _) = judged(&case.quote, &snap, later);
    let (cold, _) = judged(&case.quote, &snapshot(&case.collateral, &anchor), later);
    assert_eq!(
        hot.outcome.as_ref().err().map(|r| r.code),
        Some(RefusalCode::CollateralExpired)
    );
    assert_eq!(verdict(&hot), verdict(&cold));
}

#[cfg(feature = "sim")]
mod sim {
    use super::*;
    use ratls_proxy::dcap::tcb::TcbStatus;
    use ratls_proxy::sim::{forge, EnclaveSpec, SimPki};

    /// A new snapshot that revokes a platform the old one knew refuses it: the memo is the
    /// old snapshot's alone.
    #[test]
    fn a_new_snapshot_starts_cold_and_applies_its_own_crl() {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let anchor = pki.anchor().expect("anchor");
        let issued = UnixTime(now.0 - 60);
        let pck = pki.pck_leaf(TcbStatus::UpToDate, now).expect("pck");
        let old = snapshot(&pki.collateral(issued, &[]).expect("c"), &anchor);
        let first = forge(&EnclaveSpec::default(), &[1; 64], &pck).expect("quote");
        assert!(judged(&first, &old, now).0.is_accepted());
        // A second quote of the platform: a fresh attestation key (the sim's QE makes one per
        // quote), so a new QE report, but the same PCK chain: 2 ECDSA, not 3.
        let second = forge(&EnclaveSpec::default(), &[2; 64], &pck).expect("quote");
        let (a, ecdsa) = judged(&second, &old, now);
        assert!(a.is_accepted());
        assert_eq!(ecdsa, 2);
        assert_eq!(old.known_platforms().pck_hits, 1);

        let revoking = pki
            .collateral(issued, std::slice::from_ref(&pck.serial))
            .expect("c");
        let new = snapshot(&revoking, &anchor);
        let (refused, _) = judged(&second, &new, now);
        assert_eq!(
            refused.outcome.as_ref().err().map(|r| r.code),
            Some(RefusalCode::Revoked),
            "{:?}",
            refused.outcome
        );
        assert_eq!(new.known_platforms().pck_hits, 0);
        // The old snapshot, while it lives, still says what it said.
        assert!(judged(&second, &old, now).0.is_accepted());
    }

    /// A remembered PCK chain is judged by the time at every use: a leaf not yet valid at
    /// the verification time is refused from the memo as it is cold.
    #[test]
    fn a_remembered_leaf_is_refused_outside_its_validity() {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let anchor = pki.anchor().expect("anchor");
        // The leaf is valid from 9 days on; the collateral from a minute ago for 30 days.
        let later = UnixTime(now.0 + 10 * 86_400);
        let pck = pki.pck_leaf(TcbStatus::UpToDate, later).expect("pck");
        let collateral = pki.collateral(UnixTime(now.0 - 60), &[]).expect("c");
        let warm = snapshot(&collateral, &anchor);
        let quote = forge(&EnclaveSpec::default(), &[4; 64], &pck).expect("quote");
        assert!(judged(&quote, &warm, later).0.is_accepted());
        let (hot, _) = judged(&quote, &warm, now);
        let (cold, _) = judged(&quote, &snapshot(&collateral, &anchor), now);
        assert_eq!(warm.known_platforms().pck_hits, 1, "answered from the memo");
        assert_eq!(
            hot.outcome.as_ref().err().map(|r| r.code),
            Some(RefusalCode::ChainInvalid),
            "{:?}",
            hot.outcome
        );
        assert_eq!(verdict(&hot), verdict(&cold));
    }

    /// A snapshot of another root knows nothing of this one's platforms, and a copy of a
    /// snapshot starts cold.
    #[test]
    fn another_root_and_a_copy_start_cold() {
        let now = UnixTime::now();
        let issued = UnixTime(now.0 - 60);
        let ours = SimPki::generate(now).expect("pki");
        let theirs = SimPki::generate(now).expect("pki");
        let pck = ours.pck_leaf(TcbStatus::UpToDate, now).expect("pck");
        let quote = forge(&EnclaveSpec::default(), &[3; 64], &pck).expect("quote");
        let snap = snapshot(
            &ours.collateral(issued, &[]).expect("c"),
            &ours.anchor().expect("anchor"),
        );
        assert!(judged(&quote, &snap, now).0.is_accepted());
        assert_eq!(snap.known_platforms().pck_chains, 1);
        let copy = Arc::new(VerifiedCollateral::clone(&snap));
        assert_eq!(copy.known_platforms(), KnownStats::default());

        let other_anchor = theirs.anchor().expect("anchor");
        let other_collateral = theirs.collateral(issued, &[]).expect("c");
        let other = snapshot(&other_collateral, &other_anchor);
        let (hot, _) = judged(&quote, &other, now);
        let (cold, _) = judged(&quote, &snapshot(&other_collateral, &other_anchor), now);
        assert!(!hot.is_accepted());
        assert_eq!(verdict(&hot), verdict(&cold));
        assert_eq!(other.known_platforms(), KnownStats::default());
    }
}

/// The trust anchor's memo of the root's signatures (`dcap::anchor_memo`): the root CA CRL,
/// the TCB Signing certificate and the PCK CA are verified once per anchor; everything else
/// about them (names, revocation, validity, the CRL's content) at every use.
#[path = "dcap_known/anchor.rs"]
mod anchor;
