//! dstack's wire forms built byte by byte, for the shapes no real capture here has: version-2
//! runtime events, the GCP TDX and dstack-pod variants, keys in another order, byte strings
//! as `bin` or as integer arrays, and hostile counts and nesting. The encoders below write
//! MessagePack and SCALE exactly as rmp-serde and Parity's codec do.

use ratls_proxy::dcap::ids::Rtmr;
use ratls_proxy::dstack::replay::{self, RtmrReplay, RUNTIME_EVENT_TYPE};
use ratls_proxy::dstack::{
    Attestation, AttestationError, EventVersion, Platform, UnsupportedTee, Wire,
};
use sha2::{Digest, Sha384};

/// MessagePack, as rmp-serde writes it.
mod mp {
    fn be<const N: usize>(marker: u8, n: usize) -> Vec<u8> {
        let mut v = vec![marker];
        v.extend(&u64::try_from(n).expect("length").to_be_bytes()[8 - N..]);
        v
    }

    fn small(n: usize) -> u8 {
        u8::try_from(n).expect("small")
    }

    pub(crate) fn map(n: usize) -> Vec<u8> {
        if n < 16 {
            vec![0x80 | small(n)]
        } else {
            be::<2>(0xde, n)
        }
    }

    pub(crate) fn array(n: usize) -> Vec<u8> {
        if n < 16 {
            vec![0x90 | small(n)]
        } else {
            be::<2>(0xdc, n)
        }
    }

    pub(crate) fn str(s: &str) -> Vec<u8> {
        let mut v = match s.len() {
            n if n < 32 => vec![0xa0 | small(n)],
            n if n < 256 => be::<1>(0xd9, n),
            n => be::<2>(0xda, n),
        };
        v.extend(s.as_bytes());
        v
    }

    pub(crate) fn bin(b: &[u8]) -> Vec<u8> {
        let mut v = match b.len() {
            n if n < 256 => be::<1>(0xc4, n),
            n => be::<2>(0xc5, n),
        };
        v.extend(b);
        v
    }

    pub(crate) fn uint(x: u64) -> Vec<u8> {
        let n = usize::try_from(x).expect("usize");
        match x {
            0..=0x7f => vec![small(n)],
            0x80..=0xff => be::<1>(0xcc, n),
            0x100..=0xffff => be::<2>(0xcd, n),
            _ => be::<4>(0xce, n),
        }
    }

    /// serde's `Vec<u8>`: an array of integers.
    pub(crate) fn ints(b: &[u8]) -> Vec<u8> {
        let mut v = array(b.len());
        for x in b {
            v.extend(uint(u64::from(*x)));
        }
        v
    }

    /// A map from string keys to encoded values, in the given order.
    pub(crate) fn fields(pairs: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut v = map(pairs.len());
        for (k, val) in pairs {
            v.extend(str(k));
            v.extend(val);
        }
        v
    }
}

/// SCALE, as Parity's codec writes it.
mod sc {
    pub(crate) fn compact(n: usize) -> Vec<u8> {
        let n = u32::try_from(n).expect("u32");
        match n {
            0..=0x3f => vec![u8::try_from(n << 2).expect("one byte")],
            0x40..=0x3fff => (u16::try_from(n << 2).expect("two bytes") | 1)
                .to_le_bytes()
                .to_vec(),
            _ => ((n << 2) | 2).to_le_bytes().to_vec(),
        }
    }

    pub(crate) fn bytes(b: &[u8]) -> Vec<u8> {
        let mut v = compact(b.len());
        v.extend(b);
        v
    }
}

fn real_quote() -> Vec<u8> {
    // Any TDX quote: the replay below is given its RTMRs explicitly.
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/dstack");
    let pem = std::fs::read(dir.join("tdx-lite-v1-issue-cert.pem")).expect("read");
    let chain = ratls_proxy::dcap::pki::pem_chain(&pem, "chain").expect("PEM");
    // The CA's V0 attestation: quote right after the 0x00 0x00 prefix and its length.
    let cert = ratls_proxy::dcap::pki::parse_cert(&chain[1], "CA").expect("CA");
    let oid =
        x509_parser::der_parser::oid::Oid::from(ratls_proxy::dstack::OID_ATTESTATION).expect("OID");
    let ext = cert
        .get_extension_unique(&oid)
        .expect("unique")
        .expect(".1.8");
    let bytes = ratls_proxy::dstack::extension_value(ext.value).expect("OCTET STRING");
    let a = Attestation::parse(bytes).expect("V0");
    a.platform.tdx().expect("TDX").quote.to_vec()
}

