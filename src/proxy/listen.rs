//! Listeners: binding the proxy and route listeners, their accept loops, the HTTP/1 server
//! every client-facing connection uses, and the sweep of idle pooled connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::client::admit::{http1_server, next_client, Admitted};
use super::cores;
use super::dispatch::{handle, LastTarget};
use super::http::inside::{self, Inside};
use super::refusal::ProxyRefusal;
use super::state::Proxy;
use crate::config::RefusalDetails;

/// A started proxy: its addresses and tasks (stopped on drop).
pub struct Running {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// Each sidecar route's address, in config order.
    pub route_addrs: Vec<SocketAddr>,
    /// Shared state (cache counters).
    pub proxy: Arc<Proxy>,
    tasks: Aborting,
}

impl Running {
    /// Waits until the listeners stop (normally never).
    pub async fn wait(&mut self) {
        for t in std::mem::take(&mut self.tasks.0) {
            let _ = t.await;
        }
    }

    /// Stops accepting, then waits up to `grace` for in-flight requests and tunnels.
    /// Returns how many were still running when the grace period ended.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        for t in std::mem::take(&mut self.tasks.0) {
            t.abort();
        }
        self.proxy.listening.store(false, Ordering::SeqCst);
        let left = self.proxy.drain.wait(grace).await;
        cores::barrier().await;
        left
    }
}

impl Proxy {
    /// Binds the proxy listener and every sidecar route, and serves. (The admin listener
    /// is started by whoever starts the proxy: `admin::start`.)
    pub async fn start(self: Arc<Self>) -> std::io::Result<Running> {
        let g = self.current();
        g.start_refresher();
        let max_connections = Arc::new(Semaphore::new(g.config.limits.max_connections));
        // Aborted if a later listener fails to bind: accept loops already running on the
        // cores would otherwise go on accepting for a proxy that did not start.
        let mut tasks = Aborting(vec![tokio::spawn(sweep_loop(Arc::clone(&self)))]);
        let (p, s) = (Arc::clone(&self), Arc::clone(&max_connections));
        let (addr, accepting) = cores::listen_on_each(g.config.listen, move |l| {
            accept_loop(Arc::clone(&p), l, Arc::clone(&s))
        })?;
        tasks.0.extend(accepting);
        let mut route_addrs = Vec::new();
        for route in &g.config.routes {
            let (p, s, listen) = (
                Arc::clone(&self),
                Arc::clone(&max_connections),
                route.listen,
            );
            let (bound, accepting) = cores::listen_on_each(route.listen, move |l| {
                route_loop(Arc::clone(&p), l, listen, Arc::clone(&s))
            })?;
            route_addrs.push(bound);
            tasks.0.extend(accepting);
        }
        self.add_own_addr(addr);
        for a in &route_addrs {
            self.add_own_addr(*a);
        }
        self.listening.store(true, Ordering::SeqCst);
        tracing::info!(%addr, routes = route_addrs.len(), enclaves = g.config.enclaves.len(), "ratls-proxy listening");
        Ok(Running {
            addr,
            route_addrs,
            proxy: self,
            tasks,
        })
    }
}

/// Tasks aborted on drop (a started proxy's, or those of one failing to start).
struct Aborting(Vec<JoinHandle<()>>);

impl Drop for Aborting {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Closes idle pooled upstream connections of every live generation, at half the idle
/// timeout (at most every 30 s).
async fn sweep_loop(proxy: Arc<Proxy>) {
    loop {
        let tick = (proxy.current().config.limits.idle_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        for g in proxy.generations() {
            g.pool.sweep();
        }
        tokio::time::sleep(tick).await;
    }
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener, admission: Arc<Semaphore>) {
    loop {
        let (tcp, client, admitted) = next_client(&listener, &admission).await;
        let proxy = Arc::clone(&proxy);
        cores::serve(tcp, move |tcp, load| async move {
            let admitted = Arc::new(Admitted::new(admitted, load, &proxy.metrics));
            let limits = proxy.current().config.limits;
            let io = admitted.io(tcp, &limits);
            let p = Arc::clone(&proxy);
            let last = Arc::new(LastTarget::default());
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&p);
                let admitted = Arc::clone(&admitted);
                let last = Arc::clone(&last);
                let serving = admitted.phase.serving();
                async move {
                    let _serving = serving;
                    Ok::<_, Infallible>(handle(proxy, admitted, &last, client, req).await)
                }
            });
            let served = http1_server(&limits)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%client, error = %e, "client connection ended with an error");
            }
        });
    }
}

/// A sidecar route's listener: plain HTTP in, attested TLS to one enclave out. Its
/// connections share `max_connections` with the proxy listener.
async fn route_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    listen: SocketAddr,
    admission: Arc<Semaphore>,
) {
    loop {
        let (tcp, client, admitted) = next_client(&listener, &admission).await;
        let proxy = Arc::clone(&proxy);
        cores::serve(tcp, move |tcp, load| async move {
            let admitted = Arc::new(Admitted::new(admitted, load, &proxy.metrics));
            let p = Arc::clone(&proxy);
            let held = Arc::clone(&admitted);
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&p);
                let serving = held.phase.serving();
                let admitted = Arc::clone(&held);
                async move {
                    let _serving = serving;
                    // Routes follow reloads: look the route up in the generation in force.
                    let g = proxy.current();
                    match g.route_target(listen).cloned() {
                        Some(target) => {
                            let to = (&target, Inside::Route);
                            inside::serve(proxy, g, to, client, &admitted, req).await
                        }
                        // Not recorded: a removed route's listener is closing.
                        None => Ok(ProxyRefusal::Unreachable(
                            "this route was removed by a reload".into(),
                        )
                        .response("-", RefusalDetails::Full)),
                    }
                }
            });
            let limits = proxy.current().config.limits;
            let io = admitted.io(tcp, &limits);
            // Upgrades: a WebSocket switches this connection to a byte relay.
            let _ = http1_server(&limits)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await;
        });
    }
}
