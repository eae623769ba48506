//! Feeding a pipeline from outside: an HTTP ingestion server (feature
//! `http`), the reference's "glue", on axum and tokio.
//!
//! - `POST /ingest`: one JSON entry, a JSON array of entries
//!   (`Content-Type: application/json` or `application/*+json`, or none),
//!   or NDJSON (`application/x-ndjson` or `application/jsonl`; one entry per
//!   line); content types match case-insensitively, and any other (the
//!   `text/plain` or form types a page on another site can post without
//!   asking) gets `415`. The body is received within `body_timeout`, at
//!   most `max_body_bytes`, and decoded off the async workers straight into
//!   the entry type, entry by entry: a malformed body gets `400` (its error
//!   quotes at most 256 bytes of it) and nothing of it is put, and entries
//!   that would take more than twice `max_body_bytes` of memory once decoded
//!   get `413` before they are built. Numbers decode as serde_json decodes
//!   them by default (64-bit integers exact, others as `f64`; a typed entry
//!   refuses a number it cannot hold). Then the
//!   request's entries (at most `max_entries`) are put into the pipeline's
//!   live input as **one all-or-nothing hand-over**: `200 {"accepted": n}`
//!   means all `n` are in the pipeline; any other answer means none of them
//!   is, so a client may resend a refused request whole without
//!   duplicating anything. If the pipeline stays full for `full_wait`, the
//!   answer is `503` with `Retry-After` and `{"accepted": 0, "of": n, ...}`.
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
//!   answering what `/stats` does; at most `max_viewers` event streams.
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
//! Every error answer, whoever makes it, is JSON of one shape,
//! `{"accepted": 0, "error": "..."}`: the routes' (`400`, `408`, `413`,
//! `415`, `503`), the connection layer's (`503` too many connections,
//! `421`, `403`) and those hyper makes itself for a request it cannot parse
//! (`400`, `414`, `431`, `408` for a head too slow).
//!
//! No client can hold the server: the head of a request must arrive
//! within `header_timeout`, its body within `body_timeout`, a connection
//! silent with no request handled is closed after `idle_timeout` (idle
//! keep-alive, or opened and never used), at most `max_connections`
//! connections are open (when all are, the one that served nobody the
//! longest is closed to make room for a newcomer; when all are handling
//! requests, the next ones get `503` and are closed), at most `max_ingests`
//! requests decode or put at once, and the bodies being received hold at
//! most `max_ingests` × `max_body_bytes` bytes together, each charged for
//! the bytes it sent: a client trickling its body holds nothing of another
//! client's.
//!
//! No page of another site can use a visitor's browser against the server:
//! a request must name it by an IP address, `localhost` or one of
//! [`ServerConfig::allowed_hosts`] (`421` otherwise, so a name rebound to
//! this address is refused), a request with an `Origin` other than its own
//! host gets `403`, and `/ingest` takes only JSON and NDJSON content types.
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
