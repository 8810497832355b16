//! The sim serves AWS Nitro evidence the way dstack does (`sim_enclave --tee nitro`): over
//! real TLS, its certificate's `.1.8` extension holds a `VersionedAttestation::V0` of the
//! `NitroEnclave` platform whose `report_data` is SHA-512("ratls-cert:" ‖ the certificate's
//! SPKI) and whose NSM document (signed by the sim Nitro PKI) carries that `report_data` as
//! `user_data`. Proven with the pure core (dstack parser, Nitro verification, binding,
//! policy, the offline CRLs of the PKI directory) and with the real binary's
//! `verify --quote` on the attestation bytes; each knob (debug, PCRs, another key, age)
//! makes the matching check fail. The sim PKI directory persists and holds
//! `nitro-root.pem` and `collateral/nitro/`.

#![cfg(feature = "sim")]

mod common;

use std::sync::Arc;

use ratls_proxy::appraise::nitro_policy::{evaluate, NitroPolicy};
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dstack::binding::ratls_cert_report_data;
use ratls_proxy::dstack::{extension_value, Attestation, Platform};
use ratls_proxy::nitro::binding::user_data_is_dstack_report_data;
use ratls_proxy::nitro::collateral::crl_points;
use ratls_proxy::nitro::revocation::Revocation;
use ratls_proxy::nitro::{parse, NitroCollateral, NitroRoot};
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{NitroEnclaveSpec, SimConfig, SimEnclave};
use ratls_proxy::{NitroCrlCache, NitroCrlSpec, RefreshPolicy};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime as TlsTime};
use rustls::DigitallySignedStruct;

use common::{env, Env};

const PCR0: [u8; 48] = [0x5a; 48];

/// Takes any certificate (what is under test is its content) but checks the handshake
/// signature, so the peer holds the certificate's key.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: TlsTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf the sim at `addr` presents in a real TLS handshake.
async fn served_leaf(addr: std::net::SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec()
}

/// The sim Nitro PKI of `env`'s PKI directory.
fn pki(env: &Env) -> Arc<SimNitro> {
    Arc::new(SimNitro::load_or_create(&env.dir.join("pki"), env.now).expect("sim Nitro PKI"))
}

/// Starts a Nitro sim made by `f` and returns it with its served leaf.
async fn start(env: &Env, f: impl FnOnce(&mut NitroEnclaveSpec)) -> (SimEnclave, Vec<u8>) {
    let mut spec = NitroEnclaveSpec::new(pki(env), PCR0);
    f(&mut spec);
    let sim = common::start_sim(
        env,
        SimConfig {
            nitro: Some(spec),
            ..SimConfig::default()
        },
    )
    .await;
    let leaf = served_leaf(sim.addr()).await;
    (sim, leaf)
}

/// The `.1.8` payload and the leaf's SPKI.
fn evidence(leaf: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).expect("leaf parses");
    let oid =
        x509_parser::oid_registry::Oid::from(ratls_proxy::dstack::OID_ATTESTATION).expect("oid");
    let ext = cert
        .get_extension_unique(&oid)
        .expect("one .1.8")
        .expect("a .1.8 extension");
    let payload = extension_value(ext.value).expect("dstack's OCTET STRING");
    (payload.to_vec(), cert.public_key().raw.to_vec())
}

