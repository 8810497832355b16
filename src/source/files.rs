//! EDGE. Collateral from a JSON bundle file or a directory of them.
//! Each bundle is verified once at load; quotes get the bundle for their FMSPC, PCK CA and
//! TEE (one platform can have SGX and TDX collateral under the same FMSPC, and a Processor-CA
//! and a Platform-CA bundle: their PCK CRLs differ). In a directory, a bundle marked
//! `"update": "early"` is Intel's early TCB data for its platform: verified as a bundle, then
//! as the early data of the standard bundle with the same key, which it never replaces.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::appraise::CollateralSource;
use crate::dcap::collateral::early::{BundleFile, EarlyCollateral, Update};
use crate::dcap::collateral::pcs::PckCa;
use crate::dcap::collateral::tcb_info::CollateralTee;
use crate::dcap::collateral::CollateralError;
use crate::dcap::early::VerifiedEarly;
use crate::dcap::error::VerifyError;
use crate::dcap::ids::Fmspc;
use crate::dcap::quote::{Body, Quote};
use crate::dcap::trust::TrustAnchor;
use crate::dcap::verified::VerifiedCollateral;
use crate::source::platform::PlatformOf;

use super::fetch::rollback;

/// A bundle's key: its platform model, the PCK CA of its PCK CRL, and its TEE.
pub(crate) type BundleKey = (Fmspc, PckCa, CollateralTee);

/// An early bundle read from a file, waiting for its platform's standard bundle: the file,
/// the key and the early data.
type EarlyFile = (std::path::PathBuf, (BundleKey, EarlyCollateral));

/// Verified bundles by FMSPC, PCK CA and TEE.
#[derive(Debug, Default)]
pub struct FileCollateral {
    by_fmspc: HashMap<BundleKey, Arc<VerifiedCollateral>>,
    /// Early data by the key of the standard bundle it was verified against.
    early: HashMap<BundleKey, Arc<VerifiedEarly>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The platform each quote names, by its PCK chain bytes.
    platforms: PlatformOf,
}

impl FileCollateral {
    /// Loads one bundle, or every `*.json` in a directory; a bundle that does not verify
    /// is an error for a file and skipped (and reported) for a directory.
    pub fn load(path: &Path, anchor: &TrustAnchor) -> Result<(Self, Vec<String>), String> {
        let mut out = Self::default();
        let mut skipped = Vec::new();
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut files: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            let mut early = Vec::new();
            for file in files {
                match out.add(&file, anchor) {
                    Ok(Some(e)) => early.push(e),
                    Ok(None) => {}
                    Err(e) => skipped.push(e),
                }
            }
            // After every standard bundle: each early one is verified against its platform's.
            for (file, e) in early {
                if let Err(e) = out.add_early(&file, e) {
                    skipped.push(e);
                }
            }
            if out.by_fmspc.is_empty() {
                return Err(format!(
                    "{}: no usable collateral bundle ({})",
                    path.display(),
                    skipped.join("; ")
                ));
            }
        } else if out.add(path, anchor)?.is_some() {
            return Err(format!(
                "{}: holds Intel's early TCB data (\"update\": \"early\"), not the standard data verdicts are made under; give a directory with the standard bundle beside it",
                path.display()
            ));
        }
        Ok((out, skipped))
    }

    /// Adds a standard bundle; an early one is verified as a bundle and handed back (its
    /// key, the early data) to be paired with its platform's standard bundle.
    fn add(&mut self, file: &Path, anchor: &TrustAnchor) -> Result<Option<EarlyFile>, String> {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let b = BundleFile::from_json(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        let c = &b.collateral;
        let v = VerifiedCollateral::verify(c, anchor)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let Some(ca) = v.pck_crl_ca else {
            return Err(format!(
                "{}: the PCK CRL's issuer names neither the PCK Processor nor the Platform CA",
                file.display()
            ));
        };
        let key = (v.tcb_info.fmspc, ca, v.tcb_info.tee);
        if b.update == Update::Early {
            let early = EarlyCollateral::of(c, b.evaluation_numbers.clone());
            return Ok(Some((file.to_path_buf(), (key, early))));
        }
        // Two bundles for one platform and CA: the one that does not move backwards from the
        // other (TCB info, QE identity, both CRLs: see `rollback`) stands, whatever the file
        // order; on a tie the later file wins, as before.
        let keep_held = self.by_fmspc.get(&key).and_then(|held| rollback(held, &v));
        match keep_held {
            Some(why) => {
                tracing::warn!(file = %file.display(), why, "collateral bundle older than another for the same platform; not used")
            }
            None => {
                self.by_fmspc.insert(key, Arc::new(v));
            }
        }
        Ok(None)
    }

    /// Verifies `early` as the early data of the standard bundle with its key; of two for one
    /// platform, the newer (evaluation data number, then issue date) stands.
    fn add_early(
        &mut self,
        file: &Path,
        (key, early): (BundleKey, EarlyCollateral),
    ) -> Result<(), String> {
        let at = |e: String| format!("{}: {e}", file.display());
        let standard = self.by_fmspc.get(&key).ok_or_else(|| {
            at(format!(
                "early TCB data for FMSPC {} ({} CA) with no standard bundle for that platform",
                key.0,
                key.1.as_str()
            ))
        })?;
        let v = VerifiedEarly::verify(&early, standard).map_err(|e| at(e.to_string()))?;
        let level = |e: &VerifiedEarly| {
            (
                e.tcb_info.tcb_evaluation_data_number,
                e.tcb_info.issue_date,
                e.qe_identity.tcb_evaluation_data_number,
                e.qe_identity.issue_date,
            )
        };
        if self
            .early
            .get(&key)
            .is_some_and(|held| level(&v) < level(held))
        {
            tracing::warn!(file = %file.display(), "early TCB data older than another for the same platform; not used");
            return Ok(());
        }
        self.early.insert(key, Arc::new(v));
        Ok(())
    }

    /// Lookups answered and lookups with no bundle.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Every loaded bundle.
    pub fn bundles(&self) -> impl Iterator<Item = &Arc<VerifiedCollateral>> {
        self.by_fmspc.values()
    }

    /// Every loaded bundle with its key.
    pub(crate) fn keyed(&self) -> impl Iterator<Item = (&BundleKey, &Arc<VerifiedCollateral>)> {
        self.by_fmspc.iter()
    }

    /// Every early bundle with the key of its platform's standard bundle.
    pub(crate) fn early_keyed(&self) -> impl Iterator<Item = (&BundleKey, &Arc<VerifiedEarly>)> {
        self.early.iter()
    }

    /// The key of `quote`'s platform, when its PCK certificate names one.
    fn key_of(&self, quote: &Quote<'_>) -> Option<BundleKey> {
        let (fmspc, cn) = self.platforms.of(quote)?;
        let tee = match quote.body {
            Body::Sgx(_) => CollateralTee::Sgx,
            Body::Td(_) => CollateralTee::Tdx,
        };
        Some((fmspc, PckCa::from_issuer_cn(&cn)?, tee))
    }
}

