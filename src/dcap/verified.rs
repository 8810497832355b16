//! PURE. Verifying one collateral snapshot against the trust anchor, once.
//!
//! Signatures and chains are time-independent and checked here a single time per
//! snapshot; validity windows depend on the clock and are checked on every use with
//! [`VerifiedCollateral::check_fresh`] (a few integer comparisons).

use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

use super::collateral::pcs::PckCa;
use super::collateral::qe_identity::QeIdentity;
use super::collateral::tcb_info::TcbInfo;
use super::collateral::{Collateral, CollateralItem};
use crate::dcap::error::VerifyError;
use crate::dcap::known::{KnownPlatforms, KnownStats};
use crate::dcap::pck_chain::PckTrust;
use crate::dcap::pki;
use crate::dcap::root::{check_root_copy, verify_under_root, VerifiedCa};
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;

/// When one collateral item is valid, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The item.
    pub item: CollateralItem,
    /// First valid second.
    pub from: UnixTime,
    /// Last valid second.
    pub until: UnixTime,
}

/// Fails unless every window holds `now` (the first that does not says why).
pub(crate) fn check_windows(windows: &[Window], now: UnixTime) -> Result<(), VerifyError> {
    for w in windows {
        if now < w.from {
            return Err(VerifyError::NotYetValid {
                item: w.item,
                from: w.from,
                now,
            });
        }
        if now > w.until {
            return Err(VerifyError::Expired {
                item: w.item,
                until: w.until,
                now,
            });
        }
    }
    Ok(())
}

/// Collateral whose signatures and chains have been verified against a trust anchor.
/// The only constructor is [`VerifiedCollateral::verify`].
#[derive(Clone, Debug)]
pub struct VerifiedCollateral {
    /// The verified TCB info.
    pub tcb_info: TcbInfo,
    /// The verified QE identity.
    pub qe_identity: QeIdentity,
    pub(crate) anchor: TrustAnchor,
    pub(crate) pck_ca: VerifiedCa,
    pub(crate) root_crl_revoked: Vec<Vec<u8>>,
    pub(crate) pck_crl_issuer: Vec<u8>,
    pub(crate) pck_crl_revoked: Vec<Vec<u8>>,
    /// Which PCK CA issued the PCK CRL (by its common name), if it names one.
    pub pck_crl_ca: Option<PckCa>,
    windows: Vec<Window>,
    /// SHA-256 of the exact bytes verified, for the audit trail.
    pub digests: CollateralDigests,
    /// The PCK chains and QE reports verified under this snapshot (and only this one).
    pub(crate) known: KnownPlatforms,
}

/// SHA-256 of each collateral item's exact bytes: what a verdict was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollateralDigests {
    /// Of the signed TCB info text.
    pub tcb_info: [u8; 32],
    /// Of the signed QE identity text.
    pub qe_identity: [u8; 32],
    /// Of the PCK CRL DER.
    pub pck_crl: [u8; 32],
    /// Of the root CA CRL DER.
    pub root_ca_crl: [u8; 32],
}

impl CollateralDigests {
    fn of(c: &Collateral) -> Self {
        // ring's SHA-256, not sha2's: tens of KB per verification (long CRLs), and where the
        // CPU lacks SHA-NI (Xeons before Ice Lake) sha2 runs portable rounds while ring has
        // AVX/SSSE3 assembly; with SHA-NI both use it.
        let sha256 = |bytes: &[u8]| -> [u8; 32] {
            let d = ring::digest::digest(&ring::digest::SHA256, bytes);
            let mut out = [0; 32];
            out.copy_from_slice(d.as_ref());
            out
        };
        Self {
            tcb_info: sha256(c.tcb_info.as_bytes()),
            qe_identity: sha256(c.qe_identity.as_bytes()),
            pck_crl: sha256(&c.pck_crl),
            root_ca_crl: sha256(&c.root_ca_crl),
        }
    }
}

/// Issuer chains are [signer, root]: the signer directly under the pinned root.
const SIGNER_CHAIN_LEN: usize = 2;

