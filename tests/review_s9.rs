//! Session 9's adversarial review of the preloaded Intel CAs (`dcap::preloaded`, consulted by
//! `TrustAnchor::verify_root_signature`) and of the audit digests computed with ring
//! (`CollateralDigests::of`). Every preloaded certificate is tried in every role the collateral
//! and the quote offer it (and as a CRL); each verdict is compared with dcap-qvl 0.7.1, which
//! has no preloaded list and verifies every signature, and with a control built by the same
//! code path that must be accepted (so a refusal is not an artefact of the test's rebuild).

mod common;

use dcap_qvl::configs::RingConfig;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use ratls_proxy::appraise::{appraise, Appraisal, Unverified};
use ratls_proxy::dcap::collateral::{Collateral, CollateralItem};
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::pki::{self, ecdsa_verifications_on_this_thread, pem_chain};
use ratls_proxy::dcap::preloaded::{
    INTEL_SGX_PCK_PLATFORM_CA_DER, INTEL_SGX_PCK_PROCESSOR_CA_DER, INTEL_SGX_TCB_SIGNING_2025_DER,
    SIGNED_BY_INTEL_ROOT,
};
use ratls_proxy::dcap::quote::Quote;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::{TrustAnchor, INTEL_SGX_ROOT_CA_DER};
use ratls_proxy::dcap::verified::VerifiedCollateral;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// sgx_v3_qvl: Processor CA chain, TCB Signing 2025; tdx_v4_qvl (same time): Platform CA.
const QVL_AT: i64 = 1_751_623_200;
/// sgx_v3_automata: Platform CA chain, TCB Signing 2025.
const AUTOMATA_AT: i64 = 1_756_530_000;
/// The TCB Signing 2025 certificate's notBefore (2025-05-06 09:25:00 UTC).
const TCB_SIGNING_2025_FROM: i64 = 1_746_523_500;

struct Fixture {
    quote: Vec<u8>,
    json: Value,
    at: i64,
}

fn fixture(dir: &std::path::Path, name: &str, at: i64) -> Fixture {
    Fixture {
        quote: common::read(dir, &format!("dcap/{name}.quote.bin")),
        json: serde_json::from_slice(&common::read(dir, &format!("dcap/{name}.collateral.json")))
            .expect("json"),
        at,
    }
}

/// A PEM chain of `ders`, 64 base64 characters a line.
fn pem(ders: &[&[u8]]) -> String {
    common::pem_of(ders)
}

fn chain_of(json: &Value, field: &str) -> Vec<Vec<u8>> {
    pem_chain(json[field].as_str().expect("chain").as_bytes(), "t").expect("chain")
}

/// `json` with `field` set to `value`.
fn with(json: &Value, field: &str, value: String) -> Value {
    let mut j = json.clone();
    j[field] = Value::String(value);
    j
}

/// `json` with the first certificate of the chain `field` replaced by `der`.
fn with_signer(json: &Value, field: &str, der: &[u8]) -> Value {
    let chain = chain_of(json, field);
    with(json, field, pem(&[der, &chain[1]]))
}

/// Ours (most permissive policy) and dcap-qvl's verdict on the same bytes.
fn both(quote: &[u8], json: &Value, at: i64) -> (Appraisal, Result<String, String>) {
    let bytes = serde_json::to_vec(json).expect("json");
    let c = Collateral::from_json(&bytes).expect("collateral parses");
    let anchor = TrustAnchor::intel();
    let ours = appraise(
        quote,
        &Unverified {
            collateral: &c,
            anchor: &anchor,
        },
        &common::permissive(true),
        UnixTime(at),
    );
    let theirs = serde_json::from_slice::<QuoteCollateralV3>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            QuoteVerifier::new_prod()
                .with_config::<RingConfig>()
                .allow_debug(true)
                .verify(quote, &c, u64::try_from(at).expect("time"))
                .map(|r| r.status)
                .map_err(|e| format!("{e:#}"))
        });
    (ours, theirs)
}

fn reasons(a: &Appraisal) -> String {
    match &a.outcome {
        Ok(_) => "accepted".into(),
        Err(r) => format!("{:?} {}", r.code, r.reasons.join(" / ")),
    }
}

