//! The test PKI standing in for Intel: root CA, PCK Platform and Processor CAs, TCB Signing
//! certificate, PCK leaves with a real SGX extension, CRLs, signed TCB info and QE identity.
//!
//! The TCB info carries one level per TCB status, so a sim enclave can be put on any
//! status by giving its PCK leaf the matching TCB component.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::der;
use super::platform::{evaluation_numbers_json, qe_identity_json, tcb_info_json};
pub use super::platform::{
    level_svn, SimPlatform, SIM_EARLY_ADVISORY, SIM_EARLY_DAYS, SIM_EARLY_EVALUATION,
    SIM_EVALUATION, SIM_FMSPC, SIM_PCE_ID, SIM_PCE_SVN, SIM_QE_ISV_SVN, SIM_QE_MRSIGNER,
    SIM_TDX_FMSPC, SIM_TEE_TCB_SVN, SIM_TEE_TCB_SVN_OUT_OF_DATE,
};
use crate::dcap::collateral::early::{BundleFile, SignedNumbers, Update};
use crate::dcap::collateral::pcs::PckCa;
use crate::dcap::collateral::Collateral;
use crate::dcap::ids::Fmspc;
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;
use crate::dcap::trust::TrustAnchor;

/// How long generated collateral stays valid.
pub const COLLATERAL_DAYS: i64 = 30;

/// A sim failure (key generation, signing, files).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// ring refused.
    #[error("signing: {0}")]
    Ring(String),
    /// Reading or writing the PKI directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PKI directory holds something else.
    #[error("{0}")]
    Format(String),
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(
        DnType::OrganizationName,
        "ratls-proxy simulation (not Intel)",
    );
    dn
}

fn ca_params(cn: &str, path_len: Option<u8>, created: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = created - Duration::days(1);
    p.not_after = created + Duration::days(3650);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = path_len.is_some();
    p
}

const ROOT_CN: &str = "ratls-proxy sim SGX Root CA";
const PCK_CA_CN: &str = "ratls-proxy sim SGX PCK Platform CA";
const PCK_PROCESSOR_CA_CN: &str = "ratls-proxy sim SGX PCK Processor CA";
const TCB_CN: &str = "ratls-proxy sim SGX TCB Signing";
const PCK_CN: &str = "ratls-proxy sim SGX PCK Certificate";

/// What is persisted in `sim-pki.json`.
#[derive(Serialize, Deserialize)]
struct Stored {
    created_at: i64,
    root_cert: String,
    root_key: String,
    pck_ca_cert: String,
    pck_ca_key: String,
    /// The Processor CA (PKI directories written before it existed have none).
    #[serde(default)]
    pck_processor_ca: Option<(String, String)>,
    tcb_cert: String,
    tcb_key: String,
}

/// The test PKI: certificates and keys.
pub struct SimPki {
    stored: Stored,
}

/// A PCK leaf certificate and its key.
pub struct PckLeaf {
    /// DER.
    pub der: Vec<u8>,
    /// PEM of the chain leaf, CA, root.
    pub chain_pem: String,
    /// PKCS#8 of the key.
    pub key_pkcs8: Vec<u8>,
    /// Its serial number bytes.
    pub serial: Vec<u8>,
}

