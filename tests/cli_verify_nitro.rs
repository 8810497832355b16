//! `ratls-proxy verify --quote` on AWS Nitro Enclaves evidence, run as a real process: the
//! real documents (inside dstack's V0 envelope, as captured, and the raw COSE_Sign1 the
//! dstack parser finds in them) verify offline to the pinned AWS root at their own timestamps
//! (exit 0, the documented JSON shape); the debug one is refused unless allowed; a policy
//! mismatch, a mutated document, an envelope moved to other report data, a late check and a
//! TEE mismatch are refused with their code (exit 1).

mod common;

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use common::json;

/// The real dstack-wrapped production document and its timestamp (seconds).
const DSTACK: &str = "nitro_attestation.bin";
const DSTACK_AT: &str = "1766678659";
/// The raw NSM capture (also wrapped by dstack's V0 envelope).
const NSM: &str = "nsm_qvl_nitro_attestation.bin";
const NSM_AT: &str = "1766668537";
/// The debug-mode enclave's document.
const DEBUG: &str = "nitro_attestation_dbg.bin";
const DEBUG_AT: &str = "1766650846";
const PCR0: &str = "eb7d0dab08ff41546d7e5659aee883af7b32bb2e58e46815b719f9f7bfae7b880188a10d86317e6509923740526cf74a";
const PCR1: &str = "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa";
const PCR2: &str = "d7b0a76788c1be24898bd148117ea1239578ba0e72f5d87a33a6c6476026675b6f996940f062e0e3f0b5edd2ddf78811";
const PCR4: &str = "7b3574ad9b7e88ec8335e8ce967315fac77218441e97eea9795de704d7f2678d0b298ecda39b544c1689669f48cba5e8";

fn verify(args: &[&str]) -> Output {
    common::output(std::iter::once("verify").chain(args.iter().copied()))
}

fn code(out: &Output) -> (Option<i32>, Value) {
    (out.status.code(), json(out)["code"].clone())
}

/// The real fixtures and a scratch directory for mutated copies.
struct Real {
    dir: PathBuf,
    fixtures: PathBuf,
}