/// Refused by us (with a reason containing `says`) and by dcap-qvl.
fn assert_both_refuse(label: &str, quote: &[u8], json: &Value, at: i64, says: &str) {
    let (ours, theirs) = both(quote, json, at);
    let why = reasons(&ours);
    assert!(!ours.is_accepted(), "{label}: we accepted ({theirs:?})");
    assert!(why.contains(says), "{label}: refused for `{why}`");
    assert!(theirs.is_err(), "{label}: dcap-qvl accepts: {theirs:?}");
}

/// Accepted by us and dcap-qvl alike (the control each refusal is measured against).
fn assert_both_accept(label: &str, quote: &[u8], json: &Value, at: i64) {
    let (ours, theirs) = both(quote, json, at);
    assert!(ours.is_accepted(), "{label}: {}", reasons(&ours));
    assert!(theirs.is_ok(), "{label}: dcap-qvl refuses: {theirs:?}");
}

/// The quote (SGX v3) with its certification data replaced by the PEM of `ders` (the length
/// of the certification data and of the signature data fixed up; the trailing NUL kept).
fn with_pck_chain(quote: &[u8], ders: &[&[u8]]) -> Vec<u8> {
    let q = Quote::parse(quote).expect("parses");
    let at = q.qe.pck_chain_pem.as_ptr().addr() - quote.as_ptr().addr();
    let old = usize::try_from(u32::from_le_bytes(quote[at - 4..at].try_into().expect("4")))
        .expect("usize");
    assert_eq!(u16::from_le_bytes([quote[at - 6], quote[at - 5]]), 5);
    assert_eq!(
        at + old,
        quote.len(),
        "the certification data ends the quote"
    );
    let mut data = pem(ders).into_bytes();
    data.push(0);
    let mut out = quote[..at - 4].to_vec();
    out.extend_from_slice(&u32::try_from(data.len()).expect("len").to_le_bytes());
    out.extend_from_slice(&data);
    // SGX v3: the signature data's length follows the 48-byte header and 384-byte body.
    let sig_len =
        usize::try_from(u32::from_le_bytes(quote[432..436].try_into().expect("4"))).expect("usize");
    let new = sig_len + data.len() - old;
    out[432..436].copy_from_slice(&u32::try_from(new).expect("len").to_le_bytes());
    out
}

fn quote_chain(quote: &[u8]) -> Vec<Vec<u8>> {
    pem_chain(Quote::parse(quote).expect("q").qe.pck_chain_pem, "t").expect("chain")
}

