//! Issue 29: Intel's early TCB data. The PCCS stand-in serves two evaluation data sets (the
//! standard one, 17, where the sims are up to date, and the early one, 18, where a sim can be
//! out of date) and the signed list that dates them; the real binary judges every accepted
//! enclave under both. An enclave at risk is accepted, counted, warned about once per host
//! and snapshot, recorded and listed with its date; `early = "enforce"` refuses it;
//! `min_tcb_evaluation_data_number` refuses older collateral; a hostile early source is
//! refused without touching the standard verdicts or marks.

use std::io::BufRead as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratls_proxy::dcap::collateral::early::BundleFile;
use ratls_proxy::dcap::collateral::eval_numbers::EvaluationNumbers;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::{SimConfig, SimEnclave, SimPlatform, TdSpec};
use serde_json::Value;

use crate::common::{
    audit_verify, curl_text, env, free_port, get, metrics_text, reload, run, start_sim,
    verify_https, Binary, Env, Harness, TRUSTED,
};

use crate::common::pccs::Pccs;

/// An SGX sim up to date today and `early` under the early data.
async fn sgx_sim(env: &Env, early: Option<TcbStatus>) -> SimEnclave {
    start_sim(
        env,
        SimConfig {
            early_tcb_status: early,
            ..SimConfig::default()
        },
    )
    .await
}

/// A TD sim up to date today and `early` under the early data.
async fn td_sim(env: &Env, early: Option<TcbStatus>) -> SimEnclave {
    start_sim(
        env,
        SimConfig {
            td: Some(TdSpec::default()),
            early_tcb_status: early,
            ..SimConfig::default()
        },
    )
    .await
}

fn td_entry(host: &str, td: &SimEnclave, extra: &str) -> String {
    format!(
        "[[enclave]]\nhosts = [\"{host}\"]\ntee = \"tdx\"\nmrtd = [\"{}\"]\n{extra}\nconnect_to = \"{}\"\n",
        TdSpec::default().mr_td,
        td.addr()
    )
}

/// The early data the sim PKI issues for `platform`, issued `ago` seconds before now.
fn early(env: &Env, platform: SimPlatform, ago: i64) -> BundleFile {
    env.pki
        .early_bundle(platform, UnixTime(env.now.0 - ago))
        .expect("early bundle")
}

/// When `b`'s early data becomes standard, from its own signed list.
fn standard_from(b: &BundleFile) -> UnixTime {
    let n = b.evaluation_numbers.as_ref().expect("numbers");
    let list = EvaluationNumbers::parse(&n.text).expect("list");
    let number = serde_json::from_str::<Value>(&b.collateral.tcb_info).expect("json")
        ["tcbEvaluationDataNumber"]
        .as_u64()
        .expect("number");
    list.get(u32::try_from(number).expect("u32"))
        .and_then(|e| e.standard_from())
        .expect("dated")
}

/// A PCCS serving the sim's standard and early data for both platforms.
async fn pccs_with_early(env: &Env) -> Pccs {
    let pccs = Pccs::start().await;
    for platform in [SimPlatform::Sgx, SimPlatform::Tdx] {
        pccs.serve(
            "platform",
            &env.pki
                .collateral_for(platform, UnixTime(env.now.0 - 60), &[])
                .expect("collateral"),
        );
        pccs.serve_early(&early(env, platform, 60));
    }
    pccs
}

/// The log lines of a binary started with JSON logs, read as they come (a full pipe would
/// stall the proxy).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<Value>>>);

impl Logs {
    fn drain(p: &mut Binary) -> Self {
        let logs = Self::default();
        let stderr = p.child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&logs.0);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("lock").push(v);
                }
            }
        });
        logs
    }

    /// The at-risk warnings for `host` so far.
    fn warnings(&self, host: &str) -> usize {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("enclave host at risk"))
                    && v["host"] == host
            })
            .count()
    }

    /// Log lines whose message contains `text`.
    fn with(&self, text: &str) -> Vec<Value> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }
}

/// `GET path` on the admin listener, with curl: the JSON body.
async fn admin_json(admin: u16, path: &str) -> Value {
    let body = curl_text(&[&format!("http://127.0.0.1:{admin}{path}")]).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of the metric line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `/tcb`'s entry for `host`.
fn tcb_host<'a>(page: &'a Value, host: &str) -> &'a Value {
    page["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} not listed: {page}"))
}

