//! Hostile encodings against the trust anchor's memo of the root's signatures (issue 30,
//! `dcap::anchor_memo`): encodings of a remembered certificate or CRL that differ in length
//! and form, not only in one byte (non-minimal lengths, trailing bytes, algorithm
//! parameters, BER forms, a signature re-encoded); threads racing on one anchor; the memo
//! filled past its capacity by the root's own signatures. Each is refused (or accepted)
//! by a warm anchor exactly as by a cold one. In-process: the path is pure.

mod common;

use std::path::Path;

use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::pki::{ecdsa_verifications_on_this_thread, pem_chain};
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::dcap::verified::{VerifiedCollateral, Window};

/// The first real fixture's collateral.
fn real_collateral(dir: &Path) -> Collateral {
    let exp: serde_json::Value =
        serde_json::from_slice(&common::read(dir, "dcap/expected.json")).expect("json");
    let file = exp["cases"][0]["collateral_file"].as_str().expect("file");
    Collateral::from_json(&common::read(dir, &format!("dcap/{file}"))).expect("collateral")
}

/// The collateral's verification under `anchor` (its windows or refusal) and its ECDSA.
fn verify(c: &Collateral, anchor: &TrustAnchor) -> (Result<Vec<Window>, VerifyError>, u64) {
    let before = ecdsa_verifications_on_this_thread();
    let v = VerifiedCollateral::verify(c, anchor).map(|v| v.windows().to_vec());
    (v, ecdsa_verifications_on_this_thread() - before)
}

fn pem(ders: &[Vec<u8>]) -> String {
    common::pem_of(ders)
}

/// What the root signed in the collateral.
#[derive(Clone, Copy, Debug)]
enum Item {
    RootCrl,
    TcbSigner,
    PckCa,
}

const ITEMS: [Item; 3] = [Item::RootCrl, Item::TcbSigner, Item::PckCa];

/// `c` with the root-signed `item` replaced by `f` of its DER.
fn with_item(c: &Collateral, item: Item, f: &dyn Fn(&[u8]) -> Vec<u8>) -> Collateral {
    let first = |chain: &str| {
        let mut ders = pem_chain(chain.as_bytes(), "chain").expect("chain");
        ders[0] = f(&ders[0]);
        pem(&ders)
    };
    let mut m = c.clone();
    match item {
        Item::RootCrl => m.root_ca_crl = f(&c.root_ca_crl),
        Item::TcbSigner => {
            let same = m.qe_identity_issuer_chain == m.tcb_info_issuer_chain;
            m.tcb_info_issuer_chain = first(&c.tcb_info_issuer_chain);
            if same {
                m.qe_identity_issuer_chain = m.tcb_info_issuer_chain.clone();
            }
        }
        Item::PckCa => m.pck_crl_issuer_chain = first(&c.pck_crl_issuer_chain),
    }
    m
}

// --- DER, written by hand so the test can write what DER forbids. ---

/// The TLV at the start of `b` as (tag, header length, content length), long forms read as
/// written (non-minimal too).
fn head(b: &[u8]) -> (u8, usize, usize) {
    let l0 = b[1];
    if l0 < 0x80 {
        return (b[0], 2, usize::from(l0));
    }
    let n = usize::from(l0 & 0x7f);
    let len = b[2..2 + n]
        .iter()
        .fold(0usize, |a, x| (a << 8) | usize::from(*x));
    (b[0], 2 + n, len)
}

/// The minimal DER length of `n`.
fn len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![u8::try_from(n).expect("short")];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).expect("len")];
    out.extend(bytes);
    out
}

/// `n` in the long form with `width` bytes (non-minimal when fewer would do).
fn long_len(n: usize, width: usize) -> Vec<u8> {
    let mut out = vec![0x80 | u8::try_from(width).expect("width")];
    out.extend_from_slice(&n.to_be_bytes()[8 - width..]);
    out
}

fn tlv(tag: u8, length: Vec<u8>, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length);
    out.extend_from_slice(content);
    out
}

