//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and `POST /reload`.
//! Loopback by default; it exposes no secrets (no keys, no API keys, no request bodies).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::proxy::{Proxy, HEADER_READ_TIMEOUT};
use crate::unix_time::UnixTime;

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{value}\n"))
}

async fn route(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let r = proxy.readiness(UnixTime::now());
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                status,
                &serde_json::json!({"ready": r.ready, "reasons": r.reasons}),
            )
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            proxy.render_metrics(UnixTime::now()),
        ),
        (&Method::POST, "/reload") => match proxy.reload().await {
            Ok(msg) => json(
                StatusCode::OK,
                &serde_json::json!({"reloaded": true, "detail": msg}),
            ),
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"reloaded": false, "error": e}),
            ),
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/reload") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "method not allowed"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics", "POST /reload"]}),
        ),
    }
}

/// Serves the admin endpoints on `listener` until the task is aborted.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(route(proxy, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
