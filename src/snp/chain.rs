//! PURE. The product-level half of the chain, verified once: the pinned ARK → the ASK (for
//! VCEKs) or the ASVK (for VLEKs), and the product's CRL when one is supplied.
//!
//! Signatures and names are time-independent and checked here a single time; validity
//! windows are checked on every use with [`VerifiedChain::check_fresh`]. The CRL is signed
//! by the ARK and so speaks for what the ARK issued: the ASK and the ASVK. VCEKs are issued
//! by the ASK and are not revoked one by one (a new TCB supersedes them); a revoked ASK
//! takes every VCEK under it down.

use sha2::{Digest, Sha256};

use super::cert;
use super::error::{CertRole, SnpError};
use super::product::Product;
use super::report::SigningKey;
use super::trust::{Ark, SnpTrust};
use crate::dcap::time::UnixTime;

/// The ASK or ASVK, verified under the pinned ARK (and not revoked by a supplied CRL).
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    product: Product,
    kind: SigningKey,
    ark: (UnixTime, UnixTime),
    pub(crate) subject: Vec<u8>,
    pub(crate) key: Vec<u8>,
    window: (UnixTime, UnixTime),
    crl_window: Option<(UnixTime, UnixTime)>,
    digests: ChainDigests,
}

/// SHA-256 of the exact bytes verified, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainDigests {
    /// Of the ASK's or ASVK's DER.
    pub intermediate: [u8; 32],
    /// Of the CRL's DER, when one was supplied.
    pub crl: Option<[u8; 32]>,
}

/// The intermediate's role and expected common name for a key kind.
pub(crate) fn intermediate_role(kind: SigningKey) -> CertRole {
    match kind {
        SigningKey::Vcek => CertRole::Ask,
        SigningKey::Vlek => CertRole::Asvk,
    }
}

fn intermediate_cn(kind: SigningKey, product: Product) -> String {
    match kind {
        SigningKey::Vcek => format!("SEV-{}", product.name()),
        SigningKey::Vlek => format!("SEV-VLEK-{}", product.name()),
    }
}

impl VerifiedChain {
    /// Verifies `intermediate_der` (the ASK for `Vcek`, the ASVK for `Vlek`) under the pinned
    /// ARK of `product`, and `crl_der` (the product's CRL) when given: issued and signed by
    /// the ARK, and not listing the intermediate.
    pub fn verify(
        product: Product,
        kind: SigningKey,
        intermediate_der: &[u8],
        crl_der: Option<&[u8]>,
        trust: &SnpTrust,
    ) -> Result<Self, SnpError> {
        let role = intermediate_role(kind);
        let ark = trust.ark(product).ok_or_else(|| SnpError::NotPinned {
            role: CertRole::Ark,
            product,
            detail: "no ARK is pinned for this product".into(),
        })?;
        let c = cert::parse_cert(intermediate_der, role)?;
        if c.issuer().as_raw() != ark.subject() {
            return Err(SnpError::NotPinned {
                role,
                product,
                detail: format!("issued by `{}`", c.issuer()),
            });
        }
        cert::verify_cert_signature(&c, ark.key(), role)?;
        let want = intermediate_cn(kind, product);
        let cn = cert::common_name(&c);
        if cn != want {
            // An ASVK where an ASK belongs (or the reverse) names the other key kind.
            let other = match kind {
                SigningKey::Vcek => intermediate_cn(SigningKey::Vlek, product),
                SigningKey::Vlek => intermediate_cn(SigningKey::Vcek, product),
            };
            if cn == other {
                let (report, certificate) = match kind {
                    SigningKey::Vcek => (CertRole::Vcek, CertRole::Asvk),
                    SigningKey::Vlek => (CertRole::Vlek, CertRole::Ask),
                };
                return Err(SnpError::KeyKind {
                    report,
                    certificate,
                });
            }
            return Err(SnpError::cert(
                role,
                format!("subject CN `{cn}`, expected `{want}`"),
            ));
        }
        if !c.is_ca() {
            return Err(SnpError::cert(role, "not a CA certificate"));
        }
        let key = cert::rsa_key(&c, role)?.to_vec();
        let window = cert::validity(&c);
        let crl_window = match crl_der {
            Some(der) => Some(check_crl(der, ark, c.raw_serial(), role)?),
            None => None,
        };
        Ok(Self {
            product,
            kind,
            ark: ark.validity(),
            subject: c.subject().as_raw().to_vec(),
            key,
            window,
            crl_window,
            digests: ChainDigests {
                intermediate: Sha256::digest(intermediate_der).into(),
                crl: crl_der.map(|d| Sha256::digest(d).into()),
            },
        })
    }

    /// Fails unless the ARK, the intermediate and the CRL are valid at `now`.
    pub fn check_fresh(&self, now: UnixTime) -> Result<(), SnpError> {
        cert::check_window(CertRole::Ark, self.ark, now)?;
        cert::check_window(intermediate_role(self.kind), self.window, now)?;
        if let Some(w) = self.crl_window {
            cert::check_window(CertRole::Crl, w, now)?;
        }
        Ok(())
    }

    /// The last second at which the ARK, the intermediate and the CRL are all valid.
    pub fn valid_until(&self) -> UnixTime {
        let mut until = self.ark.1.min(self.window.1);
        if let Some(w) = self.crl_window {
            until = until.min(w.1);
        }
        until
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// Which kind of key the intermediate signs.
    pub fn kind(&self) -> SigningKey {
        self.kind
    }

    /// True when a CRL was supplied and checked.
    pub fn crl_checked(&self) -> bool {
        self.crl_window.is_some()
    }

    /// The CRL's thisUpdate, when a CRL was supplied (the rollback mark `source/` keeps).
    pub fn crl_this_update(&self) -> Option<UnixTime> {
        self.crl_window.map(|w| w.0)
    }

    /// What was verified, byte for byte.
    pub fn digests(&self) -> ChainDigests {
        self.digests
    }
}

/// The CRL is the ARK's (issuer, signature), has a nextUpdate, and does not list the
/// intermediate. Returns its window: thisUpdate until just before nextUpdate. A CRL listing
/// the intermediate is checked as fully first: its thisUpdate goes with the refusal (the
/// rollback mark a revocation must raise).
fn check_crl(
    der: &[u8],
    ark: &Ark,
    intermediate_serial: &[u8],
    role: CertRole,
) -> Result<(UnixTime, UnixTime), SnpError> {
    let crl = cert::parse_crl(der)?;
    if crl.issuer().as_raw() != ark.subject() {
        return Err(SnpError::NotPinned {
            role: CertRole::Crl,
            product: ark.product(),
            detail: format!("issued by `{}`", crl.issuer()),
        });
    }
    cert::verify_crl_signature(&crl, ark.key())?;
    let next = crl
        .next_update()
        .ok_or_else(|| SnpError::cert(CertRole::Crl, "no nextUpdate"))?;
    let this_update = UnixTime(crl.last_update().timestamp());
    let revoked = crl
        .iter_revoked_certificates()
        .any(|r| r.raw_serial() == intermediate_serial);
    if revoked {
        return Err(SnpError::Revoked {
            role,
            serial: hex::encode(intermediate_serial),
            product: ark.product(),
            crl_issued: this_update,
        });
    }
    Ok((this_update, UnixTime(next.timestamp().saturating_sub(1))))
}
