//! PURE. Verifying a parsed report against its VCEK or VLEK at a given time.
//!
//! The body of [`verify`] is the check list, in order (`docs/snp.md`): the chain is fresh;
//! the report's SIGNING_KEY names the kind of key given; the report's product (CPUID) is
//! the key's; the key signed the report; the key is for the report's REPORTED_TCB and (a
//! VCEK) for its CHIP_ID. The key itself was verified once under the chain, in
//! [`VerifiedVek::verify`]; per report only one ECDSA P-384 verification is done. The
//! one-shot path from the bytes is `collateral::verify_with_collateral`.

use std::sync::Arc;

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use sha2::{Digest, Sha256};

use super::chain::{intermediate_role, VerifiedChain};
use super::error::{CertRole, SnpError, TcbComponent};
use super::extension::{self, VekExtensions};
use super::ids::ChipId;
use super::product::{Product, Tcb};
use super::report::{Report, SigningKey};
use super::verified::{SnpDigests, SnpIdentity, VerifiedReport};
use crate::dcap::time::UnixTime;

/// The key's role for a key kind.
fn vek_role(kind: SigningKey) -> CertRole {
    match kind {
        SigningKey::Vcek => CertRole::Vcek,
        SigningKey::Vlek => CertRole::Vlek,
    }
}

/// A VCEK or VLEK verified under a verified chain (time-independent checks). The only
/// constructor is [`VerifiedVek::verify`].
#[derive(Clone, Debug)]
pub struct VerifiedVek {
    chain: Arc<VerifiedChain>,
    point: Vec<u8>,
    extensions: VekExtensions,
    window: (UnixTime, UnixTime),
    sha256: [u8; 32],
}

impl VerifiedVek {
    /// Verifies `der` as the chain's kind of key: issued and signed by the chain's ASK/ASVK,
    /// named `SEV-VCEK`/`SEV-VLEK`, a P-384 key, well-formed AMD extensions for the product.
    pub fn verify(der: &[u8], chain: Arc<VerifiedChain>) -> Result<Self, SnpError> {
        let kind = chain.kind();
        let role = vek_role(kind);
        let c = super::cert::parse_cert(der, role)?;
        let cn = super::cert::common_name(&c);
        let other = vek_role(match kind {
            SigningKey::Vcek => SigningKey::Vlek,
            SigningKey::Vlek => SigningKey::Vcek,
        });
        if cn == format!("SEV-{other}") {
            return Err(SnpError::KeyKind {
                report: role,
                certificate: other,
            });
        }
        if cn != format!("SEV-{role}") {
            return Err(SnpError::cert(
                role,
                format!("subject CN `{cn}`, expected `SEV-{role}`"),
            ));
        }
        if c.issuer().as_raw() != chain.subject.as_slice() {
            return Err(SnpError::NotPinned {
                role,
                product: chain.product(),
                detail: format!(
                    "issued by `{}`, not by the verified {}",
                    c.issuer(),
                    intermediate_role(kind)
                ),
            });
        }
        super::cert::verify_cert_signature(&c, &chain.key, role)?;
        let point = super::cert::p384_point(&c, role)?.to_vec();
        let extensions = extension::parse(&c, role)?;
        let named = extensions.product();
        if named != Some(chain.product()) {
            return Err(match named {
                Some(certificate) => SnpError::ProductMismatch {
                    report: chain.product(),
                    certificate,
                    role,
                },
                None => SnpError::Extension {
                    role,
                    oid: "1.3.6.1.4.1.3704.1.2",
                    detail: format!("unknown product `{}`", extensions.product_name),
                },
            });
        }
        let turin = chain.product() == Product::Turin;
        if turin != (extensions.struct_version == 1) {
            return Err(SnpError::Extension {
                role,
                oid: "1.3.6.1.4.1.3704.1.1",
                detail: format!(
                    "structure version {} does not fit a {} key",
                    extensions.struct_version,
                    chain.product()
                ),
            });
        }
        Ok(Self {
            window: super::cert::validity(&c),
            sha256: Sha256::digest(der).into(),
            chain,
            point,
            extensions,
        })
    }

    /// The chain it was verified under.
    pub fn chain(&self) -> &VerifiedChain {
        &self.chain
    }

    /// Its AMD extensions.
    pub fn extensions(&self) -> &VekExtensions {
        &self.extensions
    }

    /// The last second at which the key and its chain are valid.
    pub fn valid_until(&self) -> UnixTime {
        self.window.1.min(self.chain.valid_until())
    }
}