/// Intel's root CA CRL role: every preloaded DER (a certificate), alone or with a byte
/// appended, is refused as the root CA CRL by the parser, never reaching the preloaded
/// comparison's `Ok`, and refused by dcap-qvl too; the genuine CRL in the same place is
/// accepted (control). Same for the PCK CRL role.
#[test]
fn a_preloaded_certificate_presented_as_a_crl_is_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_automata", AUTOMATA_AT);
    assert_both_accept("control", &f.quote, &f.json, f.at);
    for (i, der) in SIGNED_BY_INTEL_ROOT.iter().enumerate() {
        assert!(
            pki::parse_crl(der, "t").is_err(),
            "preloaded {i} parses as a CRL"
        );
        let mut longer = der.to_vec();
        longer.push(0);
        for bytes in [der.to_vec(), longer] {
            for field in ["root_ca_crl", "pck_crl"] {
                let j = with(&f.json, field, hex::encode(&bytes));
                assert_both_refuse(
                    &format!("{field} := preloaded {i}"),
                    &f.quote,
                    &j,
                    f.at,
                    "does not parse",
                );
            }
            // And directly: the collateral's verification refuses it at the root CRL.
            let j = with(&f.json, "root_ca_crl", hex::encode(&bytes));
            let c = Collateral::from_json(&serde_json::to_vec(&j).expect("j")).expect("c");
            let err = VerifiedCollateral::verify(&c, &TrustAnchor::intel()).expect_err("refused");
            assert!(
                matches!(
                    err,
                    VerifyError::Chain {
                        what: "root CA CRL",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }
}

/// The collateral's three root-signed roles filled with a preloaded certificate meant for
/// another: each refused by us (and by dcap-qvl, except the PCK CRL issuer chain, which it
/// does not read); the same rebuild with the right certificate is the original bytes,
/// accepted by both.
#[test]
fn preloaded_certificates_in_the_wrong_collateral_role_are_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_automata", AUTOMATA_AT);
    // Controls: each chain rebuilt (re-encoded PEM) with its own preloaded certificate.
    for (field, der) in [
        ("tcb_info_issuer_chain", INTEL_SGX_TCB_SIGNING_2025_DER),
        ("qe_identity_issuer_chain", INTEL_SGX_TCB_SIGNING_2025_DER),
        ("pck_crl_issuer_chain", INTEL_SGX_PCK_PLATFORM_CA_DER),
    ] {
        assert_eq!(chain_of(&f.json, field)[0], der, "{field} is preloaded");
        let j = with_signer(&f.json, field, der);
        // Intel's PEM is 64 characters a line: the rebuild is byte-exact, so every refusal
        // below differs from this acceptance only by the certificate swapped in.
        assert!(j == f.json, "{field}: the rebuild is exact");
        assert_both_accept(&format!("{field} rebuilt"), &f.quote, &j, f.at);
    }
    for (field, der, says) in [
        (
            "tcb_info_issuer_chain",
            INTEL_SGX_PCK_PLATFORM_CA_DER,
            "not a TCB Signing certificate",
        ),
        (
            "tcb_info_issuer_chain",
            INTEL_SGX_PCK_PROCESSOR_CA_DER,
            "not a TCB Signing certificate",
        ),
        (
            "qe_identity_issuer_chain",
            INTEL_SGX_PCK_PLATFORM_CA_DER,
            "not a TCB Signing certificate",
        ),
        (
            "qe_identity_issuer_chain",
            INTEL_SGX_PCK_PROCESSOR_CA_DER,
            "not a TCB Signing certificate",
        ),
        // The PCK CRL (the Platform CA's) under another CA Intel's root signed.
        (
            "pck_crl_issuer_chain",
            INTEL_SGX_TCB_SIGNING_2025_DER,
            "but its issuer chain is",
        ),
        (
            "pck_crl_issuer_chain",
            INTEL_SGX_PCK_PROCESSOR_CA_DER,
            "but its issuer chain is",
        ),
    ] {
        let j = with_signer(&f.json, field, der);
        let label = format!("{field} := {}", cn(der));
        if field == "pck_crl_issuer_chain" {
            // dcap-qvl 0.7.1 never reads this chain (it checks the PCK CRL's signature within
            // the quote's own chain): it accepts as with the genuine chain. We are stricter.
            let (ours, theirs) = both(&f.quote, &j, f.at);
            let why = reasons(&ours);
            assert!(!ours.is_accepted(), "{label}: we accepted");
            assert!(why.contains(says), "{label}: refused for `{why}`");
            assert_eq!(theirs, both(&f.quote, &f.json, f.at).1, "{label}: dcap-qvl");
        } else {
            assert_both_refuse(&label, &f.quote, &j, f.at, says);
        }
    }
}

fn cn(der: &[u8]) -> String {
    pki::common_name(&pki::parse_cert(der, "t").expect("cert"))
}

/// The quote's PCK chain with its CA replaced by another preloaded certificate (the leaf is
/// the Processor CA's): refused by us and dcap-qvl; the same rebuild with the genuine CA is
/// accepted by both (so the rebuilt quote is well formed).
#[test]
fn preloaded_certificates_in_the_wrong_quote_chain_role_are_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_qvl", QVL_AT);
    let chain = quote_chain(&f.quote);
    assert_eq!(chain[1], INTEL_SGX_PCK_PROCESSOR_CA_DER);
    assert_eq!(chain[2], INTEL_SGX_ROOT_CA_DER);
    let same = with_pck_chain(&f.quote, &[&chain[0], &chain[1], &chain[2]]);
    // The rebuild (lengths fixed up) is byte-exact with the genuine chain.
    assert!(same == f.quote, "the rebuild is exact");
    assert_both_accept("genuine chain rebuilt", &same, &f.json, f.at);
    for der in [
        INTEL_SGX_PCK_PLATFORM_CA_DER,
        INTEL_SGX_TCB_SIGNING_2025_DER,
    ] {
        let q = with_pck_chain(&f.quote, &[&chain[0], der, &chain[2]]);
        assert_both_refuse(
            &format!("quote CA := {}", cn(der)),
            &q,
            &f.json,
            f.at,
            "leaf issued by",
        );
    }
    // The leaf itself replaced by a preloaded CA (a CA presented as the PCK certificate).
    for der in SIGNED_BY_INTEL_ROOT {
        let q = with_pck_chain(&f.quote, &[der, &chain[1], &chain[2]]);
        let (ours, theirs) = both(&q, &f.json, f.at);
        assert!(!ours.is_accepted(), "{}: accepted", cn(der));
        assert!(theirs.is_err(), "{}: dcap-qvl accepts", cn(der));
    }
}

/// A quote under the Processor CA (preloaded, so its signature skips ECDSA) judged with the
/// Platform CA's PCK CRL (and chain) of the same day, and the converse: the CRL says nothing
/// about the quote's PCK certificate, so both are refused, "revocation status unknown".
/// Controls: the same collateral with the right CA's CRL swapped back in is accepted.
#[test]
fn a_pck_crl_of_the_other_preloaded_ca_is_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let sgx = fixture(&dir, "sgx_v3_qvl", QVL_AT); // Processor CA
    let tdx = fixture(&dir, "tdx_v4_qvl", QVL_AT); // Platform CA, same day
    assert_eq!(
        chain_of(&tdx.json, "pck_crl_issuer_chain")[0],
        INTEL_SGX_PCK_PLATFORM_CA_DER
    );
    let swap = |into: &Value, from: &Value| {
        let j = with(
            into,
            "pck_crl_issuer_chain",
            from["pck_crl_issuer_chain"].as_str().expect("s").into(),
        );
        with(&j, "pck_crl", from["pck_crl"].as_str().expect("s").into())
    };
    for (label, f, other) in [("SGX/Processor", &sgx, &tdx), ("TDX/Platform", &tdx, &sgx)] {
        assert_both_accept(label, &f.quote, &swap(&f.json, &f.json), f.at);
        let j = swap(&f.json, &other.json);
        let (ours, theirs) = both(&f.quote, &j, f.at);
        let why = reasons(&ours);
        assert!(!ours.is_accepted(), "{label}: accepted ({theirs:?})");
        assert!(why.contains("revocation status unknown"), "{label}: {why}");
        let theirs = theirs.expect_err("dcap-qvl refuses too");
        assert!(
            theirs.contains("UnknownRevocationStatus"),
            "{label}: {theirs}"
        );
    }
}

