//! The rustls `ServerCertVerifier` for RA-TLS upstreams.
//!
//! It replaces WebPKI's checks as follows, and honours the rest of the `danger` contract:
//! - chain to a CA root → the quote's chain to the pinned Intel root, collateral, policy;
//! - server name → none: an RA-TLS certificate is self-issued with arbitrary names; the
//!   identity is the attested enclave, and the proxy picks the policy by destination host;
//! - certificate validity → checked (notBefore/notAfter at rustls' `now`);
//! - handshake signature → delegated to rustls' own verification with the leaf key, so the
//!   peer proves it holds the key that REPORTDATA binds. Never assumed.
//!
//! It does no I/O: collateral comes from an in-memory source, the cache is synchronous.
//! Resumed TLS sessions skip this verifier, so [`client_config`] disables resumption and
//! [`RaTlsVerifier::verdict_for`] re-derives the verdict from the connection's own leaf.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime as RustlsTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use super::binding::BindingMode;
use super::cache::{CachedVerdict, GenerationId, PolicyId, VerdictCache};
use super::certificate::{appraise_certificate_judged, AcceptedCert, CertAppraisal, EntryJudges};
use super::nitro::NitroJudge;
use super::snp::SnpJudge;
use crate::appraise::nitro_policy::NitroPolicy;
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::refusal::Refusal;
use crate::appraise::snp_policy::SnpPolicy;
use crate::appraise::snp_source::SnpCollateralSource;
use crate::appraise::{CollateralSource, SnapshotId};
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;
use crate::nitro::NitroCollateral;
use crate::snp::SnpTrust;

/// The error carried through rustls when a certificate is refused: the refusal, and the
/// whole appraisal so callers can report what was parsed. Only a refused appraisal makes
/// one, so it always carries its refusal.
#[derive(Clone, Debug)]
pub struct RaTlsRefused {
    /// Why.
    pub refusal: Refusal,
    /// Everything learnt before the refusal.
    pub appraisal: Box<CertAppraisal>,
}

impl fmt::Display for RaTlsRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RA-TLS attestation refused: {}", self.refusal)
    }
}

impl std::error::Error for RaTlsRefused {}

impl RaTlsRefused {
    /// Finds our refusal inside an error returned by a TLS handshake, if it is one.
    /// (`io::Error::source` skips the wrapped error, so look inside it explicitly.)
    pub fn find<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e RaTlsRefused> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<RaTlsRefused>() {
                return Some(r);
            }
            if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
                e.downcast_ref::<rustls::Error>()
            {
                if let Some(r) = other.0.downcast_ref::<RaTlsRefused>() {
                    return Some(r);
                }
            }
            cur = match e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => {
                    let inner: &(dyn std::error::Error + 'static) = inner;
                    Some(inner)
                }
                None => e.source(),
            };
        }
        None
    }
}

/// What a `tee = "snp"` entry's verifier judges SEV-SNP evidence with.
#[derive(Clone)]
pub struct SnpVerifier {
    /// The entry's policy.
    pub policy: SnpPolicy,
    /// The generation's SEV-SNP collateral (read without I/O).
    pub source: Arc<dyn SnpCollateralSource + Send + Sync>,
    /// The pinned ARKs (AMD's, or `[collateral] amd_trust_root`).
    pub trust: Arc<SnpTrust>,
}

impl fmt::Debug for SnpVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The policy and the ARKs it trusts describe it (the source is the generation's).
        let arks: Vec<String> = self.trust.arks().iter().map(|a| a.sha256_hex()).collect();
        f.debug_struct("SnpVerifier")
            .field("policy", &self.policy)
            .field("arks", &arks)
            .finish_non_exhaustive()
    }
}

/// What a `tee = "nitro"` entry's verifier judges AWS Nitro evidence with.
#[derive(Clone)]
pub struct NitroVerifier {
    /// The entry's policy.
    pub policy: NitroPolicy,
    /// The generation's Nitro collateral (root, intermediates, CRLs; read without I/O).
    pub collateral: Arc<dyn NitroCollateral + Send + Sync>,
}

impl fmt::Debug for NitroVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The policy, the root and the revocation requirement describe it.
        f.debug_struct("NitroVerifier")
            .field("policy", &self.policy)
            .field("root", &self.collateral.root().sha256())
            .field("revocation", &self.collateral.revocation_mode())
            .finish_non_exhaustive()
    }
}