impl VerifiedCollateral {
    /// Verifies every signature and chain of `c` against `anchor` (time-independent).
    pub fn verify(c: &Collateral, anchor: &TrustAnchor) -> Result<Self, VerifyError> {
        let mut windows = Vec::with_capacity(8);
        let (root_from, root_until) = anchor.validity();
        windows.push(Window {
            item: CollateralItem::RootCa,
            from: UnixTime(root_from),
            until: UnixTime(root_until),
        });

        // B. Root CA CRL, signed by the pinned root.
        let root_crl = pki::parse_crl(&c.root_ca_crl, "root CA CRL")
            .map_err(|e| VerifyError::chain("root CA CRL", e))?;
        if root_crl.issuer().as_raw() != anchor.subject() {
            return Err(VerifyError::Chain {
                what: "root CA CRL",
                detail: format!("issued by `{}`, not by the pinned root", root_crl.issuer()),
            });
        }
        // The root's signature may be remembered by the anchor; the issuer above, the window
        // and the revoked serials below are read from these bytes every time.
        pki::crl_parts(&root_crl, "root CA CRL")
            .and_then(|parts| anchor.verify_root_signature(&parts, "root CA CRL"))
            .map_err(|e| VerifyError::chain("root CA CRL", e))?;
        windows.push(crl_window(
            &root_crl,
            CollateralItem::RootCaCrl,
            "root CA CRL",
        )?);
        let root_crl_revoked = revoked_serials(&root_crl);

        // C. TCB info: chain, signature over the exact bytes, then content.
        let tcb_signer = verify_signer_chain(
            &c.tcb_info_issuer_chain,
            anchor,
            &root_crl_revoked,
            "TCB info issuer chain",
            None,
        )?;
        windows.push(Window {
            item: CollateralItem::TcbInfoSigner,
            ..tcb_signer.window
        });
        if !pki::verify_raw_signature(
            &tcb_signer.point,
            c.tcb_info.as_bytes(),
            &c.tcb_info_signature,
        ) {
            return Err(VerifyError::Signature("TCB info"));
        }
        let tcb_info = TcbInfo::parse(&c.tcb_info)?;
        windows.push(Window {
            item: CollateralItem::TcbInfo,
            from: tcb_info.issue_date,
            until: tcb_info.next_update,
        });

        // D. QE identity; its chain is usually the TCB info's, checked once.
        let qe_signer = if c.qe_identity_issuer_chain == c.tcb_info_issuer_chain {
            tcb_signer
        } else {
            verify_signer_chain(
                &c.qe_identity_issuer_chain,
                anchor,
                &root_crl_revoked,
                "QE identity issuer chain",
                Some(&tcb_signer),
            )?
        };
        windows.push(Window {
            item: CollateralItem::QeIdentitySigner,
            ..qe_signer.window
        });
        if !pki::verify_raw_signature(
            &qe_signer.point,
            c.qe_identity.as_bytes(),
            &c.qe_identity_signature,
        ) {
            return Err(VerifyError::Signature("QE identity"));
        }
        let qe_identity = QeIdentity::parse(&c.qe_identity)?;
        windows.push(Window {
            item: CollateralItem::QeIdentity,
            from: qe_identity.issue_date,
            until: qe_identity.next_update,
        });

        // E (collateral half). The PCK CA and its CRL; matched against the quote's chain later.
        let what = "PCK CRL issuer chain";
        let ders = pki::pem_chain(c.pck_crl_issuer_chain.as_bytes(), what)
            .map_err(|e| VerifyError::chain(what, e))?;
        let [ca_der, root_der] =
            <[Vec<u8>; SIGNER_CHAIN_LEN]>::try_from(ders).map_err(|v| VerifyError::Chain {
                what,
                detail: format!("{} certificates, expected the PCK CA and the root", v.len()),
            })?;
        check_root_copy(&root_der, anchor, what)?;
        let ca = pki::parse_cert(&ca_der, "PCK CA certificate")
            .map_err(|e| VerifyError::chain(what, e))?;
        let pck_ca = verify_under_root(&ca, anchor, &root_crl_revoked, what)?;
        windows.push(cert_window(&ca, CollateralItem::PckCrlIssuer));
        let pck_crl =
            pki::parse_crl(&c.pck_crl, "PCK CRL").map_err(|e| VerifyError::chain("PCK CRL", e))?;
        if pck_crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(VerifyError::Chain {
                what: "PCK CRL",
                detail: format!(
                    "issued by `{}`, but its issuer chain is `{}`",
                    pck_crl.issuer(),
                    ca.subject()
                ),
            });
        }
        pki::verify_crl_signature(&pck_crl, &pck_ca.point, "PCK CRL")
            .map_err(|e| VerifyError::chain("PCK CRL", e))?;
        windows.push(crl_window(&pck_crl, CollateralItem::PckCrl, "PCK CRL")?);
        let pck_crl_issuer = pck_crl.issuer().as_raw().to_vec();
        let pck_crl_ca = PckCa::from_issuer_cn(&pki::common_name(&ca));
        let pck_crl_revoked = revoked_serials(&pck_crl);

