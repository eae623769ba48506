//! The settings of the ingestion server, and the one place they are
//! checked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::net::limits::{check_count, check_hosts, check_wait, Limits};

/// Settings of the ingestion server.
///
/// Every wait a client can impose on the server is bounded: the head of a
/// request ([`header_timeout`](Self::header_timeout)), its body
/// ([`body_timeout`](Self::body_timeout)), a connection doing nothing
/// ([`idle_timeout`](Self::idle_timeout)),
/// the number of open connections and of ingest requests in flight, and,
/// once shutdown starts, the whole of it ([`shutdown_grace`](Self::shutdown_grace)).
/// Every field is checked by [`validate`](Self::validate), which names
/// the field and its bounds for a value out of them.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (bigger ones get 413). 8 MiB unless
    /// set; at most 1 GiB. A request's entries may take at most twice this
    /// once decoded (more get 413), so one request takes at most about 3
    /// times this in memory, its body included.
    pub max_body_bytes: usize,
    /// Most entries one request may carry (more get 413). A request is put
    /// into the pipeline as one all-or-nothing hand-over, so it must also
    /// fit in the pipeline's capacity: a request larger than the capacity
    /// gets 413 too. 2048 unless set (the default capacity); at most 2^24.
    pub max_entries: usize,
    /// How long a request waits for room for all its entries in a full
    /// pipeline before 503 (nothing of it is then taken). 1 ms to 365
    /// days; 1 s unless set.
    pub full_wait: Duration,
    /// The `Retry-After` a 503 suggests, in seconds. At most 86,400.
    pub retry_after_secs: u64,
    /// How long a connection may take to send a request's head, counted
    /// from the moment it is ready for one (opened, or its previous
    /// response sent), however it trickles bytes: so it also bounds an idle
    /// keep-alive connection. A head late past it is answered `408`.
    /// 1 ms to 365 days; 10 s unless set.
    pub header_timeout: Duration,
    /// How long a connection may stay silent (no byte read or written)
    /// with no request being handled before it is closed: an idle
    /// keep-alive connection, or one opened and never used (a head that
    /// stopped arriving is answered `408`). 1 ms to 365 days; 5 s unless
    /// set.
    pub idle_timeout: Duration,
    /// How long a request may take to send its body once its head is in
    /// (408 after that). 1 ms to 365 days; 30 s unless set.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight before it closes
    /// every connection left. Connections idle or still sending a head are
    /// closed at once. At most 365 days; 10 s unless set.
    pub shutdown_grace: Duration,
    /// How long [`Server::wait`](super::Server::wait) waits, once every
    /// connection is closed, for the pipeline to process what it holds.
    /// Past it, the wait returns [`RunError::Stuck`](crate::RunError::Stuck)
    /// naming the stage still busy, and the pipeline's threads are left
    /// running, detached (see `Running::stop_within`): what it held is then
    /// not known to be processed. `None`: as long as it takes. At most
    /// 365 days; 5 minutes unless set, so that a step that never returns
    /// cannot keep a stopping server for ever.
    pub drain_deadline: Option<Duration>,
    /// Most connections open at once. When they are all open, the one
    /// that has served nobody the longest (idle, or with a half-sent head)
    /// is closed to make room for a new one; when every one is handling a
    /// request, the new one is answered `503` (JSON, with `Retry-After`)
    /// and closed without reading its request (or, while as many again are
    /// being refused, closed without an answer). 1 to 65,536; 256 unless
    /// set.
    pub max_connections: usize,
    /// Most `POST /ingest` requests decoded or put at once: more wait
    /// their turn (decoding is CPU work, and the put waits at most
    /// `full_wait`). Bodies being received are bounded by bytes, not by
    /// requests: all of them together hold at most `max_ingests` ×
    /// `max_body_bytes`, past which a request gets `503` with
    /// `Retry-After` at once, nothing taken. So a client that trickles its
    /// body holds only the bytes it sent, never another client's turn.
    /// 1 to 4096; 16 unless set.
    pub max_ingests: usize,
    /// Most open event streams of the live page (`/dashboard/events`,
    /// feature `web`): past it, `503`. Never more than half of
    /// `max_connections` whatever this says, so that viewers of the page
    /// never take the connections `/ingest` and `/health` need; 0 turns
    /// the streams off. At most 65,536; 32 unless set.
    pub max_viewers: usize,
    /// Host names the server answers to besides IP addresses and
    /// `localhost` (with or without a port; `"*"` answers to every name).
    /// A request naming another host (or none: an HTTP/1.0 client that
    /// sends no `Host`) gets `421`, and one from another
    /// origin (an `Origin` other than its own `Host`) gets `403`: so a
    /// page that rebinds its own name to this server's address, or posts
    /// from another site, is refused. Empty unless set.
    pub allowed_hosts: Vec<String>,
    /// What a stage of a [`serve_pipeline`](super::serve_pipeline) pipeline that set no error
    /// policy of its own does with an entry its step fails (or panics) on.
    /// `true` (the default): skips it, as [`Stage::skip_errors`] does, so
    /// one bad entry costs no other client anything: the entry is counted
    /// as the stage's `skipped`, its error is listed in `/stats`
    /// (`server.errors`), and the server keeps serving. `false`: the
    /// pipeline's own default, [`OnError::Fail`](crate::threaded::OnError::Fail): the first failing entry
    /// fails the run, later requests get `503`, and [`Server::finish`](super::Server::finish)
    /// reports exactly which acknowledged entries were not finished. A
    /// stage whose policy was set (`skip_errors`, `retry`, `on_error`, with
    /// `on_error(OnError::Fail)` to fail whatever the server's default)
    /// keeps it either way. [`serve`](super::serve) takes a pipeline already running:
    /// its stages keep the policies they were built with.
    ///
    /// [`Stage::skip_errors`]: crate::threaded::Stage::skip_errors
    pub skip_errors: bool,
    /// How many of the latest skipped entries `/stats` lists in
    /// `server.errors` (oldest first, each with its stage, worker, error
    /// text cut at 1 KiB, and time), for a [`serve_pipeline`](super::serve_pipeline) pipeline.
    /// 0 to 10,000; 32 unless set; 0 lists none (`server.skipped` still
    /// counts them).
    pub recent_errors: usize,
    /// Renders `GET /metrics` (404 when `None`).
    pub metrics_text: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_entries", &self.max_entries)
            .field("full_wait", &self.full_wait)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("drain_deadline", &self.drain_deadline)
            .field("max_connections", &self.max_connections)
            .field("max_ingests", &self.max_ingests)
            .field("max_viewers", &self.max_viewers)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("skip_errors", &self.skip_errors)
            .field("recent_errors", &self.recent_errors)
            .field("metrics_text", &self.metrics_text.is_some())
            .finish()
    }
}