/// The windows of a preloaded CA are read from its bytes at every verification: the TCB
/// Signing 2025 certificate's notBefore refuses the snapshot one second before it (the root
/// CRL is already valid then), and every signer/PCK CA window is the presented certificate's.
#[test]
fn preloaded_certificates_keep_their_validity_windows() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    for (name, at) in [("sgx_v3_qvl", QVL_AT), ("sgx_v3_automata", AUTOMATA_AT)] {
        let f = fixture(&dir, name, at);
        let c = Collateral::from_json(&serde_json::to_vec(&f.json).expect("j")).expect("c");
        let v = VerifiedCollateral::verify(&c, &TrustAnchor::intel()).expect("verifies");
        let window_of = |item| {
            let w = v.windows().iter().find(|w| w.item == item).expect("window");
            (w.from.0, w.until.0)
        };
        let (tcb_from, tcb_until) =
            pki::validity(&pki::parse_cert(INTEL_SGX_TCB_SIGNING_2025_DER, "t").expect("cert"));
        assert_eq!(tcb_from, TCB_SIGNING_2025_FROM);
        assert_eq!(
            window_of(CollateralItem::TcbInfoSigner),
            (tcb_from, tcb_until)
        );
        assert_eq!(
            window_of(CollateralItem::QeIdentitySigner),
            (tcb_from, tcb_until)
        );
        let pck_ca = chain_of(&f.json, "pck_crl_issuer_chain").remove(0);
        assert!(SIGNED_BY_INTEL_ROOT.contains(&pck_ca.as_slice()));
        assert_eq!(
            window_of(CollateralItem::PckCrlIssuer),
            pki::validity(&pki::parse_cert(&pck_ca, "t").expect("cert"))
        );
        let before = UnixTime(TCB_SIGNING_2025_FROM - 1);
        assert!(
            matches!(
                v.check_fresh(before),
                Err(VerifyError::NotYetValid {
                    item: CollateralItem::TcbInfoSigner,
                    ..
                })
            ),
            "{name}: {:?}",
            v.check_fresh(before)
        );
        // And the quote at that time: refused.
        let (ours, theirs) = both(&f.quote, &f.json, before.0);
        assert!(!ours.is_accepted());
        assert!(theirs.is_err());
    }
}

