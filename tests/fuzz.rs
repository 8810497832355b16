//! Fuzz harnesses for everything that parses untrusted bytes, as proptest properties so they
//! run on stable under `cargo test` (a short run) and for hours with
//! `RATLS_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --nocapture`.
//! Properties: nothing panics, nothing hangs, nothing malformed is ever accepted.

// Parts are used only by the tests that need the `sim` feature.
#![cfg_attr(not(feature = "sim"), allow(unused_imports, dead_code))]

mod common;
mod nitro_common;

use proptest::prelude::*;
use ratls_proxy::appraise::{appraise, Unverified};
use ratls_proxy::dcap::collateral::pcs;
use ratls_proxy::dcap::collateral::qe_identity::QeIdentity;
use ratls_proxy::dcap::collateral::tcb_info::TcbInfo;
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::quote::Quote;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::dcap::trust::TrustAnchor;
use ratls_proxy::ratls::evidence::{
    OID_SGX_QUOTE, OID_SGX_QUOTE_GRAMINE_LEGACY, OID_TCG_DICE_TAGGED_EVIDENCE,
};
use ratls_proxy::ratls::{appraise_certificate, BindingMode};
use ratls_proxy::Config;

fn cases(default: u32) -> u32 {
    std::env::var("RATLS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn real_quote() -> Vec<u8> {
    common::fixtures()
        .map(|d| common::read(&d, "dcap/sgx_v3_qvl.quote.bin"))
        .unwrap_or_else(|| vec![3, 0, 2, 0])
}

fn no_collateral() -> ratls_proxy::dcap::error::VerifyError {
    ratls_proxy::dcap::error::VerifyError::Collateral(
        ratls_proxy::dcap::collateral::CollateralError::Json("fuzz".into()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes: the quote parser returns, and a parsed quote's signed region is a prefix.
    #[test]
    fn quote_parser_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        if let Ok(q) = Quote::parse(&bytes) {
            prop_assert!(bytes.starts_with(q.signed));
        }
    }

    /// A real quote with random bytes overwritten and a random length: never a panic.
    #[test]
    fn quote_parser_on_mutated_real_quotes(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut q = real_quote();
        for (pos, b) in edits {
            let i = pos % q.len();
            q[i] = b;
        }
        q.truncate(cut % (q.len() + 1));
        if let Ok(parsed) = Quote::parse(&q) {
            prop_assert!(q.starts_with(parsed.signed));
        }
    }

    /// Collateral JSON, TCB info, QE identity and PCS bodies from arbitrary text.
    #[test]
    fn collateral_parsers_on_arbitrary_text(text in ".{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Collateral::from_json(text.as_bytes());
        let _ = Collateral::from_json(&bytes);
        let _ = TcbInfo::parse(&text);
        let _ = QeIdentity::parse(&text);
        let _ = pcs::tcb_info_body(&bytes);
        let _ = pcs::qe_identity_body(text.as_bytes());
        let _ = pcs::crl_body(&bytes, "fuzz");
        let _ = pcs::issuer_chain(&bytes, "fuzz");
        let _ = ratls_proxy::dcap::pki::pem_chain(&bytes, "fuzz");
        let _ = ratls_proxy::dcap::pki::pem_chain(text.as_bytes(), "fuzz");
    }

    /// Intel's early TCB data: early bundles, evaluation data numbers lists and their PCS
    /// bodies from arbitrary text, and Intel's real list (tests/data/intel) with bytes
    /// changed, never panic; a changed list that still parses keeps its bounds.
    #[test]
    fn early_data_parsers_on_arbitrary_and_mutated_text(
        text in ".{0,400}",
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        use ratls_proxy::dcap::collateral::eval_numbers::{EvaluationNumbers, MAX_NUMBERS};
        let _ = ratls_proxy::dcap::collateral::early::BundleFile::from_json(&bytes);
        let _ = ratls_proxy::dcap::collateral::early::BundleFile::from_json(text.as_bytes());
        let _ = EvaluationNumbers::parse(&text);
        let _ = pcs::evaluation_numbers_body(&bytes);
        let _ = pcs::evaluation_numbers_body(text.as_bytes());
        let mut real = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/intel/pcs_sgx_tcbevaluationdatanumbers_2025-05-27.json"),
        )
        .expect("Intel's list");
        let len = real.len();
        for (at, byte) in edits {
            if let Some(b) = real.get_mut(at % len) {
                *b = byte;
            }
        }
        if let Ok((text, _)) = pcs::evaluation_numbers_body(&real) {
            if let Ok(list) = EvaluationNumbers::parse(&text) {
                prop_assert!(list.numbers.len() <= MAX_NUMBERS);
                prop_assert!(list.numbers.windows(2).all(|w| w[0].number > w[1].number));
            }
        }
    }

    /// The configuration parser on arbitrary text never panics.
    #[test]
    fn config_parser_on_arbitrary_text(text in "[\\[\\]a-z_=\" \\n0-9.:*]{0,300}") {
        let _ = Config::from_toml(&text, "fuzz", std::path::Path::new("/"));
    }

    /// Arbitrary certificate bytes are refused, never accepted, never a panic.
    #[test]
    fn certificate_appraisal_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let a = appraise_certificate(&bytes, &no_collateral(), &common::permissive(true), BindingMode::Auto, UnixTime(0));
        prop_assert!(!a.appraisal.is_accepted());
    }
}

