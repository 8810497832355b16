//! PURE. Verifying one attestation document at a given time.
//!
//! The body of [`verify`] is the list of `docs/nitro.md`, in order; each step is one function:
//! 1. the chain from the pinned root to the signing certificate at `now` ([`verify_chain`]);
//! 2. ES384 over the COSE `Sig_structure` with the signing certificate's key;
//! 3. the document's timestamp inside the signing certificate's validity.
//!
//! Parsing ([`parse`]) comes first and is its own step, so a caller can show what a refused
//! document said. Revocation is [`crate::nitro::revocation::check`], over CRLs the edge
//! fetched; policy is `appraise::nitro_policy`.

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};

use crate::dcap::time::UnixTime;
use crate::nitro::cache::IntermediatesCache;
use crate::nitro::chain::{verify_chain, verify_chain_cached, Chain};
use crate::nitro::cose::CoseSign1;
use crate::nitro::document::AttestationDoc;
use crate::nitro::error::{DocumentError, NitroError};
use crate::nitro::pki;
use crate::nitro::trust::NitroRoot;

/// A document parsed from its COSE_Sign1 bytes; nothing verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The envelope.
    pub cose: CoseSign1<'a>,
    /// The document inside it.
    pub doc: AttestationDoc<'a>,
}

/// Parses a COSE_Sign1 and the attestation document it carries.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, DocumentError> {
    let cose = CoseSign1::parse(bytes)?;
    let doc = AttestationDoc::parse(cose.payload)?;
    Ok(Parsed { cose, doc })
}

/// A document whose chain and signature verified at one time. The only constructor is
/// [`verify`].
#[derive(Clone, Debug)]
pub struct VerifiedDocument<'a> {
    doc: AttestationDoc<'a>,
    chain: Chain<'a>,
    verified_at: UnixTime,
}

impl<'a> VerifiedDocument<'a> {
    /// The verified document.
    pub fn doc(&self) -> &AttestationDoc<'a> {
        &self.doc
    }

    /// The verified chain below the root.
    pub fn chain(&self) -> &Chain<'a> {
        &self.chain
    }

    /// When it was verified.
    pub fn verified_at(&self) -> UnixTime {
        self.verified_at
    }

    /// The last second every certificate of the chain is valid (the signing certificate
    /// lives about three hours): a verdict must not be reused after it.
    pub fn valid_until(&self, root: &NitroRoot) -> UnixTime {
        self.chain
            .intermediates
            .iter()
            .chain(std::iter::once(&self.chain.leaf))
            .map(|c| pki::validity(&c.cert).1)
            .fold(root.validity().1, UnixTime::min)
    }
}

/// Verifies a parsed document against `root` at `now`.
pub fn verify<'a>(
    parsed: &Parsed<'a>,
    root: &NitroRoot,
    now: UnixTime,
) -> Result<VerifiedDocument<'a>, NitroError> {
    finish(parsed, verify_chain(&parsed.doc, root, now)?, now)
}

/// [`verify`], with the CA bundle's time-independent checks remembered in `cache` (see
/// [`crate::nitro::cache`]): the same verdict, fewer signature checks per document.
pub fn verify_cached<'a>(
    parsed: &Parsed<'a>,
    root: &NitroRoot,
    now: UnixTime,
    cache: &IntermediatesCache,
) -> Result<VerifiedDocument<'a>, NitroError> {
    finish(
        parsed,
        verify_chain_cached(&parsed.doc, root, now, cache)?,
        now,
    )
}

/// Steps 2 and 3 over a verified chain.
fn finish<'a>(
    parsed: &Parsed<'a>,
    chain: Chain<'a>,
    now: UnixTime,
) -> Result<VerifiedDocument<'a>, NitroError> {
    verify_signature(&parsed.cose, &chain)?;
    check_timestamp(&parsed.doc, &chain)?;
    Ok(VerifiedDocument {
        doc: parsed.doc.clone(),
        chain,
        verified_at: now,
    })
}

/// Step 2: the signing certificate's key signed `["Signature1", protected, b"", payload]`.
fn verify_signature(cose: &CoseSign1<'_>, chain: &Chain<'_>) -> Result<(), NitroError> {
    crate::dcap::pki::count_verification();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, chain.leaf_point())
        .verify(&cose.sig_structure(), cose.signature)
        .map_err(|_| NitroError::Signature)
}

/// Step 3: the hypervisor mints a signing certificate per document, seconds before it; a
/// document stamped outside that certificate's life was not signed in it.
fn check_timestamp(doc: &AttestationDoc<'_>, chain: &Chain<'_>) -> Result<(), NitroError> {
    let (from, until) = pki::validity(&chain.leaf.cert);
    let secs = doc.timestamp_secs();
    if secs < from.0 || secs > until.0 {
        return Err(NitroError::TimestampOutsideLeaf {
            timestamp_ms: doc.timestamp_ms,
            from,
            until,
        });
    }
    Ok(())
}
