//! Origination on one keep-alive client connection: the proxy remembers the enclave target
//! the connection's last `http://` request resolved to (issue 30, session 5), so these prove
//! that memory never carries a verdict where it does not belong: a request naming another
//! host on the same connection, and the connection's next request after a reload, is
//! resolved and judged again (the real binary, hyper's client, a reload over `POST /reload`).

mod common;

use std::path::Path;

use http_body_util::BodyExt;
use ratls_proxy::dcap::ids::MrEnclave;

use common::http::{empty, Http};
use common::{curl_status, env, start_sim_with, Binary, Env, Harness, Mode, Ports, OTHER, TRUSTED};

/// The config: `good.test` under `good_policy`, `bad.test` (the same enclave) under an
/// allow-list it does not match, unmatched hosts denied; `good.test` left out if `None`.
fn config(env: &Env, ports: Ports, enclave: std::net::SocketAddr, good: Option<&str>) -> String {
    let mut h = Harness::new(env).ports(ports).top("unmatched = \"deny\"");
    if let Some(policy) = good {
        h = h.enclave_with(&["good.test"], enclave, policy, "");
    }
    h.enclave_with(&["bad.test"], enclave, OTHER, "").text()
}

/// `GET http://{host}/{path}` on the open connection: its status and body.
async fn get(conn: &mut Http, host: &str, path: &str) -> (u16, String) {
    let req = hyper::Request::builder()
        .uri(format!("http://{host}{path}"))
        .header("host", host)
        .body(empty())
        .expect("request");
    let resp = conn
        .send(req)
        .await
        .expect("a response on the open connection");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn reload(admin: u16, path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
    let (code, body) =
        curl_status(&["-X", "POST", &format!("http://127.0.0.1:{admin}/reload")]).await;
    assert_eq!(code, 200, "reloaded: {body}");
}

/// The sim enclave and the proxy binary under `good.test` trusted, its config at `path`.
async fn started() -> (
    Env,
    ratls_proxy::sim::SimEnclave,
    Ports,
    std::path::PathBuf,
    Binary,
) {
    let env = env();
    let sim = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let path = env.dir.join("p.toml");
    std::fs::write(&path, config(&env, ports, sim.addr(), Some(TRUSTED))).expect("write");
    let proxy = Binary::start(&path, ports.admin, &[], false).await;
    (env, sim, ports, path, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_keep_alive_connection_is_judged_for_its_own_host_and_generation() {
    let (env, sim, ports, path, _proxy) = started().await;
    let via = env.via(ports.proxy);
    let open = || Http::open(&via, "good.test", Mode::Originated);

    // One connection: the same host, also spelled otherwise (case, the default port named),
    // is the same entry and accepted each time; then another host on it is judged as
    // itself. (A refusal closes the client connection: the next part opens another.)
    let mut conn = open().await;
    for (host, path) in [
        ("good.test", "/a"),
        ("GOOD.test:443", "/b"),
        ("good.test", "/c"),
    ] {
        let (code, body) = get(&mut conn, host, path).await;
        assert_eq!(code, 200, "{host} is accepted: {body}");
    }
    let (code, body) = get(&mut conn, "bad.test", "/d").await;
    assert_eq!(
        code, 502,
        "bad.test after good.test on one connection: {body}"
    );
    assert!(body.contains("mrenclave_mismatch"), "{body}");

    // A reload that refuses good.test: the open connection's next request to it is refused.
    let mut conn = open().await;
    let (code, body) = get(&mut conn, "good.test", "/e").await;
    assert_eq!(code, 200, "{body}");
    reload(
        ports.admin,
        &path,
        &config(&env, ports, sim.addr(), Some(OTHER)),
    )
    .await;
    let (code, body) = get(&mut conn, "good.test", "/f").await;
    assert_eq!(code, 502, "judged under the new policy: {body}");
    assert!(body.contains("mrenclave_mismatch"), "{body}");

    // Accepted again, then a reload that drops the entry: no longer an enclave, denied.
    reload(
        ports.admin,
        &path,
        &config(&env, ports, sim.addr(), Some(TRUSTED)),
    )
    .await;
    let mut conn = open().await;
    let (code, body) = get(&mut conn, "good.test", "/g").await;
    assert_eq!(code, 200, "{body}");
    reload(ports.admin, &path, &config(&env, ports, sim.addr(), None)).await;
    let (code, body) = get(&mut conn, "good.test", "/h").await;
    assert_eq!(
        code, 403,
        "not an enclave host any more, and unmatched = deny: {body}"
    );
    assert!(body.contains("unmatched"), "{body}");
}

/// A request whose answer the enclave holds back (`/slow`) is refused when a reload refuses
/// its enclave while the proxy waits for the head: the change wakes the wait
/// (`Judge::refused_by_change`), the client is not kept until the enclave answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_refuses_the_enclave_answers_a_request_still_waiting_for_its_head() {
    let (env, sim, ports, path, _proxy) = started().await;
    let via = env.via(ports.proxy);
    let mut conn = Http::open(&via, "good.test", Mode::Originated).await;
    let (code, body) = get(&mut conn, "good.test", "/warm").await;
    assert_eq!(code, 200, "{body}");

    // The enclave answers after 10 s (the sim's most); the reload comes after 1 s.
    let started = std::time::Instant::now();
    let waiting = tokio::spawn(async move { get(&mut conn, "good.test", "/slow?ms=10000").await });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    reload(
        ports.admin,
        &path,
        &config(&env, ports, sim.addr(), Some(OTHER)),
    )
    .await;
    let (code, body) = waiting.await.expect("the request task");
    let took = started.elapsed();
    assert_eq!(code, 502, "refused by the reload: {body}");
    assert!(body.contains("mrenclave_mismatch"), "{body}");
    // Not woken, the wait would end with the enclave's answer at 10 s (then be refused by
    // the head's own check): the bound tells the two apart with seconds to spare.
    assert!(
        took < std::time::Duration::from_secs(7),
        "answered {took:?} after the request: the change did not wake the wait"
    );
}
