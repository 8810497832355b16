//! `ratls-proxy verify --quote` on dstack TDX attestations, run as a real process: the real
//! V0 attestation (`tdx-lite-attestation.json`) replays its event log and shows its app
//! identity, exits 2 for collateral it cannot get and 1 for an identity it does not match;
//! sim attestations in both wire forms (sim PKI, sim collateral) are accepted by app identity
//! and refused for each identity field, a replay mismatch and moved report data. The
//! app-identity flags need the OS measurements pinned, as config's entries do.

mod common;

use std::path::PathBuf;
use std::process::Output;

use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::{self, DstackSpec, SimPki, SimPlatform, TdSpec};
use serde_json::Value;

use common::json;

/// The real fixture's app identity (as `tests/dstack.rs` reads it).
const APP_ID: &str = "86b0e55f2fa8e4fb69d890f14f54d5612707646e";
const COMPOSE_HASH: &str = "86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9";
const INSTANCE_ID: &str = "050bf89570575fe8fab4cb8f0a62a9e64efe8ead";
const OS_IMAGE_HASH: &str = "07a2388c7a6a1b6a646d443f1517990a4ec294471d63146cda9d56972765051d";

fn verify(args: &[&str]) -> Output {
    common::output(std::iter::once("verify").chain(args.iter().copied()))
}

