//! One request relayed over an attested upstream connection, its bodies under the
//! exchange's judge.

use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::metrics::Counting;
use crate::proxy::body::empty;
use crate::proxy::exchange::{Exchange, Named, OnCut, Outcome, Reply, Verdict};
use crate::proxy::judge::judged::Judged;
use crate::proxy::judge::{Checkpoint, Cut, Judge};
use crate::proxy::state::{DrainGuard, Generation, Proxy};
use crate::proxy::target::Target;
use crate::proxy::upstream::pool::Version;
use crate::proxy::upstream::rewrite::speak_for;

/// Sends one request over an attested connection to `target` and returns its response.
/// Both bodies go under the exchange's [`Judge`]; while the response head is awaited, a
/// change that refuses the enclave answers the client with the refusal at once.
pub(crate) async fn relay(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    target: &Arc<Target>,
    req: Request<Incoming>,
    exchange: &Exchange,
) -> Reply {
    let started = exchange.clock();
    // Mirror the client's HTTP version upstream where the pool can.
    let version = if req.version() == http::Version::HTTP_2 {
        Version::Http2
    } else {
        Version::Http1
    };
    let conn = match g.pool.checkout_for(target, &proxy.metrics, version).await {
        Ok(c) => c,
        Err(e) => return Reply::refused(e, target).at_enclave(),
    };
    let verdict = Arc::clone(conn.verdict());
    let judge = Arc::new(Judge::new(proxy, g, target, Arc::clone(&verdict)));
    let to_upstream = &proxy.metrics.bytes_to_upstreams;
    let req = req.map(|body| {
        if hyper::body::Body::is_end_stream(&body) {
            return empty();
        }
        let judged = Judged::new(
            body,
            Checkpoint::new(Arc::clone(&judge), Cut::Request),
            None::<OnCut>,
        );
        Counting::new(judged, Arc::clone(to_upstream)).boxed()
    });
    let sent = tokio::select! {
        sent = g.pool.send_on(target, conn, req) => sent,
        refusal = judge.refused_by_change(Cut::Request) => Err(refusal),
    };
    // The head passes the checkpoint like a chunk; a failure an upload's cut caused is
    // that cut.
    let mut checkpoint = Checkpoint::new(Arc::clone(&judge), Cut::Request);
    let mut resp = match sent.and_then(|resp| checkpoint.pass().map(|_| resp)) {
        Ok(resp) => resp,
        Err(e) => return Reply::refused(judge.refused().unwrap_or(e), target).at_enclave(),
    };
    speak_for(resp.headers_mut(), &verdict, g.config.attestation_header);
    let on_cut = exchange.on_cut(proxy, target, resp.status());
    let outcome = Outcome {
        host: Named::from(target),
        verdict: Verdict::Accepted(verdict),
        upstream: started.map(|s| s.elapsed()),
        enclave: true,
    };
    let counter = Arc::clone(&proxy.metrics.bytes_to_clients);
    // In flight until its body is done, not only its head: shutdown waits for it.
    let inflight = proxy.drain.enter();
    let resp = resp.map(|b| {
        let body = InFlight {
            body: b,
            _inflight: inflight,
        };
        let checkpoint = checkpoint.cutting(Cut::Response);
        Counting::new(Judged::new(body, checkpoint, Some(on_cut)), counter).boxed()
    });
    Reply::Answered(resp, outcome)
}

/// A response body counted as in flight (for shutdown's drain) until it ends or is dropped.
struct InFlight<B> {
    body: B,
    _inflight: DrainGuard,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