/// An SGX enclave and a TD whose platforms the early data puts out of date are accepted, and
/// at risk: counted (`ratls_enclave_tcb_at_risk`, `..._standard_from_seconds` with the date
/// the signed list gives), warned about once per host and snapshot (a reload keeping the
/// snapshot does not warn again, a new snapshot does), recorded in the audit trail and
/// listed by `GET /tcb` and `/readyz`; an enclave the early data keeps up to date is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_at_risk_is_accepted_counted_warned_once_recorded_and_listed() {
    let env = env();
    let aging = sgx_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let fine = sgx_sim(&env, None).await;
    let aging_td = td_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let pccs = pccs_with_early(&env).await;
    let date = standard_from(&early(&env, SimPlatform::Sgx, 60));
    let trail = env.dir.join("verdicts.jsonl");
    let (proxy, admin) = (free_port(), free_port());
    let h = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .collateral_source(&pccs.url())
        .enclave("aging.enclave.test", aging.addr())
        .enclave("fine.enclave.test", fine.addr())
        .tail(&td_entry("td.enclave.test", &aging_td, ""))
        .tail(&format!("[audit]\npath = \"{}\"\n", trail.display()));
    let config = h.write("at-risk.toml");
    let mut p = Binary::start(&config, admin, &[], true).await;
    let logs = Logs::drain(&mut p);
    for host in ["aging.enclave.test", "fine.enclave.test", "td.enclave.test"] {
        let answer = get(proxy, host, "/", "").await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "accepted: {host}: {answer}"
        );
    }

    let text = metrics_text(admin).await;
    for (host, tee, want) in [
        ("aging.enclave.test", "sgx", 1.0),
        ("fine.enclave.test", "sgx", 0.0),
        ("td.enclave.test", "tdx", 1.0),
    ] {
        let at_risk = format!("ratls_enclave_tcb_at_risk{{host=\"{host}\",tee=\"{tee}\"}}");
        assert_eq!(sample(&text, &at_risk), Some(want), "{host}: {text}");
        let from =
            format!("ratls_enclave_tcb_standard_from_seconds{{host=\"{host}\",tee=\"{tee}\"}}");
        let date_secs: f64 = date.0.to_string().parse().expect("seconds");
        assert_eq!(sample(&text, &from), Some(date_secs), "{host}: {text}");
    }

    let page = admin_json(admin, "/tcb").await;
    let a = tcb_host(&page, "aging.enclave.test");
    assert_eq!(a["verdict"], "accepted", "{a}");
    assert_eq!(a["at_risk"], true, "{a}");
    assert_eq!(a["standard"]["status"], "UpToDate", "{a}");
    assert_eq!(a["standard"]["tcb_evaluation_data_number"], 17, "{a}");
    assert_eq!(a["early"]["status"], "OutOfDate", "{a}");
    assert_eq!(a["early"]["tcb_evaluation_data_number"], 18, "{a}");
    assert_eq!(a["early"]["code"], "tcb_status_not_allowed", "{a}");
    assert_eq!(a["early"]["standard_from"], date.to_rfc3339(), "{a}");
    assert!(
        a["early"]["days_left"]
            .as_i64()
            .is_some_and(|d| (28..=30).contains(&d)),
        "{a}"
    );
    assert_eq!(tcb_host(&page, "td.enclave.test")["tee"], "tdx");
    assert_eq!(tcb_host(&page, "fine.enclave.test")["at_risk"], false);
    assert_eq!(
        page["early_data"].as_array().map(Vec::len),
        Some(2),
        "{page}"
    );

    let ready = admin_json(admin, "/readyz").await;
    assert_eq!(
        ready["ready"], true,
        "at risk is a detail, not unready: {ready}"
    );
    let detail = ready["details"][0].as_str().unwrap_or_default();
    assert!(
        detail.contains("aging.enclave.test")
            && detail.contains("td.enclave.test")
            && !detail.contains("fine."),
        "{ready}"
    );

    // The trail records the early judgement with the verdict.
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // The first dial to a platform is refused for collateral not fetched yet, fetched and
    // dialled again: the accepted verdict is the second record.
    let accepted = |host: &str| {
        records
            .iter()
            .find(|r| r["host"] == host && r["verdict"] == "accepted")
            .unwrap_or_else(|| panic!("{host}'s accepted verdict in {records:?}"))
    };
    let aging_record = accepted("aging.enclave.test");
    assert_eq!(aging_record["early"]["at_risk"], true, "{aging_record}");
    assert_eq!(aging_record["early"]["standard_from"], date.to_rfc3339());
    let fine_record = accepted("fine.enclave.test");
    assert_eq!(fine_record["early"]["at_risk"], false, "{fine_record}");
    assert_eq!(fine_record["early"]["status"], "UpToDate", "{fine_record}");
    let (code, out) = audit_verify(&trail, &[]);
    assert_eq!(code, 0, "{out}");

    // Once per host and snapshot: more connections, and a reload that keeps the snapshot,
    // make new verdicts under the same data and no new warning.
    assert_eq!(logs.warnings("aging.enclave.test"), 1);
    assert_eq!(logs.warnings("fine.enclave.test"), 0);
    reload(admin).await;
    for _ in 0..2 {
        let answer = get(proxy, "aging.enclave.test", "/again", "").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        logs.warnings("aging.enclave.test"),
        1,
        "same host, same snapshot"
    );
    assert_eq!(logs.warnings("td.enclave.test"), 1);
    // New early data (reissued): a new snapshot, warned about again.
    pccs.serve_early(&early(&env, SimPlatform::Sgx, 30));
    std::fs::write(
        &config,
        h.clone()
            .collateral_source(&format!("{}/", pccs.url()))
            .text(),
    )
    .expect("write");
    reload(admin).await;
    let answer = get(proxy, "aging.enclave.test", "/new", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(logs.warnings("aging.enclave.test"), 2, "a new snapshot");
}

