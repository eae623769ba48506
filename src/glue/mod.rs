//! Feeding a pipeline from outside: an HTTP ingestion server (feature
//! `http`), the reference's "glue", on axum and tokio.
//!
//! - `POST /ingest`: one JSON entry, a JSON array of entries, or NDJSON
//!   (`Content-Type: application/x-ndjson`, one entry per line). The whole
//!   body is parsed first: a malformed body gets `400` and nothing of it is
//!   put. Then every entry is put into the pipeline's live input, and the
//!   response (`200 {"accepted": n}`) is sent only once all of them are in:
//!   nothing acknowledged is ever lost. If the pipeline stays full for
//!   `full_wait`, the response is `503` with `Retry-After` and
//!   `{"accepted": k, ...}`: the first `k` entries are in, the rest are not.
//!   A body over `max_body_bytes` gets `413`.
//! - `GET /health`: `200 ok` while the pipeline is alive, `503` otherwise.
//! - `GET /stats`: the current snapshot as JSON (`report::snapshot_json`).
//! - `GET /metrics`: Prometheus text, with the `metrics` feature on and
//!   [`ServerConfig::with_prometheus`] (or whatever a `metrics_text` hook
//!   renders); `404` otherwise.
//!
//! [`serve_pipeline`] starts one. [`Server::shutdown`] (or SIGTERM / SIGINT with
//! [`Server::stop_on_signals`]) stops accepting connections, lets requests
//! in flight finish, closes the pipeline's input, and drains the pipeline.

mod server;

pub use server::{serve, serve_pipeline, Server, ServerConfig};