/// The content of the TLV at the start of `b`.
fn content(b: &[u8]) -> &[u8] {
    let (_, h, l) = head(b);
    &b[h..h + l]
}

/// The whole TLVs inside `b`'s content, in order.
fn children(b: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = content(b);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (_, h, l) = head(rest);
        out.push(rest[..h + l].to_vec());
        rest = &rest[h + l..];
    }
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    let body = parts.concat();
    tlv(0x30, len(body.len()), &body)
}

/// The ECDSA signature (DER `SEQUENCE { r, s }`) of a signed item, with `f` applied, put
/// back into its BIT STRING and the item.
fn with_signature(der: &[u8], f: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let [tbs, alg, bits] = <[Vec<u8>; 3]>::try_from(children(der)).expect("three parts");
    let sig = &content(&bits)[1..];
    let mut body = vec![0u8];
    body.extend(f(sig));
    seq(&[tbs, alg, tlv(0x03, len(body.len()), &body)])
}

type Variant = (&'static str, fn(&[u8]) -> Vec<u8>);

/// The three parts of a signed item: TBS, algorithm, BIT STRING.
fn parts(d: &[u8]) -> [Vec<u8>; 3] {
    <[Vec<u8>; 3]>::try_from(children(d)).expect("three parts")
}

fn outer_long(d: &[u8]) -> Vec<u8> {
    let c = content(d);
    tlv(0x30, long_len(c.len(), 4), c)
}

fn outer_indefinite(d: &[u8]) -> Vec<u8> {
    let mut out = tlv(0x30, vec![0x80], content(d));
    out.extend([0, 0]);
    out
}

fn trailing_zero(d: &[u8]) -> Vec<u8> {
    let mut out = d.to_vec();
    out.push(0);
    out
}

fn trailing_bits(d: &[u8]) -> Vec<u8> {
    let mut out = d.to_vec();
    out.extend(parts(d)[2].clone());
    out
}

fn alg_null(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    let mut alg_body = children(&alg)[0].clone();
    alg_body.extend([0x05, 0x00]);
    seq(&[tbs, tlv(0x30, len(alg_body.len()), &alg_body), bits])
}

fn alg_sha384(d: &[u8]) -> Vec<u8> {
    let [tbs, mut alg, bits] = parts(d);
    let last = alg.len() - 1;
    alg[last] = 0x03;
    seq(&[tbs, alg, bits])
}

fn alg_long(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    let c = content(&alg).to_vec();
    seq(&[tbs, tlv(0x30, long_len(c.len(), 1), &c), bits])
}

fn bits_long(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    let c = content(&bits).to_vec();
    seq(&[tbs, alg, tlv(0x03, long_len(c.len(), 3), &c)])
}

fn tbs_long(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    let c = content(&tbs).to_vec();
    seq(&[tlv(0x30, long_len(c.len(), 3), &c), alg, bits])
}

fn extra_part(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    seq(&[tbs, vec![0x30, 0x00], alg, bits])
}

fn reordered(d: &[u8]) -> Vec<u8> {
    let [tbs, alg, bits] = parts(d);
    seq(&[alg, tbs, bits])
}

fn sig_trailing_zero(d: &[u8]) -> Vec<u8> {
    with_signature(d, &|s| {
        let mut s = s.to_vec();
        s.push(0);
        s
    })
}

fn sig_r_padded(d: &[u8]) -> Vec<u8> {
    with_signature(d, &|s| {
        let [r, s2] = <[Vec<u8>; 2]>::try_from(children(s)).expect("r, s");
        let mut padded = vec![0u8];
        padded.extend_from_slice(content(&r));
        seq(&[tlv(0x02, len(padded.len()), &padded), s2])
    })
}

fn sig_long(d: &[u8]) -> Vec<u8> {
    with_signature(d, &|s| {
        let c = content(s);
        tlv(0x30, long_len(c.len(), 2), c)
    })
}

/// Encodings of a signed item that keep its signed bytes and its signature (or its signed
/// bytes and a re-encoded signature): none is what the root signed, byte for byte.
const VARIANTS: &[Variant] = &[
    ("outer length in the long form, 4 bytes", outer_long),
    ("outer length indefinite (BER)", outer_indefinite),
    ("a zero byte after the item", trailing_zero),
    (
        "the signature's BIT STRING repeated after the item",
        trailing_bits,
    ),
    ("algorithm with NULL parameters", alg_null),
    ("algorithm ecdsa-with-SHA384, same signature", alg_sha384),
    ("algorithm length in the long form", alg_long),
    ("BIT STRING length in the long form, 3 bytes", bits_long),
    ("TBS length in the long form, 3 bytes", tbs_long),
    ("an empty SEQUENCE between TBS and algorithm", extra_part),
    ("the envelope's parts in another order", reordered),
    (
        "a zero byte after the signature, inside the BIT STRING",
        sig_trailing_zero,
    ),
    (
        "the signature's r with a leading zero byte (not DER)",
        sig_r_padded,
    ),
    ("the signature's SEQUENCE length in the long form", sig_long),
];

/// The DER of the root-signed `item` in `c`.
fn item_der(c: &Collateral, item: Item) -> Vec<u8> {
    let first = |chain: &str| {
        pem_chain(chain.as_bytes(), "chain")
            .expect("chain")
            .remove(0)
    };
    match item {
        Item::RootCrl => c.root_ca_crl.clone(),
        Item::TcbSigner => first(&c.tcb_info_issuer_chain),
        Item::PckCa => first(&c.pck_crl_issuer_chain),
    }
}

/// Held on main. Every encoding variant of the root CA CRL, the TCB Signing certificate and
/// the PCK CA (their signed bytes and signature kept, only the form changed) is refused by
/// a warm anchor exactly as by a cold one, and none is remembered.
#[test]
fn re_encodings_of_a_remembered_item_are_refused_warm_as_cold() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let c = real_collateral(&dir);
    // The helpers rebuild the genuine items byte for byte (else the variants prove nothing).
    for item in ITEMS {
        let der = item_der(&c, item);
        assert_eq!(seq(&parts(&der)), der, "{item:?} rebuilt");
        assert_eq!(
            with_signature(&der, &|s| s.to_vec()),
            der,
            "{item:?} signature"
        );
    }
    let warm = TrustAnchor::intel();
    let (genuine, cold_ecdsa) = verify(&c, &warm);
    assert!(genuine.is_ok());
    // The root CRL, TCB info, QE identity and PCK CRL: the TCB Signing certificate and the
    // PCK CA are Intel's preloaded ones (`dcap::preloaded`), so only the root CRL's
    // signature is remembered. Their re-encodings below are not those bytes: each is
    // judged as any other certificate.
    assert_eq!(cold_ecdsa, 4);
    assert_eq!(warm.remembered_signatures().signatures, 1);
    for item in ITEMS {
        for (name, f) in VARIANTS {
            assert_ne!(
                f(&item_der(&c, item)),
                item_der(&c, item),
                "{item:?} {name}"
            );
            let m = with_item(&c, item, &|d| f(d));
            let (hot, _) = verify(&m, &warm);
            let (cold, _) = verify(&m, &TrustAnchor::intel());
            assert!(hot.is_err(), "{item:?} {name}: accepted warm");
            assert_eq!(hot, cold, "{item:?} {name}");
        }
    }
    assert_eq!(
        warm.remembered_signatures().signatures,
        1,
        "nothing new remembered"
    );
    assert_eq!(verify(&c, &warm), (genuine, 3));
}