/// Verifies `report` against `vek` at `now`.
pub fn verify(
    report: &Report<'_>,
    vek: &VerifiedVek,
    now: UnixTime,
) -> Result<VerifiedReport, SnpError> {
    let chain = vek.chain();
    let role = vek_role(chain.kind());
    // 1. The ARK, the ASK/ASVK, the CRL and the key are valid now.
    chain.check_fresh(now)?;
    super::cert::check_window(role, vek.window, now)?;
    // 2. The report names the kind of key it is checked with (a VLEK-signed report is never
    //    judged under a VCEK chain, nor the reverse).
    if report.signing_key != chain.kind() {
        return Err(SnpError::KeyKind {
            report: vek_role(report.signing_key),
            certificate: role,
        });
    }
    // 3. The report's product is the key's (version 2 has no CPUID: the chain decides).
    let product = chain.product();
    if let Some(named) = report.product()? {
        if named != product {
            return Err(SnpError::ProductMismatch {
                report: named,
                certificate: product,
                role,
            });
        }
    }
    let tcbs = report.tcbs(product)?;
    // 4. The key signed the report.
    verify_signature(report, &vek.point, role)?;
    // 5. The key is the one for this TCB and (VCEK) this chip.
    check_binding(vek, &report.chip_id, &tcbs.reported)?;
    Ok(VerifiedReport::new(
        SnpIdentity::of(report, product, tcbs),
        now,
        vek.valid_until(),
        SnpDigests {
            chain: chain.digests(),
            vek: vek.sha256,
        },
    ))
}

/// The key is the one for `reported` and (a VCEK) for `chip`: step 5 of [`verify`], also
/// used by `source/` to refuse a VCEK served for another chip or TCB before caching it.
pub fn check_binding(vek: &VerifiedVek, chip: &ChipId, reported: &Tcb) -> Result<(), SnpError> {
    let role = vek_role(vek.chain.kind());
    check_tcb(reported, &vek.extensions, role)?;
    if vek.chain.kind() == SigningKey::Vcek {
        check_chip_id(chip, &vek.extensions)?;
    }
    Ok(())
}

/// The report's r and s (72 bytes each, little-endian, the top 24 bytes zero) as the
/// 96-byte big-endian `r ‖ s` ring takes. Non-zero padding is refused, not truncated.
pub fn signature_fixed(report: &Report<'_>) -> Result<[u8; 96], SnpError> {
    let mut out = [0u8; 96];
    let (r_out, s_out) = out.split_at_mut(48);
    for (le, be) in [(report.signature_r, r_out), (report.signature_s, s_out)] {
        let (value, padding) = le.split_at(48);
        if padding.iter().any(|b| *b != 0) {
            return Err(SnpError::SignatureEncoding(
                "r or s has non-zero bytes above its 48 bytes",
            ));
        }
        be.iter_mut()
            .zip(value.iter().rev())
            .for_each(|(o, i)| *o = *i);
    }
    Ok(out)
}

fn verify_signature(report: &Report<'_>, point: &[u8], role: CertRole) -> Result<(), SnpError> {
    let signature = signature_fixed(report)?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
        .verify(report.signed, &signature)
        .map_err(|_| SnpError::ReportSignature(role))
}

/// The key's SPLs equal the report's REPORTED_TCB, component by component.
fn check_tcb(reported: &Tcb, ext: &VekExtensions, role: CertRole) -> Result<(), SnpError> {
    let pairs = [
        (
            TcbComponent::Bootloader,
            ext.bootloader,
            reported.bootloader,
        ),
        (TcbComponent::Tee, ext.tee, reported.tee),
        (TcbComponent::Snp, ext.snp, reported.snp),
        (TcbComponent::Microcode, ext.microcode, reported.microcode),
    ];
    for (component, certificate, report) in pairs {
        if certificate != report {
            return Err(SnpError::TcbMismatch {
                role,
                component,
                certificate,
                report,
            });
        }
    }
    // Both are Some on Turin and None elsewhere (checked when the key was verified).
    if ext.fmc != reported.fmc {
        return Err(SnpError::TcbMismatch {
            role,
            component: TcbComponent::Fmc,
            certificate: ext.fmc.unwrap_or(0),
            report: reported.fmc.unwrap_or(0),
        });
    }
    Ok(())
}

/// The VCEK's hwID is the report's CHIP_ID: all 64 bytes, or on Turin the first 8 with
/// the other 56 zero.
fn check_chip_id(chip: &ChipId, ext: &VekExtensions) -> Result<(), SnpError> {
    let hwid = ext.hwid.as_deref().unwrap_or_default();
    let chip = &chip.0;
    let (head, tail) = chip.split_at(hwid.len().min(chip.len()));
    if hwid.is_empty() || head != hwid || tail.iter().any(|b| *b != 0) {
        return Err(SnpError::ChipIdMismatch {
            certificate: hex::encode(hwid),
            report: hex::encode(chip),
        });
    }
    Ok(())
}