/// A runtime event as a V1 TDX event map and as a V1 runtime event map.
fn v1_event(name: &str, payload: &[u8], version: Option<u64>) -> (Vec<u8>, Vec<u8>) {
    let mut tdx = vec![
        ("imr", mp::uint(3)),
        ("event_type", mp::uint(u64::from(RUNTIME_EVENT_TYPE))),
        ("event", mp::str(name)),
        ("event_payload", mp::bin(payload)),
    ];
    let mut runtime = vec![("event", mp::str(name)), ("payload", mp::bin(payload))];
    if let Some(v) = version {
        tdx.push(("version", mp::uint(v)));
        runtime.push(("version", mp::uint(v)));
    }
    (mp::fields(&tdx), mp::fields(&runtime))
}

struct V1 {
    platform_kind: &'static str,
    platform_data: Vec<u8>,
    stack_kind: &'static str,
    stack_data: Vec<u8>,
}

impl V1 {
    fn encode(&self) -> Vec<u8> {
        mp::fields(&[
            ("version", mp::uint(1)),
            (
                "platform",
                mp::fields(&[
                    ("kind", mp::str(self.platform_kind)),
                    ("data", self.platform_data.clone()),
                ]),
            ),
            (
                "stack",
                mp::fields(&[
                    ("kind", mp::str(self.stack_kind)),
                    ("data", self.stack_data.clone()),
                ]),
            ),
        ])
    }
}

/// A TDX V1 attestation with the given events (all runtime events, in both lists).
fn tdx_v1(quote: &[u8], events: &[(&str, &[u8], Option<u64>)], quote_as_ints: bool) -> Vec<u8> {
    let (mut log, mut runtime) = (mp::array(events.len()), mp::array(events.len()));
    for (name, payload, version) in events {
        let (t, r) = v1_event(name, payload, *version);
        log.extend(t);
        runtime.extend(r);
    }
    let quote = if quote_as_ints {
        mp::ints(quote)
    } else {
        mp::bin(quote)
    };
    V1 {
        platform_kind: "tdx",
        platform_data: mp::fields(&[("quote", quote), ("event_log", log)]),
        stack_kind: "dstack",
        stack_data: mp::fields(&[
            ("report_data", mp::ints(&[7; 64])),
            ("runtime_events", runtime),
            ("config", mp::str("{}")),
        ]),
    }
    .encode()
}

fn extend(mr: [u8; 48], preimage: &[u8]) -> [u8; 48] {
    let digest: [u8; 48] = Sha384::digest(preimage).into();
    let mut h = Sha384::new();
    h.update(mr);
    h.update(digest);
    h.finalize().into()
}

#[test]
fn version_2_runtime_events_replay_with_their_canonical_json() {
    let quote = real_quote();
    let bytes = tdx_v1(
        &quote,
        &[
            ("app-id", &[0x01, 0x02], Some(2)),
            ("compose-hash", &[0xab, 0xcd], Some(2)),
            ("instance-id", &[0xff], Some(1)),
        ],
        false,
    );
    let a = Attestation::parse(&bytes).expect("parses");
    assert_eq!(a.wire, Wire::MsgpackV1);
    let versions: Vec<EventVersion> = a.stack.runtime_events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        [EventVersion::V2, EventVersion::V2, EventVersion::V1]
    );
    // RTMR3 computed here from the literal pre-images dstack hashes.
    let mut rtmr3 = [0u8; 48];
    rtmr3 = extend(
        rtmr3,
        br#"{"name":"app-id","payload":"0102","type":134217729}"#,
    );
    rtmr3 = extend(
        rtmr3,
        br#"{"name":"compose-hash","payload":"abcd","type":134217729}"#,
    );
    let mut v1 = RUNTIME_EVENT_TYPE.to_le_bytes().to_vec();
    v1.extend(b":instance-id:\xff");
    rtmr3 = extend(rtmr3, &v1);
    let quoted = [Rtmr([0; 48]), Rtmr([0; 48]), Rtmr([0; 48]), Rtmr(rtmr3)];
    let tdx = a.platform.tdx().expect("TDX");
    let log = replay::replay(tdx, &a.stack, &quoted).expect("replays");
    assert_eq!(log.rtmrs[3], RtmrReplay::Replayed { events: 3 });
    // The same events with the version dropped (read as V1) do not.
    let v1_only = tdx_v1(
        &quote,
        &[
            ("app-id", &[0x01, 0x02], None),
            ("compose-hash", &[0xab, 0xcd], None),
            ("instance-id", &[0xff], None),
        ],
        false,
    );
    let b = Attestation::parse(&v1_only).expect("parses");
    assert!(replay::replay(b.platform.tdx().expect("TDX"), &b.stack, &quoted).is_err());
    // Version 3 is not a digest rule anyone defined.
    let v3 = tdx_v1(&quote, &[("app-id", &[1], Some(3))], false);
    assert!(matches!(
        Attestation::parse(&v3),
        Err(AttestationError::UnsupportedVersion { version: 3, .. })
    ));
}

