//! PURE. What Nitro verification needs from the edge, as a trait the verifier can hold
//! without knowing where collateral comes from: the pinned root, the verified-intermediates
//! cache, how much revocation is required, and the CRLs held for a chain's distribution
//! points. The verification itself ([`NitroCollateral::verify`],
//! [`NitroCollateral::revocation`]) is written once here over those; the edge
//! (`source/nitro.rs`) only fetches, checks and keeps CRL bytes.
//!
//! AWS publishes one CRL per CA that issues intermediates, at the URL each intermediate
//! names in its CRL distribution points (the real regional CA names one under
//! `aws-nitro-enclaves-crl.s3.amazonaws.com`, the zonal CA one under
//! `crl-<region>-aws-nitro-enclaves.s3.<region>.amazonaws.com`); the CRL at a certificate's
//! point is issued by that certificate's issuer. [`crl_points`] reads them from a chain that
//! verified: the URLs are signed by the chain, never taken from an unverified document.

use std::sync::Arc;

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS;

use crate::dcap::time::UnixTime;
use crate::nitro::cache::IntermediatesCache;
use crate::nitro::error::NitroError;
use crate::nitro::revocation::{self, CheckedCrl, Revocation, RevocationStatus};
use crate::nitro::trust::NitroRoot;
use crate::nitro::verify::{verify_cached, Parsed, VerifiedDocument};

/// Longest distribution point URL read.
pub const MAX_CRL_URL_LEN: usize = 512;
/// Distribution point URLs read per certificate.
pub const MAX_CRL_URLS_PER_CERT: usize = 4;

/// Where the CRL covering one certificate of a verified chain is published, and the CA
/// that must have issued it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CrlPoint {
    /// The certificate it covers (`cabundle[i]`), for messages.
    pub what: String,
    /// The `http://` or `https://` URL the certificate names.
    pub url: String,
    /// The issuing CA's subject, raw DER.
    pub issuer_subject: Vec<u8>,
    /// The issuing CA's uncompressed P-384 point.
    pub issuer_point: Vec<u8>,
}

impl CrlPoint {
    /// The last segment of the URL's path (`<uuid>.crl` for AWS's), if it is a plain file
    /// name: letters, digits, `.`, `-`, `_`, not starting with a dot. The offline
    /// directory holds a CRL under this name.
    pub fn file_name(&self) -> Option<&str> {
        let path = self
            .url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
        let path = path.split(['?', '#']).next().unwrap_or("");
        let name = path.rsplit('/').next().unwrap_or("");
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        plain.then_some(name)
    }

    /// The URL's path (with its query), for a mirror serving AWS's paths.
    pub fn path(&self) -> &str {
        self.url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest.get(i..).unwrap_or("/")))
            .unwrap_or("/")
    }
}

