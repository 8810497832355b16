//! dstack's evidence on real bytes: the stripped `V0` attestation and the full event log of
//! `../shared/fixtures/dstack/`, and the two real RA-TLS certificate chains of
//! `tests/data/dstack/` (`V0` and `V1` from one boot). Parsing, key binding, replay, app
//! identity, and what an attacker changes: every change is refused with its own error.

mod common;

use std::path::PathBuf;

use ratls_proxy::dcap::ids::Rtmr;
use ratls_proxy::dcap::pki;
use ratls_proxy::dcap::quote::{Body, Quote, TdReport};
use ratls_proxy::dstack::app::AppIdentity;
use ratls_proxy::dstack::binding::{self, BindingError};
use ratls_proxy::dstack::replay::{
    self, ReplayError, ReplayedEvent, ReplayedLog, RtmrReplay, RUNTIME_EVENT_TYPE,
};
use ratls_proxy::dstack::{
    extension_value, vm_config, Attestation, AttestationError, Event, EventVersion, Platform,
    TdxEvidence, UnsupportedTee, Wire, OID_ATTESTATION,
};
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

// ---------------------------------------------------------------------------------------
// Helpers: the fixtures, the certificates, the TD report of a quote.
// ---------------------------------------------------------------------------------------

fn json(rel: &str) -> Option<serde_json::Value> {
    let dir = common::fixtures()?;
    serde_json::from_slice(&common::read(&dir, rel)).ok()
}

/// The stripped V0 attestation exactly as dstack puts it in `.1.8`.
fn v0_fixture() -> Option<Vec<u8>> {
    let v = json("dstack/tdx-lite-attestation.json")?;
    hex::decode(v["attestation"].as_str()?).ok()
}

/// The guest agent's full quote response: quote, full event log (JSON), VM configuration.
fn getquote() -> Option<(Vec<u8>, String)> {
    let v = json("dstack/tdx-lite-getquote.json")?;
    let quote = hex::decode(v["quote"].as_str()?).ok()?;
    Some((quote, v["event_log"].as_str()?.to_owned()))
}

fn td(quote: &[u8]) -> TdReport<'_> {
    match Quote::parse(quote).map(|q| q.body) {
        Ok(Body::Td(td)) => td,
        other => panic!("not a TD quote: {other:?}"),
    }
}

fn hex_of(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(hex::encode)
}

/// A chain from `tests/data/dstack/`, DER, leaf first.
fn chain(name: &str) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dstack")
        .join(name);
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let chain = pki::pem_chain(&pem, "dstack chain").expect("PEM");
    assert_eq!(chain.len(), 2, "{name}: leaf and CA");
    chain
}

const V0_CHAIN: &str = "tdx-lite-v0-get-tls-key.pem";
const V1_CHAIN: &str = "tdx-lite-v1-issue-cert.pem";

fn cert(der: &[u8]) -> X509Certificate<'_> {
    pki::parse_cert(der, "dstack certificate").expect("certificate")
}

/// The `.1.8` payload of a certificate.
fn attestation_bytes<'c>(cert: &'c X509Certificate<'_>) -> &'c [u8] {
    let oid = Oid::from(OID_ATTESTATION).expect("OID");
    let ext = cert
        .get_extension_unique(&oid)
        .expect("unique")
        .expect("the certificate carries 1.3.6.1.4.1.62397.1.8");
    extension_value(ext.value).expect("OCTET STRING")
}

fn spki<'c>(cert: &'c X509Certificate<'_>) -> &'c [u8] {
    cert.tbs_certificate.subject_pki.raw
}

fn tdx<'x, 'a>(a: &'x Attestation<'a>) -> &'x TdxEvidence<'a> {
    a.platform.tdx().expect("TDX evidence")
}

/// Parses, replays against the attestation's own quote, and returns the replay.
fn replayed<'x>(a: &'x Attestation<'_>) -> Result<ReplayedLog<'x>, ReplayError> {
    let evidence = tdx(a);
    let report = td(&evidence.quote);
    replay::replay(evidence, &a.stack, &report.rtmr)
}

// ---------------------------------------------------------------------------------------
// The stripped V0 attestation (the fixture) and the full event log.
// ---------------------------------------------------------------------------------------