/// Held on main. Four threads on clones of one anchor, each verifying the genuine
/// collateral and copies with one signature byte changed, in turn: every genuine one
/// accepted with the cold windows, every changed one refused as cold, one signature (the
/// root CRL's; the two CAs are preloaded) remembered in all.
#[test]
fn threads_racing_on_one_anchor_get_the_cold_answers() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let c = real_collateral(&dir);
    let expected = verify(&c, &TrustAnchor::intel()).0.expect("verifies");
    let flips: Vec<(Collateral, Result<Vec<Window>, VerifyError>)> = ITEMS
        .iter()
        .map(|item| {
            let m = with_item(&c, *item, &|d| {
                let mut d = d.to_vec();
                let last = d.len() - 1;
                d[last] ^= 0x01;
                d
            });
            let cold = verify(&m, &TrustAnchor::intel()).0;
            assert!(cold.is_err(), "{item:?}");
            (m, cold)
        })
        .collect();
    let anchor = TrustAnchor::intel();
    std::thread::scope(|s| {
        for t in 0..4 {
            let anchor = anchor.clone();
            let (c, expected, flips) = (&c, &expected, &flips);
            s.spawn(move || {
                for i in 0..40 {
                    let (got, _) = verify(c, &anchor);
                    assert_eq!(got.as_ref(), Ok(expected), "thread {t} round {i}");
                    let (m, cold) = &flips[(t + i) % flips.len()];
                    assert_eq!(&verify(m, &anchor).0, cold, "thread {t} round {i}");
                }
            });
        }
    });
    assert_eq!(anchor.remembered_signatures().signatures, 1);
}

