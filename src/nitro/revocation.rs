//! PURE. Revocation of a verified chain over CRLs handed in (the edge fetches and caches
//! them; AWS publishes one per CA that issues intermediates, named by each intermediate's
//! CRL distribution point). No I/O: the CRL bytes and the time are parameters.
//!
//! For every certificate below the root: each supplied CRL whose issuer is that
//! certificate's issuer must be signed by the issuer's key (ECDSA P-384 / SHA-384, exact
//! envelope), be within thisUpdate .. nextUpdate at `now` (a CRL without nextUpdate is
//! refused), carry no critical extension (an issuingDistributionPoint, which would scope the
//! CRL to part of the issuer's certificates, is not understood and so refused), and must not
//! list the certificate's serial. With [`Revocation::Required`], a certificate that names a
//! CRL distribution point and has no CRL from its issuer fails closed.

use x509_parser::oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::dcap::pki::parse_crl;
use crate::dcap::time::UnixTime;
use crate::nitro::error::NitroError;
use crate::nitro::limits::MAX_CRL_LEN;
use crate::nitro::pki;
use crate::nitro::trust::NitroRoot;
use crate::nitro::verify::VerifiedDocument;

/// How much revocation checking a policy asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Revocation {
    /// Every CRL supplied is checked; a certificate no CRL covers passes unchecked.
    #[default]
    IfSupplied,
    /// Every certificate that names a CRL distribution point must be covered by a CRL.
    Required,
}

/// A parsed CRL (its signature is checked against the chain that uses it).
#[derive(Clone, Debug)]
pub struct Crl<'a> {
    crl: CertificateRevocationList<'a>,
}

impl<'a> Crl<'a> {
    /// Parses one DER CRL, refusing trailing bytes and anything above [`MAX_CRL_LEN`].
    pub fn parse(der: &'a [u8]) -> Result<Self, NitroError> {
        if der.len() > MAX_CRL_LEN {
            return Err(NitroError::CrlInvalid(format!(
                "{} bytes, above the {MAX_CRL_LEN}-byte limit",
                der.len()
            )));
        }
        parse_crl(der, "CRL")
            .map(|crl| Self { crl })
            .map_err(|e| NitroError::CrlInvalid(e.to_string()))
    }
}

/// Which certificates a CRL covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationStatus {
    /// Certificates checked against a CRL from their issuer, and not listed.
    pub checked: Vec<String>,
    /// Certificates that name a CRL distribution point but had no CRL (only with
    /// [`Revocation::IfSupplied`]).
    pub unchecked: Vec<String>,
    /// The last second every CRL that covered a certificate holds (before its nextUpdate).
    pub until: Option<UnixTime>,
}

/// A CRL checked once against the CA it must come from (issued by that name, signed by
/// that key, no critical extension not understood): what the edge keeps, so a document's
/// revocation check costs no signature verification. Made only by [`CheckedCrl::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedCrl {
    issuer_subject: Vec<u8>,
    issuer_point: Vec<u8>,
    issuer: String,
    from: UnixTime,
    until: UnixTime,
    revoked: std::collections::BTreeSet<Vec<u8>>,
}

impl CheckedCrl {
    /// Checks `der` as a CRL of the CA named `issuer_subject` (raw DER name) with key
    /// `issuer_point`, current at `now`.
    pub fn check(
        der: &[u8],
        issuer_subject: &[u8],
        issuer_point: &[u8],
        now: UnixTime,
    ) -> Result<Self, NitroError> {
        let crl = Crl::parse(der)?.crl;
        if crl.issuer().as_raw() != issuer_subject {
            return Err(NitroError::CrlInvalid(format!(
                "the CRL is issued by `{}`, not by the certificate's issuer",
                crl.issuer()
            )));
        }
        let (from, until) = check_crl(&crl, issuer_point, now)?;
        Ok(Self {
            issuer_subject: issuer_subject.to_vec(),
            issuer_point: issuer_point.to_vec(),
            issuer: crl.issuer().to_string(),
            from,
            until,
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
        })
    }

    /// thisUpdate.
    pub fn this_update(&self) -> UnixTime {
        self.from
    }

    /// The last second before nextUpdate.
    pub fn until(&self) -> UnixTime {
        self.until
    }

