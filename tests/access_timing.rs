//! The access line's times of a relayed request, now that the clock is read for them only
//! when access lines are written (issue 30): originated through the proxy and on a sidecar
//! route, each line has its time to the upstream response and its whole time, the second no
//! shorter than the first.

mod common;

use std::time::Duration;

use ratls_proxy::sim::SimConfig;

use common::{access_lines, ask, env, free_port, get, start_sim, Binary, Harness};

const HOST: &str = "good.enclave.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_request_line_has_its_upstream_and_total_times() {
    let env = env();
    let sim = start_sim(&env, SimConfig::default()).await;
    let (proxy, route) = (free_port(), free_port());
    let config = Harness::new(&env)
        .listen(proxy)
        .enclave(HOST, sim.addr())
        .tail(&format!(
            "[[route]]\nlisten = \"127.0.0.1:{route}\"\nupstream = \"https://{HOST}\"\n"
        ))
        .write("access-timing.toml");
    let mut p = Binary::start(&config, proxy, &[], true).await;
    for _ in 0..1200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", route))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let originated = get(proxy, HOST, "/originated", "").await;
    assert!(originated.starts_with("HTTP/1.1 200"), "{originated}");
    let routed = ask(
        route,
        &format!("GET /routed HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(routed.starts_with("HTTP/1.1 200"), "{routed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = p.stop("-TERM").await;
    let access = access_lines(&lines);
    for path in ["/originated", "/routed"] {
        let line = access
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("a line for {path}: {lines:?}"));
        assert_eq!(line["verdict"], "accepted", "{line}");
        let upstream = line["upstream_ms"].as_f64().unwrap_or(-1.0);
        let total = line["total_ms"].as_f64().unwrap_or(-1.0);
        assert!(upstream >= 0.0, "{line}");
        assert!(total >= upstream, "{line}");
    }
}