/// Which anchors consult the list: Intel's root by bytes (`intel()`, `from_der`, `from_pem`)
/// runs four ECDSA for a collateral whose TCB Signing certificate and PCK CA are preloaded
/// (six less those two); the sim's root never skips one: its cold verification runs six, and an
/// Intel preloaded CA presented in its PCK CRL issuer chain is refused before any signature.
#[test]
fn only_intels_root_by_bytes_consults_the_list() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_automata", AUTOMATA_AT);
    let c = Collateral::from_json(&serde_json::to_vec(&f.json).expect("j")).expect("c");
    let pem_root = pem(&[INTEL_SGX_ROOT_CA_DER]);
    for anchor in [
        TrustAnchor::intel(),
        TrustAnchor::from_der(INTEL_SGX_ROOT_CA_DER.to_vec()).expect("root"),
        TrustAnchor::from_pem(pem_root.as_bytes()).expect("root"),
    ] {
        let before = ecdsa_verifications_on_this_thread();
        VerifiedCollateral::verify(&c, &anchor).expect("verifies");
        // Root CRL, TCB info, QE identity, PCK CRL: not the TCB Signing certificate or PCK CA.
        assert_eq!(ecdsa_verifications_on_this_thread() - before, 4);
    }

    #[cfg(feature = "sim")]
    {
        use ratls_proxy::sim::SimPki;
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let sim = pki.anchor().expect("anchor");
        assert!(!sim.is_intel());
        let sc = pki.collateral(UnixTime(now.0 - 60), &[]).expect("c");
        let before = ecdsa_verifications_on_this_thread();
        VerifiedCollateral::verify(&sc, &sim).expect("sim collateral verifies");
        assert_eq!(ecdsa_verifications_on_this_thread() - before, 6);
        let sim_root = pem_chain(sc.pck_crl_issuer_chain.as_bytes(), "t").expect("c")[1].clone();
        for der in SIGNED_BY_INTEL_ROOT {
            let mixed = Collateral {
                pck_crl_issuer_chain: pem(&[der, &sim_root]),
                ..sc.clone()
            };
            let err = VerifiedCollateral::verify(&mixed, &sim).expect_err("refused");
            assert!(
                err.to_string().contains("not by the pinned root"),
                "{}: {err}",
                cn(der)
            );
        }
    }
}

/// The audit digests (ring) equal sha2's SHA-256 of each item for every real collateral
/// file, equal the verdict's `collateral` digests, and for sgx_v3_qvl the values computed
/// outside Rust (Python's hashlib over the fixture's bytes).
#[test]
fn collateral_digests_are_sha256_of_the_exact_bytes() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let exp: Value =
        serde_json::from_slice(&common::read(&dir, "dcap/expected.json")).expect("json");
    let mut n = 0;
    for case in exp["cases"].as_array().expect("cases") {
        let file = |k: &str| format!("dcap/{}", case[k].as_str().expect("file"));
        let bytes = common::read(&dir, &file("collateral_file"));
        let c = Collateral::from_json(&bytes).expect("c");
        let anchor = TrustAnchor::intel();
        let Ok(v) = VerifiedCollateral::verify(&c, &anchor) else {
            continue;
        };
        let d = v.digests;
        let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        assert_eq!(d.tcb_info, sha(c.tcb_info.as_bytes()));
        assert_eq!(d.qe_identity, sha(c.qe_identity.as_bytes()));
        assert_eq!(d.pck_crl, sha(&c.pck_crl));
        assert_eq!(d.root_ca_crl, sha(&c.root_ca_crl));
        let a = appraise(
            &common::read(&dir, &file("quote_file")),
            &Unverified {
                collateral: &c,
                anchor: &anchor,
            },
            &common::permissive(true),
            UnixTime(case["verified_at"].as_i64().expect("t")),
        );
        if a.is_accepted() {
            assert_eq!(a.collateral, Some(d));
        }
        if case["collateral_file"] == "sgx_v3_qvl.collateral.json" {
            assert_eq!(
                [d.tcb_info, d.qe_identity, d.pck_crl, d.root_ca_crl].map(hex::encode),
                [
                    "f93593b7772c7d21fd77875a3864abf7ea794f840138a6906fb524c722f741bd",
                    "e37ba07d82691e98ed58afe63d3299116e3c33d9fc3aaa8aa1fbc376866b986e",
                    "5b07d32995f53ee023c370e466d31263c2ee8c128bcf4bb48dc61da7559fe28b",
                    "ad6f3f4e0673bb14ed4dffa7686f203cdfd25f07183e826ce928a9466801b3ec",
                ]
            );
        }
        n += 1;
    }
    assert!(n >= 8, "digests of {n} collateral files");
}