fn code(out: &Output) -> (Option<i32>, Value) {
    (out.status.code(), json(out)["code"].clone())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratls-cli-dstack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The real V0 attestation's bytes, a file holding them, and a collateral directory for
/// another platform (so the quote's own FMSPC cannot be had offline).
fn real(name: &str) -> Option<(Vec<u8>, String, String, PathBuf)> {
    let fixtures = common::fixtures()?;
    let j: Value =
        serde_json::from_slice(&common::read(&fixtures, "dstack/tdx-lite-attestation.json"))
            .expect("json");
    let bytes = hex::decode(j["attestation"].as_str().expect("hex")).expect("hex");
    let dir = scratch(name);
    let file = dir.join("attestation.bin");
    std::fs::write(&file, &bytes).expect("write");
    let coll = dir.join("collateral");
    std::fs::create_dir_all(&coll).expect("dir");
    std::fs::copy(
        fixtures.join("dcap/tdx_v4_qvl.collateral.json"),
        coll.join("other.json"),
    )
    .expect("copy");
    Some((
        bytes,
        file.display().to_string(),
        coll.display().to_string(),
        dir,
    ))
}

/// `--mrtd` and `--rtmr0..2` with the values a report printed.
fn os_flags(j: &Value) -> Vec<String> {
    ["mrtd", "rtmr0", "rtmr1", "rtmr2"]
        .iter()
        .flat_map(|k| {
            [
                format!("--{k}"),
                j["quote"][k].as_str().expect("hex").to_owned(),
            ]
        })
        .collect()
}

#[test]
fn the_real_v0_attestation_replays_and_shows_its_app_identity() {
    let Some((_, file, coll, dir)) = real("real") else {
        return;
    };
    let out = verify(&["--quote", &file, "--collateral", &coll, "--json"]);
    assert_eq!(code(&out), (Some(2), "collateral_unavailable".into()));
    let j = json(&out);
    assert_eq!(j["quote"]["tee"], "TDX");
    assert_eq!(j["binding"], "dstack");
    assert_eq!(j["dstack_wire"], "v0");
    assert_eq!(j["app"]["app_id"], APP_ID);
    assert_eq!(j["app"]["compose_hash"], COMPOSE_HASH);
    assert_eq!(j["app"]["instance_id"], INSTANCE_ID);
    assert_eq!(j["app"]["os_image_hash"], OS_IMAGE_HASH);
    assert_eq!(j["app"]["key_provider"]["name"], "kms");
    assert_eq!(j["rtmr_replay"][3]["replay"], "replayed");
    assert_eq!(j["rtmr_replay"][3]["value"], j["quote"]["rtmr3"]);

    // The identity it has, pinned with the OS under it: still only "could not check".
    let os = os_flags(&j);
    let mut args: Vec<&str> = vec!["--quote", &file, "--collateral", &coll, "--json"];
    args.extend(os.iter().map(String::as_str));
    let pinned = [
        "--app-id",
        APP_ID,
        "--compose-hash",
        COMPOSE_HASH,
        "--os-image-hash",
        OS_IMAGE_HASH,
        "--instance-id",
        INSTANCE_ID,
    ];
    let mut all = args.clone();
    all.extend(pinned);
    let out = verify(&all);
    assert_eq!(code(&out), (Some(2), "collateral_unavailable".into()));

    // Each identity field mismatched: exit 1 with its own code, before any collateral.
    let other20 = "ee".repeat(20);
    let other32 = "ee".repeat(32);
    for (flag, value, want) in [
        ("--app-id", &other20, "app_id_mismatch"),
        ("--compose-hash", &other32, "compose_hash_mismatch"),
        ("--os-image-hash", &other32, "os_image_hash_mismatch"),
        ("--instance-id", &other20, "instance_id_mismatch"),
        (
            "--key-provider",
            &"none".to_owned(),
            "key_provider_mismatch",
        ),
    ] {
        let mut a = args.clone();
        a.extend([flag, value.as_str()]);
        let out = verify(&a);
        assert_eq!(
            code(&out),
            (Some(1), want.into()),
            "{flag}: {}",
            common::printed(&out)
        );
        assert_eq!(json(&out)["app"]["app_id"], APP_ID, "the identity is shown");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_app_identity_without_the_os_measurements_is_a_usage_error() {
    let Some((_, file, coll, dir)) = real("needs-os") else {
        return;
    };
    let (status, text) = common::cli::run([
        "verify",
        "--quote",
        &file,
        "--collateral",
        &coll,
        "--app-id",
        APP_ID,
    ]);
    assert_eq!(status, 2, "{text}");
    assert!(text.contains("--mrtd, --rtmr0, --rtmr1, --rtmr2"), "{text}");
    // A malformed value is refused by the parser, never read as "any".
    let (status, _) = common::cli::run(["verify", "--quote", &file, "--app-id", "abcd"]);
    assert_eq!(status, 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_mutated_real_attestation_is_refused_with_its_code() {
    let Some((bytes, _, coll, dir)) = real("mutated") else {
        return;
    };
    let att = ratls_proxy::dstack::Attestation::parse(&bytes).expect("parses");
    let all = |needle: &[u8]| -> Vec<usize> {
        (0..=bytes.len() - needle.len())
            .filter(|&i| bytes[i..].starts_with(needle))
            .collect()
    };
    // The envelope's report data, after the quote's copy: the quote no longer binds it.
    let rd = vec![*all(&att.stack.report_data).last().expect("report data") + 5];
    // The compose hash wherever it is carried: the log no longer replays to RTMR3.
    let compose = hex::decode(COMPOSE_HASH).expect("hex");
    let ev: Vec<usize> = all(&compose).iter().map(|i| i + 2).collect();
    assert!(!ev.is_empty());
    drop(att);
    for (name, offset, want) in [
        ("report-data", rd, "binding_mismatch"),
        ("event", ev, "event_log_mismatch"),
    ] {
        let mut m = bytes.clone();
        for &o in &offset {
            m[o] ^= 0x01;
        }
        let p = dir.join(format!("{name}.bin"));
        std::fs::write(&p, &m).expect("write");
        let out = verify(&[
            "--quote",
            &p.display().to_string(),
            "--collateral",
            &coll,
            "--json",
        ]);
        assert_eq!(
            code(&out),
            (Some(1), want.into()),
            "{name}: {}",
            common::printed(&out)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A sim dstack attestation in `wire` form (the sim PKI in `dir`): the file, `--trust-root`,
/// `--collateral`, and the TD's MRTD/RTMRs as flags.
fn sim_attestation(
    dir: &std::path::Path,
    app: &DstackSpec,
    wire: &str,
    now: UnixTime,
) -> (String, Vec<String>) {
    let pki = SimPki::load_or_create(&dir.join("pki"), now).expect("sim pki");
    let mut td = TdSpec::default();
    td.rtmr[3] = ratls_proxy::dcap::ids::Rtmr(app.rtmr3());
    let report_data = [0x5a; 64];
    let pck = pki
        .pck_leaf_on(
            SimPlatform::Tdx,
            ratls_proxy::dcap::tcb::TcbStatus::UpToDate,
            now,
        )
        .expect("pck");
    let quote = sim::forge_td(&td, &report_data, &pck).expect("quote");
    let events = app.carried_events();
    let config = sim::dstack::vm_config();
    let bytes = match wire {
        "v0" => sim::dstack::v0(&quote, &events, &report_data, &config),
        _ => sim::dstack::v1(&quote, &events, &report_data, &config),
    };
    let file = dir.join(format!("{wire}.bin"));
    std::fs::write(&file, bytes).expect("write");
    let mut args = vec![
        "--quote".to_owned(),
        file.display().to_string(),
        "--trust-root".to_owned(),
        dir.join("pki/root.pem").display().to_string(),
        "--collateral".to_owned(),
        dir.join("pki/collateral/tdx.json").display().to_string(),
        "--mrtd".to_owned(),
        td.mr_td.to_string(),
    ];
    for (i, r) in td.rtmr.iter().take(3).enumerate() {
        args.push(format!("--rtmr{i}"));
        args.push(r.to_string());
    }
    (file.display().to_string(), args)
}

#[test]
fn sim_attestations_are_accepted_by_app_identity_and_refused_for_each_field() {
    let now = UnixTime::now();
    for wire in ["v0", "v1"] {
        let dir = scratch(&format!("sim-{wire}"));
        let app = DstackSpec::default();
        let (_, base) = sim_attestation(&dir, &app, wire, now);
        let hex = hex::encode;
        let pins = vec![
            "--app-id".to_owned(),
            hex(&app.app_id),
            "--compose-hash".to_owned(),
            hex(&app.compose_hash),
            "--os-image-hash".to_owned(),
            hex(&app.os_image_hash),
            "--instance-id".to_owned(),
            hex(&app.instance_id),
            "--key-provider".to_owned(),
            format!("{}:{}", app.key_provider.0, app.key_provider.1),
            "--json".to_owned(),
        ];
        let run = |extra: &[String]| {
            let args: Vec<&str> = base
                .iter()
                .chain(extra.iter())
                .map(String::as_str)
                .collect();
            verify(&args)
        };
        let out = run(&pins);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{wire}: {}",
            common::printed(&out)
        );
        let j = json(&out);
        assert_eq!(j["verdict"], "accepted");
        assert_eq!(j["dstack_wire"], wire);
        assert_eq!(j["binding"], "dstack");
        assert_eq!(j["app"]["app_id"], hex(&app.app_id));
        assert_eq!(j["app"]["key_provider"]["name"], "kms");

        // Each field pinned to another value.
        for (i, want) in [
            (1, "app_id_mismatch"),
            (3, "compose_hash_mismatch"),
            (5, "os_image_hash_mismatch"),
            (7, "instance_id_mismatch"),
            (9, "key_provider_mismatch"),
        ] {
            let mut p = pins.clone();
            p[i] = if i == 9 {
                "kms:cd".to_owned()
            } else {
                "ee".repeat(p[i].len() / 2)
            };
            let out = run(&p);
            assert_eq!(code(&out), (Some(1), want.into()), "{wire} {}", pins[i - 1]);
        }
        // The OS under the identity: another RTMR0 refuses.
        let mut other_os = base.clone();
        let i = other_os.iter().position(|a| a == "--rtmr0").expect("rtmr0");
        other_os[i + 1] = "ee".repeat(48);
        let args: Vec<&str> = other_os
            .iter()
            .chain(pins.iter())
            .map(String::as_str)
            .collect();
        assert_eq!(
            code(&verify(&args)),
            (Some(1), "rtmr_mismatch".into()),
            "{wire}"
        );

        // A log that does not replay to the quote's RTMR3.
        let broken = DstackSpec {
            break_replay: true,
            ..DstackSpec::default()
        };
        let (_, base) = sim_attestation(&dir, &broken, wire, now);
        let args: Vec<&str> = base.iter().chain(pins.iter()).map(String::as_str).collect();
        assert_eq!(
            code(&verify(&args)),
            (Some(1), "event_log_mismatch".into()),
            "{wire}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