proptest! {
    // Minting a certificate per case is slower: fewer cases by default.
    #![proptest_config(ProptestConfig { cases: cases(2000) / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Certificates carrying arbitrary bytes under each carrier OID (DICE CBOR included).
    #[test]
    fn quote_carriers_with_arbitrary_content(which in 0usize..3, content in proptest::collection::vec(any::<u8>(), 0..1500), dice_prefix in any::<bool>()) {
        let oid = [OID_TCG_DICE_TAGGED_EVIDENCE, OID_SGX_QUOTE, OID_SGX_QUOTE_GRAMINE_LEGACY][which];
        let mut value = content;
        if dice_prefix && which == 0 {
            // Start like real DICE evidence so the CBOR reader gets past the tag.
            let mut v = vec![0xd9, 0xea, 0x60, 0x82];
            v.extend(value);
            value = v;
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["fuzz".to_owned()]).expect("params");
        p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(oid, value)];
        let der = p.self_signed(&key).expect("cert").der().to_vec();
        let a = appraise_certificate(&der, &no_collateral(), &common::permissive(true), BindingMode::Auto, UnixTime(0));
        prop_assert!(!a.appraisal.is_accepted());
    }
}

#[test]
fn mutated_collateral_is_accepted_only_when_unchanged() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let c = Collateral::from_json(&common::read(&dir, "dcap/sgx_v3_qvl.collateral.json"))
        .expect("json");
    let anchor = TrustAnchor::intel();
    let quote = common::read(&dir, "dcap/sgx_v3_qvl.quote.bin");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(2000) / 4,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(any::<usize>(), any::<u8>(), 0usize..4),
        |(pos, b, field)| {
            let mut m = c.clone();
            match field {
                0 => {
                    let i = pos % m.root_ca_crl.len();
                    m.root_ca_crl[i] = b;
                }
                1 => {
                    let i = pos % m.pck_crl.len();
                    m.pck_crl[i] = b;
                }
                2 => {
                    let i = pos % m.tcb_info_signature.len();
                    m.tcb_info_signature[i] ^= b | 1;
                }
                _ => {
                    let mut t = m.qe_identity.into_bytes();
                    let i = pos % t.len();
                    t[i] = b'a' + (b % 26);
                    m.qe_identity = String::from_utf8_lossy(&t).into_owned();
                }
            }
            let a = appraise(
                &quote,
                &Unverified {
                    collateral: &m,
                    anchor: &anchor,
                },
                &common::permissive(true),
                UnixTime(1_751_623_200),
            );
            // Every byte of a CRL and every signed character is covered by a signature or the
            // exact-envelope check: accepted only if nothing actually changed.
            prop_assert!(
                !a.is_accepted() || m == c,
                "accepted edited collateral (field {field})"
            );
            Ok(())
        },
    );
    result.expect("no failure");
}