#[test]
fn the_v0_fixture_parses_into_the_typed_view() {
    let Some(bytes) = v0_fixture() else { return };
    let a = Attestation::parse(&bytes).expect("parses");
    assert_eq!(a.wire, Wire::ScaleV0);
    let evidence = tdx(&a);
    assert_eq!(evidence.quote.len(), 5006);
    assert_eq!(evidence.event_log.len(), 12);
    let names: Vec<&str> = evidence.event_log.iter().map(|e| &*e.name).collect();
    assert_eq!(
        names,
        [
            "acpi-loader",
            "acpi-rsdp",
            "acpi-tables",
            "system-preparing",
            "app-id",
            "compose-hash",
            "instance-id",
            "boot-mr-done",
            "os-image-hash",
            "key-provider",
            "storage-fs",
            "system-ready"
        ]
    );
    // The certificate form: runtime events keep payloads and drop digests; the ACPI DATA
    // events keep digests and their marker payload.
    for e in &evidence.event_log[3..] {
        assert_eq!(
            (e.imr, e.event_type, e.digest.len()),
            (3, RUNTIME_EVENT_TYPE, 0)
        );
    }
    for e in &evidence.event_log[..3] {
        assert_eq!((e.imr, e.event_type, e.digest.len()), (0, 10, 48));
        assert_eq!(&*e.payload, b"ACPI DATA");
    }
    assert_eq!(a.stack.runtime_events.len(), 9);
    binding::same_report_data(&a, &td(&evidence.quote).report_data.0).expect("signed");
    // Not an RA-TLS key: dstack's KMS flow puts its own tagged data there.
    assert!(a.stack.report_data.starts_with(b"dip1::secp256k1c-pk:"));
    assert!(a.stack.config.starts_with(r#"{"os_image_hash":"e6f5cfec"#));
    assert_eq!(a.stack.report_data_payload, None);
}

#[test]
fn the_v0_fixture_replays_to_its_quote() {
    let Some(bytes) = v0_fixture() else { return };
    let a = Attestation::parse(&bytes).expect("parses");
    let log = replayed(&a).expect("replays");
    assert_eq!(
        log.rtmrs,
        [
            RtmrReplay::DigestsOnly { events: 3 },
            RtmrReplay::NotCarried,
            RtmrReplay::NotCarried,
            RtmrReplay::Replayed { events: 9 },
        ]
    );
    assert_eq!(log.events.len(), 12);
    assert!(log.events[..3].iter().all(|e| !e.replayed));
    assert!(log.runtime_events().all(|e| e.replayed));
    assert_eq!(
        hex::encode(td(&tdx(&a).quote).rtmr[3].0),
        "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994aaa0f4ebab2e3a66824b5b56869137e"
    );
}

#[test]
fn the_v0_fixture_app_identity_is_the_captured_one() {
    let Some(bytes) = v0_fixture() else { return };
    let a = Attestation::parse(&bytes).expect("parses");
    let log = replayed(&a).expect("replays");
    let report = td(&tdx(&a).quote);
    let id = AppIdentity::derive(&log, &report);
    assert_eq!(
        hex_of(id.app_id).as_deref(),
        Some("86b0e55f2fa8e4fb69d890f14f54d5612707646e")
    );
    assert_eq!(
        hex_of(id.compose_hash).as_deref(),
        Some("86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9")
    );
    assert_eq!(
        hex_of(id.instance_id).as_deref(),
        Some("050bf89570575fe8fab4cb8f0a62a9e64efe8ead")
    );
    assert_eq!(
        hex_of(id.os_image_hash).as_deref(),
        Some("07a2388c7a6a1b6a646d443f1517990a4ec294471d63146cda9d56972765051d")
    );
    let kp = id.key_provider.as_ref().expect("key provider");
    assert_eq!(kp.name.as_deref(), Some("kms"));
    assert!(kp
        .id
        .as_deref()
        .is_some_and(|i| i.starts_with("3059301306072a8648ce3d0201")));
    assert!(id.system_ready);
    assert!(id.init_script_hashes.is_empty());
    // dstack's derived measurements, computed independently (Python hashlib) from the
    // quote's MRTD, RTMR0-3, MRCONFIGID/MROWNER/MROWNERCONFIG and the key-provider payload.
    assert_eq!(
        hex::encode(id.mr_system),
        "118f754a080ecb8527df65656ee4e7e97b891cf488ad6a38886ff0dbca0c8f70"
    );
    assert_eq!(
        hex::encode(id.mr_aggregated),
        "c758fa624b62536ca77504c4c52745e70880220a178a615a859c52f8b101d2ee"
    );
    // The capture notes' value is the VM configuration's claim (SHA-256 of the image's
    // sha256sum.txt), which differs from the measured os-image-hash event of this boot.
    let cfg = vm_config::parse(&a.stack.config).expect("config");
    assert_eq!(
        hex_of(cfg.os_image_hash.as_deref()).as_deref(),
        Some("e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db")
    );
    assert_eq!(cfg.image.as_deref(), Some("dstack-0.6.0"));
}

#[test]
fn the_full_event_log_replays_all_four_rtmrs() {
    let Some((quote, log_json)) = getquote() else {
        return;
    };
    let a = Attestation::from_legacy(&quote, log_json.as_bytes()).expect("legacy pair");
    assert_eq!(a.wire, Wire::Legacy);
    assert_eq!(tdx(&a).event_log.len(), 29);
    assert_eq!(a.stack.runtime_events.len(), 9);
    let log = replayed(&a).expect("replays");
    assert_eq!(
        log.rtmrs,
        [
            RtmrReplay::Replayed { events: 13 },
            RtmrReplay::Replayed { events: 5 },
            RtmrReplay::Replayed { events: 2 },
            RtmrReplay::Replayed { events: 9 },
        ]
    );
    assert!(log.events.iter().all(|e| e.replayed));
    let id = AppIdentity::derive(&log, &td(&quote));
    assert_eq!(
        hex_of(id.app_id).as_deref(),
        Some("86b0e55f2fa8e4fb69d890f14f54d5612707646e")
    );
}

/// The RTMR a full-log mutation must break, given the legacy attestation and a change.
fn replay_after(
    change: impl FnOnce(&mut Attestation<'_>),
) -> Option<Result<[RtmrReplay; 4], ReplayError>> {
    let (quote, log_json) = getquote()?;
    let mut a = Attestation::from_legacy(&quote, log_json.as_bytes()).expect("legacy pair");
    change(&mut a);
    Some(replayed(&a).map(|l| l.rtmrs))
}

fn rtmr_mismatch(r: Option<Result<[RtmrReplay; 4], ReplayError>>) -> Option<usize> {
    match r? {
        Err(ReplayError::RtmrMismatch { rtmr, .. }) => Some(rtmr),
        other => panic!("expected an RTMR mismatch, got {other:?}"),
    }
}

fn events_mut<'x, 'a>(a: &'x mut Attestation<'a>) -> &'x mut Vec<Event<'a>> {
    match &mut a.platform {
        Platform::Tdx(t) => &mut t.event_log,
        _ => panic!("TDX"),
    }
}

#[test]
fn a_changed_boot_event_breaks_its_rtmr() {
    for (index, rtmr) in [(0, 0), (11, 1), (16, 2)] {
        let broken = rtmr_mismatch(replay_after(|a| {
            let e = &mut events_mut(a)[index];
            assert_eq!(usize::try_from(e.imr).ok(), Some(rtmr));
            e.digest.to_mut()[17] ^= 0x01;
        }));
        assert_eq!(broken.unwrap_or(rtmr), rtmr);
    }
}

#[test]
fn a_dropped_or_reordered_boot_event_breaks_its_rtmr() {
    assert_eq!(
        rtmr_mismatch(replay_after(|a| {
            events_mut(a).remove(1);
        }))
        .unwrap_or(0),
        0
    );
    // Events 0 and 1 both extend RTMR0, with different digests.
    assert_eq!(
        rtmr_mismatch(replay_after(|a| events_mut(a).swap(0, 1))).unwrap_or(0),
        0
    );
    // Moving an RTMR1 event into RTMR2.
    assert_eq!(
        rtmr_mismatch(replay_after(|a| events_mut(a)[11].imr = 2)).unwrap_or(1),
        1
    );
}

/// A change to an event log.
type LogChange = dyn Fn(&mut Vec<Event<'_>>);

#[test]
fn a_changed_dropped_or_reordered_runtime_event_breaks_rtmr3() {
    // The same change to both copies (the log's and the stack's), so only the replay can
    // catch it.
    let both = |a: &mut Attestation<'_>, f: &LogChange| {
        f(events_mut(a));
        a.stack.runtime_events = tdx(a)
            .event_log
            .iter()
            .filter(|e| e.imr == 3)
            .map(|e| ratls_proxy::dstack::RuntimeEvent {
                name: e.name.clone(),
                payload: e.payload.clone(),
                version: e.version,
            })
            .collect();
    };
    // The full log's `app-id` event.
    const APP_ID_EVENT: usize = 21;
    let changes: [&LogChange; 5] = [
        &|l| l[APP_ID_EVENT].payload.to_mut()[0] ^= 0x80,
        &|l| {
            l.remove(APP_ID_EVENT);
        },
        &|l| l.swap(APP_ID_EVENT, APP_ID_EVENT + 1),
        &|l| l[APP_ID_EVENT].name.to_mut().push('x'),
        &|l| l[APP_ID_EVENT].version = EventVersion::V2,
    ];
    for change in changes {
        assert_eq!(
            rtmr_mismatch(replay_after(|a| both(a, change))).unwrap_or(3),
            3
        );
    }
}

#[test]
fn the_log_and_the_runtime_events_must_agree() {
    let Some(r) = replay_after(|a| a.stack.runtime_events[1].payload.to_mut()[0] ^= 1) else {
        return;
    };
    assert!(
        matches!(r, Err(ReplayError::RuntimeEventsDiffer(_))),
        "{r:?}"
    );
    let r = replay_after(|a| {
        a.stack.runtime_events.pop();
    });
    assert!(
        matches!(r, Some(Err(ReplayError::RuntimeEventsDiffer(_)))),
        "{r:?}"
    );
}

#[test]
fn events_the_quote_cannot_have_are_refused() {
    let Some(r) = replay_after(|a| events_mut(a)[0].imr = 7) else {
        return;
    };
    assert_eq!(r, Err(ReplayError::ImrOutOfRange { index: 0, imr: 7 }));
    let r = replay_after(|a| events_mut(a)[20].imr = 1);
    assert_eq!(
        r,
        Some(Err(ReplayError::RuntimeEventOutsideRtmr3 {
            index: 20,
            imr: 1
        }))
    );
    let r = replay_after(|a| events_mut(a)[0].imr = 3);
    assert_eq!(r, Some(Err(ReplayError::BootEventInRtmr3 { index: 0 })));
    let r = replay_after(|a| events_mut(a)[0].digest.to_mut().truncate(32));
    assert_eq!(r, Some(Err(ReplayError::BadDigest { index: 0, len: 32 })));
    let r = replay_after(|a| *events_mut(a)[21].digest.to_mut() = vec![0; 48]);
    assert!(
        matches!(r, Some(Err(ReplayError::DigestMismatch { index: 21, .. }))),
        "{r:?}"
    );
}

#[test]
fn a_correct_runtime_digest_is_accepted_and_a_log_against_another_quote_is_not() {
    let Some(bytes) = v0_fixture() else { return };
    let mut a = Attestation::parse(&bytes).expect("parses");
    // Fill in the stripped digests as V1 wire forms carry them: still replays.
    if let Platform::Tdx(t) = &mut a.platform {
        for e in t.event_log.iter_mut().filter(|e| e.imr == 3) {
            e.digest = replay::runtime_digest(&e.name, &e.payload, e.version)
                .to_vec()
                .into();
        }
    }
    assert!(replayed(&a).is_ok());
    // The same events against a quote whose RTMR3 differs.
    let mut other = td(&tdx(&a).quote).rtmr;
    other[3].0[0] ^= 1;
    let r = replay::replay(tdx(&a), &a.stack, &other);
    assert!(
        matches!(r, Err(ReplayError::RtmrMismatch { rtmr: 3, .. })),
        "{r:?}"
    );
}

#[test]
fn one_flipped_byte_of_the_v0_bytes_is_caught() {
    let Some(bytes) = v0_fixture() else { return };
    let app_id = hex::decode("86b0e55f2fa8e4fb69d890f14f54d5612707646e").unwrap_or_default();
    let at: Vec<usize> = bytes
        .windows(app_id.len())
        .enumerate()
        .filter(|(_, w)| *w == app_id.as_slice())
        .map(|(i, _)| i)
        // After the quote (whose MRCONFIGID holds the compose hash too).
        .filter(|i| *i > 4 + 5006)
        .collect();
    // The app id is in the event log and in the runtime events; the compose hash starts
    // with it too (this boot's app id is the truncated compose hash).
    assert_eq!(at.len(), 4, "{at:?}");
    let flip = |positions: &[usize]| {
        let mut b = bytes.clone();
        for p in positions {
            b[*p + 3] ^= 0x01;
        }
        let a = Attestation::parse(&b).expect("still parses");
        replayed(&a).map(|l| l.rtmrs)
    };
    // One copy only: the two lists disagree.
    assert!(matches!(
        flip(&at[..1]),
        Err(ReplayError::RuntimeEventsDiffer(_))
    ));
    // Both copies of the app-id event: RTMR3 no longer replays.
    let r = flip(&[at[0], at[2]]);
    assert!(
        matches!(r, Err(ReplayError::RtmrMismatch { rtmr: 3, .. })),
        "{r:?}"
    );
}

#[test]
fn only_events_before_system_ready_name_the_app() {
    let event = |name: &'static str, payload: &'static [u8]| ReplayedEvent {
        rtmr: 3,
        event_type: RUNTIME_EVENT_TYPE,
        name,
        payload,
        digest: [0; 48],
        version: EventVersion::V1,
        replayed: true,
    };
    let log = ReplayedLog {
        rtmrs: [RtmrReplay::NotCarried; 4],
        events: vec![
            event("app-id", b"first"),
            event("app-id", b"second"),
            event("init-script-hash", b"one"),
            event("compose-hash", b"compose"),
            event("init-script-hash", b"two"),
            event("system-ready", b""),
            // Emitted by the app itself through the guest agent: never identity.
            event("instance-id", b"forged"),
            event("compose-hash", b"forged"),
        ],
    };
    let Some((quote, _)) = getquote() else { return };
    let id = AppIdentity::derive(&log, &td(&quote));
    assert_eq!(id.app_id, Some(&b"first"[..]));
    assert_eq!(id.compose_hash, Some(&b"compose"[..]));
    assert_eq!(id.instance_id, None);
    assert_eq!(id.init_script_hashes, [&b"one"[..], b"two"]);
    assert!(id.system_ready);
    assert_eq!(id.key_provider, None);
}

// ---------------------------------------------------------------------------------------
// The real RA-TLS certificates: V0 and V1 from one boot.
// ---------------------------------------------------------------------------------------

#[test]
fn real_chains_are_signed_by_their_ca() {
    for name in [V0_CHAIN, V1_CHAIN] {
        let chain = chain(name);
        let (leaf, ca) = (cert(&chain[0]), cert(&chain[1]));
        let ca_point = pki::p256_point(&ca.tbs_certificate.subject_pki, "CA").expect("P-256");
        pki::verify_cert_signature(&ca, ca_point, "CA").expect("the CA is self-signed");
        pki::verify_cert_signature(&leaf, ca_point, "leaf").expect("the CA signed the leaf");
        assert_eq!(pki::common_name(&ca), "App Root Cert");
        // A changed byte of the signed part no longer verifies.
        let mut der = chain[0].clone();
        let at = der.len() / 2;
        der[at] ^= 0x01;
        if let Ok((_, bad)) = X509Certificate::from_der(&der) {
            assert!(pki::verify_cert_signature(&bad, ca_point, "leaf").is_err());
        }
    }
    // Both chains end in the same CA: one boot.
    assert_eq!(chain(V0_CHAIN)[1], chain(V1_CHAIN)[1]);
}

#[test]
fn each_attestation_is_bound_to_its_own_key() {
    for (name, wire) in [(V0_CHAIN, Wire::ScaleV0), (V1_CHAIN, Wire::MsgpackV1)] {
        let chain = chain(name);
        for der in &chain {
            let c = cert(der);
            let a = Attestation::parse(attestation_bytes(&c)).expect("parses");
            let report = td(&tdx(&a).quote);
            binding::check(&a, spki(&c), &report.report_data.0).expect("bound");
            assert_eq!(
                a.stack.report_data,
                binding::ratls_cert_report_data(spki(&c))
            );
            replayed(&a).expect("replays");
            // The CA's attestation is SCALE whatever the leaf's.
            let leaf = std::ptr::eq(der, &chain[0]);
            assert_eq!(a.wire, if leaf { wire } else { Wire::ScaleV0 });
        }
    }
}

#[test]
fn v0_and_v1_carry_the_same_evidence() {
    let (c0, c1) = (chain(V0_CHAIN), chain(V1_CHAIN));
    let (l0, l1) = (cert(&c0[0]), cert(&c1[0]));
    let a0 = Attestation::parse(attestation_bytes(&l0)).expect("V0");
    let a1 = Attestation::parse(attestation_bytes(&l1)).expect("V1");
    assert_eq!((a0.wire, a1.wire), (Wire::ScaleV0, Wire::MsgpackV1));
    let (r0, r1) = (replayed(&a0).expect("V0"), replayed(&a1).expect("V1"));
    // The same events, the same runtime events, the same configuration.
    assert_eq!(r0.events, r1.events);
    assert_eq!(r0.rtmrs, r1.rtmrs);
    assert_eq!(a0.stack.runtime_events, a1.stack.runtime_events);
    assert_eq!(a0.stack.config, a1.stack.config);
    // Both carry the runtime events' digests (the fixture's older stripping left them out);
    // the replay checked each against its payload.
    for a in [&a0, &a1] {
        assert!(tdx(a).event_log[3..].iter().all(|e| e.digest.len() == 48));
    }
    // One TD: every measurement equal, only REPORTDATA (the key) differs.
    let (t0, t1) = (td(&tdx(&a0).quote), td(&tdx(&a1).quote));
    assert_eq!(t0.mr_td, t1.mr_td);
    assert_eq!(t0.rtmr, t1.rtmr);
    assert_eq!(t0.td_attributes.0, t1.td_attributes.0);
    assert_eq!(t0.mr_config_id, t1.mr_config_id);
    assert_ne!(t0.report_data, t1.report_data);
    let (i0, i1) = (AppIdentity::derive(&r0, &t0), AppIdentity::derive(&r1, &t1));
    assert_eq!(i0, i1);
    assert_eq!(
        hex_of(i0.app_id).as_deref(),
        Some("53226fcd7b6bc7ea979b0a550bf49cad993f28e2")
    );
    assert_eq!(
        hex_of(i0.compose_hash).as_deref(),
        Some("53226fcd7b6bc7ea979b0a550bf49cad993f28e2370169a9510e56c90b3029dc")
    );
    assert_eq!(
        hex_of(i0.instance_id).as_deref(),
        Some("daf6ebb5452578eba1a13acd1ed103157b03bff6")
    );
    assert_eq!(
        i0.os_image_hash, None,
        "key provider none: no KMS, no os-image-hash event"
    );
    let kp = i0.key_provider.as_ref().expect("key provider");
    assert_eq!(
        (kp.name.as_deref(), kp.id.as_deref()),
        (Some("none"), Some(""))
    );
}

#[test]
fn moving_an_attestation_to_another_key_breaks_the_binding() {
    let (c0, c1) = (chain(V0_CHAIN), chain(V1_CHAIN));
    let (l0, l1, ca) = (cert(&c0[0]), cert(&c1[0]), cert(&c0[1]));
    for (from, to) in [(&l1, &l0), (&l0, &l1), (&ca, &l1), (&l1, &ca)] {
        let a = Attestation::parse(attestation_bytes(from)).expect("parses");
        let report = td(&tdx(&a).quote);
        let r = binding::check(&a, spki(to), &report.report_data.0);
        assert!(matches!(r, Err(BindingError::KeyNotBound { .. })), "{r:?}");
    }
}

#[test]
fn report_data_that_differs_from_the_quote_is_refused() {
    let c1 = chain(V1_CHAIN);
    let leaf = cert(&c1[0]);
    let bytes = attestation_bytes(&leaf).to_vec();
    // A V1 whose stack report data is changed on the wire (the report data is an array of
    // 64 small integers after the `report_data` key).
    let key = b"\xabreport_data";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("report_data key");
    let mut changed = bytes.clone();
    // Skip the array marker (0xdc 0x00 0x40) to the first element, and change it to
    // another value of the same encoding width.
    let first = at + key.len() + 3;
    changed[first + 1] ^= 0x01;
    let a = Attestation::parse(&changed).expect("still parses");
    let report = td(&tdx(&a).quote);
    let r = binding::check(&a, spki(&leaf), &report.report_data.0);
    assert!(matches!(r, Err(BindingError::QuoteDiffers { .. })), "{r:?}");
    // The same key, but a quote that signed other report data.
    let a = Attestation::parse(&bytes).expect("parses");
    let r = binding::check(&a, spki(&leaf), &[0x42; 64]);
    assert!(matches!(r, Err(BindingError::QuoteDiffers { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Malformed wire forms: truncation, trailing bytes, repeated and unknown keys.
// ---------------------------------------------------------------------------------------

fn real_wire_forms() -> Vec<Vec<u8>> {
    let c1 = chain(V1_CHAIN);
    let c0 = chain(V0_CHAIN);
    vec![
        attestation_bytes(&cert(&c0[0])).to_vec(),
        attestation_bytes(&cert(&c1[0])).to_vec(),
    ]
}

#[test]
fn every_truncation_and_any_trailing_byte_is_refused() {
    for bytes in real_wire_forms() {
        for cut in 0..bytes.len() {
            assert!(
                Attestation::parse(&bytes[..cut]).is_err(),
                "a {cut}-byte prefix of {} parsed",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Attestation::parse(&longer),
            Err(AttestationError::TrailingBytes { extra: 1, .. })
        ));
    }
}

/// The V1 bytes with the top-level map grown by one pair.
fn v1_with_extra_pair(pair: &[u8]) -> Vec<u8> {
    let mut b = real_wire_forms().remove(1);
    assert_eq!(b[0], 0x83, "a three-key map");
    b[0] = 0x84;
    b.extend_from_slice(pair);
    b
}

#[test]
fn a_repeated_or_unknown_key_is_refused() {
    let r = Attestation::parse(&v1_with_extra_pair(b"\xa7version\x01")).map(|_| ());
    assert!(
        matches!(r, Err(AttestationError::DuplicateKey { ref key, .. }) if key == "version"),
        "{r:?}"
    );
    let r = Attestation::parse(&v1_with_extra_pair(b"\xa5extra\xc0")).map(|_| ());
    assert!(
        matches!(r, Err(AttestationError::UnknownKey { ref key, .. }) if key == "extra"),
        "{r:?}"
    );
    // A duplicate inside an event: the V1 event maps are fixmaps of 5 (0x85) starting
    // with `imr`; grow the first to 6 with a second `imr`.
    let mut b = real_wire_forms().remove(1);
    let at = b
        .windows(5)
        .position(|w| w == b"\x85\xa3imr")
        .expect("an event map");
    b[at] = 0x86;
    b.splice(at + 1..at + 1, b"\xa3imr\x07".iter().copied());
    let r = Attestation::parse(&b).map(|_| ());
    assert!(
        matches!(r, Err(AttestationError::DuplicateKey { ref key, .. }) if key == "imr"),
        "{r:?}"
    );
}

#[test]
fn v1_version_and_kinds_are_checked() {
    let b = real_wire_forms().remove(1);
    let replace = |from: &[u8], to: &[u8]| {
        let at = b
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{from:?}"));
        let mut c = b.clone();
        c.splice(at..at + from.len(), to.iter().copied());
        Attestation::parse(&c).map(|_| ())
    };
    assert!(matches!(
        replace(b"\xa7version\x01", b"\xa7version\x02"),
        Err(AttestationError::UnsupportedVersion { version: 2, .. })
    ));
    assert!(matches!(
        replace(b"\xa4kind\xa3tdx", b"\xa4kind\xa3xyz"),
        Err(AttestationError::UnknownPlatform(ref k)) if k == "xyz"
    ));
    assert!(matches!(
        replace(b"\xa4kind\xa6dstack", b"\xa4kind\xa6dstacX"),
        Err(AttestationError::UnknownStack(_))
    ));
    // A stack evidence without its report data.
    assert!(matches!(
        replace(b"\xabreport_data", b"\xabreport_dat_"),
        Err(AttestationError::UnknownKey { .. })
    ));
}

#[test]
fn legacy_event_logs_are_read_strictly() {
    let Some((quote, _)) = getquote() else {
        return;
    };
    let parse = |json: &str| Attestation::from_legacy(&quote, json.as_bytes()).map(|_| ());
    assert_eq!(parse("[]"), Ok(()));
    let ev = r#"{"imr":0,"event_type":1,"digest":"00","event":"","event_payload":""#;
    assert!(matches!(
        parse(&format!("[{ev},\"imr\":1}}]")),
        Err(AttestationError::Json(_))
    ));
    assert!(matches!(
        parse(&format!("[{ev},\"x\":1}}]")),
        Err(AttestationError::Json(_))
    ));
    assert!(matches!(
        parse(r#"[{"imr":0,"event_type":1,"digest":"0g","event":"","event_payload":""}]"#),
        Err(AttestationError::BadHex(_))
    ));
    assert!(matches!(
        parse(r#"[{"imr":0,"event_type":1,"event":"","event_payload":"","version":3}]"#),
        Err(AttestationError::UnsupportedVersion { version: 3, .. })
    ));
    assert!(matches!(parse("[] x"), Err(AttestationError::Json(_))));
    // An SGX quote is not dstack's.
    let Some(dir) = common::fixtures() else {
        return;
    };
    let sgx = common::read(&dir, "dcap/sgx_v3_qvl.quote.bin");
    assert_eq!(
        Attestation::from_legacy(&sgx, b"[]").map(|_| ()),
        Err(AttestationError::NotTdx)
    );
}

// ---------------------------------------------------------------------------------------
// Other platforms in the same envelope: carried, typed, refused as unsupported.
// ---------------------------------------------------------------------------------------

#[test]
fn sev_snp_and_nitro_evidence_is_carried_and_refused_as_unsupported() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let snp = common::read(&dir, "dstack/sev_snp_attestation.bin");
    let a = Attestation::parse(&snp).expect("SNP parses");
    match &a.platform {
        Platform::SevSnp {
            report,
            cert_chain,
            mr_config,
        } => {
            assert_eq!(report.len(), 1184);
            // Report version 3, REPORT_DATA at 0x50 equal to the stack's report data.
            assert_eq!(
                u32::from_le_bytes(report[..4].try_into().unwrap_or_default()),
                3
            );
            assert_eq!(&report[0x50..0x90], &a.stack.report_data[..]);
            assert!(cert_chain.is_empty());
            assert!(mr_config.starts_with(r#"{"app_id":"86e59625"#));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.platform.tdx(), Err(UnsupportedTee("sev-snp")));
    for name in ["nitro_attestation.bin", "nitro_attestation_dbg.bin"] {
        let bytes = common::read(&dir, &format!("dstack/{name}"));
        let a = Attestation::parse(&bytes).expect("Nitro parses");
        match &a.platform {
            // An untagged COSE_Sign1: a four-element CBOR array.
            Platform::NitroEnclave { nsm_quote } => assert_eq!(nsm_quote.first(), Some(&0x84)),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.platform.tdx(), Err(UnsupportedTee("nitro-enclave")));
    }
}

#[test]
fn replay_needs_the_quote_it_was_given() {
    // The stripped log's RTMR3 replays to the V0 fixture's quote, not to the certificate
    // boot's: the replay compares with what it is handed, and nothing else.
    let Some(bytes) = v0_fixture() else { return };
    let a = Attestation::parse(&bytes).expect("parses");
    let c1 = chain(V1_CHAIN);
    let leaf = cert(&c1[0]);
    let other = Attestation::parse(attestation_bytes(&leaf)).expect("V1");
    let rtmr: [Rtmr; 4] = td(&tdx(&other).quote).rtmr;
    let r = replay::replay(tdx(&a), &a.stack, &rtmr);
    assert!(
        matches!(r, Err(ReplayError::RtmrMismatch { rtmr: 3, .. })),
        "{r:?}"
    );
}

#[test]
fn the_nitro_envelope_hands_its_document_to_the_nitro_core() {
    // The two cores together on dstack's real Nitro attestations: the envelope parsed here,
    // the COSE document by `nitro`, and dstack's binding rule (user_data = report_data).
    let Some(dir) = common::fixtures() else {
        return;
    };
    for name in ["nitro_attestation.bin", "nitro_attestation_dbg.bin"] {
        let bytes = common::read(&dir, &format!("dstack/{name}"));
        let a = Attestation::parse(&bytes).expect("envelope");
        let Platform::NitroEnclave { nsm_quote } = &a.platform else {
            panic!("{name}: not Nitro")
        };
        let parsed = ratls_proxy::nitro::parse(nsm_quote).expect("COSE document");
        ratls_proxy::nitro::binding::user_data_is_dstack_report_data(
            &parsed.doc,
            &a.stack.report_data,
        )
        .expect("user_data is the envelope's report data");
        let mut other = a.stack.report_data;
        other[0] ^= 1;
        assert!(
            ratls_proxy::nitro::binding::user_data_is_dstack_report_data(&parsed.doc, &other)
                .is_err()
        );
    }
}
