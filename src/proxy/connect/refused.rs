//! A refused CONNECT to an enclave host, answered inside the tunnel for a browser.
//!
//! Browsers never show the body or headers of a failed CONNECT (only a generic tunnel
//! error), so a person would learn nothing of why. When `refusal_page` says so for this
//! client, the CONNECT gets 200, the client's TLS is completed with a leaf minted for the
//! host, and every request on that connection is answered by the proxy with 502,
//! `Proxy-Status` and the refusal (a page for `Accept: text/html`, else the JSON); then the
//! connection closes. Nothing is ever sent upstream: this path has no upstream at all.
//!
//! Counting: the CONNECT's access-log line carries the refusal's verdict and code (with
//! status 200, what the CONNECT got), so logs and metrics count the refusal exactly once,
//! as for the 502 other clients get. The requests answered inside are not counted again;
//! each is traced at debug level under `ratls_proxy::refused_tunnel`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use crate::addr::Authority;
use crate::config::{RefusalDetails, RefusalPage};
use crate::dcap::time::UnixTime;
use crate::proxy::body::empty;
use crate::proxy::client::admit::{http1_server, Admitted};
use crate::proxy::client::tls::{accept_client_tls, ClientTls};
use crate::proxy::exchange::{Named, Outcome, Reply};
use crate::proxy::refusal::{Format, ProxyRefusal};
use crate::proxy::state::{Generation, Proxy};

/// Whether this CONNECT's refusal is answered inside the tunnel.
fn wants_page(policy: RefusalPage, req: &Request<Incoming>) -> bool {
    match policy {
        RefusalPage::Never => false,
        RefusalPage::Always => true,
        // Every mainstream browser's User-Agent starts so; curl, libraries and agents
        // keep the plain 502 they can read.
        RefusalPage::Browsers => req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| ua.starts_with("Mozilla/")),
    }
}

/// The answer to a refused CONNECT to an enclave host: the refusal itself, or 200 and the
/// refusal inside the tunnel (see the module's documentation). Either way the outcome is
/// the refusal, for the access log and metrics.
pub(crate) fn refused_connect(
    proxy: &Arc<Proxy>,
    g: &Arc<Generation>,
    admitted: Arc<Admitted>,
    client: SocketAddr,
    req: Request<Incoming>,
    refusal: ProxyRefusal,
    dest: &Authority,
) -> Reply {
    if !wants_page(g.config.refusal_page, &req) {
        return Reply::refused(refusal, dest);
    }
    let host = dest.host.to_string();
    // Both protocols offered: the client picks, and nothing upstream constrains it.
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let tls = match proxy.ca.server_config(&host, alpn, UnixTime::now()) {
        Ok(t) => t,
        Err(e) => {
            // Without a leaf there is no page: the CONNECT gets the refusal as before.
            tracing::warn!(host, error = %e, "cannot mint a certificate for the refusal page");
            return Reply::refused(refusal, dest);
        }
    };
    let page = Page {
        refusal: refusal.clone(),
        host,
        details: g.config.refusal_details,
    };
    let limits = g.config.limits;
    let drain = Arc::clone(proxy);
    tokio::spawn(async move {
        // The page's connection holds the client's admission for its whole (short) life.
        let admitted = admitted;
        // HTTP/1 head timing is this module's own deadline here, not the phase's.
        admitted.phase.off();
        let stream = {
            let _handshake = drain.drain.enter();
            match accept_client_tls(req, tls, limits.client_tls_timeout, client, &page.host).await {
                Some(s) => s,
                None => return,
            }
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        // The client has this long after its handshake to ask and read: the page is one
        // small response, and a connection that lingers holds a place for nothing.
        let deadline = limits.header_read_timeout.max(Duration::from_secs(1));
        if tokio::time::timeout(deadline, serve(page, stream, h2, client, &limits))
            .await
            .is_err()
        {
            tracing::debug!(%client, "refusal page connection closed at its deadline");
        }
    });
    Reply::Answered(
        Response::new(empty()),
        Outcome::refused(refusal, Named::from(dest)),
    )
}

/// What every request inside the tunnel is answered with.
struct Page {
    refusal: ProxyRefusal,
    host: String,
    details: RefusalDetails,
}

/// Answers the connection's requests with the refusal, then closes it: HTTP/1.1 through
/// `connection: close` on the response, HTTP/2 through a graceful shutdown (GOAWAY) after
/// the first answer, which still lets requests already in flight get theirs.
async fn serve(
    page: Page,
    stream: Box<ClientTls>,
    h2: bool,
    client: SocketAddr,
    limits: &crate::config::Limits,
) {
    let answered = Arc::new(Notify::new());
    let told = Arc::clone(&answered);
    let page = Arc::new(page);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let format = Format::of(req.headers());
        tracing::debug!(
            target: "ratls_proxy::refused_tunnel",
            %client,
            host = %page.host,
            method = %req.method(),
            path = req.uri().path(),
            code = page.refusal.code(),
            "refusal page served"
        );
        let resp = page.refusal.in_tunnel(&page.host, page.details, format);
        told.notify_one();
        async move { Ok::<_, Infallible>(resp) }
    });
    let io = TokioIo::new(stream);
    let served = if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            () = answered.notified() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        http1_server(limits)
            .keep_alive(false)
            .serve_connection(io, service)
            .await
    };
    if let Err(e) = served {
        tracing::debug!(%client, error = %e, "refusal page connection ended with an error");
    }
}
