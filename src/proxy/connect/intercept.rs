//! Intercepting a CONNECT to an enclave host: the attested upstream connection and its
//! verdict come first; only then is the CONNECT answered, the client's TLS terminated with
//! a leaf minted for the host, and the tunnel's requests relayed over attested connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::dcap::time::UnixTime;
use crate::proxy::body::empty;
use crate::proxy::client::admit::{http1_server, Admitted};
use crate::proxy::client::tls::{accept_client_tls, ClientTls};
use crate::proxy::connect::refused::refused_connect;
use crate::proxy::exchange::{Exchange, Named, Outcome, Reply, Verdict};
use crate::proxy::http::inside::{self, Inside};
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::target::Target;

/// CONNECT to an enclave host: attest upstream, then answer 200 and serve the tunnel.
pub(crate) async fn intercept(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    admitted: Arc<Admitted>,
    client: SocketAddr,
    req: Request<Incoming>,
    target: Target,
) -> Reply {
    let host = target.dest.host.to_string();
    let started = Instant::now();
    // The attested connection and its verdict come before any answer to the client.
    let conn = match g.pool.checkout(&target, &proxy.metrics).await {
        Ok(c) => c,
        // Refused: the CONNECT gets the refusal, or (for a browser) 200 and the refusal
        // page inside the tunnel. Either way nothing goes upstream.
        Err(e) => {
            let refusal = e;
            return refused_connect(&proxy, &g, admitted, client, req, refusal, &target.dest)
                .at_enclave();
        }
    };
    // Mirror upstream's protocol, with HTTP/1.1 as a fallback: requests are relayed, not
    // bytes, so an HTTP/1.1-only client still works in front of an HTTP/2 enclave.
    let alpn: &[&[u8]] = if conn.is_h2() {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    };
    let verdict = Verdict::Accepted(Arc::clone(conn.verdict()));
    let upstream = started.elapsed();
    g.pool.checkin(&target, conn);
    let tls = match proxy.ca.server_config(&host, alpn, UnixTime::now()) {
        Ok(t) => t,
        Err(e) => {
            return Reply::refused(
                ProxyRefusal::Internal(format!("cannot mint a certificate for {host}: {e}")),
                &target.dest,
            )
            .at_enclave()
        }
    };
    let outcome = Outcome {
        host: Named::from(&target.dest),
        verdict,
        upstream: Some(upstream),
        enclave: true,
    };
    tokio::spawn(async move {
        // The tunnel holds the client's admission (and its phase) for its whole life.
        let admitted = admitted;
        let stream = {
            // The handshake holds shutdown open; the tunnel's idle traffic after it does not.
            let _tunnel = proxy.drain.enter();
            let timeout = g.config.limits.client_tls_timeout;
            // Boxed: the handshake's state is large and short-lived; inline it would stay
            // allocated in the task for the whole life of the tunnel.
            match Box::pin(accept_client_tls(req, tls, timeout, client, &host)).await {
                Some(s) => s,
                None => return,
            }
        };
        serve_tunnel(proxy, g, target, client, stream, &admitted).await;
    });
    Reply::Answered(Response::new(empty()), outcome)
}

/// A tunnel's next request goes out under the generation in force: after a reload its
/// destination is classified again (and its connections judged under the new policy);
/// a host no longer configured as an enclave gets a refusal, never a plain connection.
#[allow(clippy::type_complexity)]
fn in_force(
    proxy: &Proxy,
    current: &Mutex<(Arc<Generation>, Arc<Target>)>,
) -> Result<(Arc<Generation>, Arc<Target>), (Arc<Generation>, ProxyRefusal, Named)> {
    let now = proxy.current();
    let Ok(mut held) = current.lock() else {
        return Err((
            now,
            ProxyRefusal::Internal("tunnel state poisoned".into()),
            Named::Nothing,
        ));
    };
    if !Arc::ptr_eq(&held.0, &now) {
        let dest = held.1.dest.clone();
        match now.target(&dest) {
            Some(target) => *held = (Arc::clone(&now), Arc::new(target)),
            None => {
                let host = Named::from(&dest);
                return Err((
                    now,
                    ProxyRefusal::RequestDenied(format!(
                        "{dest} is no longer a configured enclave host (the configuration was reloaded)"
                    )),
                    host,
                ));
            }
        }
    }
    Ok((Arc::clone(&held.0), Arc::clone(&held.1)))
}

/// Serves the requests of one intercepted tunnel over the client's TLS session.
async fn serve_tunnel(
    proxy: Arc<Proxy>,
    g: Arc<Generation>,
    target: Target,
    client: SocketAddr,
    stream: Box<ClientTls>,
    admitted: &Arc<Admitted>,
) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        // HTTP/2 multiplexes: there is no "next head" to time, only the idle timeout.
        admitted.phase.off();
    }
    let limits = g.config.limits;
    let p = Arc::clone(&proxy);
    let phase = Arc::clone(&admitted.phase);
    // A WebSocket relay outlives this connection's service (an HTTP/1.1 upgrade ends it),
    // so it keeps the admission itself.
    let admitted = Arc::clone(admitted);
    // The generation and target the tunnel's last request used: shared, not rebuilt, by its
    // requests while no reload happens.
    let current = Arc::new(Mutex::new((g, Arc::new(target))));
    let service = hyper::service::service_fn(move |req| {
        let proxy = Arc::clone(&p);
        let judged = in_force(&proxy, &current);
        let serving = phase.serving();
        let admitted = Arc::clone(&admitted);
        async move {
            let _serving = serving;
            let _inflight = proxy.drain.enter();
            match judged {
                Ok((g, target)) => {
                    let to = (&target, Inside::Tunnel);
                    inside::serve(Arc::clone(&proxy), g, to, client, &admitted, req).await
                }
                Err((g, refusal, host)) => {
                    let exchange = Exchange::inside(client, &req);
                    let reply = Reply::refused(refusal, host).at_enclave();
                    Ok(exchange.finish(&proxy, &g, reply))
                }
            }
        }
    });
    let io = TokioIo::new(stream);
    // ALPN already chose the protocol, so no preface sniffing (hyper-util's auto builder):
    // its read-ahead doubled each connection's HTTP/1 read buffer to 16 KiB for its lifetime.
    // The listener's header limits apply inside the tunnel too.
    // WebSockets: extended CONNECT (RFC 8441) on HTTP/2, upgrades on HTTP/1.1.
    let served = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .enable_connect_protocol()
            .serve_connection(io, service)
            .await
    } else {
        // Head and body flattened into one buffer: rustls seals one record either way, and
        // its vectored write collects the slices into a Vec per response.
        http1_server(&limits)
            .writev(false)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    };
    if let Err(e) = served {
        tracing::debug!(%client, error = %e, "intercepted connection ended with an error");
    }
}