/// `ratls-proxy verify --quote` on `bytes` with the sim root and CRLs: exit code and JSON.
fn verify_quote(env: &Env, bytes: &[u8], extra: &[&str]) -> (i32, serde_json::Value) {
    let file = env
        .dir
        .join(format!("att-{}.bin", extra.join("_").replace('/', "")));
    std::fs::write(&file, bytes).expect("write");
    let pki = env.dir.join("pki");
    let mut args = vec![
        "verify".to_owned(),
        "--quote".into(),
        file.display().to_string(),
        "--trust-root".into(),
        pki.join("nitro-root.pem").display().to_string(),
        "--collateral".into(),
        pki.join("collateral/nitro").display().to_string(),
        "--at".into(),
        env.now.0.to_string(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let out = common::cli::output(&args);
    (out.status.code().unwrap_or(-1), common::cli::json(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_certificate_carries_bound_nitro_evidence_that_verifies() {
    let env = env();
    let (_sim, leaf) = start(&env, |_| {}).await;
    let (payload, spki) = evidence(&leaf);
    let att = Attestation::parse(&payload).expect("dstack's parser reads it");
    let Platform::NitroEnclave { nsm_quote } = &att.platform else {
        panic!("not the Nitro platform: {}", att.platform.name());
    };
    // dstack's binding, both halves.
    let rd = ratls_cert_report_data(&spki);
    assert_eq!(
        att.stack.report_data, rd,
        "report_data = SHA-512(ratls-cert: ‖ SPKI)"
    );
    let root = NitroRoot::from_der(
        ratls_proxy::dcap::pki::pem_chain(
            &std::fs::read(env.dir.join("pki/nitro-root.pem")).expect("nitro-root.pem"),
            "root",
        )
        .expect("pem")[0]
            .clone(),
    )
    .expect("root");
    assert!(!root.is_aws());
    let collateral = NitroCrlCache::new(
        root.clone(),
        &NitroCrlSpec::Dir(env.dir.join("pki/collateral/nitro")),
        Revocation::Required,
        RefreshPolicy::default(),
    )
    .expect("collateral");
    let parsed = parse(nsm_quote).expect("the NSM document parses");
    let verified = collateral.verify(&parsed, env.now).expect("verifies");
    user_data_is_dstack_report_data(verified.doc(), &rd).expect("user_data = report_data");
    let policy = NitroPolicy {
        pcr0: vec![PCR0.into()],
        max_age_secs: Some(60),
        ..NitroPolicy::default()
    };
    assert_eq!(evaluate(&policy, &verified, env.now), []);
    // The PKI directory's offline CRLs cover the chain.
    collateral
        .fetch_for(&crl_points(&verified, &root), env.now)
        .await
        .expect("offline CRLs");
    let status = collateral
        .revocation(&verified, env.now)
        .expect("not revoked");
    assert_eq!(status.checked, ["cabundle[1]", "cabundle[2]"]);
    // Under AWS's root it is nothing.
    assert!(ratls_proxy::nitro::verify(&parsed, &NitroRoot::aws(), env.now).is_err());

    // And the real binary agrees.
    let pcr0 = hex::encode(PCR0);
    let (code, json) = verify_quote(&env, &payload, &["--pcr0", &pcr0]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["verdict"], "accepted");
    assert_eq!(json["binding"], "dstack");
    assert_eq!(json["quote"]["tee"], "NITRO");
    assert_eq!(json["quote"]["pcrs"]["0"], pcr0);
    assert_eq!(json["quote"]["user_data"], hex::encode(rd));
    assert_eq!(
        json["revocation"]["checked"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_knob_fails_its_check() {
    let env = env();
    let pcr0 = hex::encode(PCR0);

    let (_d, leaf) = start(&env, |s| s.debug = true).await;
    let (payload, _) = evidence(&leaf);
    let (code, json) = verify_quote(&env, &payload, &["--pcr0", &"00".repeat(48)]);
    assert_eq!(
        (code, &json["code"]),
        (1, &"debug_enclave".into()),
        "{json:#}"
    );
    assert_eq!(json["quote"]["debug"], true);
    let (code, json) = verify_quote(&env, &payload, &["--allow-debug"]);
    assert_eq!(code, 0, "{json:#}");

    let (_p, leaf) = start(&env, |s| {
        s.pcrs.insert(2, [0x77; 48]);
    })
    .await;
    let (payload, _) = evidence(&leaf);
    let (code, json) = verify_quote(
        &env,
        &payload,
        &["--pcr0", &pcr0, "--pcr2", &"22".repeat(48)],
    );
    assert_eq!(
        (code, &json["code"]),
        (1, &"pcr_mismatch".into()),
        "{json:#}"
    );
    assert_eq!(json["quote"]["pcrs"]["2"], "77".repeat(48));
    let (code, json) = verify_quote(&env, &payload, &["--pcr0", &"11".repeat(48)]);
    assert_eq!(
        (code, &json["code"]),
        (1, &"pcr_mismatch".into()),
        "{json:#}"
    );

    let (_o, leaf) = start(&env, |s| s.age_secs = 600).await;
    let (payload, _) = evidence(&leaf);
    let (code, json) = verify_quote(
        &env,
        &payload,
        &["--pcr0", &pcr0, "--max-cert-age-secs", "300"],
    );
    assert_eq!(
        (code, &json["code"]),
        (1, &"document_too_old".into()),
        "{json:#}"
    );

    // Another key: the envelope is consistent in itself (verify --quote cannot see the
    // certificate) but does not name the served certificate's key.
    let (_w, leaf) = start(&env, |s| s.wrong_key = true).await;
    let (payload, spki) = evidence(&leaf);
    let att = Attestation::parse(&payload).expect("parses");
    assert_ne!(att.stack.report_data, ratls_cert_report_data(&spki));
    let (code, json) = verify_quote(&env, &payload, &["--pcr0", &pcr0]);
    assert_eq!(code, 0, "{json:#}");
}

#[test]
fn the_sim_nitro_pki_persists_in_its_directory() {
    let dir = std::env::temp_dir().join(format!("ratls-sim-nitro-{}", std::process::id()));
    let now = UnixTime::now();
    let a = SimNitro::load_or_create(&dir, now).expect("created");
    let b = SimNitro::load_or_create(&dir, UnixTime(now.0 + 3600)).expect("loaded");
    assert_eq!(a.bundle(), b.bundle(), "the same PKI, reloaded");
    assert_eq!(
        std::fs::read_to_string(dir.join("nitro-root.pem")).expect("root"),
        a.root_pem()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("sim-nitro.json"))
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the keys are private: {mode:o}");
    }
    for f in ["0.crl", "1.crl"] {
        let der = std::fs::read(dir.join("collateral/nitro").join(f)).expect("crl");
        ratls_proxy::nitro::revocation::Crl::parse(&der).expect("a CRL");
    }
    // Its intermediates live 30 days: a month later it is made anew.
    let c = SimNitro::load_or_create(&dir, UnixTime(now.0 + 31 * 86_400)).expect("renewed");
    assert_ne!(a.bundle(), c.bundle());
    let _ = std::fs::remove_dir_all(&dir);
}
