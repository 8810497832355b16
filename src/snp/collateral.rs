//! PURE. The collateral one report needs, as the exact bytes served: the ASK or ASVK (from
//! KDS's `cert_chain`, which also carries a copy of the ARK), the VCEK or VLEK, and the
//! product's CRL when there is one. No I/O: `source/` (phase 2) fetches, this parses.

use std::sync::Arc;

use super::cert;
use super::chain::VerifiedChain;
use super::error::{CertRole, SnpError};
use super::extension::{self, VekExtensions};
use super::product::Product;
use super::product::Tcb;
use super::report::{Report, SigningKey};
use super::trust::SnpTrust;
use super::verified::VerifiedReport;
use super::verify::{verify, VerifiedVek};
use crate::dcap::pki;
use crate::dcap::time::UnixTime;

/// The certificates (DER) and CRL for one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpCollateral {
    /// The ASK (VCEK-signed reports) or the ASVK (VLEK-signed reports).
    pub intermediate: Vec<u8>,
    /// The copy of the ARK that came with it, if any: it must be byte-identical to the pin.
    pub ark_copy: Option<Vec<u8>>,
    /// The VCEK or VLEK.
    pub vek: Vec<u8>,
    /// The product's CRL (DER), when supplied.
    pub crl: Option<Vec<u8>>,
}

impl SnpCollateral {
    /// From PEM texts: `chain` is KDS's `cert_chain` (ASK or ASVK, then ARK) or the
    /// intermediate alone; `vek` holds one certificate.
    pub fn from_pem(chain: &[u8], vek: &[u8], crl: Option<Vec<u8>>) -> Result<Self, SnpError> {
        let mut certs = pki::pem_chain(chain, "SEV-SNP cert_chain")
            .map_err(|e| SnpError::cert(CertRole::Ask, e.to_string()))?
            .into_iter();
        let (Some(intermediate), ark_copy, None) = (certs.next(), certs.next(), certs.next())
        else {
            return Err(SnpError::cert(
                CertRole::Ask,
                "cert_chain holds the ASK or ASVK and optionally the ARK, nothing else",
            ));
        };
        let mut veks = pki::pem_chain(vek, "VCEK/VLEK PEM")
            .map_err(|e| SnpError::cert(CertRole::Vcek, e.to_string()))?
            .into_iter();
        let (Some(vek), None) = (veks.next(), veks.next()) else {
            return Err(SnpError::cert(
                CertRole::Vcek,
                "expected exactly one certificate",
            ));
        };
        Ok(Self {
            intermediate,
            ark_copy,
            vek,
            crl,
        })
    }

    /// The product this collateral is for: the report's CPUID (version 3 and later), or the
    /// key's productName for version 2 (checked again when the key is verified).
    pub fn product_for(&self, report: &Report<'_>) -> Result<Product, SnpError> {
        if let Some(p) = report.product()? {
            return Ok(p);
        }
        let role = match report.signing_key {
            SigningKey::Vcek => CertRole::Vcek,
            SigningKey::Vlek => CertRole::Vlek,
        };
        let c = cert::parse_cert(&self.vek, role)?;
        extension::parse(&c, role)?
            .product()
            .ok_or_else(|| SnpError::Extension {
                role,
                oid: "1.3.6.1.4.1.3704.1.2",
                detail: "names no known product".into(),
            })
    }

    /// Verifies the chain and the key for `report`'s product and key kind (time-independent).
    pub fn verify(&self, report: &Report<'_>, trust: &SnpTrust) -> Result<VerifiedVek, SnpError> {
        let product = self.product_for(report)?;
        if let Some(copy) = &self.ark_copy {
            let pinned = trust.ark(product).map(|a| a.der());
            if pinned != Some(copy.as_slice()) {
                return Err(SnpError::NotPinned {
                    role: CertRole::Ark,
                    product,
                    detail: "the chain's ARK is not the pinned one".into(),
                });
            }
        }
        let chain = VerifiedChain::verify(
            product,
            report.signing_key,
            &self.intermediate,
            self.crl.as_deref(),
            trust,
        )?;
        VerifiedVek::verify(&self.vek, Arc::new(chain))
    }
}

/// Verifies a report with its collateral from scratch (the chain, the key, the report):
/// the one-shot path (`verify` command); the proxy keeps the verified chain and key instead.
pub fn verify_with_collateral(
    report: &Report<'_>,
    collateral: &SnpCollateral,
    trust: &SnpTrust,
    now: UnixTime,
) -> Result<VerifiedReport, SnpError> {
    let vek = collateral.verify(report, trust)?;
    verify(report, &vek, now)
}

/// What an AMD certificate is, told by its subject CN (the offline directory's files come
/// in any order and under any name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpCertKind {
    /// `ARK-<Product>`: a copy of a root (compared to the pin, never trusted for itself).
    Ark(Product),
    /// `SEV-<Product>`: the ASK.
    Ask(Product),
    /// `SEV-VLEK-<Product>`: the ASVK.
    Asvk(Product),
    /// `SEV-VCEK`.
    Vcek,
    /// `SEV-VLEK`.
    Vlek,
}

/// Names `der`'s kind from its subject CN; anything else is an error (nothing is verified
/// here: the chain does that).
pub fn classify(der: &[u8]) -> Result<SnpCertKind, SnpError> {
    let c = cert::parse_cert(der, CertRole::Ask)?;
    let cn = cert::common_name(&c);
    let product = |name: &str| Product::ALL.into_iter().find(|p| p.name() == name);
    let kind = match cn.as_str() {
        "SEV-VCEK" => Some(SnpCertKind::Vcek),
        "SEV-VLEK" => Some(SnpCertKind::Vlek),
        other => {
            if let Some(p) = other.strip_prefix("ARK-").and_then(product) {
                Some(SnpCertKind::Ark(p))
            } else if let Some(p) = other.strip_prefix("SEV-VLEK-").and_then(product) {
                Some(SnpCertKind::Asvk(p))
            } else {
                other
                    .strip_prefix("SEV-")
                    .and_then(product)
                    .map(SnpCertKind::Ask)
            }
        }
    };
    kind.ok_or_else(|| SnpError::cert(CertRole::Ask, format!("`{cn}` is no AMD SEV certificate")))
}

/// The product whose ARK names itself as `der`'s issuer (`ARK-<Product>`), if any.
pub fn crl_product(der: &[u8]) -> Result<Product, SnpError> {
    let crl = cert::parse_crl(der)?;
    let issuer = crl
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    issuer
        .strip_prefix("ARK-")
        .and_then(|n| Product::ALL.into_iter().find(|p| p.name() == n))
        .ok_or_else(|| SnpError::cert(CertRole::Crl, format!("issued by `{issuer}`, no ARK")))
}

/// The key a VCEK is found by: its chip (hwID, zero-padded to 64 bytes as CHIP_ID is on
/// Turin) and its TCB. `None` for a key without hwID (a VLEK).
pub fn vcek_index(ext: &VekExtensions) -> Option<([u8; 64], Tcb)> {
    let hwid = ext.hwid.as_deref()?;
    let mut chip = [0u8; 64];
    chip.get_mut(..hwid.len())?.copy_from_slice(hwid);
    Some((
        chip,
        Tcb {
            fmc: ext.fmc,
            bootloader: ext.bootloader,
            tee: ext.tee,
            snp: ext.snp,
            microcode: ext.microcode,
        },
    ))
}