        Ok(Self {
            tcb_info,
            qe_identity,
            anchor: anchor.clone(),
            pck_ca,
            root_crl_revoked,
            pck_crl_issuer,
            pck_crl_revoked,
            pck_crl_ca,
            windows,
            digests: CollateralDigests::of(c),
            known: KnownPlatforms::new(),
        })
    }

    /// What a quote's PCK chain is judged under in this snapshot.
    pub(crate) fn pck_trust(&self) -> PckTrust<'_> {
        PckTrust {
            anchor: &self.anchor,
            root_crl_revoked: &self.root_crl_revoked,
            pck_ca: &self.pck_ca,
            pck_crl_issuer: &self.pck_crl_issuer,
            pck_crl_revoked: &self.pck_crl_revoked,
        }
    }

    /// How many PCK chains and QE reports this snapshot has verified and reused.
    pub fn known_platforms(&self) -> KnownStats {
        self.known.stats()
    }

    /// Fails unless every item is within its validity window at `now`.
    pub fn check_fresh(&self, now: UnixTime) -> Result<(), VerifyError> {
        check_windows(&self.windows, now)
    }

    /// The validity window of every item.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The last second at which the whole snapshot is valid (the earliest expiry).
    pub fn valid_until(&self) -> UnixTime {
        self.windows
            .iter()
            .map(|w| w.until)
            .min()
            .unwrap_or(UnixTime(i64::MIN))
    }

    /// The first second at which the whole snapshot is valid (the latest start).
    pub fn valid_from(&self) -> UnixTime {
        self.windows
            .iter()
            .map(|w| w.from)
            .max()
            .unwrap_or(UnixTime(i64::MAX))
    }

    /// The trust anchor this snapshot was verified against.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// Verifies `text`, signed by the TCB Signing certificate of the `[signer, root]` PEM
    /// `chain`, under this snapshot's root and root CRL (the rules of the TCB info's chain):
    /// the signer's validity window, as `item`.
    pub(crate) fn verify_signed(
        &self,
        chain: &str,
        text: &str,
        signature: &[u8],
        what: (&'static str, &'static str),
        item: CollateralItem,
    ) -> Result<Window, VerifyError> {
        let (chain_what, doc_what) = what;
        let signer = verify_signer_chain(
            chain,
            &self.anchor,
            &self.root_crl_revoked,
            chain_what,
            None,
        )?;
        if !pki::verify_raw_signature(&signer.point, text.as_bytes(), signature) {
            return Err(VerifyError::Signature(doc_what));
        }
        Ok(Window {
            item,
            ..signer.window
        })
    }
}

/// A signer certificate verified directly under the root.
#[derive(Clone)]
struct Signer {
    der: Vec<u8>,
    point: Vec<u8>,
    window: Window,
}

/// Checks a `[signer, root]` PEM chain: the root is the pinned one, the signer is issued
/// and signed by it, and not in the root CRL. A signer byte-identical to `verified` (checked
/// under the same root and root CRL in this verification) is not verified twice.
fn verify_signer_chain(
    pem: &str,
    anchor: &TrustAnchor,
    root_crl_revoked: &[Vec<u8>],
    what: &'static str,
    verified: Option<&Signer>,
) -> Result<Signer, VerifyError> {
    let ders = pki::pem_chain(pem.as_bytes(), what).map_err(|e| VerifyError::chain(what, e))?;
    let [signer_der, root_der] =
        <[Vec<u8>; SIGNER_CHAIN_LEN]>::try_from(ders).map_err(|v| VerifyError::Chain {
            what,
            detail: format!(
                "{} certificates, expected the TCB Signing certificate and the root",
                v.len()
            ),
        })?;
    check_root_copy(&root_der, anchor, what)?;
    let signer = pki::parse_cert(&signer_der, "TCB Signing certificate")
        .map_err(|e| VerifyError::chain(what, e))?;
    if !pki::common_name(&signer).contains("TCB Signing") {
        return Err(VerifyError::Chain {
            what,
            detail: format!(
                "signer `{}` is not a TCB Signing certificate",
                signer.subject()
            ),
        });
    }
    let window = cert_window(&signer, CollateralItem::TcbInfoSigner);
    if let Some(v) = verified.filter(|v| v.der == signer_der) {
        return Ok(Signer {
            window,
            ..v.clone()
        });
    }
    let ca = verify_under_root(&signer, anchor, root_crl_revoked, what)?;
    Ok(Signer {
        der: ca.der,
        point: ca.point,
        window,
    })
}

fn cert_window(cert: &X509Certificate<'_>, item: CollateralItem) -> Window {
    let (from, until) = pki::validity(cert);
    Window {
        item,
        from: UnixTime(from),
        until: UnixTime(until),
    }
}

/// A CRL is valid from thisUpdate until just before nextUpdate (webpki and dcap-qvl
/// treat `now == nextUpdate` as expired). A CRL without nextUpdate is refused.
fn crl_window(
    crl: &CertificateRevocationList<'_>,
    item: CollateralItem,
    what: &'static str,
) -> Result<Window, VerifyError> {
    let next = crl.next_update().ok_or(VerifyError::Chain {
        what,
        detail: "CRL has no nextUpdate".into(),
    })?;
    Ok(Window {
        item,
        from: UnixTime(crl.last_update().timestamp()),
        until: UnixTime(next.timestamp().saturating_sub(1)),
    })
}

fn revoked_serials(crl: &CertificateRevocationList<'_>) -> Vec<Vec<u8>> {
    crl.iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect()
}
