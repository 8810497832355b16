//! The proxy's admin listener as an operator uses it, with curl: `/metrics` parsed, `POST
//! /reload`.

use std::collections::HashMap;

use super::client::curl_text;

/// The Prometheus text of `/metrics` on the admin listener at `admin`.
pub async fn metrics_text(admin: u16) -> String {
    curl_text(&[&format!("http://127.0.0.1:{admin}/metrics")]).await
}

/// `/metrics` as `name{labels}` → value; every line that is not a comment must parse.
pub async fn metrics(admin: u16) -> HashMap<String, f64> {
    parse_metrics(&metrics_text(admin).await)
}

/// `name{labels}` → value, from Prometheus text.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad metrics line {l}"));
            let v = v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {l}"));
            (k.to_owned(), v)
        })
        .collect()
}

/// One series' value (`name` with its labels, as printed), or -1 when it is absent.
pub async fn gauge(admin: u16, name: &str) -> f64 {
    metrics(admin).await.get(name).copied().unwrap_or(-1.0)
}

/// `POST /reload` on the admin listener at `admin`, asserting it took.
pub async fn reload(admin: u16) {
    let answer = curl_text(&["-X", "POST", &format!("http://127.0.0.1:{admin}/reload")]).await;
    assert!(answer.contains("\"reloaded\":true"), "{answer}");
}
