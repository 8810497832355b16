//! A reload that refuses the enclave while the proxy waits for a response head answers the
//! client at once, in every mode: the change wakes the wait (`Judge::refused_by_change`, woken
//! through the generation's `Notify` since issue 30), the client is not kept until the enclave
//! answers. `tests/origination_keepalive.rs` proves it for origination alone; here every mode,
//! HTTP/2 inside a tunnel included, waits at once on one proxy.

use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;

use crate::common::{env, reload, start_sim, Binary, Mode, Ports, MODES, OTHER, TRUSTED};
use crate::{judged, open};
use ratls_proxy::sim::SimConfig;

/// The status and body of `GET path` on a fresh client in `mode`, and when it was answered.
async fn answered(mut client: crate::Http, path: &str) -> (u16, String, Instant) {
    let resp = client.get(path).await;
    let status = resp.status().as_u16();
    let body = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("(body failed: {e})"),
    };
    (status, body, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_refuses_the_enclave_answers_heads_still_awaited_in_every_mode() {
    let env = env();
    let good = start_sim(&env, SimConfig::default()).await;
    let ports = Ports::free();
    let trail = env.dir.join("head.jsonl");
    let config = env.dir.join("head.toml");
    std::fs::write(&config, judged(&env, ports, good.addr(), TRUSTED, &trail)).expect("write");
    let _p = Binary::start(&config, ports.admin, &[], true).await;

    // Each mode's connection is attested and warm before its slow request.
    let mut waiting = Vec::new();
    for mode in MODES {
        let mut client = open(&env, ports, mode).await;
        assert_eq!(client.status("/warm").await, 200, "{mode:?}");
        // The enclave holds the answer 10 s (the sim's most).
        waiting.push((
            mode,
            tokio::spawn(async move { answered(client, "/slow?ms=10000").await }),
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&config, judged(&env, ports, good.addr(), OTHER, &trail)).expect("write");
    let reloaded = Instant::now();
    reload(ports.admin).await;

    for (mode, task) in waiting {
        let (status, body, at) = task.await.expect("the request task");
        assert_eq!(status, 502, "{mode:?}: refused by the reload: {body}");
        assert!(body.contains("mrenclave_mismatch"), "{mode:?}: {body}");
        // Not woken, the wait would end with the enclave's answer 9 s after the reload (then
        // be refused by the head's own check): the bound tells the two apart with seconds to
        // spare on a loaded machine.
        let took = at.saturating_duration_since(reloaded);
        assert!(
            took < Duration::from_secs(6),
            "{mode:?}: answered {took:?} after the reload: the change did not wake the wait"
        );
    }
    // Nothing new goes to the refused enclave.
    let mut client = open(&env, ports, Mode::Route).await;
    assert_eq!(client.status("/").await, 502);
}