impl CollateralSource for FileCollateral {
    fn early_for(&self, quote: &Quote<'_>) -> Option<Arc<VerifiedEarly>> {
        self.early.get(&self.key_of(quote)?).cloned()
    }

    fn verified_for(&self, quote: &Quote<'_>) -> Result<Arc<VerifiedCollateral>, VerifyError> {
        let platform = self
            .platforms
            .of(quote)
            .map(|(f, cn)| (f, PckCa::from_issuer_cn(&cn)));
        let tee = match quote.body {
            Body::Sgx(_) => CollateralTee::Sgx,
            Body::Td(_) => CollateralTee::Tdx,
        };
        let found = match platform {
            Some((f, Some(ca))) => self.by_fmspc.get(&(f, ca, tee)),
            _ => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match found {
            Some(v) => Ok(Arc::clone(v)),
            None => Err(VerifyError::Collateral(CollateralError::Content {
                what: "collateral",
                detail: match platform {
                    Some((f, Some(ca))) => format!(
                        "no {} collateral bundle for FMSPC {f} and the PCK {} CA",
                        if tee == CollateralTee::Sgx {
                            "SGX"
                        } else {
                            "TDX"
                        },
                        ca.as_str()
                    ),
                    Some((_, None)) => {
                        "the quote's PCK certificate names neither the Processor nor the Platform CA".into()
                    }
                    None => "the quote's PCK certificate names no FMSPC".into(),
                },
            })),
        }
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::dcap::time::UnixTime;
    use crate::sim::SimPki;

    #[test]
    fn of_bundles_for_one_platform_the_newest_stands_whatever_the_file_order() {
        let now = UnixTime::now();
        let pki = SimPki::generate(now).expect("pki");
        let anchor = pki.anchor().expect("anchor");
        let dir = std::env::temp_dir().join(format!("ratls-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let newer = UnixTime(now.0 - 60);
        let older = UnixTime(now.0 - 2 * 86_400);
        let crl_issued = UnixTime(now.0 - 30);
        let base = pki.collateral(newer, &[]).expect("collateral");
        // The same TCB info with a newer PCK CRL (a revocation): it must stand although
        // `0.json` is read first and `a.json` (older CRL) and `b.json` (older all) after it.
        let mut revoking = base.clone();
        revoking.pck_crl = pki
            .collateral(crl_issued, &[vec![0x42]])
            .expect("collateral")
            .pck_crl;
        let old = pki.collateral(older, &[]).expect("collateral");
        for (name, c) in [("0.json", &revoking), ("a.json", &base), ("b.json", &old)] {
            std::fs::write(dir.join(name), c.to_json()).expect("write");
        }
        let (files, skipped) = FileCollateral::load(&dir, &anchor).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(skipped.is_empty(), "{skipped:?}");
        let held: Vec<_> = files
            .bundles()
            .map(|b| {
                let crl = b
                    .windows()
                    .iter()
                    .find(|w| w.item == crate::dcap::collateral::CollateralItem::PckCrl)
                    .map(|w| w.from);
                (b.tcb_info.issue_date, crl)
            })
            .collect();
        assert_eq!(held, vec![(newer, Some(crl_issued))]);
    }
}
