//! Review 5 (adversarial): Evervault's carrier of an AWS Nitro document, judged in-process
//! for a `tee = "nitro"` entry (`ratls::appraise_certificate_judged`) against certificates a
//! hostile enclave host builds by hand. A positive control (the genuine spelling, accepted)
//! makes every refusal below meaningful: the same verified document, bound to the same key,
//! is moved into places Evervault's reader or ours must not take it from (a URI, an email,
//! the subject CN, a second subjectAltName extension), or paired with a key it does not name.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::nitro_policy::{NitroPolicy, PcrValue};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::dcap::error::VerifyError;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::ratls::{
    appraise_certificate_judged, Binding, BindingMode, CertAppraisal, EntryJudges, NitroJudge,
};
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{evervault, NitroEnclaveSpec, SimNitroCarrier};
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};
use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, SanType};

const PCR0: [u8; 48] = [0x5a; 48];

struct World {
    dir: std::path::PathBuf,
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
    let nitro = Arc::new(SimNitro::load_or_create(&dir, now).expect("Nitro PKI"));
    World { dir, nitro, now }
}

impl World {
    fn spec(&self) -> NitroEnclaveSpec {
        let mut spec = NitroEnclaveSpec::new(Arc::clone(&self.nitro), PCR0);
        spec.carrier = SimNitroCarrier::Evervault;
        spec
    }

    /// The hex of a genuine document whose `user_data` is `key`'s SPKI.
    fn hex_for(&self, key: &KeyPair) -> String {
        hex::encode(evervault::document(&self.spec(), key, self.now).expect("document"))
    }

    /// The offline CRLs the sim PKI wrote, revocation required, fetched.
    async fn crls(&self) -> NitroCrlCache {
        let c = NitroCrlCache::new(
            self.nitro.root().expect("root"),
            &NitroCrlSpec::Dir(self.dir.join("collateral/nitro")),
            Revocation::Required,
            RefreshPolicy::default(),
        )
        .expect("cache");
        // Ask for the points once (a judged genuine cert names them), then fetch them.
        c
    }
}

/// A self-signed certificate for `key`, valid around `now`, changed by `f`.
fn cert(key: &KeyPair, now: UnixTime, f: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "hostile enclave");
    let t = time::OffsetDateTime::from_unix_timestamp(now.0).expect("time");
    p.not_before = t - time::Duration::hours(1);
    p.not_after = t + time::Duration::days(2);
    f(&mut p);
    p.self_signed(key).expect("self-signed").der().to_vec()
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.to_owned().try_into().expect("ia5"))
}

/// DER of a TLV with `tag` around `content`.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(u8::try_from(n).expect("short"));
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).expect("len"));
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A second subjectAltName extension (OID 2.5.29.17) naming `names` as dNSNames.
fn second_san(names: &[String]) -> CustomExtension {
    let inner: Vec<u8> = names.iter().flat_map(|n| tlv(0x82, n.as_bytes())).collect();
    CustomExtension::from_oid_content(&[2, 5, 29, 17], tlv(0x30, &inner))
}

fn no_intel() -> VerifyError {
    VerifyError::Collateral(ratls_proxy::dcap::collateral::CollateralError::Json(
        "no Intel collateral".into(),
    ))
}

fn judge(der: &[u8], crls: &NitroCrlCache, now: UnixTime) -> CertAppraisal {
    judge_mode(der, crls, now, BindingMode::Auto)
}

fn judge_mode(der: &[u8], crls: &NitroCrlCache, now: UnixTime, mode: BindingMode) -> CertAppraisal {
    let p = NitroPolicy {
        pcr0: vec![PcrValue::from(PCR0)],
        ..NitroPolicy::default()
    };
    let judge = NitroJudge {
        policy: &p,
        collateral: crls,
    };
    let entry = EnclavePolicy::default();
    appraise_certificate_judged(
        der,
        &no_intel(),
        EntryJudges {
            policy: &entry,
            snp: None,
            nitro: Some(&judge),
        },
        mode,
        now,
    )
}

/// The Intel entry's judgement (no TEE named) of `der`.
fn judge_intel(der: &[u8], now: UnixTime) -> CertAppraisal {
    let entry = EnclavePolicy::default();
    appraise_certificate_judged(
        der,
        &no_intel(),
        EntryJudges {
            policy: &entry,
            snp: None,
            nitro: None,
        },
        BindingMode::Auto,
        now,
    )
}

fn code(c: &CertAppraisal) -> Option<RefusalCode> {
    c.refusal().map(|r| r.code)
}