fn der_of(pem: &str) -> Result<Vec<u8>, SimError> {
    crate::dcap::pki::pem_chain(pem.as_bytes(), "sim PKI certificate")
        .map_err(|e| SimError::Format(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| SimError::Format("empty certificate".into()))
}

fn odt(t: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Signs with a raw `r‖s` ECDSA P-256 signature, as Intel signs quotes and JSON.
pub(crate) fn sign_raw(key_pkcs8: &[u8], message: &[u8]) -> Result<Vec<u8>, SimError> {
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key_pkcs8, &rng)
        .map_err(|e| SimError::Ring(e.to_string()))?;
    key.sign(&rng, message)
        .map(|s| s.as_ref().to_vec())
        .map_err(|e| SimError::Ring(e.to_string()))
}

impl SimPki {
    /// A new PKI created at `now`.
    pub fn generate(now: UnixTime) -> Result<Self, SimError> {
        let created = odt(now);
        let root_key = KeyPair::generate()?;
        let root_params = ca_params(ROOT_CN, None, created);
        let root_cert = root_params.self_signed(&root_key)?;
        let root_key_pem = root_key.serialize_pem();
        let root = Issuer::new(root_params, root_key);

        let pck_ca_key = KeyPair::generate()?;
        let pck_ca_cert = ca_params(PCK_CA_CN, Some(0), created).signed_by(&pck_ca_key, &root)?;
        let processor_key = KeyPair::generate()?;
        let processor_cert =
            ca_params(PCK_PROCESSOR_CA_CN, Some(0), created).signed_by(&processor_key, &root)?;

        let tcb_key = KeyPair::generate()?;
        let mut tcb = CertificateParams::default();
        tcb.distinguished_name = dn(TCB_CN);
        tcb.is_ca = IsCa::ExplicitNoCa;
        tcb.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        tcb.not_before = created - Duration::days(1);
        tcb.not_after = created + Duration::days(3650);
        tcb.use_authority_key_identifier_extension = true;
        let tcb_cert = tcb.signed_by(&tcb_key, &root)?;

        Ok(Self {
            stored: Stored {
                created_at: now.0,
                root_cert: root_cert.pem(),
                root_key: root_key_pem,
                pck_ca_cert: pck_ca_cert.pem(),
                pck_ca_key: pck_ca_key.serialize_pem(),
                pck_processor_ca: Some((processor_cert.pem(), processor_key.serialize_pem())),
                tcb_cert: tcb_cert.pem(),
                tcb_key: tcb_key.serialize_pem(),
            },
        })
    }

    fn root_issuer(&self) -> Result<Issuer<'static, KeyPair>, SimError> {
        let created = odt(UnixTime(self.stored.created_at));
        Ok(Issuer::new(
            ca_params(ROOT_CN, None, created),
            KeyPair::from_pem(&self.stored.root_key)?,
        ))
    }

    /// The PEM certificate and key of one PCK CA.
    fn pck_ca(&self, ca: PckCa) -> Result<(&str, &str), SimError> {
        match ca {
            PckCa::Platform => Ok((&self.stored.pck_ca_cert, &self.stored.pck_ca_key)),
            PckCa::Processor => self
                .stored
                .pck_processor_ca
                .as_ref()
                .map(|(c, k)| (c.as_str(), k.as_str()))
                .ok_or_else(|| {
                    SimError::Format(
                        "this sim PKI has no Processor CA (created by an older build)".into(),
                    )
                }),
        }
    }

    fn pck_ca_issuer(&self, ca: PckCa) -> Result<Issuer<'static, KeyPair>, SimError> {
        let created = odt(UnixTime(self.stored.created_at));
        let cn = match ca {
            PckCa::Platform => PCK_CA_CN,
            PckCa::Processor => PCK_PROCESSOR_CA_CN,
        };
        Ok(Issuer::new(
            ca_params(cn, Some(0), created),
            KeyPair::from_pem(self.pck_ca(ca)?.1)?,
        ))
    }

    /// The root certificate, PEM (what `--trust-root` takes).
    pub fn root_pem(&self) -> &str {
        &self.stored.root_cert
    }

    /// The root as a trust anchor.
    pub fn anchor(&self) -> Result<TrustAnchor, SimError> {
        TrustAnchor::from_der(der_of(&self.stored.root_cert)?)
            .map_err(|e| SimError::Format(e.to_string()))
    }

    /// A PCK leaf of the SGX platform whose TCB lands on `status`'s level.
    pub fn pck_leaf(&self, status: TcbStatus, now: UnixTime) -> Result<PckLeaf, SimError> {
        self.pck_leaf_on(SimPlatform::Sgx, status, now)
    }

    /// A PCK leaf of `platform` whose TCB lands on `status`'s level (Platform CA).
    pub fn pck_leaf_on(
        &self,
        platform: SimPlatform,
        status: TcbStatus,
        now: UnixTime,
    ) -> Result<PckLeaf, SimError> {
        self.pck_leaf_under(platform, PckCa::Platform, status, now)
    }

    /// A PCK leaf of `platform` issued by the PCK CA `ca`, whose TCB lands on `status`'s level.
    pub fn pck_leaf_under(
        &self,
        platform: SimPlatform,
        ca: PckCa,
        status: TcbStatus,
        now: UnixTime,
    ) -> Result<PckLeaf, SimError> {
        self.pck_leaf_judged(platform, ca, (status, None), now)
    }

    /// A PCK leaf of `platform` issued by `ca` whose TCB lands on `status`'s level of the
    /// standard data and, under the early data, on `early`'s (none: the same status).
    pub fn pck_leaf_judged(
        &self,
        platform: SimPlatform,
        ca: PckCa,
        (status, early): (TcbStatus, Option<TcbStatus>),
        now: UnixTime,
    ) -> Result<PckLeaf, SimError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(PCK_CN);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.not_before = odt(now) - Duration::days(1);
        p.not_after = odt(now) + Duration::days(365);
        p.use_authority_key_identifier_extension = true;
        let serial: Vec<u8> = {
            let mut s = [0u8; 16];
            ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut s)
                .map_err(|e| SimError::Ring(e.to_string()))?;
            s[0] &= 0x7f;
            s[0] |= 0x01;
            s.to_vec()
        };
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 2, 840, 113_741, 1, 13, 1],
            sgx_extension(
                (level_svn(status), early.map_or(0, level_svn)),
                platform.fmspc(),
            ),
        )];
        let cert = p.signed_by(&key, &self.pck_ca_issuer(ca)?)?;
        let chain_pem = format!(
            "{}{}{}",
            cert.pem(),
            self.pck_ca(ca)?.0,
            self.stored.root_cert
        );
        Ok(PckLeaf {
            der: cert.der().to_vec(),
            chain_pem,
            key_pkcs8: key.serialize_der(),
            serial,
        })
    }

    /// SGX collateral valid from `issued` for [`COLLATERAL_DAYS`], revoking the given PCK
    /// serials.
    pub fn collateral(
        &self,
        issued: UnixTime,
        revoked_pck_serials: &[Vec<u8>],
    ) -> Result<Collateral, SimError> {
        self.collateral_for(SimPlatform::Sgx, issued, revoked_pck_serials)
    }

    /// `platform`'s collateral valid from `issued` for [`COLLATERAL_DAYS`], revoking the
    /// given PCK serials (the Platform CA's CRL).
    pub fn collateral_for(
        &self,
        platform: SimPlatform,
        issued: UnixTime,
        revoked_pck_serials: &[Vec<u8>],
    ) -> Result<Collateral, SimError> {
        self.collateral_under(platform, PckCa::Platform, issued, revoked_pck_serials)
    }

    /// `platform`'s collateral with the PCK CA `ca`'s CRL, valid from `issued` for
    /// [`COLLATERAL_DAYS`], revoking the given PCK serials.
    pub fn collateral_under(
        &self,
        platform: SimPlatform,
        ca: PckCa,
        issued: UnixTime,
        revoked_pck_serials: &[Vec<u8>],
    ) -> Result<Collateral, SimError> {
        let this = odt(issued);
        let next = this + Duration::days(COLLATERAL_DAYS);
        let crl = |revoked: Vec<RevokedCertParams>| CertificateRevocationListParams {
            this_update: this,
            next_update: next,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let root_crl = crl(Vec::new()).signed_by(&self.root_issuer()?)?;
        let revoked = revoked_pck_serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: this,
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let pck_crl = crl(revoked).signed_by(&self.pck_ca_issuer(ca)?)?;

        let next_update = UnixTime(issued.0 + COLLATERAL_DAYS * 86_400);
        let tcb_info = tcb_info_json(platform, issued, next_update, false);
        let qe_identity = qe_identity_json(platform, issued, next_update, SIM_EVALUATION);
        let tcb_key = KeyPair::from_pem(&self.stored.tcb_key)?.serialize_der();
        let tcb_chain = format!("{}{}", self.stored.tcb_cert, self.stored.root_cert);
        Ok(Collateral {
            pck_crl_issuer_chain: format!("{}{}", self.pck_ca(ca)?.0, self.stored.root_cert),
            root_ca_crl: root_crl.der().to_vec(),
            pck_crl: pck_crl.der().to_vec(),
            tcb_info_issuer_chain: tcb_chain.clone(),
            tcb_info_signature: sign_raw(&tcb_key, tcb_info.as_bytes())?,
            tcb_info,
            qe_identity_issuer_chain: tcb_chain,
            qe_identity_signature: sign_raw(&tcb_key, qe_identity.as_bytes())?,
            qe_identity,
        })
    }

    /// `platform`'s early data issued at `issued` as an early bundle: the standard bundle's
    /// CRLs and chains with the early TCB info and QE identity ([`SIM_EARLY_EVALUATION`]),
    /// and the evaluation data numbers list dating it.
    pub fn early_bundle(
        &self,
        platform: SimPlatform,
        issued: UnixTime,
    ) -> Result<BundleFile, SimError> {
        let mut c = self.collateral_for(platform, issued, &[])?;
        let next_update = UnixTime(issued.0 + COLLATERAL_DAYS * 86_400);
        c.tcb_info = tcb_info_json(platform, issued, next_update, true);
        c.tcb_info_signature = self.sign_with_tcb_key(&c.tcb_info)?;
        c.qe_identity = qe_identity_json(platform, issued, next_update, SIM_EARLY_EVALUATION);
        c.qe_identity_signature = self.sign_with_tcb_key(&c.qe_identity)?;
        let text = evaluation_numbers_json(platform, issued, next_update);
        Ok(BundleFile {
            evaluation_numbers: Some(SignedNumbers {
                issuer_chain: c.tcb_info_issuer_chain.clone(),
                signature: self.sign_with_tcb_key(&text)?,
                text,
            }),
            collateral: c,
            update: Update::Early,
        })
    }

    /// Signs arbitrary TCB info text with the TCB Signing key (for tests of edited collateral).
    pub fn sign_with_tcb_key(&self, text: &str) -> Result<Vec<u8>, SimError> {
        sign_raw(
            &KeyPair::from_pem(&self.stored.tcb_key)?.serialize_der(),
            text.as_bytes(),
        )
    }

    /// Loads the PKI in `dir`, or creates it there (atomically: concurrent starters agree on
    /// one PKI). Writes `root.pem`, a `collateral.json` (SGX) valid at `now`, and
    /// `collateral/{sgx,tdx}.json`.
    pub fn load_or_create(dir: &Path, now: UnixTime) -> Result<Self, SimError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let state = dir.join("sim-pki.json");
        if !state.exists() {
            let fresh = Self::generate(now)?;
            let json = serde_json::to_vec_pretty(&fresh.stored)
                .map_err(|e| SimError::Format(e.to_string()))?;
            let tmp = dir.join(format!(".sim-pki.{}.tmp", std::process::id()));
            write_private(&tmp, &json).map_err(io(&tmp))?;
            // hard_link fails if another starter won the race; then use theirs.
            let _ = std::fs::hard_link(&tmp, &state);
            let _ = std::fs::remove_file(&tmp);
        }
        let bytes = std::fs::read(&state).map_err(io(&state))?;
        let stored: Stored = serde_json::from_slice(&bytes)
            .map_err(|e| SimError::Format(format!("{}: {e}", state.display())))?;
        let pki = Self { stored };

        let root = dir.join("root.pem");
        if std::fs::read_to_string(&root).ok().as_deref() != Some(pki.root_pem()) {
            atomic_write(&root, pki.root_pem().as_bytes()).map_err(io(&root))?;
        }
        let collateral = dir.join("collateral.json");
        if !pki.collateral_file_fresh(&collateral, now) {
            let c = pki.collateral(UnixTime(now.0 - 3600), &[])?;
            atomic_write(&collateral, c.to_json().as_bytes()).map_err(io(&collateral))?;
        }
        // One bundle per simulated platform: `[collateral] source = "DIR/collateral"` covers
        // SGX and TDX sims together.
        let bundles = dir.join("collateral");
        std::fs::create_dir_all(&bundles).map_err(io(&bundles))?;
        // And each platform's early data (the next TCB recovery) as an early bundle.
        for (platform, name, early) in [
            (SimPlatform::Sgx, "sgx.json", false),
            (SimPlatform::Tdx, "tdx.json", false),
            (SimPlatform::Sgx, "sgx-early.json", true),
            (SimPlatform::Tdx, "tdx-early.json", true),
        ] {
            let path = bundles.join(name);
            if !pki.collateral_file_fresh(&path, now) {
                let issued = UnixTime(now.0 - 3600);
                let json = if early {
                    pki.early_bundle(platform, issued)?.to_json()
                } else {
                    pki.collateral_for(platform, issued, &[])?.to_json()
                };
                atomic_write(&path, json.as_bytes()).map_err(io(&path))?;
            }
        }
        Ok(pki)
    }

    fn collateral_file_fresh(&self, path: &Path, now: UnixTime) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let Ok(c) = Collateral::from_json(&bytes) else {
            return false;
        };
        let Ok(anchor) = self.anchor() else {
            return false;
        };
        crate::dcap::verified::VerifiedCollateral::verify(&c, &anchor)
            .is_ok_and(|v| v.check_fresh(now).is_ok() && v.valid_until().0 > now.0 + 86_400)
    }
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

