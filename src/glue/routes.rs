//! The routes of the ingestion server: `/ingest`, `/health`, `/stats`,
//! `/metrics`, and the live page under `/dashboard` (feature `web`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::body::{receive, NotReceived};
use super::decode::{decode, Refusal};
use super::state::Shared;
use crate::net::answer;
use crate::report::json::snapshot_json_judged;
use crate::report::snapshot_json;
use crate::threaded::{PutError, Running};

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// How a body's entries are written, from its content type (matched
/// case-insensitively, parameters ignored): JSON (`application/json`,
/// `application/*+json`, or no content type) or NDJSON
/// (`application/x-ndjson`, `application/jsonl`). Anything else, such as
/// the `text/plain` or form types a page on another site can post without
/// asking, is refused.
fn format(headers: &HeaderMap) -> Result<bool, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let kind = value
        .to_str()
        .ok()
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match kind.as_deref() {
        Some("application/x-ndjson" | "application/jsonl") => Ok(true),
        Some(k) if k == "application/json" || (k.starts_with("application/") && k.ends_with("+json")) => Ok(false),
        _ => Err(format!(
            "Content-Type {:?} is not taken: send application/json (one entry or an array) or application/x-ndjson (one entry per line)",
            value.to_str().unwrap_or("(not text)")
        )),
    }
}

/// How a request's entries fared.
enum Fared {
    Accepted(usize),
    Full(usize),
    TooLarge(usize),
    Closed(usize),
}

pub(crate) async fn ingest<T: DeserializeOwned + Send + 'static>(
    State(shared): State<Arc<Shared<T>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &shared.config;
    let ndjson = match format(&headers) {
        Ok(ndjson) => ndjson,
        Err(refused) => return answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, refused),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match receive(
        body,
        declared,
        config.max_body_bytes,
        config.body_timeout,
        &shared.bodies,
    )
    .await
    {
        Ok(body) => body,
        Err(NotReceived::TooLarge) => {
            return answer::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", config.max_body_bytes),
            )
        }
        Err(NotReceived::TooSlow(limit)) => {
            return answer::error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {limit:?}"),
            )
        }
        Err(NotReceived::Busy) => {
            return answer::unavailable(
                "the server holds as many bodies as it may (max_ingests × max_body_bytes bytes): try again later",
                config.retry_after_secs,
            )
        }
        Err(NotReceived::Broken(why)) => {
            return answer::error(StatusCode::BAD_REQUEST, format!("cannot read the body: {why}"))
        }
    };
    // Decoding is CPU work: a turn of at most `max_ingests`, off the async
    // workers, so that /health and the other connections stay responsive.
    let Ok(_turn) = shared.ingests.acquire().await else {
        return answer::unavailable("the server is stopping", config.retry_after_secs);
    };
    let (max_entries, budget) = (config.max_entries, config.decoding_budget());
    let decoded = tokio::task::spawn_blocking(move || decode::<T>(ndjson, &body.bytes, max_entries, budget)).await;
    let entries = match decoded {
        Err(_) => return answer::unavailable("the server is stopping", config.retry_after_secs),
        Ok(Err(Refusal::Invalid(why))) => return answer::error(StatusCode::BAD_REQUEST, why),
        Ok(Err(Refusal::TooMany(max))) => {
            return answer::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("more than {max} entries in one request (max_entries)"),
            )
        }
        Ok(Err(Refusal::TooLarge(budget))) => {
            return answer::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the entries would take more than {budget} bytes of memory once decoded (twice max_body_bytes): send fewer or smaller values per request"
                ),
            )
        }
        Ok(Ok(entries)) if entries.is_empty() => {
            return json_response(StatusCode::OK, serde_json::json!({ "accepted": 0 }))
        }
        Ok(Ok(entries)) => entries,
    };
    let total = entries.len();
    let input = shared.input.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let outcome = match input {
        None => Fared::Closed(total),
        // One all-or-nothing hand-over: the request is in, or none of it
        // is, so a client may resend a refused request whole. Waiting for
        // room takes no thread of the runtime's (nor one per request): the
        // input's relay thread waits.
        Some(input) => match input.put_batch_async(entries, config.full_wait).await {
            Ok(()) => {
                shared.acknowledged.fetch_add(total as u64, Ordering::SeqCst);
                Fared::Accepted(total)
            }
            Err(PutError::Full(_)) => {
                shared.refused_full.fetch_add(1, Ordering::SeqCst);
                Fared::Full(total)
            }
            Err(PutError::TooLarge(_)) => Fared::TooLarge(total),
            Err(PutError::Closed(_)) => Fared::Closed(total),
        },
    };
    let unavailable = |body: serde_json::Value| {
        let mut r = json_response(StatusCode::SERVICE_UNAVAILABLE, body);
        r.headers_mut()
            .insert(header::RETRY_AFTER, config.retry_after_secs.into());
        r
    };
    match outcome {
        Fared::Accepted(n) => json_response(StatusCode::OK, serde_json::json!({ "accepted": n })),
        Fared::TooLarge(n) => answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{n} entries are more than the pipeline's capacity: send fewer per request"),
        ),
        Fared::Full(n) => unavailable(serde_json::json!({ "accepted": 0, "of": n, "error": "the pipeline is full" })),
        Fared::Closed(n) => {
            unavailable(serde_json::json!({ "accepted": 0, "of": n, "error": "the pipeline no longer takes input" }))
        }
    }
}

