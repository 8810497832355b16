//! The proxy end to end: the real binary (or the library's server), sim enclaves on
//! loopback, and real clients: curl with `-x` and with `HTTPS_PROXY`, a hyper client,
//! and a rustls client that inspects the minted leaf.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ratls_proxy::dcap::ids::MrEnclave;
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::sim::{SimBinding, SimConfig, SimEnclave};
use ratls_proxy::Config;
use serde_json::Value;

use common::http::Http;
use common::{
    command, curl, curl_text, curl_via, env, exchange, free_port, json, metrics_text, s,
    start_sim_with, tls_through, Binary, Env, Harness, Mode, TRUSTED,
};

async fn sim(env: &Env, f: impl FnOnce(&mut SimConfig)) -> SimEnclave {
    start_sim_with(env, f).await
}

/// A config file: `entries` are (host pattern, sim address) under the trusted-MRENCLAVE policy.
fn write_config(
    env: &Env,
    name: &str,
    listen: u16,
    entries: &[(&str, SocketAddr)],
    top: &str,
) -> PathBuf {
    harness(env, listen, entries).top(top).write(name)
}

fn harness<'e>(env: &'e Env, listen: u16, entries: &[(&str, SocketAddr)]) -> Harness<'e> {
    entries
        .iter()
        .fold(Harness::new(env).listen(listen), |h, (host, addr)| {
            h.enclave(host, *addr)
        })
}

