//! A loopback HTTP origin answering canned bodies by path and query (404 for anything else)
//! and recording every request: the stand-in for AMD's KDS and AWS's CRL buckets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

/// Path and query → (status, body).
type Answers = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// The running origin; stopped when dropped.
pub struct Canned {
    addr: std::net::SocketAddr,
    answers: Answers,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canned {
    /// Listens on a loopback port and answers nothing yet.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answers: Answers = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a, h) = (Arc::clone(&answers), Arc::clone(&hits));
        let task = tokio::spawn(super::pccs::serve_http(listener, None, move |req| {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            h.lock().expect("hits").push(target.clone());
            let (status, body) = a
                .lock()
                .expect("answers")
                .get(&target)
                .cloned()
                .unwrap_or((404, Vec::new()));
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        }));
        Self {
            addr,
            answers,
            hits,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `path` (path and query, or a full URL of this origin) with 200 and `body`.
    pub fn serve(&self, path: &str, body: impl Into<Vec<u8>>) {
        let path = self.path_of(path);
        self.answers
            .lock()
            .expect("answers")
            .insert(path, (200, body.into()));
    }

    /// Stops answering `path` (404 from now on); what it answered, if anything.
    pub fn forget(&self, path: &str) -> Option<Vec<u8>> {
        let path = self.path_of(path);
        self.answers
            .lock()
            .expect("answers")
            .remove(&path)
            .map(|(_, body)| body)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.lock().expect("hits").len()
    }

    fn path_of(&self, path: &str) -> String {
        path.strip_prefix(&self.url()).unwrap_or(path).to_owned()
    }
}