pub(crate) async fn health<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    let alive = shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(Running::alive);
    if alive {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        answer::error(StatusCode::SERVICE_UNAVAILABLE, "pipeline not alive")
    }
}

/// What `/stats` answers: the pipeline's snapshot and the server's
/// counts, with the verdict judged on the run's last seconds when
/// `recent` (the dashboard's view) rather than on the whole run; `None`
/// once the pipeline is gone.
pub(crate) fn stats_json<T>(shared: &Shared<T>, recent: bool) -> Option<serde_json::Value> {
    let stats = shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(Running::stats)?;
    let mut json = if recent {
        let mut history = shared.recent.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = stats.snapshot();
        let judged = history.judge(&snapshot);
        snapshot_json_judged(&snapshot, &judged)
    } else {
        snapshot_json(&stats.snapshot())
    };
    json["server"] = serde_json::json!({
        "acknowledged": shared.acknowledged.load(Ordering::SeqCst),
        "refused_connections": shared.refused_connections.load(Ordering::Relaxed),
        "refused_full": shared.refused_full.load(Ordering::SeqCst),
        "skipped": shared.skips.skipped.load(Ordering::SeqCst),
        "errors": shared.skips.errors(),
    });
    Some(json)
}

pub(crate) async fn stats<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    match stats_json(&shared, false) {
        Some(json) => json_response(StatusCode::OK, json),
        None => answer::error(StatusCode::SERVICE_UNAVAILABLE, "stopped"),
    }
}

pub(crate) async fn metrics<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    match &shared.config.metrics_text {
        Some(render) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => answer::error(StatusCode::NOT_FOUND, "metrics are not enabled"),
    }
}

/// The live page of `report::WebReporter`, at `/dashboard`, fed from the
/// pipeline's stats (feature `web`).
#[cfg(feature = "web")]
pub(crate) mod dashboard {
    use super::*;
    use crate::net::limits::{reached, STOPPING};
    use crate::report::web;

    pub(crate) async fn page() -> Response {
        web::page_response()
    }

    pub(crate) async fn snapshot<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
        match stats_json(&shared, true) {
            Some(json) => web::json_response(&json.to_string()),
            None => web::json_response("null"),
        }
    }

    /// A snapshot every second (or every half `idle_timeout`, if shorter:
    /// an open page is never an idle connection), until shutdown starts or
    /// the pipeline is gone; at most `max_viewers` at once.
    pub(crate) async fn events<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
        let max = shared.config.viewers();
        let Some(viewer) = web::Viewer::admit(&shared.viewers, max) else {
            return answer::unavailable(
                format!("{max} pages are open already (max_viewers)"),
                shared.config.retry_after_secs,
            );
        };
        let every = (shared.config.idle_timeout / 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
        let stop = shared.stop.clone();
        let state = (shared, stop, viewer, true);
        let stream = futures::stream::unfold(state, move |(shared, mut stop, viewer, first)| async move {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = reached(&mut stop, STOPPING) => return None,
                }
            }
            if *stop.borrow() >= STOPPING {
                return None;
            }
            let text: Arc<str> = stats_json(&shared, true)?.to_string().into();
            Some((text, (shared, stop, viewer, false)))
        });
        web::events_response(stream, every)
    }
}
