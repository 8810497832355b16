//! Evervault's carrier of an AWS Nitro document (hex COSE_Sign1 as the leftmost label of a
//! DNS subjectAltName, `user_data` = the certificate's SPKI DER) for `tee = "nitro"` entries.
//! Through the real proxy binary and curl: Evervault sims (the sim Nitro root pinned, CRLs
//! from the offline directory) are accepted with binding `evervault`, and refused for a key
//! the document does not name, debug, a PCR, every malformed spelling of the label (uppercase,
//! odd, trailing, split, oversized, two documents) and both carriers at once; an Intel entry
//! given one and a Nitro entry given Intel evidence are `tee_mismatch`; refused enclaves are
//! never reached and the audit trail passes `audit verify`. The two real Evervault
//! certificates (tests/data/evervault) verify to AWS's root at their own timestamps; mutating
//! their subjectAltName never has a changed document accepted. `verify` reads both.

#![cfg(feature = "sim")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use ratls_proxy::appraise::nitro_policy::{NitroPolicy, PcrValue};
use ratls_proxy::appraise::policy::EnclavePolicy;
use ratls_proxy::appraise::refusal::RefusalCode;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::NitroRoot;
use ratls_proxy::ratls::{
    appraise_certificate_judged, Binding, BindingMode, CertAppraisal, EntryJudges, NitroJudge,
};
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{
    ratls_identity, NitroEnclaveSpec, SimConfig, SimEnclave, SimNitroCarrier, TdSpec,
};
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};
use serde_json::Value;

use common::{curl_via, env, free_port, start_sim, Env, Harness};

/// The PCR0 the sims measure and the entries pin.
const PCR0: [u8; 48] = [0x5a; 48];

fn nitro_pki(env: &Env) -> Arc<SimNitro> {
    Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("pki"))
}

/// An Evervault sim's spec, changed by `f`.
fn spec(pki: &Arc<SimNitro>, f: impl FnOnce(&mut NitroEnclaveSpec)) -> SimConfig {
    let mut spec = NitroEnclaveSpec::new(Arc::clone(pki), PCR0);
    spec.carrier = SimNitroCarrier::Evervault;
    f(&mut spec);
    SimConfig {
        nitro: Some(spec),
        ..SimConfig::default()
    }
}

fn nitro_entry(host: &str, sim: &SimEnclave, extra: &str) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"nitro\"\npcr0 = [\"{}\"]\n{extra}\nconnect_to = \"{}\"\n\n",
        hex::encode(PCR0),
        sim.addr()
    )
}

fn assert_refused(text: &str, host: &str, code: &str) {
    assert!(text.starts_with("HTTP/1.1 502"), "{host}: {text}");
    assert!(
        text.contains(&format!("\"code\":\"{code}\"")),
        "{host}: {text}"
    );
}

