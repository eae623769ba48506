//! Sending batches with several requests in flight: an async POST over a
//! pool of keep-alive connections (hyper's client), resent whole after the
//! `Retry-After` of each `503`, as `post.rs` does for the blocking client.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A client that keeps its connections open between requests.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with up to `idle` open connections kept per host.
pub fn client(idle: usize) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .build_http()
}

/// POSTs `body` (a JSON array) to `url` until it is taken, waiting out
/// each `503` (the server took none of it, so a resend cannot duplicate).
/// A transport error is not retried: the server may have taken the
/// request without the answer arriving. Returns how many 503s were
/// answered.
pub async fn post_until_accepted(client: &HttpClient, url: &hyper::Uri, body: Bytes) -> Result<u64, String> {
    let mut refused = 0;
    loop {
        let request = hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| format!("POST {url}: {e}"))?;
        let response = client.request(request).await.map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let wait = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        // Read the answer to its end, so that the connection goes back to
        // the pool.
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?
            .to_bytes();
        match status.as_u16() {
            200..=299 => return Ok(refused),
            503 => {
                refused += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            code => return Err(format!("POST {url}: {code} {}", String::from_utf8_lossy(&answer))),
        }
    }
}