/// Raw bytes sent to the proxy listener: every connection gets an answer or a close, the
/// proxy never stops serving, and a well-formed request afterwards still works.
#[cfg(feature = "sim")]
#[test]
fn proxy_request_handling_on_arbitrary_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let env = common::env();
    let running = runtime.block_on(
        common::Harness::new(&env)
            .top("unmatched = \"deny\"")
            .limits("header_read_timeout_secs = 2")
            .start(),
    );
    let addr = running.addr;
    let seeds: [&[u8]; 6] = [
        b"CONNECT ",
        b"GET http://",
        b"GET / HTTP/1.1\r\n",
        b"CONNECT [",
        b"POST http://x/ HTTP/1.1\r\nContent-Length: ",
        b"\x16\x03\x01",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(2000) / 8,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(
            0usize..6,
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        ),
        |(seed, tail, end)| {
            let mut req = seeds[seed].to_vec();
            req.extend(tail);
            if end {
                req.extend_from_slice(b"\r\n\r\n");
            }
            runtime.block_on(async {
                let mut tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("proxy accepts");
                let _ = tcp.write_all(&req).await;
                let mut out = Vec::new();
                // Either an answer and a close, or a close at the header timeout: never a hang.
                let r = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tcp.read_to_end(&mut out),
                )
                .await;
                assert!(r.is_ok(), "hung on {:?}", String::from_utf8_lossy(&req));
                if !out.is_empty() {
                    assert!(
                        out.starts_with(b"HTTP/1.1 "),
                        "{:?}",
                        String::from_utf8_lossy(&out)
                    );
                    assert!(
                        !out.starts_with(b"HTTP/1.1 200"),
                        "accepted {:?}",
                        String::from_utf8_lossy(&req)
                    );
                }
            });
            Ok(())
        },
    );
    result.expect("no failure");
    // Still serving.
    runtime.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 403"));
    });
    drop(running);
}

/// dstack's evidence: the SCALE and MessagePack readers, the legacy JSON event log, and the
/// replay. Properties: nothing panics, and nothing changed in the measured events survives
/// the replay against the original quote's RTMRs.
mod dstack {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use ratls_proxy::dcap::ids::Rtmr;
    use ratls_proxy::dcap::quote::{Body, Quote};
    use ratls_proxy::dstack::replay::{self, ReplayedLog};
    use ratls_proxy::dstack::{extension_value, Attestation, OID_ATTESTATION};
    use x509_parser::der_parser::oid::Oid;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::{cases, common};

    /// The `.1.8` payload of a real dstack leaf (`tests/data/dstack/`, in the repository).
    fn real(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/dstack")
            .join(name);
        let pem = std::fs::read(path).expect("read");
        let chain = ratls_proxy::dcap::pki::pem_chain(&pem, "chain").expect("PEM");
        let (_, leaf) = X509Certificate::from_der(&chain[0]).expect("leaf");
        let oid = Oid::from(OID_ATTESTATION).expect("OID");
        let ext = leaf
            .get_extension_unique(&oid)
            .expect("unique")
            .expect(".1.8");
        extension_value(ext.value).expect("OCTET STRING").to_vec()
    }

    /// An original, the RTMRs its quote signed, and what its replay vouches for.
    struct Original {
        bytes: Vec<u8>,
        quoted: [Rtmr; 4],
        vouched: Vouched,
        /// Where the measured events sit: every occurrence of an RTMR3 event name.
        hot: Vec<usize>,
    }

    type Vouched = Vec<(usize, [u8; 48], String, Vec<u8>)>;

    fn original(bytes: Vec<u8>, legacy_quote: Option<&[u8]>) -> Original {
        let a = match legacy_quote {
            Some(quote) => Attestation::from_legacy(quote, &bytes),
            None => Attestation::parse(&bytes),
        }
        .expect("original");
        let tdx = a.platform.tdx().expect("TDX");
        let quoted = rtmrs(&tdx.quote).expect("TD quote");
        let vouched = vouched(&replay::replay(tdx, &a.stack, &quoted).expect("replays"));
        drop(a);
        let mut hot = Vec::new();
        for (_, _, name, _) in vouched.iter().filter(|v| !v.2.is_empty()) {
            let name = name.as_bytes();
            hot.extend(
                (0..bytes.len().saturating_sub(name.len()))
                    .filter(|i| bytes[*i..].starts_with(name)),
            );
        }
        Original {
            bytes,
            quoted,
            vouched,
            hot,
        }
    }