/// `early = "enforce"` refuses what the early data refuses (`tcb_at_risk`, naming the date)
/// and, failing closed, an enclave it cannot judge under early data (none held); an entry's
/// own `early = "warn"` keeps it accepted. Offline: the early bundles of a collateral
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_enforce_refuses_what_the_early_data_refuses() {
    let env = env();
    let aging = sgx_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let fine = sgx_sim(&env, None).await;
    let proxy = free_port();
    let dir = env.dir.join("pki/collateral");
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral(&dir)
        .collateral_keys("early = \"enforce\"")
        .enclave("aging.enclave.test", aging.addr())
        .enclave("fine.enclave.test", fine.addr())
        .enclave_with(
            &["lenient.enclave.test"],
            aging.addr(),
            TRUSTED,
            "early = \"warn\"",
        )
        .start_binary("enforce.toml")
        .await;
    let answer = get(proxy, "aging.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("\"code\":\"tcb_at_risk\""), "{answer}");
    let date = standard_from(
        &BundleFile::from_json(&std::fs::read(dir.join("sgx-early.json")).expect("read"))
            .expect("bundle"),
    );
    assert!(
        answer.contains(&date.to_rfc3339()),
        "the refusal names the date: {answer}"
    );
    assert!(get(proxy, "fine.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(get(proxy, "lenient.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(
        aging.request_count(),
        1,
        "only the lenient entry's request reached it"
    );

    // Without early data (the early bundles removed), enforce cannot judge: refused.
    let bare = env.dir.join("bare");
    std::fs::create_dir_all(&bare).expect("dir");
    std::fs::copy(dir.join("sgx.json"), bare.join("sgx.json")).expect("copy");
    let proxy = free_port();
    let _q = Harness::new(&env)
        .listen(proxy)
        .collateral(&bare)
        .collateral_keys("early = \"enforce\"")
        .enclave("fine.enclave.test", fine.addr())
        .start_binary("bare.toml")
        .await;
    let answer = get(proxy, "fine.enclave.test", "/", "").await;
    assert!(
        answer.contains("\"code\":\"collateral_unavailable\""),
        "{answer}"
    );
    assert!(answer.contains("no early TCB data"), "{answer}");
}

/// `min_tcb_evaluation_data_number` refuses collateral of a lower number whatever its date
/// (`collateral_too_old`), globally and per entry (an entry's own minimum stands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimum_evaluation_number_refuses_older_collateral() {
    let env = env();
    let fine = sgx_sim(&env, None).await;
    let proxy = free_port();
    let _p = Harness::new(&env)
        .listen(proxy)
        .collateral_keys("min_tcb_evaluation_data_number = 18")
        .enclave("strict.enclave.test", fine.addr())
        .enclave_with(
            &["known.enclave.test"],
            fine.addr(),
            TRUSTED,
            "min_tcb_evaluation_data_number = 17",
        )
        .start_binary("min.toml")
        .await;
    let answer = get(proxy, "strict.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains("\"code\":\"collateral_too_old\""),
        "{answer}"
    );
    assert!(
        answer.contains("below min_tcb_evaluation_data_number = 18"),
        "{answer}"
    );
    assert!(get(proxy, "known.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(fine.request_count(), 1);

    // Out of range is a config error at its place.
    let path = Harness::new(&env)
        .collateral_keys("min_tcb_evaluation_data_number = 0")
        .write("zero.toml");
    let (code, out) = run(["config".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("min_tcb_evaluation_data_number = 0 is out of range"),
        "{out}"
    );
}

/// A hostile PCCS cannot use the early endpoints: early data with a bad signature, for
/// another FMSPC or another TEE, older than the standard data, or rolled back below the
/// early marks is refused (counted), the standard verdicts stand (the at-risk enclave is
/// accepted and not reported at risk), and neither the standard marks nor a later standard
/// fetch are touched by early data with a higher evaluation data number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_early_source_is_refused_without_touching_the_standard_verdicts() {
    let env = env();
    let aging = sgx_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let pccs = Pccs::start().await;
    let standard = env
        .pki
        .collateral_for(SimPlatform::Sgx, UnixTime(env.now.0 - 60), &[])
        .expect("collateral");
    pccs.serve("platform", &standard);
    let good = early(&env, SimPlatform::Sgx, 60);
    let sign = |b: &mut BundleFile| {
        b.collateral.tcb_info_signature = env
            .pki
            .sign_with_tcb_key(&b.collateral.tcb_info)
            .expect("sign");
        b.collateral.qe_identity_signature = env
            .pki
            .sign_with_tcb_key(&b.collateral.qe_identity)
            .expect("sign");
    };
    // Edited after signing: the signature no longer verifies.
    let mut forged = good.clone();
    forged.collateral.tcb_info = forged
        .collateral
        .tcb_info
        .replace("\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"UpToDate\"");
    // Validly signed, for another platform model.
    let mut other_fmspc = good.clone();
    other_fmspc.collateral.tcb_info = other_fmspc
        .collateral
        .tcb_info
        .replace("5EC0DE000000", "5EC0DE0000AA");
    sign(&mut other_fmspc);
    // Validly signed, the TD platform's TCB info at the SGX path.
    let other_tee = early(&env, SimPlatform::Tdx, 60);
    let mut for_sgx_path = other_tee.clone();
    for_sgx_path.collateral.tcb_info = for_sgx_path
        .collateral
        .tcb_info
        .replace("5EC0DE000081", "5EC0DE000000");
    sign(&mut for_sgx_path);
    // Validly signed, older than the standard data (16 < 17): not early data.
    let mut older = good.clone();
    older.collateral.tcb_info = older.collateral.tcb_info.replace(
        "\"tcbEvaluationDataNumber\":18",
        "\"tcbEvaluationDataNumber\":16",
    );
    sign(&mut older);

    let (proxy, admin) = (free_port(), free_port());
    let h = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .collateral_source(&pccs.url())
        .enclave("aging.enclave.test", aging.addr());
    let config = h.write("hostile.toml");
    let mut p = Binary::start(&config, admin, &[], true).await;
    let logs = Logs::drain(&mut p);
    let mut source = pccs.url();
    for (name, b, says) in [
        ("bad signature", &forged, "signature does not verify"),
        ("another FMSPC", &other_fmspc, "FMSPC 5ec0de0000aa"),
        ("another TEE", &for_sgx_path, "early TCB info is for TDX"),
        ("older than the standard data", &older, "not early data"),
    ] {
        // Each at the SGX platform's own paths, as a hostile PCCS would serve it.
        pccs.serve_early_at("sgx", "5EC0DE000000", b);
        // A new cache (the source spelled anew) fetches again.
        source.push('/');
        std::fs::write(&config, h.clone().collateral_source(&source).text()).expect("write");
        reload(admin).await;
        let answer = get(proxy, "aging.enclave.test", "/", "").await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{name}: the standard verdict stands: {answer}"
        );
        let page = admin_json(admin, "/tcb").await;
        let a = tcb_host(&page, "aging.enclave.test");
        assert_eq!(a["at_risk"], false, "{name}: {a}");
        assert!(a["early"]["unavailable"].is_string(), "{name}: {a}");
        let text = metrics_text(admin).await;
        assert_eq!(
            sample(&text, "ratls_collateral_early_failures_total"),
            Some(1.0),
            "{name}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = logs.with("early TCB data not taken");
        let why = refused
            .last()
            .map(|v| v["error"].to_string())
            .unwrap_or_default();
        assert!(why.contains(says), "{name}: {why}");
    }

    // Good early data with evaluation 19 (validly signed): taken, and the standard marks
    // stay at 17, so the standard data (17) is still accepted after it.
    let mut newer = good.clone();
    newer.collateral.tcb_info = newer.collateral.tcb_info.replace(
        "\"tcbEvaluationDataNumber\":18",
        "\"tcbEvaluationDataNumber\":19",
    );
    sign(&mut newer);
    pccs.serve_early(&newer);
    source.push('/');
    std::fs::write(&config, h.clone().collateral_source(&source).text()).expect("write");
    reload(admin).await;
    assert!(get(proxy, "aging.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    let page = admin_json(admin, "/tcb").await;
    assert_eq!(
        tcb_host(&page, "aging.enclave.test")["early"]["tcb_evaluation_data_number"],
        19,
        "{page}"
    );
    let marks: Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.join("ca/collateral-marks.json")).expect("marks"),
    )
    .expect("json");
    let early_marks: Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.join("ca/collateral-marks-early.json"))
            .expect("early marks"),
    )
    .expect("json");
    let evaluation = |m: &Value| {
        m["roots"]
            .as_object()
            .and_then(|r| r.values().next())
            .map(|r| r["tcb_info"]["sgx/5ec0de000000"]["evaluation"].clone())
    };
    assert_eq!(evaluation(&marks), Some(Value::from(17)), "{marks}");
    assert_eq!(
        evaluation(&early_marks),
        Some(Value::from(19)),
        "{early_marks}"
    );

    // Rolled back below its own mark: the 18 data again, to a new cache. Refused (counted),
    // the standard verdict stands.
    pccs.serve_early(&good);
    source.push('/');
    std::fs::write(&config, h.clone().collateral_source(&source).text()).expect("write");
    reload(admin).await;
    assert!(get(proxy, "aging.enclave.test", "/", "")
        .await
        .starts_with("HTTP/1.1 200"));
    let text = metrics_text(admin).await;
    assert_eq!(
        sample(&text, "ratls_collateral_early_rollbacks_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ratls_collateral_rollbacks_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        aging.request_count(),
        6,
        "every standard verdict accepted it"
    );
}

