//! EDGE. SEV-SNP collateral from a directory: the offline form of what KDS serves. Every
//! `*.pem`, `*.der`, `*.crt`, `*.cer` and `*.crl` file is read (PEM or DER, any name, any
//! order; a `cert_chain` PEM holds two certificates) and sorted by what it is: an ASK or
//! ASVK by its subject, a copy of an ARK (compared to the pin), a VCEK, a product CRL by its
//! issuer. Chains are verified to the pinned ARKs with the product's newest CRL that
//! verifies (an older one beside it is not used: the same rollback rule as KDS's), VCEKs
//! under their chain; what does not verify is skipped and named, never used. A chain whose
//! product has no CRL in the directory is not used either (as KDS's without its CRL: its
//! revocation cannot be checked), except by `verify`, which says so ([`SnpFiles::load_without_crl`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::kds::{vcek_key, KdsError, SnpCollateralSource, VcekKey};
use crate::snp::chain::VerifiedChain;
use crate::snp::collateral::{classify, crl_product, vcek_index, SnpCertKind};
use crate::snp::report::SigningKey;
use crate::snp::verify::VerifiedVek;
use crate::snp::{Product, Report, SnpTrust};

/// Files read at most from one directory.
const MAX_FILES: usize = 1024;
/// A larger file is not read (AMD's certificates and CRLs take a few KB).
const MAX_FILE: u64 = 256 * 1024;

/// The verified chains and VCEKs a directory holds.
#[derive(Debug, Default)]
pub struct SnpFiles {
    chains: HashMap<(Product, SigningKey), Arc<VerifiedChain>>,
    /// Products whose ASK/ASVK the directory's CRL revokes: their reports are refused
    /// `revoked`, not merely without collateral.
    revoked: HashMap<(Product, SigningKey), crate::snp::SnpError>,
    veks: HashMap<VcekKey, Arc<VerifiedVek>>,
}

/// What one file holds: certificates and CRLs (DER).
#[derive(Default)]
struct Read {
    certs: Vec<(String, Vec<u8>)>,
    crls: Vec<(String, Vec<u8>)>,
}

fn read_file(path: &Path, out: &mut Read) -> Result<(), String> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("{len} bytes, more than {MAX_FILE}"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.starts_with(b"-----BEGIN") {
        for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
            let pem = pem.map_err(|e| format!("PEM: {e}"))?;
            match pem.label.as_str() {
                "CERTIFICATE" => out.certs.push((name.clone(), pem.contents)),
                "X509 CRL" => out.crls.push((name.clone(), pem.contents)),
                other => return Err(format!("PEM block `{other}`")),
            }
        }
    } else if path.extension().is_some_and(|x| x == "crl") {
        out.crls.push((name, bytes));
    } else {
        out.certs.push((name, bytes));
    }
    Ok(())
}

/// What a chain whose product has no CRL in the directory gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NoCrl {
    /// Skipped, named: the proxy's rule.
    Refused,
    /// Verified without one, named: `verify`'s offline use of KDS's chain and VCEK alone.
    Allowed,
}

impl SnpFiles {
    /// Loads `dir` against `trust`; returns what verified and, per skipped file or item,
    /// why. A chain without its product's CRL is skipped. Nothing verified is an error.
    pub fn load(dir: &Path, trust: &SnpTrust) -> Result<(Self, Vec<String>), String> {
        Self::load_with(dir, trust, NoCrl::Refused)
    }

    /// As [`Self::load`], except that a chain whose product has no CRL in `dir` is verified
    /// without one (a note says its revocation was not checked): for `verify` only.
    pub fn load_without_crl(dir: &Path, trust: &SnpTrust) -> Result<(Self, Vec<String>), String> {
        Self::load_with(dir, trust, NoCrl::Allowed)
    }

