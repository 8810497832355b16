//! Issue 24, items 2 and 9: collateral that never moves backwards across reloads and
//! restarts, snapshots a reload keeps, the PCK CRL per CA, bundles per PCK CA, the `tee`
//! label, `tcb_status = []` and the XFAM pin. A PCCS stand-in (`common/pccs.rs`) plays the
//! hostile collateral source.

use std::time::Duration;

use ratls_proxy::dcap::collateral::pcs::PckCa;
use ratls_proxy::dcap::collateral::Collateral;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::{SimConfig, SimEnclave, SimPlatform, TdSpec};

use super::{binary, gauge, get, pck_serial, reload, run};
use crate::common::pccs::Pccs;
use crate::common::{
    env, free_port, metrics_text, start_sim, start_sim_with, verify_https, Binary, Env, Harness,
};

/// The sim's SGX collateral issued at `issued`.
fn sgx(env: &Env, issued: i64) -> Collateral {
    env.pki
        .collateral(UnixTime(issued), &[])
        .expect("collateral")
}

/// `c` after a TCB recovery: evaluation data number 18, and the level the sim's PCK stands on
/// (the first, UpToDate) now OutOfDate; signed again with the sim's TCB signing key.
fn recovered(env: &Env, c: &Collateral) -> Collateral {
    let mut c = c.clone();
    c.tcb_info = c
        .tcb_info
        .replacen(
            "\"tcbEvaluationDataNumber\":17",
            "\"tcbEvaluationDataNumber\":18",
            1,
        )
        .replacen(
            "\"tcbStatus\":\"UpToDate\"",
            "\"tcbStatus\":\"OutOfDate\"",
            1,
        );
    c.tcb_info_signature = env.pki.sign_with_tcb_key(&c.tcb_info).expect("sign");
    c
}

/// A simulated TD (TDX platform, Platform CA).
async fn td_sim(env: &Env) -> SimEnclave {
    start_sim_with(env, |c| c.td = Some(TdSpec::default())).await
}

/// A `tee = "tdx"` entry for `host`, pinning the sim TD's MRTD (and `extra` keys), dialled at
/// `td`.
fn td_entry(host: &str, td: &SimEnclave, extra: &str) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"tdx\"\nmrtd = [\"{}\"]\n{extra}\nconnect_to = \"{}\"\n",
        TdSpec::default().mr_td,
        td.addr()
    )
}

/// The sim's collateral for `platform`, issued `ago` seconds before the env's now.
fn for_platform(env: &Env, platform: SimPlatform, ago: i64) -> Collateral {
    env.pki
        .collateral_for(platform, UnixTime(env.now.0 - ago), &[])
        .expect("collateral")
}

/// The binary in front of `sgx.enclave.test` (`sgx`) and `td.enclave.test` (`td`), taking
/// collateral from `pccs`, its admin listener on `admin`: its proxy port.
async fn both_behind(
    env: &Env,
    pccs: &Pccs,
    (sgx, td): (&SimEnclave, &SimEnclave),
    admin: u16,
    name: &str,
) -> (u16, Binary) {
    let proxy = free_port();
    let p = binary(
        Harness::new(env)
            .listen(proxy)
            .admin(admin)
            .collateral_source(&pccs.url())
            .enclave("sgx.enclave.test", sgx.addr())
            .tail(&td_entry("td.enclave.test", td, "")),
        name,
    )
    .await;
    (proxy, p)
}

/// Item 2: a PCCS that served a TCB recovery replays the older TCB info. Neither a reload
/// that builds a new collateral cache nor a restart of the binary takes the replay: the
/// high-water marks in the state directory refuse it (`collateral_rollback`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_collateral_is_refused_after_a_reload_and_a_restart() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let pccs = Pccs::start().await;
    let old = sgx(&env, env.now.0 - 7200);
    pccs.serve("platform", &recovered(&env, &sgx(&env, env.now.0 - 60)));
    let (proxy, admin) = (free_port(), free_port());
    let h = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .collateral_source(&pccs.url())
        .enclave("good.enclave.test", good.addr());
    let config = h.write("rollback.toml");
    let p = Binary::start(&config, admin, &[], false).await;
    let answer = get(proxy, "good.enclave.test", "/", "").await;
    assert!(
        answer.contains("\"code\":\"tcb_status_not_allowed\""),
        "the recovery makes the platform OutOfDate: {answer}"
    );

    // The PCCS replays the TCB info from before the recovery (validly signed, unexpired).
    pccs.serve("platform", &old);
    // A reload with the same source keeps its snapshot: still the recovered TCB info.
    reload(admin).await;
    let answer = get(proxy, "good.enclave.test", "/", "").await;
    assert!(
        answer.contains("\"code\":\"tcb_status_not_allowed\""),
        "same source, same snapshot: {answer}"
    );
    // A reload that builds a new cache (the source spelled differently) fetches again.
    std::fs::write(
        &config,
        h.collateral_source(&format!("{}/", pccs.url())).text(),
    )
    .expect("write");
    reload(admin).await;
    let answer = get(proxy, "good.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains("\"code\":\"collateral_rollback\""),
        "the replay is refused after a reload: {answer}"
    );
    assert!(gauge(admin, "ratls_collateral_rollbacks_total").await >= 1.0);

    // The binary restarts with the same state directory: the marks are read back.
    drop(p);
    let _p = Binary::start(&config, admin, &[], false).await;
    let answer = get(proxy, "good.enclave.test", "/", "").await;
    assert!(
        answer.contains("\"code\":\"collateral_rollback\""),
        "the replay is refused after a restart: {answer}"
    );
    assert!(
        env.dir.join("ca/collateral-marks.json").is_file(),
        "kept in the state directory (the CA directory by default)"
    );
    assert_eq!(good.request_count(), 0, "the enclave received nothing");
}