/// `verify --early` shows the judgement under the early data beside the standard one, exit
/// code unchanged; `--fail-at-risk` refuses an enclave at risk (exit 1, `tcb_at_risk`, naming
/// the date), accepts one the early data keeps, and cannot check without early data (exit
/// 2); `--min-tcb-evaluation-data-number` refuses older collateral; a lone early bundle is
/// not standard collateral. From a collateral directory and from a PCCS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_shows_both_judgements_and_fail_at_risk_refuses_an_enclave_at_risk() {
    let env = env();
    let aging = sgx_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let fine = sgx_sim(&env, None).await;
    let dir = env.dir.join("pki/collateral");
    let date = standard_from(
        &BundleFile::from_json(&std::fs::read(dir.join("sgx-early.json")).expect("read"))
            .expect("bundle"),
    );

    let (code, plain) = verify_https(&env, aging.addr(), &dir, &[]).await;
    assert_eq!(code, 0, "{plain}");
    assert!(plain.get("early").is_none(), "not asked: {plain}");
    let (code, report) = verify_https(&env, aging.addr(), &dir, &["--early"]).await;
    assert_eq!(
        code, 0,
        "the standard verdict decides the exit code: {report}"
    );
    assert_eq!(report["verdict"], "accepted", "{report}");
    assert_eq!(report["tcb"]["status"], "UpToDate", "{report}");
    assert_eq!(report["early"]["at_risk"], true, "{report}");
    assert_eq!(report["early"]["status"], "OutOfDate", "{report}");
    assert_eq!(
        report["early"]["tcb_evaluation_data_number"], 18,
        "{report}"
    );
    assert_eq!(
        report["early"]["standard_from"],
        date.to_rfc3339(),
        "{report}"
    );

    let (code, report) = verify_https(&env, aging.addr(), &dir, &["--fail-at-risk"]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["code"], "tcb_at_risk", "{report}");
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains(&date.to_rfc3339()),
        "names the date: {reasons}"
    );
    let (code, report) = verify_https(&env, fine.addr(), &dir, &["--fail-at-risk"]).await;
    assert_eq!(code, 0, "up to date under both: {report}");
    assert_eq!(report["early"]["at_risk"], false, "{report}");

    // No early data to judge under: --early says so, --fail-at-risk cannot check.
    let bare = env.dir.join("bare-verify");
    std::fs::create_dir_all(&bare).expect("dir");
    std::fs::copy(dir.join("sgx.json"), bare.join("sgx.json")).expect("copy");
    let (code, report) = verify_https(&env, fine.addr(), &bare, &["--early"]).await;
    assert_eq!(code, 0, "{report}");
    assert!(report["early"]["unavailable"].is_string(), "{report}");
    let (code, report) = verify_https(&env, fine.addr(), &bare, &["--fail-at-risk"]).await;
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["code"], "collateral_unavailable", "{report}");

    // The sim's standard data is evaluation 17.
    let (code, report) = verify_https(
        &env,
        fine.addr(),
        &dir,
        &["--min-tcb-evaluation-data-number", "18"],
    )
    .await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["code"], "collateral_too_old", "{report}");
    let (code, report) = verify_https(
        &env,
        fine.addr(),
        &dir,
        &["--min-tcb-evaluation-data-number", "17"],
    )
    .await;
    assert_eq!(code, 0, "{report}");

    // A lone early bundle is not the standard data verdicts are made under.
    let (code, out) = run([
        "verify".as_ref(),
        format!("https://{}", fine.addr()).as_ref(),
        "--trust-root".as_ref(),
        env.dir.join("pki/root.pem").as_os_str(),
        "--collateral".as_ref(),
        dir.join("sgx-early.json").as_os_str(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("early TCB data"), "{out}");

    // From a PCCS serving the early endpoints.
    let pccs = pccs_with_early(&env).await;
    let (code, report) = verify_https(&env, aging.addr(), pccs.url(), &["--fail-at-risk"]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["code"], "tcb_at_risk", "{report}");
    let (code, report) = verify_https(&env, aging.addr(), pccs.url(), &["--early"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["early"]["at_risk"], true, "{report}");
}

/// `early = "off"` neither fetches nor judges: the enclave the early data would refuse is
/// accepted and not at risk, `/tcb` holds no early data, the audit record has no `early`;
/// an entry's own `early = "warn"` turns it on for that entry alone. A spelling other than
/// off, warn or enforce is a config error at its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_off_neither_fetches_nor_judges() {
    let env = env();
    let aging = sgx_sim(&env, Some(TcbStatus::OutOfDate)).await;
    let pccs = pccs_with_early(&env).await;
    let trail = env.dir.join("off.jsonl");
    let (proxy, admin) = (free_port(), free_port());
    let _p = Harness::new(&env)
        .listen(proxy)
        .admin(admin)
        .collateral_source(&pccs.url())
        .collateral_keys("early = \"off\"")
        .enclave("aging.enclave.test", aging.addr())
        .enclave_with(
            &["watched.enclave.test"],
            aging.addr(),
            TRUSTED,
            "early = \"warn\"",
        )
        .tail(&format!("[audit]\npath = \"{}\"\n", trail.display()))
        .start_binary("off.toml")
        .await;
    let answer = get(proxy, "aging.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let page = admin_json(admin, "/tcb").await;
    let a = tcb_host(&page, "aging.enclave.test");
    assert_eq!(a["at_risk"], false, "{a}");
    assert!(a["early"].is_null(), "not judged: {a}");
    let record = |host: &str| {
        std::fs::read_to_string(&trail)
            .expect("trail")
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["host"] == host && r["verdict"] == "accepted")
            .unwrap_or_else(|| panic!("{host}'s accepted verdict"))
    };
    assert!(record("aging.enclave.test").get("early").is_none());

    // The entry that asks for it: fetched (the source serves it) and judged.
    let answer = get(proxy, "watched.enclave.test", "/", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let page = admin_json(admin, "/tcb").await;
    assert_eq!(
        tcb_host(&page, "watched.enclave.test")["at_risk"],
        true,
        "{page}"
    );
    assert_eq!(record("watched.enclave.test")["early"]["at_risk"], true);
    assert_eq!(
        tcb_host(&page, "aging.enclave.test")["at_risk"],
        false,
        "{page}"
    );

    let path = Harness::new(&env)
        .collateral_keys("early = \"sometimes\"")
        .write("sometimes.toml");
    let (code, out) = run(["config".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("early = `sometimes`"), "{out}");
}