#[test]
fn byte_strings_as_bin_or_integer_arrays_read_the_same() {
    let quote = real_quote();
    let events: &[(&str, &[u8], Option<u64>)] = &[("app-id", &[9; 20], None)];
    let as_bin = tdx_v1(&quote, events, false);
    let as_ints = tdx_v1(&quote, events, true);
    assert!(as_ints.len() > as_bin.len());
    let (a, b) = (
        Attestation::parse(&as_bin).expect("bin"),
        Attestation::parse(&as_ints).expect("ints"),
    );
    assert_eq!(a, b);
}

#[test]
fn keys_in_any_order_and_data_before_kind() {
    let quote = real_quote();
    let stack_data = mp::fields(&[
        ("config", mp::str("")),
        ("runtime_events", mp::array(0)),
        ("report_data", mp::bin(&[1; 64])),
    ]);
    let bytes = mp::fields(&[
        (
            "stack",
            mp::fields(&[("data", stack_data), ("kind", mp::str("dstack"))]),
        ),
        (
            "platform",
            mp::fields(&[
                (
                    "data",
                    mp::fields(&[("event_log", mp::array(0)), ("quote", mp::bin(&quote))]),
                ),
                ("kind", mp::str("tdx")),
            ]),
        ),
        ("version", mp::uint(1)),
    ]);
    let a = Attestation::parse(&bytes).expect("parses");
    assert_eq!(a.stack.report_data, [1; 64]);
    assert_eq!(&*a.platform.tdx().expect("TDX").quote, quote.as_slice());
}