/// Item 2: a reload while the PCCS is unreachable keeps serving from the snapshot it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_the_pccs_unreachable_keeps_serving_the_kept_snapshot() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let pccs = Pccs::start().await;
    pccs.serve("platform", &sgx(&env, env.now.0 - 60));
    let (proxy, admin) = (free_port(), free_port());
    let _p = binary(
        Harness::new(&env)
            .listen(proxy)
            .admin(admin)
            .collateral_source(&pccs.url())
            .enclave("good.enclave.test", good.addr()),
        "unreachable.toml",
    )
    .await;
    let answer = get(proxy, "good.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(pccs);
    tokio::time::sleep(Duration::from_millis(100)).await;
    reload(admin).await;
    let answer = get(proxy, "good.enclave.test", "/after", "").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the kept snapshot serves until its nextUpdate: {answer}"
    );
}

/// Item 9: the PCK CRL's mark is per CA. The SGX and TDX platforms share the PCK Platform
/// CA: once a CRL revoking the TD's PCK was seen for one, an older CRL served for the other
/// is a rollback, not a first fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pck_crl_mark_is_per_ca_not_per_platform() {
    let env = env();
    let sgx_sim = start_sim(&env, SimConfig::default()).await;
    let td = td_sim(&env).await;
    let revoked = pck_serial(td.certificate_der());
    let pccs = Pccs::start().await;
    pccs.serve("platform", &for_platform(&env, SimPlatform::Tdx, 60));
    pccs.serve(
        "platform",
        &env.pki
            .collateral_for(SimPlatform::Sgx, UnixTime(env.now.0 - 60), &[revoked])
            .expect("c"),
    );
    let (proxy, _p) = both_behind(&env, &pccs, (&sgx_sim, &td), free_port(), "crl.toml").await;
    let answer = get(proxy, "sgx.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Now the PCCS hands out the CRL from before the revocation.
    pccs.serve_pck_crl("platform", &for_platform(&env, SimPlatform::Tdx, 3600));
    let answer = get(proxy, "td.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains("\"code\":\"collateral_rollback\""),
        "{answer}"
    );
    assert_eq!(td.request_count(), 0, "the revoked TD received nothing");
}

/// Item 9: a PCK CRL fetched for one CA and issued by another is not taken (nor does it touch
/// that other CA's mark); nor is another TEE's QE identity; the refusal says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_collateral_of_another_ca_or_tee_is_refused() {
    let env = env();
    let sim = start_sim_with(&env, |c| c.pck_ca = PckCa::Processor).await;
    let td = td_sim(&env).await;
    let pccs = Pccs::start().await;
    let platform = sgx(&env, env.now.0 - 60);
    pccs.serve("platform", &for_platform(&env, SimPlatform::Tdx, 60));
    pccs.serve("platform", &platform);
    // Asked for the Processor CA's CRL, the PCCS answers with the Platform CA's; asked for
    // the TD quoting enclave's identity, with the SGX QE's.
    pccs.serve_pck_crl("processor", &platform);
    pccs.serve_qe_as("tdx", &platform);
    let (proxy, _p) = both_behind(&env, &pccs, (&sim, &td), free_port(), "issuer.toml").await;
    for (host, says) in [
        ("sgx.enclave.test", "asked for the PCK processor CA's CRL"),
        ("td.enclave.test", "another TEE's TCB info or QE identity"),
    ] {
        let answer = get(proxy, host, "/", "").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains("\"code\":\"collateral_unavailable\"") && answer.contains(says),
            "{host}: {answer}"
        );
    }
    assert_eq!(sim.request_count() + td.request_count(), 0);
}

