//! PURE. The chain from the pinned root through the document's CA bundle to its signing
//! certificate, at a given time (AWS §3.2.3, RFC 5280 §6.1 for what applies here).
//!
//! The bundle is `[ROOT, INTERM_1, …, INTERM_N]` and the path is checked in exactly that
//! order, the signing certificate last: no path building, so a bundle out of order is refused,
//! never re-sorted. The bundle's own root must be byte-identical to the pinned one (a bundle
//! headed by another root is refused even though its root would be ignored). Each link: the
//! issuer name is the parent's subject, the signature is the parent's (ECDSA P-384 /
//! SHA-384), the profile fits the place ([`pki::check_profile`]), the parent's
//! pathLenConstraint holds, and the certificate is valid at `now` (the root too).

use x509_parser::certificate::X509Certificate;

use crate::dcap::pki::parse_cert;
use crate::dcap::time::UnixTime;
use crate::nitro::cache::{
    BundleKey, IntermediatesCache, LeafKey, VerifiedIntermediates, VerifiedLeaf,
};
use crate::nitro::document::AttestationDoc;
use crate::nitro::error::NitroError;
use crate::nitro::pki::{self, Profile, Role};
use crate::nitro::trust::NitroRoot;

/// One verified certificate below the root.
#[derive(Clone, Debug)]
pub struct ChainCert<'a> {
    /// The parsed certificate (borrowing the document's bytes).
    pub cert: X509Certificate<'a>,
    /// What to call it in errors: `cabundle[i]` or `the signing certificate`.
    pub what: String,
    /// Its uncompressed P-384 point.
    pub point: Vec<u8>,
}

/// A chain that verified at one time: the intermediates in bundle order, then the leaf.
#[derive(Clone, Debug)]
pub struct Chain<'a> {
    /// `cabundle[1..]`, each verified under its predecessor (the first under the root).
    pub intermediates: Vec<ChainCert<'a>>,
    /// The signing certificate, verified under the last intermediate.
    pub leaf: ChainCert<'a>,
}

impl<'a> Chain<'a> {
    /// The signing certificate's P-384 point.
    pub fn leaf_point(&self) -> &[u8] {
        &self.leaf.point
    }

    /// Every certificate below the root with its issuer's subject and point, root side first.
    pub fn links<'s>(
        &'s self,
        root: &'s NitroRoot,
    ) -> impl Iterator<Item = (&'s ChainCert<'a>, &'s [u8], &'s [u8])> + 's {
        let below = self.intermediates.iter().chain(std::iter::once(&self.leaf));
        let issuers = std::iter::once((root.subject(), root.point())).chain(
            self.intermediates
                .iter()
                .map(|c| (c.cert.subject().as_raw(), c.point.as_slice())),
        );
        below
            .zip(issuers)
            .map(|(cert, (subject, point))| (cert, subject, point))
    }
}

/// Verifies the path `root → cabundle[1] → … → cabundle[N] → certificate` at `now`.
pub fn verify_chain<'a>(
    doc: &AttestationDoc<'a>,
    root: &NitroRoot,
    now: UnixTime,
) -> Result<Chain<'a>, NitroError> {
    let intermediates = check_root(doc, root, now)?;

    // How many intermediates follow a CA in the path, for its pathLenConstraint.
    let mut below = intermediates.len();
    check_path_len("the pinned root", root.path_len(), below)?;
    let mut parent_subject = root.subject().to_vec();
    let mut parent_point = root.point().to_vec();
    let mut verified = Vec::with_capacity(intermediates.len());
    for (i, der) in intermediates.iter().enumerate() {
        let what = format!("cabundle[{}]", i.saturating_add(1));
        let link = link(der, what, Role::Ca, &parent_subject, &parent_point, now)?;
        below = below.saturating_sub(1);
        check_path_len(&link.cert.what, link.profile.path_len, below)?;
        parent_subject = link.cert.cert.subject().as_raw().to_vec();
        parent_point.clone_from(&link.cert.point);
        verified.push(link.cert);
    }
    let leaf = link(
        doc.certificate,
        LEAF.to_owned(),
        Role::Leaf,
        &parent_subject,
        &parent_point,
        now,
    )?;
    Ok(Chain {
        intermediates: verified,
        leaf: leaf.cert,
    })
}

/// The bundle's root is the pinned one and valid at `now`; the intermediates after it.
fn check_root<'d, 'a>(
    doc: &'d AttestationDoc<'a>,
    root: &NitroRoot,
    now: UnixTime,
) -> Result<&'d [&'a [u8]], NitroError> {
    let Some((bundle_root, intermediates)) = doc.cabundle.split_first() else {
        return Err(NitroError::chain("cabundle", "is empty"));
    };
    if *bundle_root != root.der() {
        return Err(NitroError::chain(
            "cabundle[0]",
            "is not the pinned root (the bundle must start with the root it chains to)",
        ));
    }
    let (from, until) = root.validity();
    check_time("the pinned root", from, until, now)?;
    Ok(intermediates)
}

