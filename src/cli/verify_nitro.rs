//! `ratls-proxy verify --quote FILE` for AWS Nitro Enclaves evidence: a raw NSM attestation
//! document (COSE_Sign1) or a dstack attestation carrying one (recognised by content). The
//! only collateral is the pinned AWS root (or `--trust-root`), plus any DER CRLs given with
//! `--collateral FILE|DIR`; the policy from the flags. Same exit codes and JSON shape as for
//! SGX/TDX and SEV-SNP (`quote.tee` is `NITRO`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::appraise::nitro_policy::{self, NitroPolicy, NitroViolation};
use crate::dcap::time::UnixTime;
use crate::dstack::{Attestation, Platform};
use crate::nitro::binding::user_data_is_dstack_report_data;
use crate::nitro::revocation::{self, Crl, Revocation};
use crate::nitro::{self, NitroRoot};

/// Nitro evidence found in a `--quote` file.
pub(super) enum NitroEvidence<'a> {
    /// A raw COSE_Sign1 attestation document.
    Raw(&'a [u8]),
    /// A dstack attestation whose platform is a Nitro Enclave.
    Dstack {
        /// The COSE_Sign1 it carries.
        cose: Vec<u8>,
        /// The envelope's report data, which `user_data` must equal.
        report_data: [u8; 64],
    },
}

/// Recognises a raw COSE_Sign1 by content: a four-element CBOR array (`0x84`) or the same
/// behind COSE_Sign1's tag 18 (`0xd2`), whose first element is a byte string (the protected
/// header). Neither a DCAP quote (version 3–5 LE) nor an SEV-SNP report nor a dstack
/// envelope starts so.
pub(super) fn looks_like_cose(bytes: &[u8]) -> bool {
    match bytes {
        [0x84, second, ..] | [0xd2, 0x84, second, ..] => (0x40..=0x5b).contains(second),
        _ => false,
    }
}

/// Nitro evidence in a dstack attestation `a`, if its platform is a Nitro Enclave.
pub(super) fn of_dstack(a: &Attestation<'_>) -> Option<NitroEvidence<'static>> {
    match &a.platform {
        Platform::NitroEnclave { nsm_quote } => Some(NitroEvidence::Dstack {
            cose: nsm_quote.to_vec(),
            report_data: a.stack.report_data,
        }),
        _ => None,
    }
}

/// What `verify` was asked, as far as Nitro evidence needs it.
pub(super) struct NitroOptions<'a> {
    /// The policy the flags describe (an empty `pcr0` reads any image: see [`judge`]).
    pub policy: NitroPolicy,
    /// `--collateral`: DER CRLs, one file or a directory of them.
    pub collateral: Option<&'a Path>,
    /// `--at`.
    pub at: Option<&'a str>,
    /// `--json`.
    pub json: bool,
}

/// The JSON report (the fields of SGX/TDX's `verify --json`; `quote` holds Nitro's fields).
#[derive(Serialize)]
struct NitroJson {
    verdict: &'static str,
    code: Option<&'static str>,
    reasons: Vec<String>,
    quote: Option<NitroQuoteJson>,
    tcb: Option<()>,
    binding: Option<&'static str>,
    cert_sha256: Option<crate::dcap::ids::CertSha256>,
    /// The chain's certificates checked against a CRL, and those no CRL covered.
    revocation: Option<RevocationJson>,
    verified_at: String,
}

#[derive(Serialize)]
struct RevocationJson {
    checked: Vec<String>,
    unchecked: Vec<String>,
}

#[derive(Serialize)]
struct NitroQuoteJson {
    tee: &'static str,
    debug: bool,
    module_id: String,
    digest: &'static str,
    /// Milliseconds since the epoch, as the document holds it.
    timestamp: u64,
    /// The same instant, RFC 3339 (whole seconds).
    timestamp_rfc3339: String,
    pcrs: BTreeMap<usize, String>,
    public_key: Option<String>,
    user_data: Option<String>,
    nonce: Option<String>,
}

impl NitroQuoteJson {
    /// What a verified document showed the proxy's judgement (the optional fields it does
    /// not keep are null).
    fn of_identity(id: &crate::appraise::nitro_policy::NitroIdentity) -> Self {
        Self {
            tee: "NITRO",
            debug: id.debug,
            module_id: id.module_id.clone(),
            digest: "SHA384",
            timestamp: id.timestamp_ms,
            timestamp_rfc3339: UnixTime(i64::try_from(id.timestamp_ms / 1000).unwrap_or(i64::MAX))
                .to_rfc3339(),
            pcrs: id.pcrs.iter().cloned().collect(),
            public_key: None,
            user_data: None,
            nonce: None,
        }
    }

