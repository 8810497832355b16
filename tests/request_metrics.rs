//! `ratls_requests_total` read from the real `/metrics` endpoint of the real binary while
//! hyper's clients and raw sockets send real requests (issue 30, session 7: a request is
//! counted through a handle its `Target` keeps, without the registry's lock): concurrent
//! connections on both of the proxy's cores lose no increment, a reload's new `Target`s
//! add to the same series, and a host first seen past the label cap counts under `other`
//! however it arrives.

mod common;

use ratls_proxy::dcap::ids::MrEnclave;

use common::http::Http;
use common::{
    ask, env, metrics_text, parse_metrics, reload, start_sim_with, Binary, Harness, Mode, Ports,
    TRUSTED,
};

/// The `ratls_requests_total` lines of `/metrics` for `host`, as printed.
fn series_of<'t>(text: &'t str, host: &str) -> Vec<&'t str> {
    let prefix = format!("ratls_requests_total{{host=\"{host}\",");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The value of one `ratls_requests_total` series, 0 when it is absent.
fn count(text: &str, host: &str, verdict: &str, code: &str) -> f64 {
    parse_metrics(text)
        .get(&format!(
            "ratls_requests_total{{host=\"{host}\",verdict=\"{verdict}\",code=\"{code}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
}

/// `rounds` requests on each of `conns` connections at once: every answer must be 200.
async fn concurrently(conns: Vec<Http>, rounds: usize) -> Vec<Http> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for i in 0..rounds {
                    assert_eq!(c.status(&format!("/n{i}")).await, 200);
                }
                c
            })
        })
        .collect();
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.expect("client task"));
    }
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_a_reload_add_to_one_series_without_losing_a_count() {
    let env = env();
    let sim = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let route = format!(
        "[[route]]\nlisten = \"127.0.0.1:{}\"\nupstream = \"https://good.test\"",
        ports.route
    );
    let harness = Harness::new(&env)
        .ports(ports)
        .enclave("good.test", sim.addr())
        .tail(&route);
    let path = harness.write("p.toml");
    let _proxy = Binary::start(&path, ports.admin, &[], false).await;
    let via = env.via(ports.proxy).route(ports.route);

    // Six connections over every way in, two of each: the proxy spreads them over its
    // cores, all counting into good.test's one series at the same time.
    let mut conns = Vec::new();
    for mode in [Mode::Originated, Mode::Intercepted, Mode::Route] {
        for _ in 0..2 {
            conns.push(Http::open(&via, "good.test", mode).await);
        }
    }
    let conns = concurrently(conns, 50).await;
    // 300 requests, and each intercepted connection's CONNECT (counted by its host name,
    // through the registry's lookup rather than a `Target`'s handle).
    let text = metrics_text(ports.admin).await;
    assert_eq!(count(&text, "good.test", "accepted", "-"), 302.0, "{text}");

    // A reload makes new `Target`s for good.test (each open connection's next request
    // resolves it again): they count into the same series.
    reload(ports.admin).await;
    let mut conns = concurrently(conns, 50).await;
    conns.push(Http::open(&via, "good.test", Mode::Originated).await);
    let _conns = concurrently(conns, 1).await;
    let text = metrics_text(ports.admin).await;
    assert!(
        parse_metrics(&text).get("ratls_reloads_total{result=\"ok\"}") == Some(&1.0),
        "{text}"
    );
    assert_eq!(count(&text, "good.test", "accepted", "-"), 609.0, "{text}");
    assert_eq!(series_of(&text, "good.test").len(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_first_seen_past_the_label_cap_counts_under_other() {
    const CAP: usize = 1000; // MAX_HOST_LABELS
    let env = env();
    let sim = start_sim_with(&env, |c| c.spec.mrenclave = MrEnclave([0xe1; 32])).await;
    let ports = Ports::free();
    let harness = Harness::new(&env)
        .ports(ports)
        .top("unmatched = \"deny\"\nmetrics_host_labels = \"all\"")
        .enclave_with(&["*.apps.test"], sim.addr(), TRUSTED, "");
    let _proxy = harness.start_binary("cap.toml").await;
    let via = env.via(ports.proxy);

    // One enclave host counted before the cap, then denied hosts up to it and one past it.
    let mut early = Http::open(&via, "early.apps.test", Mode::Originated).await;
    assert_eq!(early.status("/").await, 200);
    for i in 0..CAP {
        let host = format!("d{i}.denied.test");
        let answer = ask(
            ports.proxy,
            &format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
    }
    // Enclave hosts first seen now: a new `Target` each, over each way in that makes one.
    let mut late = Http::open(&via, "late.apps.test", Mode::Originated).await;
    let mut tunnel = Http::open(&via, "tunnel.apps.test", Mode::Intercepted).await;
    for _ in 0..2 {
        assert_eq!(late.status("/").await, 200);
        assert_eq!(tunnel.status("/").await, 200);
    }
    // A host named before the cap keeps its own series.
    assert_eq!(early.status("/").await, 200);

    let text = metrics_text(ports.admin).await;
    assert_eq!(
        count(&text, "early.apps.test", "accepted", "-"),
        2.0,
        "{text}"
    );
    assert_eq!(
        count(&text, "d0.denied.test", "denied", "http_request_denied"),
        1.0
    );
    assert_eq!(
        count(
            &text,
            &format!("d{}.denied.test", CAP - 2),
            "denied",
            "http_request_denied"
        ),
        1.0,
        "the last host under the cap is named"
    );
    let past = format!("d{}.denied.test", CAP - 1);
    assert!(series_of(&text, &past).is_empty(), "{past} is past the cap");
    assert_eq!(
        count(&text, "other", "denied", "http_request_denied"),
        1.0,
        "{text}"
    );
    // Four requests and the tunnel's CONNECT.
    assert_eq!(count(&text, "other", "accepted", "-"), 5.0, "{text}");
    for host in ["late.apps.test", "tunnel.apps.test"] {
        assert!(series_of(&text, host).is_empty(), "{host} is past the cap");
    }
    let hosts: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("ratls_requests_total{"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(hosts.len(), CAP + 1, "the cap's hosts and other");
}