/// What a verifier checks against, shared by its connections.
pub struct RaTlsVerifier {
    policy: EnclavePolicy,
    /// A `tee = "snp"` entry's: Intel evidence is then refused whatever `policy` says.
    snp: Option<SnpVerifier>,
    /// A `tee = "nitro"` entry's: Intel and SEV-SNP evidence is then refused.
    nitro: Option<NitroVerifier>,
    mode: BindingMode,
    trust_root_id: CertSha256,
    policy_id: PolicyId,
    collateral: Arc<dyn CollateralSource + Send + Sync>,
    cache: Arc<VerdictCache>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for RaTlsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsVerifier")
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl RaTlsVerifier {
    /// A verifier for one policy. `trust_root_id` distinguishes verdicts made under different roots.
    pub fn new(
        policy: EnclavePolicy,
        mode: BindingMode,
        trust_root_id: CertSha256,
        collateral: Arc<dyn CollateralSource + Send + Sync>,
        cache: Arc<VerdictCache>,
    ) -> Self {
        let policy_id = PolicyId::of(&(
            (&policy, &None::<SnpVerifier>, &None::<NitroVerifier>),
            mode,
            trust_root_id,
            GenerationId(0),
        ));
        Self {
            policy,
            snp: None,
            nitro: None,
            mode,
            trust_root_id,
            policy_id,
            collateral,
            cache,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// The same verifier for generation `id` of a proxy's configuration: verdicts made
    /// under another generation (another policy or collateral source) are never reused.
    pub fn in_generation(mut self, id: GenerationId) -> Self {
        self.policy_id = self.policy_id_in(id);
        self
    }

    fn policy_id_in(&self, id: GenerationId) -> PolicyId {
        PolicyId::of(&(
            (&self.policy, &self.snp, &self.nitro),
            self.mode,
            self.trust_root_id,
            id,
        ))
    }

    /// The same verifier for a `tee = "nitro"` entry (`nitro`: its policy and the
    /// generation's Nitro collateral; `None` leaves the entry as it was). Call before
    /// [`Self::in_generation`].
    pub fn with_nitro(mut self, nitro: Option<NitroVerifier>) -> Self {
        self.nitro = nitro;
        self.policy_id = self.policy_id_in(GenerationId(0));
        self
    }

    /// The same verifier for a `tee = "snp"` entry (`snp`: its policy, collateral and
    /// ARKs; `None` leaves an Intel entry). Call before [`Self::in_generation`].
    pub fn with_snp(mut self, snp: Option<SnpVerifier>) -> Self {
        self.snp = snp;
        self.policy_id = self.policy_id_in(GenerationId(0));
        self
    }

    /// The collateral snapshot verdicts are made under now (an SNP entry's: its SEV-SNP
    /// collateral's, which changes with each chain or CRL stored; a Nitro entry's: its
    /// CRLs').
    pub fn snapshot(&self) -> SnapshotId {
        match (&self.snp, &self.nitro) {
            (Some(snp), _) => SnapshotId(snp.source.snapshot_id()),
            (None, Some(nitro)) => SnapshotId(nitro.collateral.snapshot_id()),
            (None, None) => self.collateral.snapshot_id(),
        }
    }

    /// The verdict cache.
    pub fn cache(&self) -> &Arc<VerdictCache> {
        &self.cache
    }

    /// The verdict for `leaf_der` at `now`: from the cache, or by full verification.
    /// A cache hit still re-checks the key binding on this very certificate.
    pub fn verdict_for(
        &self,
        leaf_der: &[u8],
        now: UnixTime,
    ) -> Result<Arc<CachedVerdict>, RaTlsRefused> {
        let sha = CertSha256(Sha256::digest(leaf_der).into());
        // Read before judging: a snapshot installed meanwhile makes this verdict stale, never
        // the other way round.
        let snapshot = self.snapshot();
        if let Some(hit) = self.cache.get(sha, self.policy_id, snapshot, now) {
            if binding_still_holds(leaf_der, self.mode) {
                tracing::debug!(cert_sha256 = %sha, "verdict cache hit: no quote verification");
                return Ok(hit);
            }
        }
        let started = std::time::Instant::now();
        let snp = self.snp.as_ref().map(|s| SnpJudge {
            policy: &s.policy,
            source: s.source.as_ref(),
            trust: &s.trust,
        });
        let nitro = self.nitro.as_ref().map(|n| NitroJudge {
            policy: &n.policy,
            collateral: n.collateral.as_ref(),
        });
        let appraisal = appraise_certificate_judged(
            leaf_der,
            self.collateral.as_ref(),
            EntryJudges {
                policy: &self.policy,
                snp: snp.as_ref(),
                nitro: nitro.as_ref(),
            },
            self.mode,
            now,
        );
        self.cache.count_verification(started.elapsed());
        let accepted = match AcceptedCert::of(appraisal) {
            Ok(accepted) => accepted,
            Err((refusal, appraisal)) => return Err(RaTlsRefused { refusal, appraisal }),
        };
        let valid_until = self.accepted_until(&accepted);
        Ok(self.cache.insert_accepted(
            (self.policy_id, snapshot),
            leaf_der,
            accepted,
            valid_until,
            now,
        ))
    }

    /// The last second an accepted verdict holds: the collateral's validity, and the
    /// policy's freshness limits counted from when the certificate and the collateral were
    /// issued (a cached verdict must not outlive `max_cert_age_secs` or
    /// `max_collateral_age_secs`).
    fn accepted_until(&self, accepted: &AcceptedCert) -> UnixTime {
        let c = accepted.appraisal();
        let after = |from: UnixTime, max: Option<u64>| {
            max.map(|m| UnixTime(from.0.saturating_add(i64::try_from(m).unwrap_or(i64::MAX))))
        };
        let mut until = accepted.evidence().valid_until();
        let limits = [
            c.cert_not_before
                .and_then(|nb| after(nb, self.policy.max_cert_age_secs)),
            accepted
                .quote()
                .and_then(|q| after(q.collateral_issued, self.policy.max_collateral_age_secs)),
        ];
        for limit in limits.into_iter().flatten() {
            until = until.min(limit);
        }
        until
    }
}

/// The cheap re-check on a cache hit: the evidence in this certificate still binds its key.
fn binding_still_holds(leaf_der: &[u8], mode: BindingMode) -> bool {
    let Ok(cert) = crate::dcap::pki::parse_cert(leaf_der, "RA-TLS certificate") else {
        return false;
    };
    let key = super::binding::CertKey {
        spki_der: cert.public_key().raw,
        point: cert.public_key().subject_public_key.data.as_ref(),
    };
    let evidence = match super::evidence::find(&cert) {
        Ok(e) => e,
        // Nitro evidence, either carrier (only a Nitro entry ever cached a verdict on it).
        Err(e) if e.other_tee() == Some(super::evidence::NITRO_ENCLAVE) => {
            return super::evidence::find_nitro(&cert)
                .is_ok_and(|c| super::nitro::binding_holds(&c, (key, mode)));
        }
        // SEV-SNP evidence (only an SNP entry ever cached a verdict on it).
        Err(super::evidence::EvidenceError::UnsupportedTee(_)) => {
            return super::evidence::find_dstack(&cert).is_ok_and(|att| match &att.platform {
                crate::dstack::Platform::SevSnp { report, .. } => crate::snp::Report::parse(report)
                    .is_ok_and(|r| {
                        crate::dstack::binding::check(&att, key.spki_der, &r.report_data.0).is_ok()
                    }),
                _ => false,
            })
        }
        Err(_) => return false,
    };
    let Ok(quote) = crate::dcap::quote::Quote::parse(evidence.quote()) else {
        return false;
    };
    super::binding::check(mode, &evidence, quote.body.report_data(), key).is_ok()
}

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: RustlsTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = UnixTime(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        match self.verdict_for(end_entity.as_ref(), now) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(refused) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(refused)),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A clock frozen at one instant (for `verify --at` against a live server).
#[derive(Debug)]
struct FixedTime(UnixTime);

impl rustls::time_provider::TimeProvider for FixedTime {
    fn current_time(&self) -> Option<RustlsTime> {
        u64::try_from(self.0 .0)
            .ok()
            .map(|s| RustlsTime::since_unix_epoch(std::time::Duration::from_secs(s)))
    }
}

/// The one place an RA-TLS client configuration is built: ring provider, our verifier,
/// no session resumption (a resumed session would skip the verifier), the given ALPN.
/// `at` freezes the verification time; `None` uses the wall clock.
pub fn client_config(
    verifier: Arc<RaTlsVerifier>,
    alpn: &[&[u8]],
    at: Option<UnixTime>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match at {
        Some(t) => rustls::ClientConfig::builder_with_details(provider, Arc::new(FixedTime(t))),
        None => rustls::ClientConfig::builder_with_provider(provider),
    };
    let mut config = builder
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