    fn of(doc: &nitro::AttestationDoc<'_>) -> Self {
        Self {
            tee: "NITRO",
            debug: doc.is_debug(),
            module_id: doc.module_id.to_owned(),
            digest: "SHA384",
            timestamp: doc.timestamp_ms,
            timestamp_rfc3339: UnixTime(doc.timestamp_secs()).to_rfc3339(),
            pcrs: doc.pcrs.iter().map(|(i, p)| (i, p.to_string())).collect(),
            public_key: doc.public_key.map(hex::encode),
            user_data: doc.user_data.map(hex::encode),
            nonce: doc.nonce.map(hex::encode),
        }
    }
}

/// A refusal or acceptance, before printing.
#[derive(Default)]
struct Outcome {
    code: Option<&'static str>,
    reasons: Vec<String>,
    quote: Option<NitroQuoteJson>,
    binding: Option<&'static str>,
    revocation: Option<RevocationJson>,
}

impl Outcome {
    fn refuse(&mut self, code: &'static str, reason: impl Into<String>) {
        self.code = Some(code);
        self.reasons.push(reason.into());
    }
}

/// The DER CRLs `--collateral` names: one file, or every regular file in a directory.
fn read_crls(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    if !path.is_dir() {
        return Ok(vec![
            std::fs::read(path).with_context(|| format!("cannot read CRL {}", path.display()))?
        ]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)
        .with_context(|| format!("cannot read directory {}", path.display()))?
    {
        let p = entry?.path();
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read CRL {}", p.display())))
        .collect()
}

/// Steps in `docs/nitro.md`'s order: parse, chain, signature, timestamp (the core's
/// [`nitro::verify`]); then revocation over the CRLs given, the dstack binding, the policy.
fn judge(
    args: &NitroOptions<'_>,
    evidence: &NitroEvidence<'_>,
    root: &NitroRoot,
    crls: &[Vec<u8>],
    now: UnixTime,
) -> Outcome {
    let mut out = Outcome::default();
    let (bytes, dstack) = match evidence {
        NitroEvidence::Raw(b) => (*b, None),
        NitroEvidence::Dstack { cose, report_data } => (cose.as_slice(), Some(report_data)),
    };
    let parsed = match nitro::parse(bytes) {
        Ok(p) => p,
        Err(e) => {
            out.refuse("quote_malformed", e.to_string());
            return out;
        }
    };
    out.quote = Some(NitroQuoteJson::of(&parsed.doc));
    let verified = match nitro::verify(&parsed, root, now) {
        Ok(v) => v,
        Err(e) => {
            out.refuse(nitro_policy::error_code(&e), e.to_string());
            return out;
        }
    };
    let parsed_crls: Result<Vec<Crl<'_>>, _> = crls.iter().map(|c| Crl::parse(c)).collect();
    let status = parsed_crls
        .and_then(|c| revocation::check(&verified, root, &c, now, Revocation::IfSupplied));
    match status {
        Ok(s) => {
            out.revocation = Some(RevocationJson {
                checked: s.checked,
                unchecked: s.unchecked,
            })
        }
        Err(e) => {
            out.refuse(nitro_policy::error_code(&e), e.to_string());
            return out;
        }
    }
    if let Some(report_data) = dstack {
        out.binding = Some("dstack");
        if let Err(e) = user_data_is_dstack_report_data(verified.doc(), report_data) {
            out.refuse("binding_mismatch", e.to_string());
            return out;
        }
    }
    // A one-shot check reads any image when no --pcr0 is given, as `verify` reads any
    // MRENCLAVE without --mrenclave; the policy core refuses an empty PCR0 list, which is
    // right for a proxy entry (one pinning no image admits every enclave), not for a reading.
    let any_image = args.policy.pcr0.is_empty();
    let violations: Vec<NitroViolation> = nitro_policy::evaluate(&args.policy, &verified, now)
        .into_iter()
        .filter(|v| !(any_image && matches!(v, NitroViolation::Pcr { index: 0, .. })))
        .collect();
    if let Some(first) = violations.first() {
        out.code = Some(first.code());
        out.reasons = violations.iter().map(ToString::to_string).collect();
    }
    out
}

/// Verifies Nitro evidence and prints the verdict; the exit code as for SGX/TDX.
pub(super) fn run(
    args: &NitroOptions<'_>,
    evidence: Result<NitroEvidence<'_>, (&'static str, String)>,
    root: &NitroRoot,
) -> anyhow::Result<ExitCode> {
    let at = args.at.map(UnixTime::parse).transpose()?;
    let now = at.unwrap_or_else(UnixTime::now);
    let crls = args
        .collateral
        .map(read_crls)
        .transpose()?
        .unwrap_or_default();
    let out = match evidence {
        Ok(e) => judge(args, &e, root, &crls, now),
        Err((code, e)) => {
            let mut out = Outcome::default();
            out.refuse(code, e);
            out
        }
    };
    print(args, out, None, now)
}

/// Prints the verdict of a certificate judged as the proxy judges it (`verify_nitro_cert`).
pub(super) fn print_certificate(
    args: &NitroOptions<'_>,
    c: &crate::ratls::CertAppraisal,
    now: UnixTime,
) -> anyhow::Result<ExitCode> {
    let refusal = c.refusal();
    let nitro = c.nitro.as_deref();
    let out = Outcome {
        code: refusal.map(|r| r.code.as_str()),
        reasons: refusal.map(|r| r.reasons.clone()).unwrap_or_default(),
        quote: nitro
            .and_then(|n| n.identity.as_ref())
            .map(NitroQuoteJson::of_identity),
        binding: c.binding.map(|b| b.as_str()),
        revocation: nitro
            .and_then(|n| n.outcome.as_ref().ok())
            .map(|a| RevocationJson {
                checked: a.revocation().checked.clone(),
                unchecked: a.revocation().unchecked.clone(),
            }),
    };
    print(args, out, Some(c.cert_sha256), now)
}

/// Prints `out` as text or JSON; the exit code as for SGX/TDX.
fn print(
    args: &NitroOptions<'_>,
    out: Outcome,
    cert_sha256: Option<crate::dcap::ids::CertSha256>,
    now: UnixTime,
) -> anyhow::Result<ExitCode> {
    let json = NitroJson {
        verdict: super::report::verdict_word(out.code),
        code: out.code,
        reasons: out.reasons,
        quote: out.quote,
        tcb: None,
        binding: out.binding,
        cert_sha256,
        revocation: out.revocation,
        verified_at: now.to_rfc3339(),
    };
    super::report::finish(&json, args.json, text, json.code)
}

/// The Nitro half of the flags (taken as values: this module never sees `VerifyArgs`, so
/// `verify` imports it and not the reverse).
pub(super) fn options<'a>(
    policy: NitroPolicy,
    collateral: Option<&'a str>,
    at: Option<&'a str>,
    json: bool,
) -> anyhow::Result<NitroOptions<'a>> {
    let collateral = match collateral {
        None => None,
        Some(spec) if spec == "pcs" || spec.contains("://") => bail!(
            "AWS Nitro evidence needs no fetched collateral: --collateral takes a DER CRL file or a directory of them"
        ),
        Some(spec) => Some(Path::new(spec)),
    };
    Ok(NitroOptions {
        policy,
        collateral,
        at,
        json,
    })
}