/// A preloaded certificate's exact signed bytes and signature in a different DER envelope
/// (a trailing byte; the outer SEQUENCE's length in a non-minimal form): not the preloaded
/// bytes, and refused as a cold verification refuses them, in the TCB Signing role and the
/// PCK CA role, by us and dcap-qvl.
#[test]
fn a_preloaded_certificate_in_another_envelope_is_refused() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_automata", AUTOMATA_AT);
    for (field, der) in [
        ("tcb_info_issuer_chain", INTEL_SGX_TCB_SIGNING_2025_DER),
        ("pck_crl_issuer_chain", INTEL_SGX_PCK_PLATFORM_CA_DER),
    ] {
        let mut trailing = der.to_vec();
        trailing.push(0);
        // 30 82 LL LL -> 30 83 00 LL LL: the same content, BER rather than DER.
        assert_eq!(&der[..2], [0x30, 0x82]);
        let mut rewrapped = vec![0x30, 0x83, 0x00];
        rewrapped.extend_from_slice(&der[2..]);
        for (how, bytes) in [
            ("trailing byte", trailing),
            ("non-minimal length", rewrapped),
        ] {
            assert!(!SIGNED_BY_INTEL_ROOT.contains(&bytes.as_slice()));
            let label = format!("{field}: {how}");
            let j = with_signer(&f.json, field, &bytes);
            let (ours, theirs) = both(&f.quote, &j, f.at);
            assert!(!ours.is_accepted(), "{label}: accepted");
            if field == "tcb_info_issuer_chain" {
                assert!(theirs.is_err(), "{label}: dcap-qvl accepts");
            }
            // And in the quote's own chain (the quote's CA is this fixture's Platform CA).
            if field == "pck_crl_issuer_chain" {
                let chain = quote_chain(&f.quote);
                assert_eq!(chain[1], der);
                let q = with_pck_chain(&f.quote, &[&chain[0], &bytes, &chain[2]]);
                let (ours, theirs) = both(&q, &f.json, f.at);
                assert!(!ours.is_accepted(), "quote chain: {how}: accepted");
                assert!(theirs.is_err(), "quote chain: {how}: dcap-qvl accepts");
            }
        }
    }
}

/// A root copying the Intel root's name (not its bytes or key) in the quote's chain, judged
/// by `pck_platform_under` (the gate before any collateral fetch): each preloaded CA under it
/// is checked by ECDSA under the impostor's key and refused; the same chain under Intel's
/// root passes without an ECDSA for the CA (control).
#[cfg(feature = "sim")]
#[test]
fn a_root_with_intels_name_gets_no_preloaded_ca_in_the_quote_chain() {
    use ratls_proxy::dcap::verify::pck_platform_under;
    let Some(dir) = common::fixtures() else {
        return;
    };
    let f = fixture(&dir, "sgx_v3_qvl", QVL_AT);
    let chain = quote_chain(&f.quote);
    let intel = TrustAnchor::intel();
    let before = ecdsa_verifications_on_this_thread();
    let q = Quote::parse(&f.quote).expect("q");
    assert!(pck_platform_under(&q, &intel).is_ok());
    assert_eq!(
        ecdsa_verifications_on_this_thread() - before,
        1,
        "the leaf's only: the Processor CA is preloaded"
    );

    let (impostor, _key) = common::intel_named_impostor();
    let anchor = TrustAnchor::from_der(impostor.der().to_vec()).expect("a root");
    assert_eq!(
        anchor.subject(),
        intel.subject(),
        "Intel's name, byte for byte"
    );
    assert!(!anchor.is_intel());
    for der in SIGNED_BY_INTEL_ROOT {
        let bytes = with_pck_chain(&f.quote, &[&chain[0], der, impostor.der()]);
        let q = Quote::parse(&bytes).expect("q");
        let before = ecdsa_verifications_on_this_thread();
        let err = pck_platform_under(&q, &anchor).expect_err("refused");
        assert_eq!(
            ecdsa_verifications_on_this_thread() - before,
            1,
            "{}",
            cn(der)
        );
        assert!(
            err.to_string().contains("signature does not verify"),
            "{}: {err}",
            cn(der)
        );
    }
}