    fn real_v0() -> &'static Original {
        static V0: OnceLock<Original> = OnceLock::new();
        V0.get_or_init(|| original(real("tdx-lite-v0-get-tls-key.pem"), None))
    }

    fn real_v1() -> &'static Original {
        static V1: OnceLock<Original> = OnceLock::new();
        V1.get_or_init(|| original(real("tdx-lite-v1-issue-cert.pem"), None))
    }

    /// The V1 leaf's quote: a real TDX quote for the legacy parser to get past.
    fn v1_quote() -> &'static [u8] {
        static QUOTE: OnceLock<Vec<u8>> = OnceLock::new();
        QUOTE.get_or_init(|| {
            let a = Attestation::parse(&real_v1().bytes).expect("V1");
            a.platform.tdx().expect("TDX").quote.to_vec()
        })
    }

    /// The full event log and its quote (`../shared/fixtures`), if present.
    fn full_log() -> Option<&'static (Vec<u8>, Original)> {
        static FULL: OnceLock<Option<(Vec<u8>, Original)>> = OnceLock::new();
        FULL.get_or_init(|| {
            let dir = common::fixtures()?;
            let v: serde_json::Value =
                serde_json::from_slice(&common::read(&dir, "dstack/tdx-lite-getquote.json"))
                    .ok()?;
            let quote = hex::decode(v["quote"].as_str()?).ok()?;
            let log = v["event_log"].as_str()?.as_bytes().to_vec();
            let o = original(log, Some(&quote));
            Some((quote, o))
        })
        .as_ref()
    }

    fn rtmrs(quote: &[u8]) -> Option<[Rtmr; 4]> {
        match Quote::parse(quote).ok()?.body {
            Body::Td(td) => Some(td.rtmr),
            Body::Sgx(_) => None,
        }
    }

    /// What the replay vouches for: every replayed digest, and RTMR3's names and payloads.
    fn vouched(log: &ReplayedLog<'_>) -> Vouched {
        log.events
            .iter()
            .filter(|e| e.replayed)
            .map(|e| {
                let (name, payload) = if e.rtmr == 3 {
                    (e.name.to_owned(), e.payload.to_vec())
                } else {
                    (String::new(), Vec::new())
                };
                (e.rtmr, e.digest, name, payload)
            })
            .collect()
    }

    /// `original` mutated and cut, parsed, and replayed against the original quote's
    /// RTMRs: if it replays, it vouches for exactly what the original did.
    fn mutated_replays_only_the_original(
        o: &Original,
        edits: &[(usize, u8, bool)],
        cut: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let mut b = o.bytes.clone();
        // Half the edits land on or just after an event name (the name, its payload, the
        // digest beside it), where the replay has something to catch.
        for (pos, v, hot) in edits {
            let i = match (hot, o.hot.is_empty()) {
                (true, false) => (o.hot[pos % o.hot.len()] + (pos / o.hot.len()) % 64) % b.len(),
                _ => pos % b.len(),
            };
            b[i] = *v;
        }
        if let Some(cut) = cut {
            b.truncate(cut % (b.len() + 1));
        }
        if let Ok(a) = Attestation::parse(&b) {
            if let Ok(tdx) = a.platform.tdx() {
                if let Ok(log) = replay::replay(tdx, &a.stack, &o.quoted) {
                    prop_assert_eq!(&vouched(&log), &o.vouched);
                }
            }
        }
        Ok(())
    }

    /// `content` in a DER OCTET STRING, as dstack wraps every extension's content.
    fn octets(content: &[u8]) -> Vec<u8> {
        let len = content.len();
        let mut out = vec![0x04];
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap_or(0));
        } else {
            let digits: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | u8::try_from(digits.len()).unwrap_or(0));
            out.extend(digits);
        }
        out.extend_from_slice(content);
        out
    }

    /// One key for every minted certificate (generating one per case is the slow part).
    fn key() -> &'static rcgen::KeyPair {
        static KEY: OnceLock<rcgen::KeyPair> = OnceLock::new();
        KEY.get_or_init(|| rcgen::KeyPair::generate().expect("key"))
    }

    /// Mostly whole (a cut input never parses, so it never reaches the replay).
    fn maybe_cut() -> impl Strategy<Value = Option<usize>> {
        prop_oneof![4 => Just(None), 1 => any::<usize>().prop_map(Some)]
    }

    fn wire_prefix() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![]),
            (0u8..6).prop_map(|v| vec![0x00, v]),
            (0x80u8..=0x8f).prop_map(|m| vec![m]),
            Just(vec![0x83, 0xa7]),
            Just(vec![0xde, 0x00, 0x03]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary bytes behind each wire form's first bytes: the readers return.
        #[test]
        fn dstack_attestation_on_arbitrary_bytes(prefix in wire_prefix(), bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut b = prefix;
            b.extend(bytes);
            if let Ok(a) = Attestation::parse(&b) {
                if let Ok(tdx) = a.platform.tdx() {
                    let _ = replay::replay(tdx, &a.stack, &[Rtmr([0; 48]); 4]);
                }
            }
        }

        /// The real SCALE V0 leaf attestation with up to 8 bytes overwritten, one case in five cut anywhere.
        #[test]
        fn dstack_v0_mutated_real(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..8), cut in maybe_cut()) {
            mutated_replays_only_the_original(real_v0(), &edits, cut)?;
        }

    }

    proptest! {
        // The V1 quote is 5006 small integers and the full log 29 events in JSON: slower
        // per case, fewer by default.
        #![proptest_config(ProptestConfig { cases: cases(2000) / 4, failure_persistence: None, ..ProptestConfig::default() })]

        /// The real MessagePack V1 leaf attestation with up to 8 bytes overwritten, one case in five cut anywhere.
        #[test]
        fn dstack_v1_mutated_real(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..8), cut in maybe_cut()) {
            mutated_replays_only_the_original(real_v1(), &edits, cut)?;
        }

        /// Certificates carrying the real `.1.8` attestations with up to 6 bytes overwritten,
        /// alone or beside another carrier (TCG DICE, dstack's `.1.1` or `.1.2`, Cosmian's
        /// TDX OID): `evidence::find` returns; beside another carrier it refuses; an
        /// attestation it finds is the one the parser reads from the same bytes; and the
        /// certificate is never accepted (no collateral here).
        #[test]
        fn dstack_certificates_through_evidence_find(v1 in any::<bool>(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), beside in 0usize..5) {
            use ratls_proxy::ratls::evidence::{self, Evidence, OID_DSTACK_QUOTE, OID_TCG_DICE_TAGGED_EVIDENCE, OID_TDX_QUOTE};
            use ratls_proxy::dstack::OID_EVENT_LOG;
            let o = if v1 { real_v1() } else { real_v0() };
            let mut b = o.bytes.clone();
            for (pos, v) in &edits {
                let i = pos % b.len();
                b[i] = *v;
            }
            let mut ext = vec![rcgen::CustomExtension::from_oid_content(OID_ATTESTATION, octets(&b))];
            match beside {
                1 => ext.push(rcgen::CustomExtension::from_oid_content(OID_TCG_DICE_TAGGED_EVIDENCE, vec![0xd9, 0xea, 0x60, 0x82, 0x41, 0x00, 0x41, 0x00])),
                2 => ext.push(rcgen::CustomExtension::from_oid_content(OID_DSTACK_QUOTE, octets(v1_quote()))),
                3 => ext.push(rcgen::CustomExtension::from_oid_content(OID_EVENT_LOG, octets(b"[]"))),
                4 => ext.push(rcgen::CustomExtension::from_oid_content(OID_TDX_QUOTE, v1_quote().to_vec())),
                _ => {}
            }
            let mut p = rcgen::CertificateParams::new(vec!["fuzz".to_owned()]).expect("params");
            p.custom_extensions = ext;
            let der = p.self_signed(key()).expect("cert").der().to_vec();
            let (_, cert) = X509Certificate::from_der(&der).expect("our own certificate");
            match evidence::find(&cert) {
                Ok(Evidence::Dstack(found)) => {
                    prop_assert_eq!(beside, 0, "found beside another carrier");
                    let parsed = Attestation::parse(&b).ok();
                    prop_assert_eq!(Some(&*found), parsed.as_ref());
                }
                Ok(other) => prop_assert!(false, "a .1.8 certificate read as {:?}", other),
                Err(e) => prop_assert!(beside != 0 || !edits.is_empty(), "the real attestation alone refused: {}", e),
            }
            let a = super::appraise_certificate(&der, &super::no_collateral(), &common::permissive(true), super::BindingMode::Auto, super::UnixTime(0));
            prop_assert!(!a.appraisal.is_accepted());
        }

        /// The legacy event log: arbitrary text beside a real quote, and the real full log
        /// with characters changed; if it replays, it vouches for the original events.
        #[test]
        fn dstack_event_log_json(text in ".{0,300}", edits in proptest::collection::vec((any::<usize>(), "[0-9a-f\\[\\]{}\",:x ]"), 1..4)) {
            let _ = Attestation::from_legacy(v1_quote(), text.as_bytes());
            let Some((quote, o)) = full_log() else { return Ok(()) };
            let mut chars: Vec<char> = String::from_utf8_lossy(&o.bytes).chars().collect();
            for (pos, s) in edits {
                let i = pos % chars.len();
                chars[i] = s.chars().next().unwrap_or('x');
            }
            let changed: String = chars.into_iter().collect();
            if let Ok(a) = Attestation::from_legacy(quote, changed.as_bytes()) {
                if let Ok(l) = replay::replay(a.platform.tdx().expect("TDX"), &a.stack, &o.quoted) {
                    prop_assert_eq!(&vouched(&l), &o.vouched);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// The CBOR reader on arbitrary bytes: `item` returns a prefix of the input and walks exactly
    /// what `skip` walks; reading containers of either length never panics or loops.
    #[test]
    fn cbor_reader_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        use ratls_proxy::cbor::{Cbor, Items};
        let mut a = Cbor::new(&bytes);
        let mut b = Cbor::new(&bytes);
        match (a.item(), b.skip()) {
            (Ok(item), Ok(())) => {
                prop_assert!(bytes.starts_with(item));
                prop_assert_eq!(a.rest().len(), b.rest().len());
            }
            (Err(_), Err(_)) => {}
            (x, y) => prop_assert!(false, "item {:?} and skip {:?} disagree", x.is_ok(), y.is_ok()),
        }
        let mut c = Cbor::new(&bytes);
        if let Ok(len) = c.map_len() {
            let mut items = Items::new(len, 2);
            while let Ok(true) = items.more(&mut c) {
                if c.skip().is_err() {
                    break;
                }
            }
        }
    }

    /// Arbitrary bytes, and bytes behind a COSE_Sign1 prefix: the COSE and document parsers
    /// return, and what they borrow lies inside the input.
    #[test]
    fn nitro_cose_and_document_parsers_on_arbitrary_bytes(
        tail in proptest::collection::vec(any::<u8>(), 0..3000),
        prefix in 0usize..4,
    ) {
        use ratls_proxy::nitro::{AttestationDoc, CoseSign1};
        let prefixes: [&[u8]; 4] = [&[], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0], &[0xd2, 0x84], &[0xbf]];
        let bytes = [prefixes[prefix], &tail].concat();
        let inside = |s: &[u8]| {
            let (start, end) = (bytes.as_ptr().addr(), bytes.as_ptr().addr() + bytes.len());
            s.as_ptr().addr() >= start && s.as_ptr().addr() + s.len() <= end
        };
        if let Ok(c) = CoseSign1::parse(&bytes) {
            prop_assert!(inside(c.payload) && inside(c.protected) && inside(c.signature));
        }
        if let Ok(d) = AttestationDoc::parse(&bytes) {
            prop_assert!(inside(d.certificate) && d.cabundle.iter().all(|c| inside(c)));
        }
    }

    /// A real Nitro document with a few bytes changed and cut anywhere: never a panic, and
    /// accepted only when nothing changed.
    #[test]
    fn nitro_verification_on_mutated_real_documents(
        edits in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let Some(real) = nitro_common::cose(nitro_common::NSM) else {
            return Ok(());
        };
        let mut m = real.clone();
        for (pos, x) in edits {
            let i = pos % m.len();
            m[i] ^= x;
        }
        if let Some(c) = cut {
            m.truncate(c % (m.len() + 1));
        }
        let now = UnixTime(1_766_668_537);
        let root = ratls_proxy::nitro::NitroRoot::aws();
        let accepted = ratls_proxy::nitro::parse(&m)
            .is_ok_and(|p| ratls_proxy::nitro::verify(&p, &root, now).is_ok());
        prop_assert!(!accepted || m == real, "accepted a changed document");
    }
}