// Hostile spellings of the carrier, each from the genuine document's hex.
fn uppercase(hex: &str) -> Vec<String> {
    vec![format!("{}.enclave.localhost", hex.to_uppercase())]
}
fn odd(hex: &str) -> Vec<String> {
    vec![format!("{hex}a.enclave.localhost")]
}
fn trailing(hex: &str) -> Vec<String> {
    vec![format!("{hex}00.enclave.localhost")]
}
fn split(hex: &str) -> Vec<String> {
    let (a, b) = hex.split_at(hex.len() / 2);
    vec![format!("{a}.{b}.enclave.localhost")]
}
fn split_as_host_labels(hex: &str) -> Vec<String> {
    let labels: Vec<&str> = hex
        .as_bytes()
        .chunks(62)
        .map(|c| std::str::from_utf8(c).expect("hex is ASCII"))
        .collect();
    vec![format!("{}.enclave.localhost", labels.join("."))]
}
fn oversized(hex: &str) -> Vec<String> {
    // Two digits over the cap (the DNS names' total cap is above it).
    let pad = ratls_proxy::ratls::evervault::MAX_HEX_LEN + 2 - hex.len();
    vec![format!("{hex}{}.enclave.localhost", "0".repeat(pad))]
}
fn two_documents(hex: &str) -> Vec<String> {
    vec![format!("{hex}.a.localhost"), format!("{hex}.b.localhost")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evervault_enclaves_through_the_proxy_each_with_its_code() {
    let env = env();
    let pki = nitro_pki(&env);
    let good = start_sim(&env, spec(&pki, |_| {})).await;
    let td = start_sim(
        &env,
        SimConfig {
            td: Some(TdSpec::default()),
            ..SimConfig::default()
        },
    )
    .await;
    type Names = fn(&str) -> Vec<String>;
    let hostile: [(&str, Names, &str, &str); 7] = [
        (
            "uppercase",
            uppercase,
            "quote_malformed",
            "uppercase hex is refused",
        ),
        ("odd", odd, "quote_malformed", "odd number of digits"),
        (
            "trailing",
            trailing,
            "quote_malformed",
            "unexpected bytes after",
        ),
        ("split", split, "quote_malformed", "split over labels"),
        (
            "split-63",
            split_as_host_labels,
            "no_quote",
            "carries no quote",
        ),
        (
            "oversized",
            oversized,
            "quote_malformed",
            "34818 digits, above the 34816-digit limit",
        ),
        (
            "two-docs",
            two_documents,
            "quote_malformed",
            "two DNS names",
        ),
    ];
    let mut refused: Vec<(String, SimEnclave, &str, &str)> = vec![
        (
            "wrong-key".into(),
            start_sim(&env, spec(&pki, |s| s.wrong_key = true)).await,
            "binding_mismatch",
            "user_data",
        ),
        (
            "debug".into(),
            start_sim(&env, spec(&pki, |s| s.debug = true)).await,
            "debug_enclave",
            "debug",
        ),
        (
            "both".into(),
            start_sim(&env, spec(&pki, |s| s.carrier = SimNitroCarrier::Both)).await,
            "quote_malformed",
            "beside a quote extension",
        ),
    ];
    for (name, names, code, why) in hostile {
        let sim = start_sim(&env, spec(&pki, |s| s.evervault_names = Some(names))).await;
        refused.push((name.into(), sim, code, why));
    }
    let proxy = free_port();
    let trail = env.dir.join("evervault-audit.jsonl");
    let crls = env.dir.join("pki/collateral/nitro");
    let mut entries = format!("[audit]\npath = \"{}\"\n\n", trail.display());
    entries.push_str(&nitro_entry("evervault.enclave.test", &good, ""));
    entries.push_str(&nitro_entry(
        "policy-pcr1.enclave.test",
        &good,
        &format!("pcr1 = [\"{}\"]", "71".repeat(48)),
    ));
    for (name, sim, _, _) in &refused {
        entries.push_str(&nitro_entry(&format!("{name}.enclave.test"), sim, ""));
    }
    // Evervault's document on a TDX entry; a TD's quote on a Nitro entry.
    entries.push_str(&format!(
        "[[enclave]]\nhosts = [\"tdx.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{}\"]\nconnect_to = \"{}\"\n\n",
        "7d".repeat(48),
        good.addr()
    ));
    entries.push_str(&nitro_entry("nitro-td.enclave.test", &td, ""));
    let _p = Harness::new(&env)
        .listen(proxy)
        .top("attestation_header = true\n")
        .collateral(&env.dir.join("pki/collateral"))
        .collateral_keys(&format!(
            "nitro_trust_root = \"{}\"\nnitro_crls = \"{}\"\nnitro_revocation = \"required\"\n",
            env.dir.join("pki/nitro-root.pem").display(),
            crls.display()
        ))
        .tail(&entries)
        .start_binary("evervault.toml")
        .await;

    let text = curl_via(proxy, "http://evervault.enclave.test/hello").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let header = text
        .lines()
        .find(|l| l.to_lowercase().starts_with("ratls-attestation:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        header.contains("tee=nitro")
            && header.contains(&format!("pcr0={}", hex::encode(PCR0)))
            && header.contains("binding=evervault"),
        "{header}"
    );
    let reached = good.request_count();
    assert_eq!(reached, 1);

    for (name, sim, code, why) in &refused {
        let host = format!("{name}.enclave.test");
        let text = curl_via(proxy, &format!("http://{host}/hello")).await;
        assert_refused(&text, &host, code);
        assert!(text.contains(why), "{host}: {text}");
        assert_eq!(sim.request_count(), 0, "{host}: never reached");
    }
    let text = curl_via(proxy, "http://policy-pcr1.enclave.test/hello").await;
    assert_refused(&text, "policy-pcr1", "pcr_mismatch");
    assert!(text.contains("PCR1"), "{text}");
    for host in ["tdx.enclave.test", "nitro-td.enclave.test"] {
        let text = curl_via(proxy, &format!("http://{host}/hello")).await;
        assert_refused(&text, host, "tee_mismatch");
    }
    let text = curl_via(proxy, "http://tdx.enclave.test/hello").await;
    assert!(text.contains("Evervault"), "{text}");
    assert_eq!(good.request_count(), reached, "no refused entry reached it");
    assert_eq!(td.request_count(), 0);

    let recs = common::audited(&trail, "evervault.enclave.test");
    let accepted = recs
        .iter()
        .find(|r| r["verdict"] == "accepted")
        .unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(accepted["tee"], "NITRO", "{accepted}");
    assert_eq!(accepted["nitro"]["binding"], "evervault", "{accepted}");
    assert_eq!(accepted["nitro"]["pcrs"]["0"], hex::encode(PCR0));
    for (name, _, code, _) in &refused {
        let r = common::audited(&trail, &format!("{name}.enclave.test"));
        assert_eq!(
            r.first().map(|r| (&r["verdict"], &r["code"])),
            Some((&Value::from("refused"), &Value::from(*code))),
            "{name}: {r:#?}"
        );
    }
    let (code, out) = common::audit_verify(&trail, &[]);
    assert_eq!(code, 0, "{out}");
}

// The real certificates (tests/data/evervault/SOURCE.md).

const REAL: &str = "tests/data/evervault/evervault-cage-2023-01-18.pem";
const REAL_DEBUG: &str = "tests/data/evervault/evervault-cage-debug-2023-01-18.pem";
/// The documents' timestamps (seconds).
const REAL_AT: i64 = 1_674_047_239;
const REAL_DEBUG_AT: i64 = 1_674_054_632;
const REAL_PCR0: &str = "d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5a74fe4891da9817611a71e71b98e5329232902de3cf419af";
const REAL_SPKI_PREFIX: &str = "3076301006072a8648ce3d020106052b8104002203620004fbd5c516";

fn real_der(path: &str) -> Vec<u8> {
    let pem = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("fixture");
    ratls_proxy::dcap::pki::pem_chain(&pem, "fixture")
        .expect("PEM")
        .into_iter()
        .next()
        .expect("a certificate")
}

/// AWS's root pinned, no CRL (2023's are gone): revocation reported unchecked.
fn aws_collateral(dir: &Path) -> NitroCrlCache {
    std::fs::create_dir_all(dir).expect("dir");
    NitroCrlCache::new(
        NitroRoot::aws(),
        &NitroCrlSpec::Dir(dir.to_path_buf()),
        Revocation::IfSupplied,
        RefreshPolicy::default(),
    )
    .expect("cache")
}

/// The Intel collateral a Nitro entry never consults.
fn no_intel() -> ratls_proxy::dcap::error::VerifyError {
    ratls_proxy::dcap::error::VerifyError::Collateral(
        ratls_proxy::dcap::collateral::CollateralError::Json("no Intel collateral".into()),
    )
}

fn judge_real(der: &[u8], policy: &NitroPolicy, crls: &NitroCrlCache, at: i64) -> CertAppraisal {
    let judge = NitroJudge {
        policy,
        collateral: crls,
    };
    let intel = EnclavePolicy::default();
    appraise_certificate_judged(
        der,
        &no_intel(),
        EntryJudges {
            policy: &intel,
            snp: None,
            nitro: Some(&judge),
        },
        BindingMode::Auto,
        UnixTime(at),
    )
}

fn pinned(pcr0: &str) -> NitroPolicy {
    NitroPolicy {
        pcr0: vec![pcr0.parse::<PcrValue>().expect("pcr")],
        ..NitroPolicy::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ratls-evervault-{}-{name}", std::process::id()))
}

#[test]
fn the_real_evervault_certificates_verify_to_aws_at_their_own_timestamps() {
    let dir = scratch("real");
    let crls = aws_collateral(&dir);
    let der = real_der(REAL);
    let policy = pinned(REAL_PCR0);
    let c = judge_real(&der, &policy, &crls, REAL_AT + 60);
    assert_eq!(c.refusal(), None, "{c:?}");
    assert_eq!(c.tee(), Some("nitro"));
    assert_eq!(c.binding, Some(Binding::Evervault));
    let nitro = c.nitro.as_ref().expect("nitro");
    let id = nitro.identity.as_ref().expect("verified");
    assert_eq!(id.module_id, "i-0ec0e572c8263d8ff-enc0185c4fd382eeb25");
    assert_eq!(id.timestamp_ms, 1_674_047_239_280);
    let spki = {
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        hex::encode(cert.public_key().raw)
    };
    assert!(spki.starts_with(REAL_SPKI_PREFIX), "{spki}");
    // Another image, and an hour after the three-hour signing certificate.
    let c = judge_real(&der, &pinned(&"00".repeat(48)), &crls, REAL_AT + 60);
    assert_eq!(c.refusal().map(|r| r.code), Some(RefusalCode::PcrMismatch));
    let c = judge_real(&der, &policy, &crls, REAL_AT + 4 * 3600);
    assert_eq!(
        c.refusal().map(|r| r.code),
        Some(RefusalCode::CertificateExpired),
        "{c:?}"
    );
    // The debug enclave's document: genuine, refused as debug unless allowed.
    let debug = real_der(REAL_DEBUG);
    let zeros = pinned(&"00".repeat(48));
    let c = judge_real(&debug, &zeros, &crls, REAL_DEBUG_AT + 60);
    assert_eq!(c.refusal().map(|r| r.code), Some(RefusalCode::DebugEnclave));
    let allowed = NitroPolicy {
        allow_debug: true,
        ..zeros
    };
    let c = judge_real(&debug, &allowed, &crls, REAL_DEBUG_AT + 60);
    assert_eq!(c.refusal(), None, "{c:?}");
    assert_eq!(c.binding, Some(Binding::Evervault));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_reads_the_real_certificate_and_names_the_binding() {
    let dir = scratch("cli");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REAL);
    let run = |extra: &[&str]| {
        let mut cmd = common::cli::command();
        cmd.arg("verify")
            .arg("--cert")
            .arg(&path)
            .arg("--at")
            .arg((REAL_AT + 60).to_string())
            .arg("--collateral")
            .arg(&dir)
            .arg("--json")
            .args(extra);
        let out = cmd.output().expect("the binary runs");
        (out.status.code(), common::cli::json(&out))
    };
    // Recognised by content; chain, signature and binding hold; AWS's 2023 CRLs cannot be had
    // and `verify` requires them as the proxy does: could not check (exit 2).
    let (code, j) = run(&[]);
    assert_eq!(
        (code, j["code"].as_str()),
        (Some(2), Some("collateral_unavailable")),
        "{j}"
    );
    assert_eq!(j["binding"], "evervault", "{j}");
    assert_eq!(j["quote"]["pcrs"]["0"], REAL_PCR0, "{j}");
    // The PCR policy is judged before revocation.
    let (code, j) = run(&["--pcr0", &"11".repeat(48)]);
    assert_eq!(
        (code, j["code"].as_str()),
        (Some(1), Some("pcr_mismatch")),
        "{j}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PEM file of `der` in `env`'s directory.
fn pem_file(env: &Env, der: &[u8], name: &str) -> PathBuf {
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let path = env.dir.join(name);
    std::fs::write(
        &path,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_sim_evervault_enclave_by_url_and_by_file() {
    let env = env();
    let pki = nitro_pki(&env);
    let sim = start_sim(&env, spec(&pki, |_| {})).await;
    let root = env.dir.join("pki/nitro-root.pem");
    let crls = env.dir.join("pki/collateral/nitro");
    let verify = |target: Vec<String>| {
        let mut cmd = common::cli::command();
        cmd.arg("verify")
            .args(target)
            .arg("--trust-root")
            .arg(&root)
            .arg("--collateral")
            .arg(&crls)
            .arg("--json");
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .expect("join")
                .expect("the binary runs");
            (out.status.code(), common::cli::json(&out))
        }
    };
    let url = format!("https://{}", sim.addr());
    let (code, j) = verify(vec![url, "--tee".into(), "nitro".into()]).await;
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(j["binding"], "evervault", "{j}");
    assert_eq!(j["quote"]["pcrs"]["0"], hex::encode(PCR0));
    let good = ratls_identity(&env.pki, &spec(&pki, |_| {}), env.now).expect("cert");
    let file = pem_file(&env, &good.cert_der, "good.pem");
    let (code, j) = verify(vec!["--cert".into(), file.display().to_string()]).await;
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(j["binding"], "evervault", "{j}");
    let wrong =
        ratls_identity(&env.pki, &spec(&pki, |s| s.wrong_key = true), env.now).expect("cert");
    let file = pem_file(&env, &wrong.cert_der, "wrong.pem");
    let (code, j) = verify(vec!["--cert".into(), file.display().to_string()]).await;
    assert_eq!(
        (code, j["code"].as_str()),
        (Some(1), Some("binding_mismatch")),
        "{j}"
    );
}

/// Where the real certificate's hex document lies in its DER.
fn hex_span(der: &[u8]) -> std::ops::Range<usize> {
    let needle = b"8444a1013822a0";
    let start = der
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the document's hex");
    let len = der[start..]
        .iter()
        .position(|b| *b == b'.')
        .expect("a dot after the label");
    start..start + len
}

fn document_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    ratls_proxy::ratls::evervault::find(&cert)
        .ok()
        .flatten()
        .map(|s| s.decode())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// The real certificate with bytes of its subjectAltName overwritten (inside the hex
    /// label, or just around it): never a panic, and never a changed document accepted.
    #[test]
    fn a_mutated_subject_alt_name_never_has_a_changed_document_accepted(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0usize..3), 1..4)
    ) {
        static CRLS: std::sync::OnceLock<NitroCrlCache> = std::sync::OnceLock::new();
        let crls = CRLS.get_or_init(|| aws_collateral(&scratch("mutations")));
        let der = real_der(REAL);
        let original = document_of(&der).expect("the genuine document");
        let span = hex_span(&der);
        let mut mutated = der.clone();
        for (at, byte, kind) in edits {
            // Mostly inside the label, sometimes over the DER around it.
            let range = if kind == 0 { span.start.saturating_sub(16)..span.end + 16 } else { span.clone() };
            let i = range.start + at.index(range.len());
            mutated[i] = match kind {
                // A plausible hex digit, upper or lower case.
                1 => b"0123456789abcdefABCDEF"[usize::from(byte) % 22],
                _ => byte,
            };
        }
        let c = judge_real(&mutated, &pinned(REAL_PCR0), crls, REAL_AT + 60);
        match c.refusal() {
            None => prop_assert_eq!(document_of(&mutated), Some(original)),
            Some(r) => prop_assert!(!r.reasons.is_empty(), "a refusal says why: {:?}", r),
        }
    }

    /// Arbitrary DNS names: the carrier reader returns (no panic), and what it accepts is
    /// lowercase hex of even length, once.
    #[test]
    fn the_carrier_reader_on_arbitrary_names(names in proptest::collection::vec("[0-9a-fA-F.xz]{0,200}", 0..6)) {
        if let Ok(Some(san)) = ratls_proxy::ratls::evervault::in_names(names.iter().map(String::as_str)) {
            prop_assert!(san.hex().len() > 63 && san.hex().len().is_multiple_of(2));
            prop_assert!(san.hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert_eq!(san.decode().len(), san.hex().len() / 2);
        }
    }
}