/// Item 9: a directory with a Platform-CA and a Processor-CA bundle for one FMSPC serves
/// both kinds of platform (they used to overwrite each other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_for_both_pck_cas_of_one_fmspc_do_not_collide() {
    let env = env();
    let platform = start_sim(&env, SimConfig::default()).await;
    let processor = start_sim_with(&env, |c| c.pck_ca = PckCa::Processor).await;
    let dir = env.dir.join("bundles");
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, ca) in [("a.json", PckCa::Platform), ("b.json", PckCa::Processor)] {
        let c = env
            .pki
            .collateral_under(SimPlatform::Sgx, ca, UnixTime(env.now.0 - 60), &[])
            .expect("collateral");
        std::fs::write(dir.join(name), c.to_json()).expect("write");
    }
    let (proxy, admin) = (free_port(), free_port());
    let _p = binary(
        Harness::new(&env)
            .listen(proxy)
            .admin(admin)
            .collateral(&dir)
            .enclave("platform.enclave.test", platform.addr())
            .enclave("processor.enclave.test", processor.addr()),
        "two-cas.toml",
    )
    .await;
    for host in ["platform.enclave.test", "processor.enclave.test"] {
        let answer = get(proxy, host, "/", "").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let text = metrics_text(admin).await;
    for ca in ["platform", "processor"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ratls_collateral_valid_seconds")
                    && l.contains(&format!("ca=\"{ca}\""))
                    && l.contains("tee=\"sgx\"")),
            "{ca}: {text}"
        );
    }
}

/// Item 9: fetched collateral's gauges carry the TEE (SGX and TDX snapshots of one PCK CA
/// are two series, not one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_gauges_carry_the_tee() {
    let env = env();
    let sgx_sim = start_sim(&env, SimConfig::default()).await;
    let td = td_sim(&env).await;
    let pccs = Pccs::start().await;
    for platform in [SimPlatform::Sgx, SimPlatform::Tdx] {
        pccs.serve("platform", &for_platform(&env, platform, 60));
    }
    let admin = free_port();
    let (proxy, _p) = both_behind(&env, &pccs, (&sgx_sim, &td), admin, "tee.toml").await;
    for host in ["sgx.enclave.test", "td.enclave.test"] {
        let answer = get(proxy, host, "/", "").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let text = metrics_text(admin).await;
    for (fmspc, tee) in [("5ec0de000000", "sgx"), ("5ec0de000081", "tdx")] {
        for name in [
            "ratls_collateral_age_seconds",
            "ratls_collateral_valid_seconds",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)
                    && l.contains(&format!("fmspc=\"{fmspc}\""))
                    && l.contains(&format!("tee=\"{tee}\""))),
                "{name} {tee}: {text}"
            );
        }
    }
}

/// Item 9: `tcb_status = []` would refuse every connection: a config error at its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tcb_status_list_is_a_config_error() {
    let env = env();
    let path = Harness::new(&env)
        .enclave_with(
            &["good.enclave.test"],
            "127.0.0.1:1".parse().expect("addr"),
            crate::common::TRUSTED,
            "tcb_status = []",
        )
        .write("empty-status.toml");
    let (code, out) = run(["config".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    let line = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .position(|l| l.starts_with("tcb_status"))
        .expect("the line")
        + 1;
    assert!(
        out.contains(&format!("empty-status.toml:{line}:14")) && out.contains("tcb_status = []"),
        "{out}"
    );
}

/// Item 9: a TD policy can pin XFAM, in the config (`xfam`) and in `verify` (`--xfam`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_td_policy_pins_xfam() {
    let env = env();
    let td = td_sim(&env).await;
    // The sim's TDs enable x87, SSE, AVX and AVX-512 state: XFAM 0xe7.
    let sims = "e700000000000000";
    let other = "0300000000000000";
    let mrtd = TdSpec::default().mr_td;
    let proxy = free_port();
    let _p = binary(
        Harness::new(&env)
            .listen(proxy)
            .collateral(&env.dir.join("pki/collateral"))
            .tail(&td_entry(
                "pinned.enclave.test",
                &td,
                &format!("xfam = [\"{sims}\"]"),
            ))
            .tail(&td_entry(
                "other.enclave.test",
                &td,
                &format!("xfam = [\"{other}\"]"),
            )),
        "xfam.toml",
    )
    .await;
    let answer = get(proxy, "pinned.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = get(proxy, "other.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("\"code\":\"xfam_mismatch\""), "{answer}");

    for (xfam, want) in [(sims, 0), (other, 1)] {
        let pins = ["--mrtd", &mrtd.to_string(), "--xfam", xfam];
        let (code, j) = verify_https(&env, td.addr(), env.dir.join("pki/collateral"), &pins).await;
        assert_eq!(code, want, "{j}");
        if want == 1 {
            assert_eq!(j["code"], "xfam_mismatch", "{j}");
        }
    }
}