#[cfg(feature = "sim")]
mod sim {
    use super::*;
    use ratls_proxy::dcap::anchor_memo::CAPACITY;
    use ratls_proxy::dcap::time::UnixTime;
    use ratls_proxy::sim::SimPki;
    use rcgen::{
        CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevokedCertParams,
        SerialNumber,
    };
    use time::OffsetDateTime;

    fn odt(t: UnixTime) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(t.0).expect("time")
    }

    /// Held on main. The sim's root signs more root CRLs than the memo holds (a hostile
    /// enclave cannot, but the sim's key is public): the memo stays within its capacity,
    /// each CRL is accepted for what it says at every use (one revoking the PCK CA is
    /// refused, after the clearing as before), a CRL's signature moved onto other bytes is
    /// refused, and a CRL remembered before the clearing is verified again.
    #[test]
    fn a_memo_filled_past_capacity_clears_and_answers_as_cold() {
        let now = UnixTime::now();
        let dir = std::env::temp_dir().join(format!("ratls-review6-anchor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = SimPki::load_or_create(&dir, now).expect("pki");
        let state: serde_json::Value =
            serde_json::from_slice(&common::read(&dir, "sim-pki.json")).expect("json");
        let _ = std::fs::remove_dir_all(&dir);
        let text = |k: &str| state[k].as_str().expect("field").to_owned();
        let root_key = KeyPair::from_pem(&text("root_key")).expect("key");
        let root = Issuer::from_ca_cert_pem(&text("root_cert"), root_key).expect("issuer");
        let issued = UnixTime(now.0 - 60);
        let c = pki.collateral(issued, &[]).expect("collateral");
        let ca_serial = {
            let der = &pem_chain(c.pck_crl_issuer_chain.as_bytes(), "t").expect("chain")[0];
            let (_, cert) = x509_parser::parse_x509_certificate(der).expect("cert");
            cert.raw_serial().to_vec()
        };
        let crl = |n: u64, revoke: bool| {
            CertificateRevocationListParams {
                this_update: odt(issued),
                next_update: odt(UnixTime(issued.0 + 86_400)),
                crl_number: SerialNumber::from(n),
                issuing_distribution_point: None,
                revoked_certs: if revoke {
                    vec![RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&ca_serial),
                        revocation_time: odt(issued),
                        reason_code: None,
                        invalidity_date: None,
                    }]
                } else {
                    Vec::new()
                },
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&root)
            .expect("crl")
            .der()
            .to_vec()
        };
        let with_crl = |der: Vec<u8>| Collateral {
            root_ca_crl: der,
            ..c.clone()
        };
        let anchor = pki.anchor().expect("anchor");
        let revoking = with_crl(crl(1_000, true));
        let first = with_crl(crl(1, false));
        assert!(verify(&first, &anchor).0.is_ok());
        let past = u64::try_from(CAPACITY).expect("capacity") + 10;
        for n in 2..=past {
            let (v, _) = verify(&with_crl(crl(n, false)), &anchor);
            assert!(v.is_ok(), "CRL {n}: {v:?}");
            let held = anchor.remembered_signatures().signatures;
            assert!(held <= CAPACITY, "{held} signatures remembered");
            if n % 16 == 0 {
                let (hot, _) = verify(&revoking, &anchor);
                assert!(
                    matches!(hot, Err(VerifyError::Revoked { .. })),
                    "CRL {n}: {hot:?}"
                );
            }
        }
        // The first CRL's signature was cleared: verified again (the PCK CRL, the TCB info
        // and the QE identity's signatures, and the root CRL's).
        let (again, ecdsa) = verify(&first, &anchor);
        assert!(again.is_ok());
        assert_eq!(ecdsa, 4);
        // A remembered CRL's signature over another CRL's bytes.
        let a = crl(5_000, false);
        let b = crl(5_001, true);
        assert!(verify(&with_crl(a.clone()), &anchor).0.is_ok());
        let [tbs_b, alg_b, _] = <[Vec<u8>; 3]>::try_from(children(&b)).expect("parts");
        let [_, _, bits_a] = <[Vec<u8>; 3]>::try_from(children(&a)).expect("parts");
        let spliced = with_crl(seq(&[tbs_b, alg_b, bits_a]));
        let (hot, _) = verify(&spliced, &anchor);
        let (cold, _) = verify(&spliced, &pki.anchor().expect("anchor"));
        assert!(hot.is_err(), "a spliced CRL accepted warm");
        assert_eq!(hot, cold);
    }
    /// Review R6 (LOW, not the memo's doing: cold and warm agreed; failed until `pki::check_signed_algorithm`). A PCK CA whose
    /// TBS `signature` field names ecdsa-with-SHA384 while the outer signatureAlgorithm
    /// says ecdsa-with-SHA256, genuinely signed by the root over those TBS bytes: RFC 5280
    /// 4.1.1.2 says the two MUST be the same, and OpenSSL (Intel's QVL) refuses a mismatch
    /// (X509_R_SIGNATURE_ALGORITHM_MISMATCH); so do we now, warm and cold alike (a
    /// certificate or a CRL whose two algorithm identifiers differ).
    #[test]
    fn a_ca_whose_tbs_algorithm_differs_from_its_outer_one_is_refused() {
        use ring::rand::SystemRandom;
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let now = UnixTime::now();
        let dir =
            std::env::temp_dir().join(format!("ratls-review6-mismatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = SimPki::load_or_create(&dir, now).expect("pki");
        let state: serde_json::Value =
            serde_json::from_slice(&common::read(&dir, "sim-pki.json")).expect("json");
        let _ = std::fs::remove_dir_all(&dir);
        let root_key =
            KeyPair::from_pem(state["root_key"].as_str().expect("key")).expect("root key");
        let rng = SystemRandom::new();
        let signer = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &root_key.serialize_der(),
            &rng,
        )
        .expect("signer");
        let c = pki
            .collateral(UnixTime(now.0 - 60), &[])
            .expect("collateral");
        let chain = pem_chain(c.pck_crl_issuer_chain.as_bytes(), "chain").expect("chain");
        let [tbs, alg, _] = parts(&chain[0]);
        let mut fields = children(&tbs);
        // version [0], serial, signature: the third field of the TBS.
        assert_eq!(fields[2], alg, "the TBS names the outer algorithm");
        let last = fields[2].len() - 1;
        fields[2][last] = 0x03;
        let tbs = seq(&fields);
        let sig = signer.sign(&rng, &tbs).expect("sign");
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig.as_ref());
        let ca = seq(&[tbs, alg, tlv(0x03, len(bits.len()), &bits)]);
        let m = Collateral {
            pck_crl_issuer_chain: pem(&[ca, chain[1].clone()]),
            ..c.clone()
        };
        let anchor = pki.anchor().expect("anchor");
        let (cold, _) = verify(&m, &anchor);
        let (warm, _) = verify(&m, &anchor);
        assert_eq!(cold, warm, "the memo changes nothing");
        assert!(
            cold.is_err(),
            "a PCK CA whose TBS says ecdsa-with-SHA384 and whose envelope says SHA-256 is accepted"
        );
    }
}