async fn start_binary(config: &Path, port: u16) -> Binary {
    Binary::start(config, port, &[], false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercept_origination_and_sidecar_reach_the_attested_enclave() {
    let env = env();
    let good = sim(&env, |_| {}).await;
    let port = free_port();
    let route_port = free_port();
    let route = format!("\n[[route]]\nlisten = \"127.0.0.1:{route_port}\"\nupstream = \"https://good.enclave.test\"\n");
    let config = write_config(
        &env,
        "p.toml",
        port,
        &[("good.enclave.test", good.addr())],
        "",
    );
    std::fs::write(
        &config,
        format!("{}{route}", std::fs::read_to_string(&config).expect("read")),
    )
    .expect("write");
    let _proxy = start_binary(&config, port).await;
    let proxy = format!("http://127.0.0.1:{port}");
    let ca = env.ca_pem().display().to_string();

    // CONNECT intercept, HTTP/1.1 and HTTP/2 inside the tunnel.
    for version in ["--http1.1", "--http2"] {
        let out = curl(
            s(&[
                "-x",
                &proxy,
                "--cacert",
                &ca,
                version,
                "https://good.enclave.test/hello?v=1",
            ]),
            vec![],
        )
        .await;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e = json(&out);
        assert_eq!(e["mrenclave"], TRUSTED);
        assert_eq!(e["path"], "/hello");
        assert_eq!(e["query"], "v=1");
        // The upstream request mirrors the client's HTTP version.
        let upstream = if version == "--http2" {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(e["version"], upstream, "{version}");
        if version == "--http1.1" {
            assert_eq!(e["headers"]["host"], "good.enclave.test");
        }
    }
    // An unmodified client configured only through HTTPS_PROXY.
    let out = curl(
        s(&["--cacert", &ca, "https://good.enclave.test/env"]),
        vec![("HTTPS_PROXY", proxy.clone())],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["path"], "/env");
    // Origination: plain http:// through the proxy, no CA on the client.
    let out = curl(
        s(&[
            "-x",
            &proxy,
            "-H",
            "X-App: legacy",
            "http://good.enclave.test/orig?q=2",
        ]),
        vec![],
    )
    .await;
    let e = json(&out);
    assert_eq!(
        (e["path"].as_str(), e["headers"]["x-app"].as_str()),
        (Some("/orig"), Some("legacy"))
    );
    assert_eq!(e["version"], "HTTP/1.1");
    // Absolute form in, origin form and the enclave's Host out.
    assert_eq!(e["query"], "q=2");
    assert_eq!(e["headers"]["host"], "good.enclave.test");
    // Sidecar route: the client's Host names the route listener; upstream gets the enclave's.
    let out = curl(
        s(&[&format!("http://127.0.0.1:{route_port}/side?x=1")]),
        vec![],
    )
    .await;
    let e = json(&out);
    assert_eq!(
        (e["path"].as_str(), e["query"].as_str()),
        (Some("/side"), Some("x=1"))
    );
    assert_eq!(e["headers"]["host"], "good.enclave.test");
    // Without trusting the proxy's CA, curl refuses the intercepted connection.
    let out = curl(
        s(&["-x", &proxy, "https://good.enclave.test/hello"]),
        vec![],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(good.request_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_enclaves_get_the_documented_answer_and_receive_no_request() {
    let env = env();
    let other = sim(&env, |c| c.spec.mrenclave = MrEnclave([0x0b; 32])).await;
    let debug = sim(&env, |c| c.spec.debug = true).await;
    let outdated = sim(&env, |c| c.tcb_status = TcbStatus::OutOfDate).await;
    let wrong = sim(&env, |c| c.binding = SimBinding::Wrong).await;
    let port = free_port();
    let config = write_config(
        &env,
        "p.toml",
        port,
        &[
            ("other.enclave.test", other.addr()),
            ("debug.enclave.test", debug.addr()),
            ("outdated.enclave.test", outdated.addr()),
            ("wrong.enclave.test", wrong.addr()),
        ],
        "",
    );
    let _proxy = start_binary(&config, port).await;
    let proxy = format!("http://127.0.0.1:{port}");
    let ca = env.ca_pem().display().to_string();
    for (host, code) in [
        ("other", "mrenclave_mismatch"),
        ("debug", "debug_enclave"),
        ("outdated", "tcb_status_not_allowed"),
        ("wrong", "binding_mismatch"),
    ] {
        // CONNECT: curl shows the proxy's answer to CONNECT with -v.
        let out = curl(
            s(&[
                "-v",
                "-x",
                &proxy,
                "--cacert",
                &ca,
                &format!("https://{host}.enclave.test/x"),
            ]),
            vec![],
        )
        .await;
        assert!(!out.status.success());
        let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            verbose.contains("< http/1.1 502 bad gateway"),
            "{host}: {verbose}"
        );
        assert!(
            verbose.contains(&format!(
                "proxy-status: ratls-proxy; error=tls_certificate_error; details=\"{code}:"
            )),
            "{host}: {verbose}"
        );
        // Origination shows the JSON body with the stable code.
        let text = curl_via(port, &format!("http://{host}.enclave.test/x")).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        let body: Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).expect("body")).expect("JSON body");
        assert_eq!(body["code"], code, "{host}");
        assert_eq!(body["error"], "tls_certificate_error");
        assert!(!body["reasons"][0].as_str().expect("reason").is_empty());
    }
    let served = other.request_count()
        + debug.request_count()
        + outdated.request_count()
        + wrong.request_count();
    assert_eq!(served, 0, "no request may reach a refused enclave");

    // Unreachable enclave: 502 destination_unavailable.
    drop(other);
    let text = curl_via(port, "http://other.enclave.test/x")
        .await
        .to_lowercase();
    assert!(
        text.starts_with("http/1.1 502") && text.contains("error=destination_unavailable"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_keeps_the_clients_own_validation_and_deny_refuses() {
    let env = env();
    // A TLS server that is not an enclave host: the sim, reached by its IP.
    let plain = sim(&env, |_| {}).await;
    let port = free_port();
    // The server stands on loopback here; passthrough may reach it only when allowed.
    let config = write_config(
        &env,
        "pass.toml",
        port,
        &[],
        "allow_local_destinations = true",
    );
    let _proxy = start_binary(&config, port).await;
    let proxy = format!("http://127.0.0.1:{port}");
    let url = format!("https://127.0.0.1:{}/through", plain.addr().port());
    // The client sees the server's own certificate: our CA does not validate it...
    let out = curl(
        s(&[
            "-x",
            &proxy,
            "--cacert",
            &env.ca_pem().display().to_string(),
            &url,
        ]),
        vec![],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and the client's own choice (here, to skip validation) is what decides.
    let out = curl(s(&["-v", "-k", "-x", &proxy, &url]), vec![]).await;
    assert_eq!(json(&out)["path"], "/through");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ratls-proxy sim enclave"),
        "server's own certificate"
    );

    let deny_port = free_port();
    let deny = write_config(&env, "deny.toml", deny_port, &[], "unmatched = \"deny\"");
    let _deny = start_binary(&deny, deny_port).await;
    let proxy = format!("http://127.0.0.1:{deny_port}");
    let out = curl(s(&["-v", "-x", &proxy, "-k", &url]), vec![]).await;
    let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        verbose.contains("< http/1.1 403") && verbose.contains("error=destination_ip_prohibited"),
        "{verbose}"
    );
    let text = curl_via(deny_port, "http://example.invalid/")
        .await
        .to_lowercase();
    assert!(
        text.starts_with("http/1.1 403") && text.contains("\"code\":\"http_request_denied\""),
        "{text}"
    );
}

/// A library proxy for tests that read its counters.
async fn library_proxy(env: &Env, entries: &[(&str, SocketAddr)]) -> ratls_proxy::Running {
    harness(env, 0, entries).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_to_the_same_enclave_is_served_from_the_verdict_cache() {
    let env = env();
    let good = sim(&env, |_| {}).await;
    // Two names for one enclave: two upstream connections, one certificate, one policy.
    let running = library_proxy(
        &env,
        &[
            ("a.enclave.test", good.addr()),
            ("b.enclave.test", good.addr()),
        ],
    )
    .await;
    let proxy = format!("http://{}", running.addr);
    let ca = env.ca_pem().display().to_string();
    for host in ["a", "b", "a", "b"] {
        let out = curl(
            s(&[
                "-x",
                &proxy,
                "--cacert",
                &ca,
                &format!("https://{host}.enclave.test/"),
            ]),
            vec![],
        )
        .await;
        assert_eq!(json(&out)["mrenclave"], TRUSTED);
    }
    let stats = running.proxy.cache_stats();
    assert_eq!(
        stats.verifications, 1,
        "one quote verification for one certificate: {stats:?}"
    );
    assert!(
        stats.hits >= 1,
        "the second upstream connection was admitted from the cache: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_still_reaches_an_http2_only_enclave() {
    let env = env();
    let grpc_like = sim(&env, |c| c.h2_only = true).await;
    let running = library_proxy(&env, &[("h2.enclave.test", grpc_like.addr())]).await;
    let proxy = format!("http://{}", running.addr);
    let ca = env.ca_pem().display().to_string();
    for args in [
        vec![
            "--cacert",
            &ca,
            "--http1.1",
            "https://h2.enclave.test/tunnel",
        ],
        vec!["http://h2.enclave.test/orig"],
    ] {
        let mut a = s(&["-x", &proxy]);
        a.extend(s(&args));
        let out = curl(a, vec![]).await;
        let e = json(&out);
        assert_eq!(e["mrenclave"], TRUSTED, "{args:?}");
        // No HTTP/1.1 upstream to mirror: the request shares the attested HTTP/2 connection.
        assert_eq!(e["version"], "HTTP/2.0", "{args:?}");
    }
    assert_eq!(grpc_like.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hyper_client_originates_and_a_rustls_client_sees_a_proper_minted_leaf() {
    use http_body_util::BodyExt;

    let env = env();
    let good = sim(&env, |_| {}).await;
    let running = library_proxy(&env, &[("good.enclave.test", good.addr())]).await;

    // hyper: absolute-form http:// request to the proxy.
    let via = env.via(running.addr);
    let resp = Http::open(&via, "good.enclave.test", Mode::Originated)
        .await
        .get("/hyper")
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["path"],
        "/hyper"
    );

    // rustls through CONNECT: the leaf is minted by our CA for the host, P-256, with AKI and SKI.
    let tls = tls_through(running.addr, "good.enclave.test", &env.ca_pem()).await;
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("leaf parses");
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert!(format!("{:?}", san.value.general_names).contains("good.enclave.test"));
    assert!(cert
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .expect("aki")
        .is_some());
    assert!(cert
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .expect("ski")
        .is_some());
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!(days <= 8, "short validity: {days} days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_proxy_requests_get_400_with_a_reason() {
    let env = env();
    let running = library_proxy(&env, &[]).await;
    for request in [
        &b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET ftp://example.com/file HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let text = exchange(running.addr, request).await;
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{}: {text}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn the_ca_is_created_with_a_0600_key_and_exported_by_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    let env = env();
    let config = write_config(&env, "ca.toml", free_port(), &[], "");
    let out = command()
        .args(["ca", "export", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8_lossy(&out.stdout);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(std::fs::read_to_string(env.ca_pem()).expect("ca.pem"), pem);
    let mode = std::fs::metadata(env.dir.join("ca/ca-key.pem"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let out = command()
        .args(["ca", "path", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env.ca_pem().display().to_string()
    );
    // A key readable by others is refused at start-up.
    std::fs::set_permissions(
        env.dir.join("ca/ca-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let out = command()
        .args(["ca", "export", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn config_check_reports_errors_with_their_location() {
    let env = env();
    let good = write_config(
        &env,
        "good.toml",
        3128,
        &[("a.enclave.test", "127.0.0.1:1".parse().expect("addr"))],
        "",
    );
    let out = command()
        .args(["config", "check"])
        .arg(&good)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = env.dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:3128\"\n[[enclave]]\nhosts = [\"a.example\"]\nmrenclave = [\"00\"]\n",
    )
    .expect("write");
    let out = command()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:14:", bad.display())), "{err}");
    // The example configuration in the repository is valid.
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/ratls-proxy.toml");
    let text = std::fs::read_to_string(&example).expect("config/ratls-proxy.toml");
    let config = Config::from_toml(&text, "example", Path::new("/")).expect("example validates");
    assert_eq!(config.source.collateral, ratls_proxy::CollateralSpec::Pcs);
    // One SGX entry and one TDX entry, one route.
    assert_eq!((config.enclaves.len(), config.routes.len()), (2, 1));
}

/// The names of the process's threads (Linux: `/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_thread_serves_its_clients_over_upstream_connections_of_its_own() {
    use tokio::io::AsyncWriteExt;
    let env = env();
    let good = sim(&env, |_| {}).await;
    let (port, admin) = (free_port(), free_port());
    let config = harness(&env, port, &[("pool.enclave.test", good.addr())])
        .admin(admin)
        .limits("threads = 3")
        .write("threads.toml");
    let bin = start_binary(&config, port).await;
    let names = thread_names(bin.child.id());
    let cores = names
        .iter()
        .filter(|n| n.starts_with("ratls-core-"))
        .count();
    assert_eq!(
        cores, 3,
        "limits.threads = 3 runs three connection threads: {names:?}"
    );
    // The port is taken: a second proxy on it fails to start rather than share it.
    let second = command()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .output()
        .expect("runs");
    assert!(
        !second.status.success(),
        "a second proxy bound the same port"
    );

    let gauge = |text: &str, name: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };

    // Twelve client connections one after another, each closed after its request: whichever
    // thread serves one and has no pooled connection of its own borrows another thread's,
    // so one attested upstream connection serves them all.
    let proxy = format!("http://127.0.0.1:{port}");
    for i in 0..12 {
        let out = curl(
            s(&["-x", &proxy, &format!("http://pool.enclave.test/c{i}")]),
            vec![],
        )
        .await;
        assert_eq!(json(&out)["mrenclave"], TRUSTED, "client {i}");
    }
    assert_eq!(good.request_count(), 12);
    let text = metrics_text(admin).await;
    assert_eq!(
        gauge(&text, "ratls_upstream_connections "),
        [1],
        "one pooled upstream connection shared by the threads: {text}"
    );

    // Twelve connections held open, half of them CONNECT tunnels (which outlive hyper's
    // connection task): each counts in its thread's load until it closes, and a thread
    // serving clearly more than the least loaded one hands new connections on, so however
    // the threads took them from the socket every thread serves some.
    let mut held = Vec::new();
    for i in 0..12 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let head = if i % 2 == 0 {
            format!("GET http://pool.enclave.test/h{i} HTTP/1.1\r\nHost: pool.enclave.test\r\n\r\n")
        } else {
            "CONNECT pool.enclave.test:443 HTTP/1.1\r\nHost: pool.enclave.test:443\r\n\r\n"
                .to_owned()
        };
        c.write_all(head.as_bytes()).await.expect("write");
        let response = common::read_response(&mut c).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "client {i}: {response}"
        );
        held.push(c);
    }
    let text = metrics_text(admin).await;
    let loads = gauge(&text, "ratls_thread_client_connections{");
    assert_eq!(loads.len(), 3, "{text}");
    assert_eq!(
        loads.iter().sum::<u64>(),
        12,
        "tunnels count too: {loads:?}"
    );
    let (min, max) = (loads.iter().min(), loads.iter().max());
    assert!(
        min.zip(max)
            .is_some_and(|(min, max)| *min >= 1 && max - min <= 3),
        "spread over the threads: {loads:?}"
    );
    drop(held);

    // The thread count is fixed at start: a reload applies the rest and says so.
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("threads = 3", "threads = 2")).expect("write");
    let out = curl_text(&["-X", "POST", &format!("http://127.0.0.1:{admin}/reload")]).await;
    let reloaded: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(reloaded["reloaded"], true, "{reloaded}");
    assert!(
        reloaded["detail"]
            .as_str()
            .is_some_and(|d| d.contains("limits.threads needs a restart")),
        "{reloaded}"
    );
    let names = thread_names(bin.child.id());
    let cores = names
        .iter()
        .filter(|n| n.starts_with("ratls-core-"))
        .count();
    assert_eq!(cores, 3, "still three threads after the reload: {names:?}");
}