/// The CRL distribution points of every certificate below the root of `verified`, root
/// side first: `http(s)` URLs only (others cannot be fetched; with revocation required the
/// certificate then fails closed), at most [`MAX_CRL_URLS_PER_CERT`] per certificate, each
/// at most [`MAX_CRL_URL_LEN`] bytes.
pub fn crl_points(verified: &VerifiedDocument<'_>, root: &NitroRoot) -> Vec<CrlPoint> {
    let mut out = Vec::new();
    for (link, issuer_subject, issuer_point) in verified.chain().links(root) {
        let Ok(Some(ext)) = link
            .cert
            .get_extension_unique(&OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
        else {
            continue;
        };
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        let urls = points
            .points
            .iter()
            .filter_map(|p| match &p.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .filter(|u| {
                u.len() <= MAX_CRL_URL_LEN
                    && (u.starts_with("http://") || u.starts_with("https://"))
            })
            .take(MAX_CRL_URLS_PER_CERT);
        for url in urls {
            out.push(CrlPoint {
                what: link.what.clone(),
                url: url.to_owned(),
                issuer_subject: issuer_subject.to_vec(),
                issuer_point: issuer_point.to_vec(),
            });
        }
    }
    out
}

/// Checks `der` as the CRL published at `point` at `now` (issued by the point's CA, signed
/// by its key, current, nothing critical unknown): what the edge keeps.
pub fn check_crl_for(
    der: &[u8],
    point: &CrlPoint,
    now: UnixTime,
) -> Result<CheckedCrl, NitroError> {
    CheckedCrl::check(der, &point.issuer_subject, &point.issuer_point, now)
}

/// The collateral of Nitro verification: a pinned root, the intermediates proven under it,
/// the revocation requirement, and the CRLs held for distribution points. Implemented at
/// the edge; every method is a read, never I/O.
pub trait NitroCollateral {
    /// The pinned root (AWS Nitro Enclaves Root-G1 unless configured for a test PKI).
    fn root(&self) -> &NitroRoot;

    /// The verified-intermediates cache, owned by the collateral and dropped with it.
    fn intermediates(&self) -> &IntermediatesCache;

    /// How much revocation checking is required.
    fn revocation_mode(&self) -> Revocation;

    /// The CRLs held for `points`: those it has, each checked when it was kept. A point
    /// with none may be remembered for the edge to fetch (a read never fetches).
    fn held_crls(&self, points: &[CrlPoint]) -> Vec<Arc<CheckedCrl>>;

    /// Changes whenever the CRLs held change: a verdict made under another value is not
    /// reused.
    fn snapshot_id(&self) -> u64 {
        0
    }

    /// Verifies `parsed` at `now` under [`Self::root`], through [`Self::intermediates`].
    fn verify<'a>(
        &self,
        parsed: &Parsed<'a>,
        now: UnixTime,
    ) -> Result<VerifiedDocument<'a>, NitroError> {
        verify_cached(parsed, self.root(), now, self.intermediates())
    }

    /// The CRL verdict for the chain of `verified` at `now`: every held CRL of a
    /// certificate's issuer (name and key) within its window and not listing it; with
    /// [`Revocation::Required`], a certificate naming a distribution point with no CRL held
    /// fails closed. The CRLs' signatures were checked when they were kept, not again here.
    fn revocation(
        &self,
        verified: &VerifiedDocument<'_>,
        now: UnixTime,
    ) -> Result<RevocationStatus, NitroError> {
        let held = self.held_crls(&crl_points(verified, self.root()));
        let held: Vec<&CheckedCrl> = held.iter().map(AsRef::as_ref).collect();
        revocation::check_held(verified, self.root(), &held, now, self.revocation_mode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(url: &str) -> CrlPoint {
        CrlPoint {
            what: "cabundle[1]".into(),
            url: url.into(),
            issuer_subject: Vec::new(),
            issuer_point: Vec::new(),
        }
    }

    #[test]
    fn file_names_and_paths_of_distribution_points() {
        let aws = point("http://aws-nitro-enclaves-crl.s3.amazonaws.com/crl/ab4960cc-7d63-42bd-9e9f-59338cb67f84.crl");
        assert_eq!(
            aws.file_name(),
            Some("ab4960cc-7d63-42bd-9e9f-59338cb67f84.crl")
        );
        assert_eq!(aws.path(), "/crl/ab4960cc-7d63-42bd-9e9f-59338cb67f84.crl");
        assert_eq!(
            point("http://crl.sim.invalid/0.crl").file_name(),
            Some("0.crl")
        );
        assert_eq!(point("https://h/a/b.crl?x=1").file_name(), Some("b.crl"));
        assert_eq!(point("https://h/a/b.crl?x=1").path(), "/a/b.crl?x=1");
        for bad in [
            "http://h/",
            "http://h",
            "http://h/..",
            "http://h/a/.hidden",
            "http://h/a%2f..%2fb",
            "http://h/a b",
        ] {
            assert_eq!(point(bad).file_name(), None, "{bad}");
        }
        assert_eq!(point("http://h").path(), "/");
    }
}