/// The genuine spelling is accepted (so the refusals below are the carrier's, not the
/// harness's), then the same document, bound to the same key, in every place it must not
/// be read from: never accepted.
#[tokio::test]
async fn a_document_outside_a_single_dns_name_is_never_accepted() {
    let w = world();
    let key = KeyPair::generate().expect("key");
    let hex = w.hex_for(&key);
    let crls = w.crls().await;
    let genuine = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{hex}.enclave.localhost"))];
    });
    let _ = judge(&genuine, &crls, w.now);
    crls.fetch_missing(w.now).await;
    let ok = judge(&genuine, &crls, w.now);
    assert_eq!(code(&ok), None, "positive control: {ok:?}");
    assert_eq!(ok.binding, Some(Binding::Evervault));

    let ia5 = |s: String| -> rcgen::string::Ia5String { s.try_into().expect("ia5") };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "URI SAN",
            cert(&key, w.now, |p| {
                p.subject_alt_names = vec![SanType::URI(ia5(format!(
                    "https://{hex}.enclave.localhost/"
                )))];
            }),
        ),
        (
            "email SAN",
            cert(&key, w.now, |p| {
                p.subject_alt_names =
                    vec![SanType::Rfc822Name(ia5(format!("{hex}@enclave.localhost")))];
            }),
        ),
        (
            "subject CN",
            cert(&key, w.now, |p| {
                p.distinguished_name = rcgen::DistinguishedName::new();
                p.distinguished_name
                    .push(DnType::CommonName, format!("{hex}.enclave.localhost"));
                p.subject_alt_names = vec![dns("localhost")];
            }),
        ),
        (
            "a second subjectAltName extension after a host-name one",
            cert(&key, w.now, |p| {
                p.subject_alt_names = vec![dns("localhost")];
                p.custom_extensions = vec![second_san(&[format!("{hex}.enclave.localhost")])];
            }),
        ),
        (
            "a second subjectAltName extension, both carrying it",
            cert(&key, w.now, |p| {
                p.subject_alt_names = vec![dns(&format!("{hex}.enclave.localhost"))];
                p.custom_extensions = vec![second_san(&[format!("{hex}.enclave.localhost")])];
            }),
        ),
        (
            "wildcard leftmost, document second",
            cert(&key, w.now, |p| {
                p.subject_alt_names = vec![dns(&format!("*.{hex}.enclave.localhost"))];
            }),
        ),
    ];
    for (what, der) in hostile {
        let a = judge(&der, &crls, w.now);
        assert!(code(&a).is_some(), "{what}: accepted: {a:?}");
        eprintln!(
            "{what}: {:?}",
            a.refusal().map(|r| (r.code, r.reasons.clone()))
        );
        // An Intel entry never takes it either.
        let i = judge_intel(&der, w.now);
        assert!(code(&i).is_some(), "{what}: Intel entry accepted: {i:?}");
    }
}

/// A genuine document for key A in a certificate for key B (the hostile host replays a
/// real enclave's document with its own key), alone and beside A's own genuine name:
/// refused, never accepted.
#[tokio::test]
async fn another_keys_document_is_refused_in_every_arrangement() {
    let w = world();
    let victim = KeyPair::generate().expect("victim key");
    let attacker = KeyPair::generate().expect("attacker key");
    let victim_hex = w.hex_for(&victim);
    let attacker_hex = w.hex_for(&attacker);
    let crls = w.crls().await;
    let control = cert(&attacker, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{attacker_hex}.a.localhost"))];
    });
    let _ = judge(&control, &crls, w.now);
    crls.fetch_missing(w.now).await;
    assert_eq!(code(&judge(&control, &crls, w.now)), None, "control");
    let cases: Vec<(&str, Vec<SanType>)> = vec![
        (
            "victim's alone",
            vec![dns(&format!("{victim_hex}.v.localhost"))],
        ),
        (
            "victim's first, attacker's second",
            vec![
                dns(&format!("{victim_hex}.v.localhost")),
                dns(&format!("{attacker_hex}.a.localhost")),
            ],
        ),
        (
            "attacker's first, victim's second",
            vec![
                dns(&format!("{attacker_hex}.a.localhost")),
                dns(&format!("{victim_hex}.v.localhost")),
            ],
        ),
    ];
    for (what, sans) in cases {
        let der = cert(&attacker, w.now, |p| p.subject_alt_names = sans);
        let a = judge(&der, &crls, w.now);
        assert!(code(&a).is_some(), "{what}: accepted: {a:?}");
        eprintln!(
            "{what}: {:?}",
            a.refusal().map(|r| (r.code, r.reasons.clone()))
        );
    }
}

