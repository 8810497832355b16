//! The sim Nitro PKI kept in a PKI directory: `sim-nitro.json` (its keys, 0600; made anew
//! when the intermediates end within a day), `nitro-root.pem`, and the CRLs of the offline
//! form in `collateral/nitro/`.

use std::path::Path;

use rcgen::KeyPair;

use super::{crl_file, intermediate_params, odt, root_params, Ca, ChainSpec, SimNitro};
use crate::dcap::time::UnixTime;
use crate::sim::SimError;

/// A sim Nitro PKI as kept in a PKI directory (`sim-nitro.json`, 0600).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    created_at: i64,
    /// The root, then the intermediates: PEM certificate and PEM key each.
    cas: Vec<(String, String)>,
}

impl SimNitro {
    fn stored(&self) -> Stored {
        let pem = crate::sim::snp::pem;
        Stored {
            created_at: self.created_at.0,
            cas: std::iter::once(&self.root)
                .chain(&self.intermediates)
                .map(|c| (pem(&c.der), c.key.serialize_pem()))
                .collect(),
        }
    }

    fn from_stored(stored: &Stored) -> Result<Self, SimError> {
        let created = odt(UnixTime(stored.created_at));
        let mut cas = stored.cas.iter().enumerate().map(|(i, (cert, key))| {
            let der = crate::dcap::pki::pem_chain(cert.as_bytes(), "sim Nitro CA")
                .map_err(|e| SimError::Format(format!("sim Nitro CA {i}: {e}")))?
                .into_iter()
                .next()
                .ok_or_else(|| SimError::Format(format!("sim Nitro CA {i}: no certificate")))?;
            let params = match i {
                0 => root_params(created),
                i => intermediate_params(i - 1, &ChainSpec::default(), created),
            };
            Ok(Ca {
                params,
                key: KeyPair::from_pem(key)?,
                der,
            })
        });
        let root = cas
            .next()
            .ok_or_else(|| SimError::Format("sim Nitro PKI without a root".into()))??;
        let intermediates = cas.collect::<Result<Vec<_>, SimError>>()?;
        if intermediates.len() != 3 {
            return Err(SimError::Format(
                "a stored sim Nitro PKI has three intermediates".into(),
            ));
        }
        Ok(Self {
            root,
            intermediates,
            created_at: UnixTime(stored.created_at),
        })
    }

    /// The root, PEM (what `[collateral] nitro_trust_root` and `verify --trust-root` take).
    pub fn root_pem(&self) -> String {
        crate::sim::snp::pem(&self.root.der)
    }

    /// Loads the sim Nitro PKI kept in `dir` (`sim-nitro.json`), or creates it there (again
    /// when its intermediates end within a day of `now`); writes `dir/nitro-root.pem` and
    /// the CRLs of the offline form, `dir/collateral/nitro/0.crl` (the root's) and `1.crl`
    /// (the regional CA's), valid from an hour before `now` for seven days.
    pub fn load_or_create(dir: &Path, now: UnixTime) -> Result<Self, SimError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let state = dir.join("sim-nitro.json");
        let usable = |path: &Path| {
            std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
                .and_then(|s| Self::from_stored(&s).ok())
                .filter(|s| s.intermediates_until().0 > now.0.saturating_add(86_400))
        };
        let existed = state.exists();
        let sim = match usable(&state) {
            Some(sim) => sim,
            None => {
                let fresh = Self::generate(now)?;
                let json = serde_json::to_vec_pretty(&fresh.stored())
                    .map_err(|e| SimError::Format(e.to_string()))?;
                let tmp = dir.join(format!(".sim-nitro.{}.tmp", std::process::id()));
                crate::sim::pki::write_private(&tmp, &json).map_err(io(&tmp))?;
                // Expired or unreadable: replaced. hard_link fails if another starter won
                // the race meanwhile; then use theirs, so concurrent starters agree.
                if existed {
                    let _ = std::fs::remove_file(&state);
                }
                let _ = std::fs::hard_link(&tmp, &state);
                let _ = std::fs::remove_file(&tmp);
                usable(&state).ok_or_else(|| {
                    SimError::Format(format!("{}: not a usable sim Nitro PKI", state.display()))
                })?
            }
        };
        let root = dir.join("nitro-root.pem");
        crate::sim::pki::atomic_write(&root, sim.root_pem().as_bytes()).map_err(io(&root))?;
        let crls = dir.join("collateral").join("nitro");
        std::fs::create_dir_all(&crls).map_err(io(&crls))?;
        for issuer in 0..2 {
            let der = sim.crl(
                issuer,
                &[],
                UnixTime(now.0.saturating_sub(3600)),
                UnixTime(now.0.saturating_add(7 * 86_400)),
            )?;
            let path = crls.join(crl_file(issuer));
            crate::sim::pki::atomic_write(&path, &der).map_err(io(&path))?;
        }
        Ok(sim)
    }

    /// The last second every intermediate is valid.
    fn intermediates_until(&self) -> UnixTime {
        self.intermediates
            .iter()
            .map(|c| {
                x509_parser::parse_x509_certificate(&c.der).map_or(UnixTime(0), |(_, x)| {
                    UnixTime(x.validity().not_after.timestamp())
                })
            })
            .min()
            .unwrap_or(UnixTime(0))
    }
}
