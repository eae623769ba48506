//! POSTing a batch to an ingestion server, retry-safe: shared by the
//! products example and the test that runs it against a stalling server.

use std::time::Duration;

/// POSTs `body` (a JSON array) to `url`, resending it whole after the
/// `Retry-After` of each `503`: the server takes a request all or nothing,
/// so a 503 means none of it was taken and a resend cannot duplicate. A
/// transport error is not retried (the server may have taken the request
/// without the answer arriving). Returns how many 503s were answered.
pub fn post_until_accepted(agent: &ureq::Agent, url: &str, body: &str) -> Result<u64, String> {
    let mut refused = 0;
    loop {
        match agent
            .post(url)
            .set("Content-Type", "application/json")
            .send_string(body)
        {
            Ok(_) => return Ok(refused),
            Err(ureq::Error::Status(503, r)) => {
                refused += 1;
                let wait = r.header("Retry-After").and_then(|v| v.parse().ok()).unwrap_or(1);
                std::thread::sleep(Duration::from_secs(wait));
            }
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("POST {url}: {code} {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => return Err(format!("POST {url}: {e}")),
        }
    }
}