    /// The issuer's name, for messages and marks.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// [`check`] over CRLs checked when they were kept: a CRL covers a certificate when it was
/// checked against exactly that certificate's issuer (name and key); its window is checked
/// at `now`; no signature is verified again.
pub fn check_held(
    verified: &VerifiedDocument<'_>,
    root: &NitroRoot,
    held: &[&CheckedCrl],
    now: UnixTime,
    mode: Revocation,
) -> Result<RevocationStatus, NitroError> {
    let mut status = RevocationStatus::default();
    for (link, issuer_subject, issuer_point) in verified.chain().links(root) {
        let mut covered = false;
        for crl in held
            .iter()
            .filter(|c| c.issuer_subject == issuer_subject && c.issuer_point == issuer_point)
        {
            if now < crl.from || now > crl.until {
                return Err(NitroError::CrlExpired {
                    issuer: crl.issuer.clone(),
                    from: crl.from,
                    until: crl.until,
                    now,
                });
            }
            if crl.revoked.contains(link.cert.raw_serial()) {
                return Err(revoked(link));
            }
            status.until = Some(status.until.map_or(crl.until, |u| u.min(crl.until)));
            covered = true;
        }
        tally(link, covered, mode, &mut status)?;
    }
    Ok(status)
}

fn revoked(link: &crate::nitro::chain::ChainCert<'_>) -> NitroError {
    NitroError::Revoked {
        what: link.what.clone(),
        serial: link.cert.raw_serial_as_string(),
    }
}

/// Records whether `link` was covered; fails closed for an uncovered certificate that names
/// a CRL distribution point when revocation is required.
fn tally(
    link: &crate::nitro::chain::ChainCert<'_>,
    covered: bool,
    mode: Revocation,
    status: &mut RevocationStatus,
) -> Result<(), NitroError> {
    let names_a_crl = link
        .cert
        .get_extension_unique(&OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
        .map_or(true, |e| e.is_some());
    match (covered, names_a_crl, mode) {
        (true, _, _) => status.checked.push(link.what.clone()),
        (false, true, Revocation::Required) => {
            return Err(NitroError::RevocationUnknown {
                what: link.what.clone(),
            })
        }
        (false, true, Revocation::IfSupplied) => status.unchecked.push(link.what.clone()),
        (false, false, _) => {}
    }
    Ok(())
}

/// Checks every certificate below the root of `verified` against `crls` at `now`.
pub fn check(
    verified: &VerifiedDocument<'_>,
    root: &NitroRoot,
    crls: &[Crl<'_>],
    now: UnixTime,
    mode: Revocation,
) -> Result<RevocationStatus, NitroError> {
    let mut status = RevocationStatus::default();
    for (link, issuer_subject, issuer_point) in verified.chain().links(root) {
        let mut covered = false;
        for crl in crls
            .iter()
            .filter(|c| c.crl.issuer().as_raw() == issuer_subject)
        {
            let (_, until) = check_crl(&crl.crl, issuer_point, now)?;
            status.until = Some(status.until.map_or(until, |u| u.min(until)));
            let serial = link.cert.raw_serial();
            if crl
                .crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == serial)
            {
                return Err(revoked(link));
            }
            covered = true;
        }
        tally(link, covered, mode, &mut status)?;
    }
    Ok(status)
}

/// One CRL from the right issuer: signed by it, current, nothing critical we do not know.
fn check_crl(
    crl: &CertificateRevocationList<'_>,
    issuer_point: &[u8],
    now: UnixTime,
) -> Result<(UnixTime, UnixTime), NitroError> {
    let issuer = crl.issuer().to_string();
    pki::verify_crl_signature(crl, issuer_point)
        .map_err(|e| NitroError::CrlInvalid(format!("the CRL of `{issuer}`: {e}")))?;
    if let Some(ext) = crl.extensions().iter().find(|e| e.critical) {
        return Err(NitroError::CrlInvalid(format!(
            "the CRL of `{issuer}` has critical extension {}, not understood",
            ext.oid
        )));
    }
    if crl
        .iter_revoked_certificates()
        .any(|r| r.extensions().iter().any(|e| e.critical))
    {
        return Err(NitroError::CrlInvalid(format!(
            "the CRL of `{issuer}` has an entry with a critical extension, not understood"
        )));
    }
    let next = crl.next_update().ok_or_else(|| {
        NitroError::CrlInvalid(format!("the CRL of `{issuer}` has no nextUpdate"))
    })?;
    let from = UnixTime(crl.last_update().timestamp());
    // webpki and dcap treat `now == nextUpdate` as expired.
    let until = UnixTime(next.timestamp().saturating_sub(1));
    if now < from || now > until {
        return Err(NitroError::CrlExpired {
            issuer,
            from,
            until,
            now,
        });
    }
    Ok((from, until))
}
