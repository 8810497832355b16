//! A refused enclave, as a browser sees it: the real binary answers a browser's CONNECT with
//! 200, completes its TLS with a leaf minted for the host, and answers every request inside
//! with 502, `Proxy-Status` and the refusal as a page (`Accept: text/html`) or JSON; other
//! clients keep the CONNECT's 502. The refused sim receives nothing, and the refusal is
//! counted once per CONNECT. (`tests/browser.rs` does the same with a real Chromium.)
#![cfg(feature = "sim")]

mod common;

use ratls_proxy::sim::SimEnclave;

use common::{
    ask_on, connect_as, curl, curl_text, curl_via, env, free_port, metrics, s, start_sim_with,
    tls_over, tls_through_as, Env, Harness,
};

const BROWSER: &str = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36\r\n";

async fn debug_sim(env: &Env) -> SimEnclave {
    start_sim_with(env, |c| c.spec.debug = true).await
}

/// One request over a TLS session inside the tunnel; the response's head and body.
async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &mut S,
    host: &str,
    accept: &str,
) -> String {
    let request = format!("GET /account HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n");
    ask_on(tls, &request).await
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_refusal_inside_the_tunnel_and_the_enclave_nothing() {
    let env = env();
    let debug = debug_sim(&env).await;
    let (port, admin) = (free_port(), free_port());
    let _proxy = Harness::new(&env)
        .listen(port)
        .admin(admin)
        .enclave("debug.enclave.test", debug.addr())
        .start_binary("p.toml")
        .await;
    let proxy = port;
    let host = "debug.enclave.test";

    // HTML for Accept: text/html (a browser's navigation), over HTTP/1.1.
    let mut tls = tls_through_as(proxy, host, &env.ca_pem(), BROWSER, &[b"http/1.1"]).await;
    let html_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let resp = get(&mut tls, host, html_accept).await;
    let lower = resp.to_ascii_lowercase();
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(lower.contains("content-type: text/html"), "{resp}");
    assert!(
        lower.contains(
            "proxy-status: ratls-proxy; error=tls_certificate_error; details=\"debug_enclave:"
        ),
        "{resp}"
    );
    assert!(lower.contains("connection: close"), "{resp}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{resp}"
    );
    let page = body(&resp);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("<code>debug_enclave</code>"), "{page}");
    assert!(page.contains("<code>debug.enclave.test</code>"), "{page}");
    assert!(page.contains("DEBUG mode"), "the operator's hint: {page}");
    assert!(
        !page.contains("<script") && !page.contains("src="),
        "{page}"
    );

    // JSON for anything else, on a new tunnel (the page's connection closes after one answer).
    let mut tls = tls_through_as(proxy, host, &env.ca_pem(), BROWSER, &[b"http/1.1"]).await;
    let resp = get(&mut tls, host, "application/json").await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    let json: serde_json::Value = serde_json::from_str(body(&resp)).expect("JSON body");
    assert_eq!(json["code"], "debug_enclave");
    assert_eq!(json["host"], host);
    assert!(!json["reasons"][0].as_str().expect("reason").is_empty());

    // HTTP/2 is offered too (browsers take it); the leaf still validates.
    let tls = tls_through_as(proxy, host, &env.ca_pem(), BROWSER, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    assert_eq!(
        debug.request_count(),
        0,
        "nothing may reach a refused enclave"
    );
    // Three CONNECTs, three refusals: the requests answered inside are not counted again.
    let m = metrics(admin).await;
    let key = "ratls_requests_total{host=\"debug.enclave.test\",verdict=\"refused\",code=\"debug_enclave\"}";
    assert_eq!(m.get(key), Some(&3.0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_keep_the_connect_502_unless_always_and_never_means_never() {
    let env = env();
    let debug = debug_sim(&env).await;
    let harness = |policy: &str, port: u16| {
        let h = Harness::new(&env)
            .listen(port)
            .enclave("debug.enclave.test", debug.addr());
        if policy.is_empty() {
            h
        } else {
            h.top(&format!("refusal_page = \"{policy}\""))
        }
    };
    let ca = env.ca_pem().display().to_string();
    let url = "https://debug.enclave.test/x";

    // The default ("browsers"): curl's CONNECT (User-Agent curl/…) still gets 502 + JSON.
    let port = free_port();
    let _p = harness("", port).start_binary("default.toml").await;
    let proxy = format!("http://127.0.0.1:{port}");
    let out = curl(s(&["-v", "-x", &proxy, "--cacert", &ca, url]), vec![]).await;
    let verbose = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success());
    assert!(verbose.contains("< http/1.1 502 bad gateway"), "{verbose}");
    assert!(verbose.contains("details=\"debug_enclave:"), "{verbose}");

    // "always": curl too gets the answer inside the tunnel (502 from "the origin", JSON).
    let port = free_port();
    let _p = harness("always", port).start_binary("always.toml").await;
    let proxy = format!("http://127.0.0.1:{port}");
    let out = curl(
        s(&["-x", &proxy, "--cacert", &ca, "-w", "\n%{http_code}", url]),
        vec![],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("\n502"), "{text}");
    assert!(text.contains("\"code\":\"debug_enclave\""), "{text}");

    // "never": even a browser's CONNECT gets the 502 itself.
    let port = free_port();
    let _p = harness("never", port).start_binary("never.toml").await;
    let (resp, _) = connect_as(port, "debug.enclave.test:443", BROWSER).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("\"code\":\"debug_enclave\""), "{resp}");

    assert_eq!(debug.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origination_and_unlisted_ports_negotiate_the_page_too() {
    let env = env();
    let debug = debug_sim(&env).await;
    let port = free_port();
    let _p = Harness::new(&env)
        .listen(port)
        .top("refusal_details = \"code\"")
        .enclave("debug.enclave.test", debug.addr())
        .start_binary("p.toml")
        .await;
    let proxy = format!("http://127.0.0.1:{port}");

    // http:// origination: HTML by Accept, JSON otherwise; reasons kept to the log ("code").
    let text = curl_text(&[
        "-i",
        "-x",
        &proxy,
        "-H",
        "Accept: text/html",
        "http://debug.enclave.test/x",
    ])
    .await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{text}"
    );
    assert!(text.contains("<code>debug_enclave</code>"), "{text}");
    assert!(
        text.contains("in its log"),
        "refusal_details = \"code\": {text}"
    );
    let text = curl_via(port, "http://debug.enclave.test/x").await;
    assert!(text.contains("\"code\":\"debug_enclave\""), "{text}");
    assert!(text.contains("\"reasons\":[]"), "{text}");

    // An enclave host at a port no entry lists: a browser gets the page for it as well.
    let (head, tcp) = connect_as(port, "debug.enclave.test:8443", BROWSER).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls_over(tcp, "debug.enclave.test", &env.ca_pem(), &[])
        .await
        .expect("the minted leaf validates");
    let resp = get(&mut tls, "debug.enclave.test:8443", "text/html").await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(
        resp.contains("<code>enclave_port_not_configured</code>"),
        "{resp}"
    );
    assert_eq!(debug.request_count(), 0);
}