/// The SAN reader on hostile sizes: many tiny DNS names, and one name of many dots, stay
/// bounded and refuse or pass without a panic (measured by completion, not timing).
#[test]
fn hostile_san_shapes_do_not_panic() {
    let w = world();
    let key = KeyPair::generate().expect("key");
    let many: Vec<SanType> = (0..4000).map(|i| dns(&format!("h{i}"))).collect();
    let der = cert(&key, w.now, |p| p.subject_alt_names = many);
    let _ = judge_intel(&der, w.now);
    let dots = ".".repeat(30_000);
    let der = cert(&key, w.now, |p| p.subject_alt_names = vec![dns(&dots)]);
    let _ = judge_intel(&der, w.now);
    let long = "a".repeat(64);
    let der = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{long}.x"))];
    });
    // A 64-digit label: read as a carrier (not a document), refused for an Intel entry.
    let a = judge_intel(&der, w.now);
    assert!(code(&a).is_some(), "{a:?}");
}

/// LOW (clarity of a refusal): a `tee = "nitro"` entry given a certificate with no carrier it
/// reads (here the document in a URI subjectAltName) is refused `no_quote` with a reason that
/// lists Intel's quote OIDs and never says where a Nitro entry looks: dstack's `.1.8` or a
/// DNS subjectAltName (Evervault's). The operator of an Evervault enclave gets no hint.
#[tokio::test]
async fn a_nitro_entrys_no_quote_refusal_names_evervaults_carrier() {
    let w = world();
    let key = KeyPair::generate().expect("key");
    let hex = w.hex_for(&key);
    let crls = w.crls().await;
    let der = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![SanType::URI(
            format!("https://{hex}.enclave.localhost/")
                .try_into()
                .expect("ia5"),
        )];
    });
    let a = judge(&der, &crls, w.now);
    let r = a.refusal().expect("refused");
    assert_eq!(r.code, RefusalCode::NoQuote);
    let text = r.reasons.join(" ");
    assert!(
        text.contains("subjectAltName"),
        "a Nitro entry's no_quote reason should name Evervault's carrier (a DNS subjectAltName): {text}"
    );
}

/// An entry that names a binding (`binding = "dstack" | "gramine" | "cosmian"`) never takes
/// Evervault's carrier, whose binding is its own: the genuine certificate accepted under
/// `auto` is `binding_mismatch` under each named mode.
#[tokio::test]
async fn a_named_binding_mode_never_takes_evervaults_carrier() {
    let w = world();
    let key = KeyPair::generate().expect("key");
    let hex = w.hex_for(&key);
    let crls = w.crls().await;
    let der = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{hex}.enclave.localhost"))];
    });
    let _ = judge(&der, &crls, w.now);
    crls.fetch_missing(w.now).await;
    assert_eq!(code(&judge(&der, &crls, w.now)), None, "control under auto");
    for mode in [
        BindingMode::Dstack,
        BindingMode::Gramine,
        BindingMode::Cosmian,
    ] {
        let a = judge_mode(&der, &crls, w.now, mode);
        assert_eq!(
            code(&a),
            Some(RefusalCode::BindingMismatch),
            "{mode:?}: {a:?}"
        );
    }
}

/// CRL fetches (and so held-CRL eviction, `source/nitro/held.rs`) are driven only by
/// documents that verified and passed the policy: a genuine document whose PCR0 the entry
/// does not pin, and a document whose COSE signature is broken, leave no point pending; the
/// pinned one (control) makes the proxy want both of its points.
#[tokio::test]
async fn only_verified_policy_passing_documents_make_crls_wanted() {
    let w = world();
    let crls = w.crls().await;
    let key = KeyPair::generate().expect("key");
    // A genuine document of another image.
    let mut other = w.spec();
    other.pcr0 = [0x11; 48];
    let other_hex = hex::encode(evervault::document(&other, &key, w.now).expect("document"));
    let unpinned = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{other_hex}.enclave.localhost"))];
    });
    let a = judge(&unpinned, &crls, w.now);
    assert_eq!(code(&a), Some(RefusalCode::PcrMismatch), "{a:?}");
    // The pinned document with its last signature byte flipped (hex stays lowercase).
    let mut doc = evervault::document(&w.spec(), &key, w.now).expect("document");
    if let Some(last) = doc.last_mut() {
        *last ^= 0x01;
    }
    let forged = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{}.enclave.localhost", hex::encode(&doc)))];
    });
    let f = judge(&forged, &crls, w.now);
    assert!(code(&f).is_some(), "forged accepted: {f:?}");
    assert_eq!(crls.fetch_missing(w.now).await, 0, "nothing wanted yet");
    assert_eq!(crls.held(), 0);
    // Control: the pinned, genuine one wants its CRLs.
    let hex = w.hex_for(&key);
    let genuine = cert(&key, w.now, |p| {
        p.subject_alt_names = vec![dns(&format!("{hex}.enclave.localhost"))];
    });
    let _ = judge(&genuine, &crls, w.now);
    assert_eq!(crls.fetch_missing(w.now).await, 2, "both points");
}