/// [`verify_chain`], with the intermediates' time-independent checks (names, signatures,
/// profiles, path lengths) taken from `cache` when the same bundle verified under the same
/// root before, and the signing certificate's (name, signature, profile, key) when the same
/// certificate verified under that bundle before. Time is never cached: the root, each
/// intermediate and the signing certificate are checked at `now`. A bundle is remembered
/// only once its whole chain, leaf included, verified; a leaf only once it verified.
pub fn verify_chain_cached<'a>(
    doc: &AttestationDoc<'a>,
    root: &NitroRoot,
    now: UnixTime,
    cache: &IntermediatesCache,
) -> Result<Chain<'a>, NitroError> {
    let key = BundleKey::of(root, doc.cabundle.get(1..).unwrap_or_default());
    let proof = match cache.get(&key) {
        Some(p) => p,
        None => {
            let chain = verify_chain(doc, root, now)?;
            cache.insert(
                key,
                VerifiedIntermediates::after_full_check(chain.intermediates.len()),
            );
            cache.insert_leaf(
                LeafKey::of(&key, doc.certificate),
                VerifiedLeaf::after_full_check(),
            );
            return Ok(chain);
        }
    };
    let intermediates = check_root(doc, root, now)?;
    if intermediates.len() != proof.count() {
        // Equal keys hash equal bundles: this cannot differ, and if it did, check in full.
        return verify_chain(doc, root, now);
    }
    let mut verified = Vec::with_capacity(intermediates.len());
    for (i, der) in intermediates.iter().enumerate() {
        let what = format!("cabundle[{}]", i.saturating_add(1));
        let fail = |e: String| NitroError::chain(what.clone(), e);
        let cert = parse_cert(der, "certificate").map_err(|e| fail(e.to_string()))?;
        let point = pki::p384_point(cert.public_key()).map_err(fail)?.to_vec();
        let (from, until) = pki::validity(&cert);
        check_time(&what, from, until, now)?;
        verified.push(ChainCert { cert, what, point });
    }
    let leaf_key = LeafKey::of(&key, doc.certificate);
    let leaf = match cache.leaf(&leaf_key) {
        Some(_proof) => known_leaf(doc.certificate, now)?,
        None => {
            let (parent_subject, parent_point) = match verified.last() {
                Some(c) => (c.cert.subject().as_raw(), c.point.as_slice()),
                None => (root.subject(), root.point()),
            };
            let leaf = link(
                doc.certificate,
                LEAF.to_owned(),
                Role::Leaf,
                parent_subject,
                parent_point,
                now,
            )?
            .cert;
            cache.insert_leaf(leaf_key, VerifiedLeaf::after_full_check());
            leaf
        }
    };
    Ok(Chain {
        intermediates: verified,
        leaf,
    })
}

/// What errors call the signing certificate.
const LEAF: &str = "the signing certificate";

/// A signing certificate verified under this bundle before (its [`VerifiedLeaf`] is in the
/// cache): parsed for the typed chain, its key read, its validity checked at `now`.
fn known_leaf(der: &[u8], now: UnixTime) -> Result<ChainCert<'_>, NitroError> {
    let fail = |e: String| NitroError::chain(LEAF, e);
    let cert = parse_cert(der, "certificate").map_err(|e| fail(e.to_string()))?;
    let point = pki::p384_point(cert.public_key()).map_err(fail)?.to_vec();
    let (from, until) = pki::validity(&cert);
    check_time(LEAF, from, until, now)?;
    Ok(ChainCert {
        cert,
        what: LEAF.to_owned(),
        point,
    })
}

/// A certificate that links to its parent, with its profile.
struct Link<'a> {
    cert: ChainCert<'a>,
    profile: Profile,
}

/// Parses one certificate and checks its link to the parent (name, signature), its profile
/// for `role`, its key, and its validity at `now`.
fn link<'a>(
    der: &'a [u8],
    what: String,
    role: Role,
    parent_subject: &[u8],
    parent_point: &[u8],
    now: UnixTime,
) -> Result<Link<'a>, NitroError> {
    let fail = |e: String| NitroError::chain(what.clone(), e);
    let cert = parse_cert(der, "certificate").map_err(|e| fail(e.to_string()))?;
    if cert.issuer().as_raw() != parent_subject {
        return Err(fail(format!(
                "is issued by `{}`, the certificate before it in the bundle is another (the bundle must be in AWS's order, root first)",
                cert.issuer()
            )));
    }
    pki::verify_cert_signature(&cert, parent_point).map_err(fail)?;
    let profile = pki::check_profile(&cert, role).map_err(fail)?;
    let point = pki::p384_point(cert.public_key()).map_err(fail)?.to_vec();
    let (from, until) = pki::validity(&cert);
    check_time(&what, from, until, now)?;
    Ok(Link {
        cert: ChainCert { cert, what, point },
        profile,
    })
}

fn check_time(
    what: &str,
    from: UnixTime,
    until: UnixTime,
    now: UnixTime,
) -> Result<(), NitroError> {
    if now < from || now > until {
        return Err(NitroError::Expired {
            what: what.to_owned(),
            from,
            until,
            now,
        });
    }
    Ok(())
}

/// RFC 5280 §4.2.1.9: at most `path_len` non-self-issued intermediates may follow a CA.
fn check_path_len(what: &str, path_len: Option<u32>, below: usize) -> Result<(), NitroError> {
    match path_len {
        Some(max) if usize::try_from(max).is_ok_and(|m| below > m) => Err(NitroError::chain(
            what,
            format!("allows {max} intermediate CAs below it, the bundle has {below}"),
        )),
        _ => Ok(()),
    }
}