// ---- AMD SEV-SNP: the report parser, the certificate chain and the VCEK extensions ----

/// The real Milan report (or a sim-shaped stand-in when the fixtures are absent).
fn real_snp_report() -> Vec<u8> {
    common::fixtures()
        .map(|d| {
            let bytes = common::read(&d, "dstack/sev_snp_attestation.bin");
            bytes[4..4 + ratls_proxy::snp::REPORT_LEN].to_vec()
        })
        .unwrap_or_else(|| vec![0; ratls_proxy::snp::REPORT_LEN])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes of any length, and of exactly the report's length: the SEV-SNP report
    /// parser returns, and a parsed report's signed part is the input's first 0x2A0 bytes.
    #[test]
    fn snp_report_parser_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..1300),
        exact in proptest::collection::vec(any::<u8>(), ratls_proxy::snp::REPORT_LEN),
    ) {
        for b in [&bytes, &exact] {
            if let Ok(r) = ratls_proxy::snp::Report::parse(b) {
                prop_assert!(b.starts_with(r.signed));
                prop_assert_eq!(b.len(), ratls_proxy::snp::REPORT_LEN);
            }
        }
    }

    /// The real report with up to 8 bytes overwritten: never a panic, and with the real
    /// chain and VCEK verified once, never accepted unless the bytes are unchanged.
    #[test]
    fn snp_mutated_real_reports_are_accepted_only_when_unchanged(edits in proptest::collection::vec((0usize..ratls_proxy::snp::REPORT_LEN, any::<u8>()), 1..8)) {
        let good = real_snp_report();
        let mut m = good.clone();
        for (pos, b) in edits {
            m[pos] = b;
        }
        let Ok(report) = ratls_proxy::snp::Report::parse(&m) else { return Ok(()) };
        let Some(vek) = snp_real_vek() else { return Ok(()) };
        let now = UnixTime(1_781_697_600); // 2026-06-17T12:00:00Z
        let accepted = ratls_proxy::snp::verify::verify(&report, vek, now).is_ok();
        prop_assert!(!accepted || m == good);
    }

    /// Arbitrary bytes as the ASK, the CRL, the VCEK, and arbitrary text as PEM: the chain,
    /// key and PEM parsers return and accept nothing.
    #[test]
    fn snp_chain_parsers_on_arbitrary_bytes(
        ask in proptest::collection::vec(any::<u8>(), 0..2000),
        crl in proptest::collection::vec(any::<u8>(), 0..600),
        text in ".{0,400}",
    ) {
        use ratls_proxy::snp::chain::VerifiedChain;
        use ratls_proxy::snp::collateral::SnpCollateral;
        use ratls_proxy::snp::report::SigningKey;
        let trust = ratls_proxy::snp::SnpTrust::amd();
        for kind in [SigningKey::Vcek, SigningKey::Vlek] {
            prop_assert!(VerifiedChain::verify(ratls_proxy::snp::Product::Milan, kind, &ask, Some(&crl), &trust).is_err());
        }
        let _ = SnpCollateral::from_pem(text.as_bytes(), &ask, None);
        let _ = SnpCollateral::from_pem(&ask, text.as_bytes(), Some(crl));
    }
}

