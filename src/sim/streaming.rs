//! What a sim enclave answers besides its JSON echo, to try WebSockets and streaming
//! through the proxy: `/ws` a WebSocket echo (RFC 6455: every data frame sent back as it
//! came, ping answered, close echoed), `/stream?n=N&ms=M` N chunks M ms apart (chunked,
//! `text/event-stream`), `/upload?ms=M` the size of the request body, read frame by frame
//! (never whole) after waiting M ms, `/bytes?n=N` N bytes as fast as the connection takes
//! them (a large download, for the benchmarks).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The body of every sim answer.
pub(super) type SimBody = BoxBody<Bytes, Infallible>;

/// A sim answer in the making.
pub(super) type Answer =
    Pin<Box<dyn Future<Output = Result<Response<SimBody>, Infallible>> + Send>>;

/// What the streaming endpoints count, for tests to observe the enclave's side.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// WebSocket data frames received.
    pub(super) frames: AtomicU64,
    /// `/stream` responses whose last chunk was handed to the connection.
    pub(super) streams_done: AtomicU64,
    /// Request body bytes `/upload` has received, counted frame by frame as they arrive.
    pub(super) uploaded: AtomicU64,
}

/// The largest WebSocket frame the echo accepts (it holds one frame at a time).
const MAX_FRAME: u64 = 16 << 20;

/// Longest wait any endpoint takes, whatever the query asks.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// `name=value` from a query string, as a number.
fn param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn full(status: StatusCode, body: String) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp
}

/// True for the paths [`answer`] serves (the rest get the echo).
pub(super) fn serves(path: &str) -> bool {
    matches!(path, "/ws" | "/stream" | "/upload" | "/bytes")
}

/// The answer of a streaming endpoint.
pub(super) fn answer(mut req: Request<Incoming>, counters: &Arc<Counters>) -> Answer {
    let counters = Arc::clone(counters);
    match req.uri().path() {
        "/ws" => Box::pin(std::future::ready(Ok(websocket(&mut req, counters)))),
        "/stream" => {
            let n = param(&req, "n").unwrap_or(5).min(10_000);
            let ms = param(&req, "ms").unwrap_or(100);
            let gap = Duration::from_millis(ms).min(MAX_WAIT);
            Box::pin(std::future::ready(Ok(stream(n, gap, counters))))
        }
        "/upload" => {
            let wait = Duration::from_millis(param(&req, "ms").unwrap_or(0)).min(MAX_WAIT);
            Box::pin(upload(req.into_body(), wait, counters))
        }
        "/bytes" => {
            let n = param(&req, "n").unwrap_or(0).min(MAX_BYTES);
            Box::pin(std::future::ready(Ok(bytes(n))))
        }
        other => {
            let body = format!("{other} is not a streaming endpoint\n");
            Box::pin(std::future::ready(Ok(full(StatusCode::NOT_FOUND, body))))
        }
    }
}

/// N chunks, `gap` apart, each handed over as it is made.
fn stream(n: u64, gap: Duration, counters: Arc<Counters>) -> Response<SimBody> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for i in 1..=n {
            if i > 1 {
                tokio::time::sleep(gap).await;
            }
            let chunk = Bytes::from(format!("data: chunk {i} of {n}\n\n"));
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        counters.streams_done.fetch_add(1, Ordering::Relaxed);
    });
    let mut resp = Response::new(Chunks(rx).boxed());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// A body whose frames are the chunks sent on a channel, ending when it closes.
struct Chunks(mpsc::Receiver<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// Counts the body's bytes frame by frame, after `wait`.
async fn upload(
    mut body: Incoming,
    wait: Duration,
    counters: Arc<Counters>,
) -> Result<Response<SimBody>, Infallible> {
    tokio::time::sleep(wait).await;
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                let n = f.data_ref().map_or(0, Bytes::len);
                bytes += n;
                let n = u64::try_from(n).unwrap_or(u64::MAX);
                counters.uploaded.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => return Ok(full(StatusCode::BAD_REQUEST, format!("{e}\n"))),
        }
    }
    Ok(full(StatusCode::OK, format!("{{\"bytes\":{bytes}}}\n")))
}

/// The largest `/bytes` answer (16 GiB).
const MAX_BYTES: u64 = 16 << 30;

/// Bytes handed over per `/bytes` frame.
const BYTES_CHUNK: usize = 64 * 1024;

/// `n` bytes with a `content-length`, in frames of [`BYTES_CHUNK`] (one shared buffer).
fn bytes(n: u64) -> Response<SimBody> {
    let chunk = Bytes::from(vec![b'x'; BYTES_CHUNK]);
    let mut resp = Response::new(Sized { chunk, left: n }.boxed());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `left` more bytes, as slices of one chunk.
struct Sized {
    chunk: Bytes,
    left: u64,
}

impl Body for Sized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.left).map_or(BYTES_CHUNK, |l| l.min(BYTES_CHUNK));
        self.left -= u64::try_from(n).unwrap_or(0);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// RFC 6455 4.2.2: the `Sec-WebSocket-Accept` that answers `key`.
fn accept_for(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// `101` and the echo on the upgraded connection, or 426 for a request that is no upgrade.
fn websocket(req: &mut Request<Incoming>, counters: Arc<Counters>) -> Response<SimBody> {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = req.headers().get("sec-websocket-key").filter(|_| upgrade) else {
        return full(
            StatusCode::UPGRADE_REQUIRED,
            "/ws is a WebSocket echo\n".into(),
        );
    };
    let accept = accept_for(key.as_bytes());
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on.await {
            let mut io = TokioIo::new(upgraded);
            // However the echo ends (the client's close, its end of stream), TLS ends politely.
            let _ = echo(&mut io, &counters.frames).await;
            let _ = io.shutdown().await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(http_body_util::Empty::new().boxed())
        .unwrap_or_default()
}

/// An unmasked frame from the server.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match u16::try_from(payload.len()) {
        Ok(n) if n < 126 => out.push(u8::try_from(n).unwrap_or(0)),
        Ok(n) => {
            out.push(126);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            out.push(127);
            out.extend_from_slice(&u64::try_from(payload.len()).unwrap_or(0).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Echoes frames until the client closes (or sends what this echo does not take).
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    frames: &AtomicU64,
) -> std::io::Result<()> {
    loop {
        let [first, second] = {
            let mut head = [0u8; 2];
            io.read_exact(&mut head).await?;
            head
        };
        let len = match second & 0x7f {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_FRAME {
            return Err(std::io::Error::other("frame too large for the sim's echo"));
        }
        let mut mask = [0u8; 4];
        if second & 0x80 != 0 {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; usize::try_from(len).unwrap_or(0)];
        io.read_exact(&mut payload).await?;
        for (byte, key) in payload.iter_mut().zip(mask.iter().cycle()) {
            *byte ^= key;
        }
        match first & 0x0f {
            // Close: echoed (RFC 6455 5.5.1), then the connection ends.
            0x8 => {
                io.write_all(&frame(0x88, &payload)).await?;
                return io.flush().await;
            }
            // Ping: answered with a pong carrying its payload.
            0x9 => io.write_all(&frame(0x8a, &payload)).await?,
            0xa => {}
            // Text, binary, continuation: sent back as they came.
            _ => {
                frames.fetch_add(1, Ordering::Relaxed);
                io.write_all(&frame(first, &payload)).await?;
            }
        }
        io.flush().await?;
    }
}
