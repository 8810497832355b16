//! A plain tunnel: a CONNECT to a non-enclave destination under `unmatched =
//! "passthrough"`, answered and then relayed as bytes both ways.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::addr::Authority;
use crate::proxy::body::empty;
use crate::proxy::client::admit::Admitted;
use crate::proxy::exchange::{Outcome, Reply};
use crate::proxy::passthrough::dial::dial_plain;
use crate::proxy::state::{Generation, Proxy};

/// A plain CONNECT tunnel to a non-enclave destination.
pub(crate) async fn tunnel(
    proxy: &Arc<Proxy>,
    g: &Generation,
    admitted: Arc<Admitted>,
    req: Request<Incoming>,
    dest: &Authority,
) -> Reply {
    let started = Instant::now();
    let (mut upstream, open) = match dial_plain(proxy, g, dest).await {
        Ok(s) => s,
        Err(refusal) => return Reply::refused(refusal, dest),
    };
    let _ = upstream.set_nodelay(true);
    // Bytes, not HTTP, from here on: no request head to time.
    admitted.phase.off();
    let p = Arc::clone(proxy);
    tokio::spawn(async move {
        let _admitted = admitted;
        let _open = open;
        let _tunnel = p.drain.enter();
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            if let Ok((up, down)) =
                tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await
            {
                p.metrics
                    .bytes_to_upstreams
                    .fetch_add(up, Ordering::Relaxed);
                p.metrics
                    .bytes_to_clients
                    .fetch_add(down, Ordering::Relaxed);
            }
        }
    });
    Reply::Answered(Response::new(empty()), Outcome::passed(dest, started))
}
