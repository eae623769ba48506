//! The ingestion server itself.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::error::{ConfigError, RunError};
use crate::report::snapshot_json;
use crate::threaded::{Input, Pipeline, PutError, Running, Summary};

/// Settings of the ingestion server.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (bigger ones get 413). 8 MiB unless set.
    pub max_body_bytes: usize,
    /// How long a request waits for room in a full pipeline before 503.
    pub full_wait: Duration,
    /// The `Retry-After` a 503 suggests, in seconds.
    pub retry_after_secs: u64,
    /// Renders `GET /metrics` (404 when `None`).
    pub metrics_text: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("full_wait", &self.full_wait)
            .field("retry_after_secs", &self.retry_after_secs)
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
            full_wait: Duration::from_secs(1),
            retry_after_secs: 1,
            metrics_text: None,
        }
    }
}

impl ServerConfig {
    /// Checks the settings: a body limit of 0 would refuse every request.
    ///
    /// ```
    /// let config = paipa::glue::ServerConfig { max_body_bytes: 0, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid max_body_bytes: 0 (must be at least 1)");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", 0, "must be at least 1"));
        }
        Ok(())
    }
}

struct Shared<T> {
    input: Mutex<Option<Input<T>>>,
    running: Arc<Mutex<Option<Running>>>,
    config: ServerConfig,
}

/// A running ingestion server and the pipeline it feeds.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: Arc<Mutex<Option<Running>>>,
    close_input: Box<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Serves `input` (the live input of `running`) on `listener`, from a
/// background thread with its own tokio runtime. Invalid settings
/// ([`ServerConfig::validate`]) are an `InvalidInput` error; the pipeline
/// then drains what it had and stops.
///
/// ```no_run
/// use paipa::glue::{serve, ServerConfig};
/// use paipa::threaded::{Pipeline, Stage};
///
/// let mut pipeline = Pipeline::new().then(Stage::map("store", |v: serde_json::Value| v.to_string().len()))?;
/// let input = pipeline.input();
/// let running = pipeline.spawn()?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let server = serve(listener, input, running, ServerConfig::default())?;
/// server.stop_on_signals();               // SIGTERM / SIGINT: stop, drain, exit
/// let summary = server.wait()?;           // after shutdown
/// println!("{} stored", summary.items);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serve<T>(
    listener: std::net::TcpListener,
    input: Input<T>,
    running: Running,
    config: ServerConfig,
) -> std::io::Result<Server>
where
    T: DeserializeOwned + Send + 'static,
{
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let running = Arc::new(Mutex::new(Some(running)));
    let shared = Arc::new(Shared {
        input: Mutex::new(Some(input)),
        running: running.clone(),
        config: config.clone(),
    });
    let (stop, mut stopped) = watch::channel(false);
    let app = Router::new()
        .route("/ingest", post(ingest::<T>))
        .route("/health", get(health::<T>))
        .route("/stats", get(stats::<T>))
        .route("/metrics", get(metrics::<T>))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(shared.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("paipa-http")
        .build()?;
    let thread = std::thread::Builder::new().name("paipa-http".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(target: "paipa::glue", "cannot serve: {e}");
                    return;
                }
            };
            let shutdown = async move {
                while !*stopped.borrow() {
                    if stopped.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(target: "paipa::glue", "server error: {e}");
            }
        });
    })?;
    let close_shared = shared.clone();
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
        running,
        close_input: Box::new(move || {
            close_shared.input.lock().unwrap_or_else(|e| e.into_inner()).take();
        }),
    })
}

/// Takes a live input handle on `pipeline`, runs it in the background and
/// serves that input on `listener`: the usual way to start an ingestion
/// server. Invalid settings are refused before anything starts.
pub fn serve_pipeline<T, Out>(
    listener: std::net::TcpListener,
    mut pipeline: Pipeline<'static, T, Out>,
    config: ServerConfig,
) -> Result<Server, RunError>
where
    T: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
{
    config.validate()?;
    let input = pipeline.input();
    let running = pipeline.spawn()?;
    serve(listener, input, running, config).map_err(RunError::Spawn)
}

impl Server {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets requests in flight finish, then
    /// closes the pipeline's input (the pipeline drains). Idempotent.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Calls [`Server::shutdown`] on SIGTERM or SIGINT (Unix).
    pub fn stop_on_signals(&self) {
        let stop = self.stop.clone();
        let _ = std::thread::Builder::new().name("paipa-signals".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (Ok(mut term), Ok(mut int)) =
                        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                        _ = stop.closed() => return,
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                }
                let _ = stop.send(true);
            });
        });
    }

    /// Waits for shutdown (see [`Server::shutdown`]), then for the pipeline
    /// to drain, and returns its result.
    pub fn wait(mut self) -> Result<Summary, RunError> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.close_input)();
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        match running {
            Some(r) => r.wait(),
            None => Err(RunError::NoInput),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.close_input)();
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Parses a body: NDJSON if the content type says so, else one JSON value
/// or an array of them.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<Vec<T>, String> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl"));
    if ndjson {
        let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect();
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| serde_json::from_value(v).map_err(|e| format!("entry {i}: {e}")))
            .collect(),
        one => serde_json::from_value(one)
            .map(|v| vec![v])
            .map_err(|e| format!("entry: {e}")),
    }
}

async fn ingest<T: DeserializeOwned + Send + 'static>(
    State(shared): State<Arc<Shared<T>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let entries: Vec<T> = match parse(&headers, &body) {
        Ok(e) => e,
        Err(msg) => return json_response(StatusCode::BAD_REQUEST, serde_json::json!({ "error": msg })),
    };
    let total = entries.len();
    let worker = shared.clone();
    // Putting may wait for room: do it off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        let guard = worker.input.lock().unwrap_or_else(|e| e.into_inner());
        let Some(input) = guard.as_ref().cloned() else {
            return (0, Some(false));
        };
        drop(guard);
        // Hand entries over in batches the input's edge can hold: one
        // channel operation per batch, not per entry.
        let mut accepted = 0;
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let batch: Vec<T> = entries.by_ref().take(input.batch_size()).collect();
            let n = batch.len();
            match input.put_batch_timeout(batch, worker.config.full_wait) {
                Ok(()) => accepted += n,
                Err(PutError::Full(_) | PutError::TooLarge(_)) => return (accepted, Some(true)),
                Err(PutError::Closed(_)) => return (accepted, Some(false)),
            }
        }
        (accepted, None)
    })
    .await;
    let (accepted, failure) = outcome.unwrap_or((0, Some(false)));
    match failure {
        None => json_response(StatusCode::OK, serde_json::json!({ "accepted": accepted })),
        Some(full) => {
            let error = if full {
                "the pipeline is full"
            } else {
                "the pipeline no longer takes input"
            };
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "accepted": accepted, "of": total, "error": error }),
            );
            if full {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, shared.config.retry_after_secs.into());
            }
            r
        }
    }
}

async fn health<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    let alive = shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(Running::alive);
    if alive {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "pipeline not alive\n").into_response()
    }
}

async fn stats<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    let stats = shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(Running::stats);
    match stats {
        Some(s) => json_response(StatusCode::OK, snapshot_json(&s.snapshot())),
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "stopped" }),
        ),
    }
}

async fn metrics<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    match &shared.config.metrics_text {
        Some(render) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}
