//! TDX end to end: `verify https://` against simulated TDX confidential VMs, every TD policy
//! field accepted and refused, both TDX carriers, and TDX hosts through the proxy beside an
//! SGX one (real sockets, real TLS, curl).

mod common;

use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::sim::{SimBinding, SimConfig, SimEnclave, TdSpec};
use serde_json::Value;

use common::{
    curl_status, curl_via, env, free_port, output, s, start_sim, verify_https, Env, Harness,
};

const MRTD: &str = "7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d";

async fn td_sim(env: &Env, f: impl FnOnce(&mut SimConfig)) -> SimEnclave {
    let mut c = SimConfig {
        td: Some(TdSpec::default()),
        ..SimConfig::default()
    };
    f(&mut c);
    start_sim(env, c).await
}

/// `ratls-proxy verify https://… --json` with the sim root and both platforms' collateral.
async fn verify(env: &Env, sim: &SimEnclave, extra: &[&str]) -> (i32, Value) {
    verify_https(env, sim.addr(), env.dir.join("pki/collateral"), extra).await
}

fn hex48(b: u8) -> String {
    hex::encode([b; 48])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_td_and_accepts_it_under_its_policy() {
    let env = env();
    for binding in [SimBinding::Cosmian, SimBinding::Dstack] {
        let sim = td_sim(&env, |c| c.binding = binding).await;
        let (code, j) = verify(&env, &sim, &["--mrtd", MRTD]).await;
        assert_eq!(code, 0, "{binding:?}: {j}");
        assert_eq!(j["verdict"], "accepted");
        assert_eq!(j["quote"]["tee"], "TDX");
        assert_eq!(j["quote"]["version"], 4);
        assert_eq!(j["quote"]["mrtd"], MRTD);
        // dstack's RTMR3 is the replay of the app's runtime events.
        let rtmr3 = match binding {
            SimBinding::Dstack => hex::encode(ratls_proxy::sim::DstackSpec::default().rtmr3()),
            _ => hex48(0x13),
        };
        assert_eq!(j["quote"]["rtmr3"], rtmr3);
        assert_eq!(j["quote"]["mrseam"], hex48(0x5e));
        assert_eq!(j["quote"]["debug"], false);
        assert_eq!(
            j["quote"]["tee_tcb_svn"],
            "03010000000000000000000000000000"
        );
        assert!(j["quote"].get("mrenclave").is_none(), "no SGX fields: {j}");
        assert_eq!(j["tcb"]["status"], "UpToDate");
        assert_eq!(j["tcb"]["tdx_module_status"], "UpToDate");
        let want = match binding {
            SimBinding::Dstack => "dstack",
            _ => "cosmian",
        };
        assert_eq!(j["binding"], want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_td_policy_field_refuses_what_it_does_not_list() {
    let env = env();
    let sim = td_sim(&env, |_| {}).await;
    let wrong = hex48(0xee);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (s(&["--mrtd", &wrong]), "mrtd_mismatch"),
        (s(&["--rtmr0", &wrong]), "rtmr_mismatch"),
        (s(&["--rtmr1", &wrong]), "rtmr_mismatch"),
        (s(&["--rtmr2", &wrong]), "rtmr_mismatch"),
        (s(&["--rtmr3", &wrong]), "rtmr_mismatch"),
        (s(&["--mrconfigid", &wrong]), "mrconfigid_mismatch"),
        (s(&["--mrowner", &wrong]), "mrowner_mismatch"),
        (s(&["--mrownerconfig", &wrong]), "mrownerconfig_mismatch"),
        (s(&["--mrseam", &wrong]), "mrseam_mismatch"),
        (
            s(&["--min-tee-tcb-svn", "04010000000000000000000000000000"]),
            "tee_tcb_svn_too_low",
        ),
        (s(&["--tee", "sgx"]), "tee_mismatch"),
        (s(&["--mrenclave", &"e1".repeat(32)]), "tee_mismatch"),
        (s(&["--binding", "dstack"]), "binding_mismatch"),
    ];
    for (args, code) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (exit, j) = verify(&env, &sim, &refs).await;
        assert_eq!(exit, 1, "{args:?}: {j}");
        assert_eq!(j["code"], code, "{args:?}: {j}");
    }
    // The same values listed are accepted, one field at a time.
    for args in [
        s(&["--rtmr0", &hex48(0x10), "--rtmr3", &hex48(0x13)]),
        s(&["--mrseam", &hex48(0x5e), "--mrconfigid", &hex48(0)]),
        s(&["--min-tee-tcb-svn", "03010000000000000000000000000000"]),
        s(&["--tee", "tdx", "--mrtd", MRTD, "--mrtd", &wrong]),
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (exit, j) = verify(&env, &sim, &refs).await;
        assert_eq!(exit, 0, "{args:?}: {j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_tds_out_of_date_platforms_and_wrong_bindings_are_refused() {
    let env = env();
    let debug = td_sim(&env, |c| {
        if let Some(td) = c.td.as_mut() {
            td.debug = true;
        }
    })
    .await;
    let (exit, j) = verify(&env, &debug, &["--mrtd", MRTD]).await;
    assert_eq!(
        (exit, j["code"].as_str()),
        (1, Some("debug_enclave")),
        "{j}"
    );
    assert_eq!(j["quote"]["debug"], true);
    let (exit, j) = verify(&env, &debug, &["--mrtd", MRTD, "--allow-debug"]).await;
    assert_eq!(exit, 0, "{j}");

    let old = td_sim(&env, |c| c.tcb_status = TcbStatus::OutOfDate).await;
    let (exit, j) = verify(&env, &old, &[]).await;
    assert_eq!(
        (exit, j["code"].as_str()),
        (1, Some("tcb_status_not_allowed")),
        "{j}"
    );
    let (exit, j) = verify(&env, &old, &["--tcb-status", "OutOfDate"]).await;
    assert_eq!(exit, 0, "{j}");
    assert_eq!(j["tcb"]["advisory_ids"][0], "SIM-SA-00012");

    let wrong = td_sim(&env, |c| c.binding = SimBinding::Wrong).await;
    let (exit, j) = verify(&env, &wrong, &[]).await;
    assert_eq!(
        (exit, j["code"].as_str()),
        (1, Some("binding_mismatch")),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tdx_and_sgx_hosts_through_the_proxy() {
    let env = env();
    let td = td_sim(&env, |_| {}).await;
    let sgx = start_sim(&env, SimConfig::default()).await;
    let proxy = free_port();
    let wrong = hex48(0xee);
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .enclave("sgx.enclave.test", sgx.addr())
        .tail(&format!(
            "[[enclave]]\nhosts = [\"cvm.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{MRTD}\"]\nrtmr3 = [\"{}\"]\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"pinned.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{wrong}\"]\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"mixed.enclave.test\"]\nmrenclave = [\"{}\"]\nconnect_to = \"{}\"\n",
            hex48(0x13),
            td.addr(),
            td.addr(),
            "e1".repeat(32),
            td.addr(),
        ))
        .start_binary("tdx.toml")
        .await;
    let via = format!("http://127.0.0.1:{proxy}");
    let ca = env.ca_pem().display().to_string();
    let get = |host: &str| format!("https://{host}/hello");
    let (code, body) = curl_status(&["-x", &via, "--cacert", &ca, &get("cvm.enclave.test")]).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!("\"mrtd\":\"{MRTD}\"")),
        "the TD answered: {body}"
    );
    let (code, body) = curl_status(&["-x", &via, "--cacert", &ca, &get("sgx.enclave.test")]).await;
    assert_eq!(code, 200, "{body}");
    // Refusals: a pinned MRTD, and an SGX entry meeting a TD.
    for (host, code) in [
        ("pinned.enclave.test", "mrtd_mismatch"),
        ("mixed.enclave.test", "tee_mismatch"),
    ] {
        let text = curl_via(proxy, &format!("http://{host}/"))
            .await
            .to_lowercase();
        assert!(text.starts_with("http/1.1 502"), "{host}: {text}");
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "{host}: {text}"
        );
    }
    let served = td.request_count();
    assert!(served >= 1, "the accepted TD was reached");
}

/// TD 1.5: a TD that launched on an out-of-date TDX module and runs on an up-to-date one
/// now is `TDRelaunchAdvised` (Intel's QVL), a status a policy accepts only by name; one
/// that launched up to date but runs on an out-of-date TCB now is out of date (stricter
/// than Intel). Through `verify https://` and through the proxy with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn td15_relaunch_statuses_are_judged_by_the_policy() {
    use ratls_proxy::dcap::ids::TeeTcbSvn;
    let env = env();
    let relaunch = td_sim(&env, |c| c.tcb_status = TcbStatus::TdRelaunchAdvised).await;
    let (exit, j) = verify(&env, &relaunch, &[]).await;
    assert_eq!(
        (exit, j["code"].as_str()),
        (1, Some("tcb_status_not_allowed")),
        "{j}"
    );
    assert!(
        j["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("TDRelaunchAdvised")),
        "{j}"
    );
    assert_eq!(j["quote"]["version"], 5);
    assert_eq!(
        j["quote"]["tee_tcb_svn"],
        "01010000000000000000000000000000"
    );
    assert_eq!(
        j["quote"]["tee_tcb_svn2"],
        "03010000000000000000000000000000"
    );
    assert_eq!(j["tcb"]["status"], "TDRelaunchAdvised");
    assert_eq!(j["tcb"]["tdx_module_status"], "OutOfDate");
    assert_eq!(j["tcb"]["current_status"], "UpToDate");
    assert_eq!(j["tcb"]["advisory_ids"][0], "SIM-SA-TDX01");
    // Accepting OutOfDate does not accept a relaunch: the policy names statuses exactly.
    let (exit, j) = verify(&env, &relaunch, &["--tcb-status", "OutOfDate"]).await;
    assert_eq!(exit, 1, "{j}");
    let (exit, j) = verify(&env, &relaunch, &["--tcb-status", "TDRelaunchAdvised"]).await;
    assert_eq!(exit, 0, "{j}");

    let relaunch_cn = td_sim(&env, |c| {
        c.tcb_status = TcbStatus::TdRelaunchAdvisedConfigurationNeeded;
    })
    .await;
    let (exit, j) = verify(&env, &relaunch_cn, &["--tcb-status", "TDRelaunchAdvised"]).await;
    assert_eq!(exit, 1, "{j}");
    assert_eq!(j["tcb"]["status"], "TDRelaunchAdvisedConfigurationNeeded");
    assert_eq!(j["tcb"]["platform_status"], "ConfigurationNeeded");
    let wanted = ["--tcb-status", "TDRelaunchAdvisedConfigurationNeeded"];
    assert_eq!(verify(&env, &relaunch_cn, &wanted).await.0, 0);

    // Launched up to date, running on the out-of-date module now.
    let regressed = td_sim(&env, |c| {
        if let Some(td) = c.td.as_mut() {
            td.tee_tcb_svn2 = Some(TeeTcbSvn([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        }
    })
    .await;
    let (exit, j) = verify(&env, &regressed, &[]).await;
    assert_eq!(
        (exit, j["code"].as_str()),
        (1, Some("tcb_status_not_allowed")),
        "{j}"
    );
    assert_eq!(j["tcb"]["status"], "OutOfDate");
    assert_eq!(j["tcb"]["current_status"], "OutOfDate");

    // min_tee_tcb_svn holds for the launch TCB and the current one.
    for (sim, accepted, field) in [
        (&regressed, "OutOfDate", "TEE_TCB_SVN2 "),
        (&relaunch, "TDRelaunchAdvised", "TEE_TCB_SVN "),
    ] {
        let min = [
            "--tcb-status",
            accepted,
            "--min-tee-tcb-svn",
            "03010000000000000000000000000000",
        ];
        let (exit, j) = verify(&env, sim, &min).await;
        assert_eq!(
            (exit, j["code"].as_str()),
            (1, Some("tee_tcb_svn_too_low")),
            "{j}"
        );
        assert!(
            j["reasons"][0]
                .as_str()
                .is_some_and(|r| r.starts_with(field)),
            "{j}"
        );
    }

    // Through the proxy: one entry accepts the relaunch status by name, one does not; the
    // audit trail records both verdicts with the current TCB's status.
    let proxy = free_port();
    let trail = env.dir.join("relaunch-audit.jsonl");
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&env.dir.join("pki/collateral"))
        .tail(&format!(
            "[audit]\npath = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"relaunch.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{MRTD}\"]\ntcb_status = [\"UpToDate\", \"TDRelaunchAdvised\"]\nconnect_to = \"{}\"\n\n\
             [[enclave]]\nhosts = [\"strict.enclave.test\"]\ntee = \"tdx\"\nmrtd = [\"{MRTD}\"]\nconnect_to = \"{}\"\n",
            trail.display(),
            relaunch.addr(),
            relaunch.addr(),
        ))
        .start_binary("relaunch.toml")
        .await;
    let via = format!("http://127.0.0.1:{proxy}");
    let ca = env.ca_pem().display().to_string();
    let (code, body) = curl_status(&[
        "-x",
        &via,
        "--cacert",
        &ca,
        "https://relaunch.enclave.test/hello",
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let text = curl_via(proxy, "http://strict.enclave.test/")
        .await
        .to_lowercase();
    assert!(text.starts_with("http/1.1 502"), "{text}");
    assert!(
        text.contains("\"code\":\"tcb_status_not_allowed\""),
        "{text}"
    );
    assert!(text.contains("tdrelaunchadvised"), "{text}");
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("audit trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
    for (r, verdict) in records.iter().zip(["accepted", "refused"]) {
        assert_eq!(r["verdict"], verdict, "{r}");
        assert_eq!(r["tcb"]["status"], "TDRelaunchAdvised", "{r}");
        assert_eq!(r["tcb"]["current_status"], "UpToDate", "{r}");
    }
}

/// A TDX quote inside TCG DICE tagged evidence (`2.23.133.5.4.9`, tag 60000 "Intel TEE
/// quote"): REPORTDATA commits to the claims, whose `pubkey-hash` names the key, as for
/// Gramine's SGX evidence. Accepted under a TD policy; refused when the claims name another
/// key, when the policy wants another binding, or when an SGX policy meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tdx_quote_in_dice_evidence_is_judged_as_a_td() {
    let env = env();
    let dice = td_sim(&env, |c| c.binding = SimBinding::Gramine).await;
    let (exit, j) = verify(&env, &dice, &["--mrtd", MRTD]).await;
    assert_eq!(exit, 0, "{j}");
    assert_eq!(j["quote"]["tee"], "TDX");
    assert_eq!(j["quote"]["mrtd"], MRTD);
    assert_eq!(j["binding"], "gramine");
    for (args, code) in [
        (
            &["--mrtd", MRTD, "--binding", "cosmian"][..],
            "binding_mismatch",
        ),
        (
            &["--mrtd", MRTD, "--binding", "dstack"][..],
            "binding_mismatch",
        ),
        (&["--tee", "sgx"][..], "tee_mismatch"),
        (&["--mrtd", &"ee".repeat(48)][..], "mrtd_mismatch"),
    ] {
        let (exit, j) = verify(&env, &dice, args).await;
        assert_eq!((exit, j["code"].as_str()), (1, Some(code)), "{args:?}: {j}");
    }
    // The TD 1.5 relaunch rule holds whatever carries the quote.
    let dice15 = td_sim(&env, |c| {
        c.binding = SimBinding::Gramine;
        c.tcb_status = TcbStatus::TdRelaunchAdvised;
    })
    .await;
    let (exit, j) = verify(&env, &dice15, &["--mrtd", MRTD]).await;
    assert_eq!(
        (exit, j["tcb"]["status"].as_str()),
        (1, Some("TDRelaunchAdvised")),
        "{j}"
    );
}

/// A relaunch status asked for an SGX-only verification is a usage error, as in the config.
#[test]
fn verify_refuses_a_relaunch_status_for_sgx() {
    let out = output([
        "verify",
        "https://127.0.0.1:1",
        "--tee",
        "sgx",
        "--tcb-status",
        "TDRelaunchAdvised",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("applies to --tee tdx only"),
        "{out:?}"
    );
}