    fn load_with(
        dir: &Path,
        trust: &SnpTrust,
        no_crl: NoCrl,
    ) -> Result<(Self, Vec<String>), String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| ["pem", "der", "crt", "cer", "crl"].contains(&x))
            })
            .take(MAX_FILES)
            .collect();
        files.sort();
        let mut skipped = Vec::new();
        let mut read = Read::default();
        for f in &files {
            if let Err(e) = read_file(f, &mut read) {
                skipped.push(format!("{}: {e}", f.display()));
            }
        }
        let mut intermediates = Vec::new();
        let mut vcek_ders = Vec::new();
        for (name, der) in read.certs {
            match classify(&der) {
                Ok(SnpCertKind::Ark(p)) => {
                    if trust.ark(p).map(|a| a.der()) != Some(der.as_slice()) {
                        skipped.push(format!("{name}: an ARK-{p} that is not the pinned one"));
                    }
                }
                Ok(SnpCertKind::Ask(p)) => intermediates.push((name, p, SigningKey::Vcek, der)),
                Ok(SnpCertKind::Asvk(p)) => intermediates.push((name, p, SigningKey::Vlek, der)),
                Ok(SnpCertKind::Vcek) => vcek_ders.push((name, der)),
                Ok(SnpCertKind::Vlek) => skipped.push(format!(
                    "{name}: a VLEK (it comes with the evidence, not from a directory)"
                )),
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
        let mut crls: HashMap<Product, Vec<(String, Vec<u8>)>> = HashMap::new();
        for (name, der) in read.crls {
            match crl_product(&der) {
                Ok(p) => crls.entry(p).or_default().push((name, der)),
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
        let mut out = Self::default();
        for (name, product, kind, der) in intermediates {
            let crls = crls.get(&product);
            if crls.is_none() && no_crl == NoCrl::Refused {
                skipped.push(format!(
                    "{name}: no {product} CRL in the directory, so the chain's revocation cannot be checked: not used (save KDS's /vcek/v1/{product}/crl beside it)"
                ));
                continue;
            }
            if crls.is_none() {
                skipped.push(format!(
                    "{name}: no {product} CRL in the directory: used without a revocation check"
                ));
            }
            match verify_with_newest_crl(product, kind, &der, crls, trust) {
                Ok((chain, mut notes)) => {
                    skipped.append(&mut notes);
                    out.chains.insert((product, kind), Arc::new(chain));
                }
                Err(e) => {
                    skipped.push(format!("{name}: {e}"));
                    if matches!(e, crate::snp::SnpError::Revoked { .. }) {
                        out.revoked.insert((product, kind), e);
                    }
                }
            }
        }
        for (name, der) in vcek_ders {
            match out.add_vcek(&der) {
                Ok(()) => {}
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
        if out.veks.is_empty() && out.chains.is_empty() && out.revoked.is_empty() {
            return Err(format!(
                "{}: no usable SEV-SNP collateral ({})",
                dir.display(),
                skipped.join("; ")
            ));
        }
        Ok((out, skipped))
    }

    /// Verifies a VCEK under whichever held ASK issued it, and indexes it by chip and TCB.
    fn add_vcek(&mut self, der: &[u8]) -> Result<(), String> {
        let mut last = "no ASK in the directory".to_owned();
        for ((product, kind), chain) in &self.chains {
            if *kind != SigningKey::Vcek {
                continue;
            }
            match VerifiedVek::verify(der, Arc::clone(chain)) {
                Ok(vek) => {
                    let (chip, tcb) = vcek_index(vek.extensions())
                        .ok_or_else(|| "a VCEK without hwID".to_owned())?;
                    self.veks.insert((*product, chip, tcb), Arc::new(vek));
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// How many chains and VCEKs verified.
    pub fn counts(&self) -> (usize, usize) {
        (self.chains.len(), self.veks.len())
    }
}

/// The chain with the newest (by thisUpdate) of `crls` that verifies; the notes name the
/// CRLs not used. With no CRL for the product (allowed by the caller), the chain is verified
/// without one.
fn verify_with_newest_crl(
    product: Product,
    kind: SigningKey,
    der: &[u8],
    crls: Option<&Vec<(String, Vec<u8>)>>,
    trust: &SnpTrust,
) -> Result<(VerifiedChain, Vec<String>), crate::snp::SnpError> {
    let mut notes = Vec::new();
    let mut best: Option<VerifiedChain> = None;
    let mut last_err = None;
    for (name, crl) in crls.into_iter().flatten() {
        match VerifiedChain::verify(product, kind, der, Some(crl), trust) {
            Ok(c) => {
                let newer = best
                    .as_ref()
                    .is_none_or(|b| c.crl_this_update() > b.crl_this_update());
                if newer {
                    best = Some(c);
                } else {
                    notes.push(format!(
                        "{name}: an older {product} CRL than another; not used"
                    ));
                }
            }
            // A revoked ASK stays revoked whatever another file says.
            Err(e @ crate::snp::SnpError::Revoked { .. }) => return Err(e),
            Err(e) => {
                notes.push(format!("{name}: {e}"));
                last_err = Some(e);
            }
        }
    }
    match (best, last_err) {
        (Some(c), _) => Ok((c, notes)),
        // Every CRL given fails: refused, not silently verified without one.
        (None, Some(e)) => Err(e),
        (None, None) => VerifiedChain::verify(product, kind, der, None, trust).map(|c| (c, notes)),
    }
}

impl SnpCollateralSource for SnpFiles {
    fn chain_for(&self, product: Product, kind: SigningKey) -> Option<Arc<VerifiedChain>> {
        self.chains.get(&(product, kind)).cloned()
    }

    fn vek_for(&self, report: &Report<'_>) -> Result<Arc<VerifiedVek>, KdsError> {
        let key = vcek_key(report)?;
        if let Some(e) = self.revoked.get(&(key.0, SigningKey::Vcek)) {
            return Err(KdsError::Invalid(e.clone()));
        }
        self.veks.get(&key).cloned().ok_or_else(|| {
            KdsError::Unavailable(format!(
                "no VCEK in the directory for this {} chip ({}…) at its reported TCB ({})",
                key.0,
                hex::encode(key.1.get(..8).unwrap_or_default()),
                key.2
            ))
        })
    }
}