#[test]
fn gcp_tdx_and_dstack_pod_are_carried_as_typed_evidence() {
    let quote = real_quote();
    let mut pcrs = mp::array(1);
    pcrs.extend(mp::fields(&[("index", mp::uint(14))]));
    let tpm_quote = mp::fields(&[("message", mp::bin(b"TPMS_ATTEST")), ("pcr_values", pcrs)]);
    let bytes = V1 {
        platform_kind: "gcp-tdx",
        platform_data: mp::fields(&[
            ("quote", mp::bin(&quote)),
            ("event_log", mp::array(0)),
            ("tpm_quote", tpm_quote.clone()),
        ]),
        stack_kind: "dstack-pod",
        stack_data: mp::fields(&[
            ("report_data", mp::bin(&[2; 64])),
            ("runtime_events", mp::array(0)),
            ("config", mp::str("")),
            ("report_data_payload", mp::str(r#"{"hello":"world"}"#)),
        ]),
    }
    .encode();
    let a = Attestation::parse(&bytes).expect("parses");
    match &a.platform {
        Platform::GcpTdx {
            tdx,
            tpm_quote: raw,
        } => {
            assert_eq!(&*tdx.quote, quote.as_slice());
            assert_eq!(*raw, tpm_quote.as_slice());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.platform.tdx(), Err(UnsupportedTee("gcp-tdx")));
    assert_eq!(
        a.stack.report_data_payload.as_deref(),
        Some(r#"{"hello":"world"}"#)
    );
    // A payload under plain `dstack` is a key that stack kind does not have.
    let bytes = V1 {
        platform_kind: "nitro-enclave",
        platform_data: mp::fields(&[("nsm_quote", mp::bin(b"\x84cose"))]),
        stack_kind: "dstack",
        stack_data: mp::fields(&[
            ("report_data", mp::bin(&[2; 64])),
            ("runtime_events", mp::array(0)),
            ("config", mp::str("")),
            ("report_data_payload", mp::str("x")),
        ]),
    }
    .encode();
    assert!(matches!(
        Attestation::parse(&bytes),
        Err(AttestationError::UnknownKey { .. })
    ));
}

#[test]
fn missing_keys_short_report_data_and_deep_nesting_are_refused() {
    let quote = real_quote();
    let stack = |data: Vec<u8>| V1 {
        platform_kind: "tdx",
        platform_data: mp::fields(&[("quote", mp::bin(&quote)), ("event_log", mp::array(0))]),
        stack_kind: "dstack",
        stack_data: data,
    };
    let short = stack(mp::fields(&[
        ("report_data", mp::ints(&[0; 63])),
        ("runtime_events", mp::array(0)),
        ("config", mp::str("")),
    ]))
    .encode();
    assert_eq!(
        Attestation::parse(&short).map(|_| ()),
        Err(AttestationError::ReportDataLength(63))
    );
    let missing = stack(mp::fields(&[
        ("report_data", mp::ints(&[0; 64])),
        ("config", mp::str("")),
    ]))
    .encode();
    assert_eq!(
        Attestation::parse(&missing).map(|_| ()),
        Err(AttestationError::MissingKey {
            map: "the stack evidence",
            key: "runtime_events"
        })
    );
    // 100 nested arrays as the platform data: skipped only to a depth of 16.
    let mut deep = vec![0x91; 100];
    deep.push(0xc0);
    let bomb = V1 {
        platform_kind: "tdx",
        platform_data: deep,
        stack_kind: "dstack",
        stack_data: mp::map(0),
    }
    .encode();
    assert!(matches!(
        Attestation::parse(&bomb),
        Err(AttestationError::TooDeep(_))
    ));
    // An array declaring 2^32-1 elements in a few bytes.
    let mut huge = mp::fields(&[("version", mp::uint(1))]);
    huge[0] = 0x82;
    huge.extend(mp::str("platform"));
    huge.extend([0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert!(Attestation::parse(&huge).is_err());
}

/// A V0 attestation: platform index and body, runtime events, report data, configuration.
fn v0(platform: u8, body: &[u8], runtime: &[(&str, &[u8])]) -> Vec<u8> {
    let mut v = vec![0x00, platform];
    v.extend(body);
    v.extend(sc::compact(runtime.len()));
    for (name, payload) in runtime {
        v.extend(sc::bytes(name.as_bytes()));
        v.extend(sc::bytes(payload));
    }
    v.extend([3u8; 64]);
    v.extend(sc::bytes(b"{}"));
    v
}

#[test]
fn v0_gcp_tdx_carries_its_tpm_quote_exactly() {
    let quote = real_quote();
    let mut body = sc::bytes(&quote);
    body.extend(sc::compact(0)); // no TDX events
    let mut tpm = sc::bytes(b"message");
    tpm.extend(sc::bytes(b"signature"));
    tpm.extend(sc::compact(1));
    tpm.extend(14u32.to_le_bytes());
    tpm.extend(sc::bytes(b"sha256"));
    tpm.extend(sc::bytes(&[5; 32]));
    tpm.extend(sc::bytes(b"ak cert"));
    let platform_at = body.len() + tpm.len();
    tpm.push(1); // Platform::Gcp
    tpm.extend(sc::compact(1));
    tpm.extend(14u32.to_le_bytes());
    tpm.extend(sc::bytes(&[6; 32]));
    body.extend(&tpm);
    let bytes = v0(1, &body, &[("app-id", b"x")]);
    let a = Attestation::parse(&bytes).expect("parses");
    match &a.platform {
        Platform::GcpTdx { tpm_quote, .. } => assert_eq!(*tpm_quote, tpm.as_slice()),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.stack.runtime_events.len(), 1);
    assert_eq!(a.stack.report_data, [3; 64]);
    // An unknown TPM platform, an unknown quote variant.
    let mut bad = body.clone();
    bad[platform_at] = 9;
    assert!(matches!(
        Attestation::parse(&v0(1, &bad, &[])),
        Err(AttestationError::UnknownPlatform(_))
    ));
    assert!(matches!(
        Attestation::parse(&v0(5, &[], &[])),
        Err(AttestationError::UnknownPlatform(_))
    ));
}

#[test]
fn v0_counts_beyond_the_input_or_the_cap_are_refused() {
    let quote = real_quote();
    let mut body = sc::bytes(&quote);
    // 2^30 events declared in the big-integer compact form.
    body.extend([0x03, 0x00, 0x00, 0x00, 0x40]);
    assert!(matches!(
        Attestation::parse(&v0(0, &body, &[])),
        Err(AttestationError::FieldTooLarge { .. })
    ));
    let mut body = sc::bytes(&quote);
    body.extend(sc::compact(4000)); // within the cap, beyond the bytes
    assert!(matches!(
        Attestation::parse(&v0(0, &body, &[])),
        Err(AttestationError::Truncated { .. })
    ));
}