#[cfg(feature = "metrics")]
impl ServerConfig {
    /// Installs a Prometheus recorder as the process's `metrics` recorder
    /// and serves its text at `GET /metrics` (features `http` and
    /// `metrics`). Pair it with `report::MetricsReporter` on the pipeline.
    /// Fails if another recorder is installed already.
    pub fn with_prometheus(mut self) -> Result<Self, String> {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
        self.metrics_text = Some(Arc::new(move || handle.render()));
        Ok(self)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 8 * 1024 * 1024,
            max_entries: 2048,
            full_wait: Duration::from_secs(1),
            retry_after_secs: 1,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            drain_deadline: Some(Duration::from_secs(300)),
            max_connections: 256,
            max_ingests: 16,
            max_viewers: 32,
            allowed_hosts: Vec::new(),
            skip_errors: true,
            recent_errors: 32,
            metrics_text: None,
        }
    }
}

/// The largest `max_body_bytes`.
const MAX_BODY: usize = 1 << 30;

impl ServerConfig {
    /// Checks every setting against what the server can use: a zero limit
    /// would refuse every request, a zero wait would answer before anything
    /// could happen, and an enormous one would overflow the server's time
    /// arithmetic or hold memory no machine has. The error names the
    /// field and its bounds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::glue::ServerConfig;
    ///
    /// let config = ServerConfig { max_body_bytes: 0, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid max_body_bytes: 0 (must be between 1 and 1073741824)");
    ///
    /// let config = ServerConfig { full_wait: Duration::MAX, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.field(), "full_wait");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_count("max_body_bytes", self.max_body_bytes, 1, MAX_BODY)?;
        check_count("max_entries", self.max_entries, 1, 1 << 24)?;
        check_count("max_connections", self.max_connections, 1, 65_536)?;
        check_count("max_ingests", self.max_ingests, 1, 4096)?;
        check_count("max_viewers", self.max_viewers, 0, 65_536)?;
        check_count("recent_errors", self.recent_errors, 0, 10_000)?;
        if self.retry_after_secs > 86_400 {
            return Err(ConfigError::new(
                "retry_after_secs",
                self.retry_after_secs,
                "must be at most 86400 (a day)",
            ));
        }
        let ms = Duration::from_millis(1);
        check_wait("full_wait", self.full_wait, ms)?;
        check_wait("header_timeout", self.header_timeout, ms)?;
        check_wait("idle_timeout", self.idle_timeout, ms)?;
        check_wait("body_timeout", self.body_timeout, ms)?;
        check_wait("shutdown_grace", self.shutdown_grace, Duration::ZERO)?;
        if let Some(deadline) = self.drain_deadline {
            check_wait("drain_deadline", deadline, Duration::ZERO)?;
        }
        check_hosts("allowed_hosts", &self.allowed_hosts)
    }

    /// The connection limits of the server.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            retry_after_secs: self.retry_after_secs,
        }
    }

    /// Most open event streams of the live page.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) fn viewers(&self) -> usize {
        self.max_viewers.min(self.max_connections / 2)
    }

    /// Bytes a request's entries may take once decoded.
    pub(crate) fn decoding_budget(&self) -> usize {
        self.max_body_bytes.saturating_mul(2)
    }
}