/// The pinned AWS root, or the one root (PEM) in `--trust-root` (test PKI only).
pub(super) fn root(path: Option<&Path>) -> anyhow::Result<NitroRoot> {
    let Some(path) = path else {
        return Ok(NitroRoot::aws());
    };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read trust root {}", path.display()))?;
    let mut ders = crate::dcap::pki::pem_chain(&pem, "trust root PEM")?;
    if ders.len() != 1 {
        bail!(
            "{}: give exactly one Nitro root certificate",
            path.display()
        );
    }
    let der = ders.remove(0);
    NitroRoot::from_der(der)
        .with_context(|| format!("{} is not a usable Nitro root", path.display()))
}

fn text(j: &NitroJson) -> String {
    let mut out = super::report::verdict_head(j.code, &j.reasons);
    if let Some(q) = &j.quote {
        let parsed = super::report::parsed_note(j.code.is_some());
        out.push_str(&format!("  quote        NITRO {}{parsed}\n", q.module_id));
        out.push_str(&format!(
            "  timestamp    {} ({} ms)\n",
            q.timestamp_rfc3339, q.timestamp
        ));
        out.push_str(&format!("  debug        {}\n", q.debug));
        for (i, v) in &q.pcrs {
            out.push_str(&format!("  pcr{i:<9} {v}\n"));
        }
    }
    if let Some(b) = j.binding {
        out.push_str(&format!("  binding      {b}\n"));
    }
    out.push_str(&format!("  verified at  {}\n", j.verified_at));
    out
}