/// The real report's VCEK, verified once under the real ASK and the pinned Milan ARK.
fn snp_real_vek() -> Option<&'static ratls_proxy::snp::verify::VerifiedVek> {
    use std::sync::OnceLock;
    static VEK: OnceLock<Option<ratls_proxy::snp::verify::VerifiedVek>> = OnceLock::new();
    VEK.get_or_init(|| {
        let d = common::fixtures()?;
        let c = ratls_proxy::snp::collateral::SnpCollateral::from_pem(
            &common::read(&d, "dstack/sev_snp_ask.pem"),
            &common::read(&d, "dstack/sev_snp_vcek.pem"),
            None,
        )
        .ok()?;
        let report = real_snp_report();
        let parsed = ratls_proxy::snp::Report::parse(&report).ok()?;
        c.verify(&parsed, &ratls_proxy::snp::SnpTrust::amd()).ok()
    })
    .as_ref()
}

/// VCEKs (signed by the sim ASK, so only the extensions are wrong) carrying arbitrary
/// values under every AMD extension OID, and arbitrary extra AMD OIDs: the extension parser
/// returns, and a key it accepts is bound to exactly the report's chip and TCB.
#[cfg(feature = "sim")]
#[test]
fn snp_vcek_extension_parser_on_arbitrary_values() {
    use std::sync::Arc;

    use proptest::test_runner::{Config, TestRunner};
    use ratls_proxy::sim::snp::{sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, VekExt, VekSpec};
    use ratls_proxy::snp::chain::VerifiedChain;
    use ratls_proxy::snp::report::SigningKey;
    use ratls_proxy::snp::verify::{verify, VerifiedVek};
    use ratls_proxy::snp::{Product, Report};

    let now = UnixTime(1_790_000_000);
    let product = Product::Milan;
    let pki = SimSnpPki::new(product, now).expect("pki");
    let trust = SimSnpPki::trust(&[&pki]).expect("trust");
    let chain = Arc::new(
        VerifiedChain::verify(product, SigningKey::Vcek, &pki.ask, None, &trust).expect("chain"),
    );
    let arcs = prop_oneof![
        Just(vec![1u64]),
        Just(vec![2]),
        (1u64..=10).prop_map(|n| vec![3, n]),
        Just(vec![4]),
        Just(vec![5]),
        (0u64..20, 0u64..20).prop_map(|(a, b)| vec![a, b]),
    ];
    let ext = (
        arcs,
        proptest::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(2000) / 8,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(ext, 1..4), |exts| {
            let mut spec = VekSpec::vcek(sim_chip_id(product), sim_tcb(product));
            for (arcs, value, replace) in exts {
                if replace {
                    spec.omit.push(arcs.clone());
                }
                spec.extra.push(VekExt { arcs, value });
            }
            let key = pki.vek(&spec).expect("vek");
            if let Ok(vek) = VerifiedVek::verify(&key.der, Arc::clone(&chain)) {
                let report = ReportSpec::new(product).sign(&key).expect("sign");
                let accepted = verify(&Report::parse(&report).expect("parse"), &vek, now).is_ok();
                let e = vek.extensions();
                let t = sim_tcb(product);
                let bound = e.hwid.as_deref() == Some(&sim_chip_id(product).0[..])
                    && (e.bootloader, e.tee, e.snp, e.microcode)
                        == (t.bootloader, t.tee, t.snp, t.microcode);
                prop_assert_eq!(accepted, bound);
            }
            Ok(())
        })
        .expect("property holds");
}