pub(super) fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The SGX extension with components 1 and 2 = `svn`, the rest 0, PCESVN [`SIM_PCE_SVN`].
fn sgx_extension(svn: (u8, u8), fmspc: Fmspc) -> Vec<u8> {
    let base: [u64; 7] = [1, 2, 840, 113_741, 1, 13, 1];
    let arc = |tail: &[u64]| der::oid(&[&base[..], tail].concat());
    let mut cpusvn = [0u8; 16];
    cpusvn[0] = svn.0;
    cpusvn[1] = svn.1;
    let mut tcb: Vec<Vec<u8>> = (1..=16u64)
        .map(|i| {
            let v = match i {
                1 => svn.0,
                2 => svn.1,
                _ => 0,
            };
            der::seq(&[arc(&[2, i]), der::uint(u64::from(v))])
        })
        .collect();
    tcb.push(der::seq(&[
        arc(&[2, 17]),
        der::uint(u64::from(SIM_PCE_SVN)),
    ]));
    tcb.push(der::seq(&[arc(&[2, 18]), der::octets(&cpusvn)]));
    der::seq(&[
        der::seq(&[arc(&[1]), der::octets(&[0x77; 16])]),
        der::seq(&[arc(&[2]), der::seq(&tcb)]),
        der::seq(&[arc(&[3]), der::octets(SIM_PCE_ID.as_bytes())]),
        der::seq(&[arc(&[4]), der::octets(fmspc.as_bytes())]),
        der::seq(&[arc(&[5]), der::enumerated(0)]),
    ])
}