fn real(name: &str) -> Option<Real> {
    let fixtures = common::fixtures()?.join("dstack");
    if !fixtures.join(DSTACK).is_file() {
        eprintln!("NOTICE: Nitro fixtures not found (set RATLS_FIXTURES)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("ratls-cli-nitro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    Some(Real { dir, fixtures })
}

impl Real {
    fn path(&self, fixture: &str) -> String {
        self.fixtures.join(fixture).display().to_string()
    }

    fn bytes(&self, fixture: &str) -> Vec<u8> {
        std::fs::read(self.fixtures.join(fixture)).expect("read fixture")
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p.display().to_string()
    }

    /// The COSE_Sign1 inside a fixture's dstack envelope, as the dstack parser finds it,
    /// with its offset in the file (for mutating the envelope around it).
    fn cose(&self, fixture: &str) -> (Vec<u8>, usize) {
        let bytes = self.bytes(fixture);
        let att = ratls_proxy::dstack::Attestation::parse(&bytes).expect("a dstack attestation");
        let ratls_proxy::dstack::Platform::NitroEnclave { nsm_quote } = &att.platform else {
            panic!("a Nitro Enclave attestation");
        };
        let at = nsm_quote.as_ptr().addr() - bytes.as_ptr().addr();
        (nsm_quote.to_vec(), at)
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_real_documents_verify_at_their_timestamps_with_the_documented_json() {
    let Some(r) = real("accepted") else { return };
    let out = verify(&[
        "--quote",
        &r.path(DSTACK),
        "--at",
        DSTACK_AT,
        "--pcr0",
        PCR0,
        "--pcr1",
        PCR1,
        "--pcr2",
        PCR2,
        "--pcr4",
        PCR4,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let j = json(&out);
    assert_eq!(j["verdict"], "accepted");
    assert_eq!(j["code"], Value::Null);
    assert_eq!(j["reasons"], serde_json::json!([]));
    assert_eq!(j["quote"]["tee"], "NITRO");
    assert_eq!(j["quote"]["debug"], false);
    assert_eq!(
        j["quote"]["module_id"],
        "i-0827e799ec9232d44-enc019b5640fdf630d6"
    );
    assert_eq!(j["quote"]["timestamp"], 1_766_678_659_346_u64);
    assert_eq!(j["quote"]["pcrs"]["0"], PCR0);
    assert_eq!(j["quote"]["pcrs"]["2"], PCR2);
    assert_eq!(j["quote"]["pcrs"].as_object().map(|m| m.len()), Some(16));
    // dstack's binding: user_data is the envelope's report data.
    assert_eq!(j["binding"], "dstack");
    assert!(j["quote"]["user_data"]
        .as_str()
        .expect("hex")
        .starts_with("e3b0c44298fc1c14"));
    assert_eq!(j["tcb"], Value::Null);
    assert_eq!(j["cert_sha256"], Value::Null);
    assert_eq!(
        j["revocation"]["unchecked"],
        serde_json::json!(["cabundle[1]", "cabundle[2]"])
    );
    assert_eq!(j["verified_at"], "2025-12-25T16:04:19Z");

    // The raw NSM capture, and the bare COSE_Sign1 the dstack parser finds in it.
    let out = verify(&["--quote", &r.path(NSM), "--at", NSM_AT, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let (cose, _) = r.cose(NSM);
    let raw = r.write("raw.cose", &cose);
    let out = verify(&["--quote", &raw, "--at", NSM_AT, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    let j = json(&out);
    assert_eq!(j["quote"]["tee"], "NITRO");
    assert_eq!(j["binding"], Value::Null, "a bare document has no carrier");
    assert_eq!(
        j["quote"]["module_id"],
        "i-0827e799ec9232d44-enc019b55a68bd2ed4b"
    );

    // The text report says the same.
    let (status, text) = common::cli::run(["verify", "--quote", &raw, "--at", NSM_AT]);
    assert_eq!(status, 0, "{text}");
    assert!(text.starts_with("ACCEPTED\n"), "{text}");
    assert!(text.contains("NITRO i-0827e799ec9232d44"), "{text}");
}

#[test]
fn the_debug_enclave_is_refused_unless_allowed() {
    let Some(r) = real("debug") else { return };
    let out = verify(&["--quote", &r.path(DEBUG), "--at", DEBUG_AT, "--json"]);
    assert_eq!(code(&out), (Some(1), "debug_enclave".into()));
    assert_eq!(json(&out)["quote"]["debug"], true);
    let out = verify(&[
        "--quote",
        &r.path(DEBUG),
        "--at",
        DEBUG_AT,
        "--allow-debug",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    // Allowing debug does not waive the PCRs: a debug enclave's PCR0 is zeros.
    let out = verify(&[
        "--quote",
        &r.path(DEBUG),
        "--at",
        DEBUG_AT,
        "--allow-debug",
        "--pcr0",
        PCR0,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(1), "pcr_mismatch".into()));
}

#[test]
fn policy_mismatches_and_late_checks_are_refused_with_their_code() {
    let Some(r) = real("policy") else { return };
    let doc = r.path(DSTACK);
    let other = "ab".repeat(48);
    for flag in ["--pcr0", "--pcr1", "--pcr2", "--pcr3", "--pcr4", "--pcr8"] {
        let out = verify(&["--quote", &doc, "--at", DSTACK_AT, flag, &other, "--json"]);
        assert_eq!(code(&out), (Some(1), "pcr_mismatch".into()), "{flag}");
        let reasons = json(&out)["reasons"].to_string();
        assert!(reasons.contains(&format!("PCR{}", &flag[5..])), "{reasons}");
    }
    // An allow-list holding the value among others accepts.
    let out = verify(&[
        "--quote", &doc, "--at", DSTACK_AT, "--pcr0", &other, "--pcr0", PCR0, "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    // The document's age (--max-cert-age-secs, as max_cert_age_secs for a Nitro entry).
    let later = (DSTACK_AT.parse::<i64>().expect("n") + 120).to_string();
    let out = verify(&[
        "--quote",
        &doc,
        "--at",
        &later,
        "--max-cert-age-secs",
        "60",
        "--json",
    ]);
    assert_eq!(code(&out), (Some(1), "document_too_old".into()));
    let out = verify(&[
        "--quote",
        &doc,
        "--at",
        &later,
        "--max-cert-age-secs",
        "600",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
    // An hour after the signing certificate's three hours: expired.
    let late = (DSTACK_AT.parse::<i64>().expect("n") + 4 * 3600).to_string();
    let out = verify(&["--quote", &doc, "--at", &late, "--json"]);
    assert_eq!(code(&out), (Some(1), "certificate_expired".into()));
    // Today: the intermediates have expired too; still refused, never accepted.
    let out = verify(&["--quote", &doc, "--json"]);
    assert_eq!(code(&out), (Some(1), "certificate_expired".into()));
    // A PCR of the wrong length is a usage error (exit 2), not a silent mismatch.
    let out = verify(&["--quote", &doc, "--pcr0", "abcd"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn mutated_documents_and_envelopes_are_refused_with_their_code() {
    let Some(r) = real("mutated") else { return };
    let (cose, at) = r.cose(DSTACK);
    let file = r.bytes(DSTACK);
    let parsed = ratls_proxy::nitro::parse(&cose).expect("parses");
    let offset = |field: &[u8]| field.as_ptr().addr() - cose.as_ptr().addr();
    let flip = |i: usize| {
        let mut m = cose.clone();
        m[i] ^= 0x01;
        m
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // The COSE signature (the last bytes).
        ("signature", flip(cose.len() - 1), "signature_invalid"),
        // A PCR byte inside the signed payload.
        (
            "pcr2",
            flip(offset(parsed.doc.pcrs.get(2).expect("pcr2").0) + 3),
            "signature_invalid",
        ),
        // The signing certificate's own signature (its last byte).
        (
            "leaf",
            flip(offset(parsed.doc.certificate) + parsed.doc.certificate.len() - 1),
            "chain_invalid",
        ),
        // The bundle's root: no longer the pinned one.
        (
            "bundle-root",
            flip(offset(parsed.doc.cabundle[0]) + 40),
            "chain_invalid",
        ),
        // Truncated.
        (
            "truncated",
            cose[..cose.len() - 10].to_vec(),
            "quote_malformed",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = r.write(&format!("{name}.cose"), &bytes);
        let out = verify(&["--quote", &p, "--at", DSTACK_AT, "--json"]);
        assert_eq!(
            code(&out),
            (Some(1), want.into()),
            "{name}: {}",
            common::printed(&out)
        );
    }
    // The same document moved to an envelope with other report data: the binding breaks.
    let report_data = parsed.doc.user_data.expect("user_data");
    let tail = &file[at + cose.len()..];
    let rd = tail
        .windows(report_data.len())
        .position(|w| w == report_data)
        .expect("the envelope holds the report data after the document");
    let mut moved = file.clone();
    moved[at + cose.len() + rd + 40] ^= 0xff;
    let p = r.write("moved.bin", &moved);
    let out = verify(&["--quote", &p, "--at", DSTACK_AT, "--json"]);
    assert_eq!(code(&out), (Some(1), "binding_mismatch".into()));
    assert_eq!(json(&out)["binding"], "dstack");
    // A CRL that is not one is refused, never ignored.
    let crl = r.write("bogus.crl", b"not a CRL");
    let out = verify(&[
        "--quote",
        &r.path(DSTACK),
        "--at",
        DSTACK_AT,
        "--collateral",
        &crl,
        "--json",
    ]);
    assert_eq!(code(&out), (Some(1), "chain_invalid".into()));
}

#[test]
fn nitro_evidence_under_another_tee_is_a_tee_mismatch() {
    let Some(r) = real("tee") else { return };
    let out = verify(&["--quote", &r.path(DSTACK), "--tee", "sgx", "--json"]);
    assert_eq!(code(&out), (Some(1), "tee_mismatch".into()));
    let out = verify(&["--quote", &r.path(DSTACK), "--tee", "snp", "--json"]);
    assert_eq!(code(&out), (Some(1), "tee_mismatch".into()));
    // And SEV-SNP evidence under --tee nitro.
    let snp = r.path("sev_snp_attestation.bin");
    let out = verify(&["--quote", &snp, "--tee", "nitro", "--json"]);
    assert_eq!(code(&out), (Some(1), "tee_mismatch".into()));
    // --tee nitro names the evidence explicitly: accepted as without it.
    let out = verify(&[
        "--quote",
        &r.path(DSTACK),
        "--tee",
        "nitro",
        "--at",
        DSTACK_AT,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::printed(&out));
}