// ---- AMD SEV-SNP collateral at the edge: the offline directory and its classifiers ----

/// The real ASK and VCEK (DER), when the fixtures are there.
fn real_snp_certs() -> Vec<Vec<u8>> {
    common::fixtures()
        .map(|d| {
            ["dstack/sev_snp_ask.pem", "dstack/sev_snp_vcek.pem"]
                .iter()
                .flat_map(|f| {
                    ratls_proxy::dcap::pki::pem_chain(&common::read(&d, f), "fixture")
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000) / 8, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes and the real ASK/VCEK with bytes overwritten, as certificates and CRLs
    /// to the classifiers and as files (DER, PEM, `.crl`) in a collateral directory beside
    /// the real ASK: no panic; the directory never yields a VCEK but the real one unchanged.
    #[test]
    fn snp_collateral_directory_on_arbitrary_and_mutated_files(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        edits in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..6),
        which in 0usize..2,
        form in 0usize..3,
    ) {
        use ratls_proxy::snp::collateral::{classify, crl_product};
        use ratls_proxy::SnpCollateralSource as _;
        let _ = classify(&bytes);
        let _ = crl_product(&bytes);
        let real = real_snp_certs();
        let Some(original) = real.get(which) else {
            return Ok(());
        };
        let mut m = original.clone();
        for (pos, x) in edits {
            let i = pos % m.len();
            m[i] ^= x;
        }
        let _ = classify(&m);
        let _ = crl_product(&m);
        let dir = std::env::temp_dir().join(format!("ratls-fuzz-snp-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let pem = |der: &[u8]| {
            use base64::Engine as _;
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        };
        std::fs::write(dir.join("ask.pem"), pem(&real[0])).expect("write");
        match form {
            0 => std::fs::write(dir.join("x.der"), &m),
            1 => std::fs::write(dir.join("x.pem"), pem(&m)),
            _ => std::fs::write(dir.join("x.crl"), &m),
        }
        .expect("write");
        std::fs::write(dir.join("y.der"), &bytes).expect("write");
        let loaded = ratls_proxy::SnpFiles::load(&dir, &ratls_proxy::snp::SnpTrust::amd());
        let _ = std::fs::remove_dir_all(&dir);
        if let Ok((files, _)) = loaded {
            let report = real_snp_report();
            if let Ok(r) = ratls_proxy::snp::Report::parse(&report) {
                // Only an unchanged real VCEK could be found for the real report; these never are.
                prop_assert!(files.vek_for(&r).is_err());
            }
        }
    }
}
