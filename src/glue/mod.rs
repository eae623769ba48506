//! Feeding a pipeline from outside: an HTTP ingestion server (feature
//! `http`), the reference's "glue", on axum and tokio.
//!
//! - `POST /ingest`: one JSON entry, a JSON array of entries, or NDJSON
//!   (`Content-Type: application/x-ndjson` or `application/jsonl`, matched
//!   case-insensitively; one entry per line). The body is read (within
//!   `body_timeout`, at most `max_body_bytes`) and parsed off the async
//!   workers: a malformed body gets `400` and nothing of it is put. Then the
//!   request's entries (at most `max_entries`) are put into the pipeline's
//!   live input as **one all-or-nothing hand-over**: `200 {"accepted": n}`
//!   means all `n` are in the pipeline; any other answer means none of them
//!   is, so a client may resend a refused request whole without
//!   duplicating anything. If the pipeline stays full for `full_wait`, the
//!   answer is `503` with `Retry-After` and `{"accepted": 0, "of": n, ...}`.
//!   Every error is JSON: `400`, `408` (body too slow), `413` (body over
//!   `max_body_bytes`, more than `max_entries` entries, or more than the
//!   pipeline's capacity), `503` (full, stopped, or too many requests in
//!   flight: `max_ingests`; always with `Retry-After`).
//! - `GET /health`: `200 ok` while the pipeline is alive, `503` otherwise.
//! - `GET /stats`: the current snapshot as JSON (`report::snapshot_json`),
//!   plus `"server": {"acknowledged", "refused_connections",
//!   "refused_full", "skipped", "errors"}`: entries answered `200`,
//!   connections refused, requests answered `503` because the pipeline
//!   stayed full for `full_wait`, entries any stage skipped, and the latest skipped entries' errors (`[{"stage",
//!   "worker", "error", "unix_time_s"}]`, oldest first, at most
//!   `recent_errors`; both for a [`serve_pipeline`] pipeline only: [`serve`]
//!   gets one already running and cannot watch its stages).
//! - `GET /dashboard` (feature `web` too): the live page of
//!   `report::WebReporter` for the served pipeline, fed from its stats
//!   once a second on `GET /dashboard/events` (server-sent events; each
//!   stream ends when shutdown starts), with `GET /dashboard/snapshot`
//!   answering what `/stats` does. Requests from another origin get `403`.
//! - `GET /metrics`: Prometheus text, with the `metrics` feature on and
//!   [`ServerConfig::with_prometheus`] (or whatever a `metrics_text` hook
//!   renders); `404` otherwise.
//!
//! What an acknowledgement promises: an entry answered `200` is in the
//! pipeline, and a clean shutdown processes it (or counts it as skipped)
//! before [`Server::wait`] returns. One bad entry costs no other client
//! anything: in a [`serve_pipeline`] pipeline, a stage that set no error
//! policy of its own skips an entry its step fails or panics on
//! ([`ServerConfig::skip_errors`], on by default), counts it as the
//! stage's `skipped` and lists its error in `/stats`, and the server keeps
//! serving. A stage may choose otherwise (`on_error(OnError::Fail)`), or
//! the server may opt back into failing (`skip_errors: false`; and
//! [`serve`] keeps the policies of the pipeline it is given, `Fail` by
//! default). Then the first failing entry fails the run: later requests
//! get `503`, `/health` answers `503`, what was in flight is discarded, and
//! [`Server::finish`] says exactly how many acknowledged entries were not
//! finished (processed + skipped + [`Drained::unfinished`] =
//! acknowledged).
//!
//! No client can hold the server: the head of a request must arrive
//! within `header_timeout`, its body within `body_timeout`, a connection
//! silent with no request handled is closed after `idle_timeout` (idle
//! keep-alive, or opened and never used), at most `max_connections` connections
//! are open (the next ones get `503` and are closed) and at most
//! `max_ingests` ingest requests are handled at once.
//!
//! [`serve_pipeline`] starts one. [`Server::shutdown`] (or SIGTERM / SIGINT with
//! [`Server::stop_on_signals`]) stops accepting connections, closes idle
//! and half-sent ones at once, lets requests in flight finish until
//! `shutdown_grace` and then closes every connection left (a second
//! signal, or [`Server::shutdown_now`], closes them at once); then
//! [`Server::wait`] closes the pipeline's input and drains it.

mod body;
mod config;
mod decode;
mod meter;
mod routes;
mod server;
mod skips;
mod state;

pub use config::ServerConfig;
pub use server::{serve, serve_pipeline, Drained, Server};
