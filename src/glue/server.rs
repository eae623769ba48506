//! The ingestion server itself.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::LengthLimitError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use serde::Deserializer as _;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::{ConfigError, RunError};
use crate::report::json::snapshot_json_judged;
use crate::report::snapshot_json;
use crate::stats::Snapshot;
use crate::threaded::{Input, OnError, Pipeline, PutError, Running, Skipped, StageDefaults, Summary};

/// Settings of the ingestion server.
///
/// Every wait a client can impose on the server is bounded: the head of a
/// request ([`header_timeout`](Self::header_timeout)), its body
/// ([`body_timeout`](Self::body_timeout)), a connection doing nothing
/// ([`idle_timeout`](Self::idle_timeout)),
/// the number of open connections and of ingest requests in flight, and,
/// once shutdown starts, the whole of it ([`shutdown_grace`](Self::shutdown_grace)).
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body accepted (bigger ones get 413). 8 MiB unless set.
    pub max_body_bytes: usize,
    /// Most entries one request may carry (more get 413). A request is put
    /// into the pipeline as one all-or-nothing hand-over, so it must also
    /// fit in the pipeline's capacity: a request larger than the capacity
    /// gets 413 too. 2048 unless set (the default capacity).
    pub max_entries: usize,
    /// How long a request waits for room for all its entries in a full
    /// pipeline before 503 (nothing of it is then taken). At least 1 ms.
    pub full_wait: Duration,
    /// The `Retry-After` a 503 suggests, in seconds.
    pub retry_after_secs: u64,
    /// How long a connection may take to send a request's head, counted
    /// from the moment it is ready for one (opened, or its previous
    /// response sent), however it trickles bytes: so it also bounds an idle
    /// keep-alive connection. At least 1 ms; 10 s unless set.
    pub header_timeout: Duration,
    /// How long a connection may stay silent (no byte read or written)
    /// with no request being handled before it is closed: an idle
    /// keep-alive connection, or one opened and never used. At least 1 ms;
    /// 5 s unless set.
    pub idle_timeout: Duration,
    /// How long a request may take to send its body once its head is in
    /// (408 after that). At least 1 ms; 30 s unless set.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight before it closes
    /// every connection left. Connections idle or still sending a head are
    /// closed at once. 10 s unless set.
    pub shutdown_grace: Duration,
    /// How long [`Server::wait`] waits, once every connection is closed,
    /// for the pipeline to process what it holds. `None` (the default):
    /// as long as it takes. Past it, the wait returns
    /// [`RunError::Stuck`] naming the stage still busy, and the pipeline's
    /// threads are left running, detached (see `Running::stop_within`):
    /// what it held is then not known to be processed.
    pub drain_deadline: Option<Duration>,
    /// Most connections open at once. A connection past the limit is
    /// answered `503` (JSON, with `Retry-After`) and closed without reading
    /// its request (or, while as many again are being refused, closed
    /// without an answer). At least 1; 256 unless set.
    pub max_connections: usize,
    /// Most `POST /ingest` requests handled at once (reading, parsing or
    /// putting); more get `503` with `Retry-After` at once, nothing taken.
    /// At least 1; 16 unless set.
    pub max_ingests: usize,
    /// What a stage of a [`serve_pipeline`] pipeline that set no error
    /// policy of its own does with an entry its step fails (or panics) on.
    /// `true` (the default): skips it, as [`Stage::skip_errors`] does, so
    /// one bad entry costs no other client anything: the entry is counted
    /// as the stage's `skipped`, its error is listed in `/stats`
    /// (`server.errors`), and the server keeps serving. `false`: the
    /// pipeline's own default, [`OnError::Fail`]: the first failing entry
    /// fails the run, later requests get `503`, and [`Server::finish`]
    /// reports exactly which acknowledged entries were not finished. A
    /// stage whose policy was set (`skip_errors`, `retry`, `on_error`, with
    /// `on_error(OnError::Fail)` to fail whatever the server's default)
    /// keeps it either way. [`serve`] takes a pipeline already running:
    /// its stages keep the policies they were built with.
    ///
    /// [`Stage::skip_errors`]: crate::threaded::Stage::skip_errors
    pub skip_errors: bool,
    /// How many of the latest skipped entries `/stats` lists in
    /// `server.errors` (oldest first, each with its stage, worker, error
    /// text cut at 1 KiB, and time), for a [`serve_pipeline`] pipeline.
    /// 32 unless set; 0 lists none (`server.skipped` still counts them).
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
            drain_deadline: None,
            max_connections: 256,
            max_ingests: 16,
            skip_errors: true,
            recent_errors: 32,
            metrics_text: None,
        }
    }
}

impl ServerConfig {
    /// Checks the settings: a zero body limit, entry limit, connection or
    /// request limit would refuse every request, and a zero wait or timeout
    /// would answer before anything could happen.
    ///
    /// ```
    /// let config = paipa::glue::ServerConfig { max_body_bytes: 0, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid max_body_bytes: 0 (must be at least 1)");
    ///
    /// let config = paipa::glue::ServerConfig { full_wait: std::time::Duration::ZERO, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid full_wait: 0ns (must be at least 1ms)");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_entries", self.max_entries),
            ("max_connections", self.max_connections),
            ("max_ingests", self.max_ingests),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(ConfigError::new(field, 0, "must be at least 1"));
            }
        }
        let waits = [
            ("full_wait", self.full_wait),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
        ];
        for (field, value) in waits {
            if value < Duration::from_millis(1) {
                return Err(ConfigError::new(field, format!("{value:?}"), "must be at least 1ms"));
            }
        }
        Ok(())
    }
}

struct Shared<T> {
    /// One handle, shared by the requests: its relay thread waits for
    /// room for every request in turn (see `Input::put_batch_async`).
    input: Mutex<Option<Arc<Input<T>>>>,
    running: Arc<Mutex<Option<Running>>>,
    config: ServerConfig,
    /// Ingest requests in flight.
    ingests: Arc<Semaphore>,
    /// Entries acknowledged with a 200.
    acknowledged: Arc<AtomicU64>,
    /// Connections refused because `max_connections` were open.
    refused_connections: Arc<AtomicU64>,
    /// Requests answered 503 because the pipeline stayed full for
    /// `full_wait` (nothing of them taken).
    refused_full: AtomicU64,
    /// Entries the pipeline's stages skipped.
    skips: Arc<SkipLog>,
    /// The shutdown level: dashboard event streams end when it starts.
    #[cfg_attr(not(all(feature = "web", not(loom))), allow(dead_code))]
    stop: watch::Receiver<u8>,
    /// The run's last seconds, for the dashboard's verdict.
    #[cfg_attr(not(all(feature = "web", not(loom))), allow(dead_code))]
    recent: Mutex<crate::report::Recent>,
}

/// The longest error text `/stats` keeps for one skipped entry: an error
/// may quote its entry, and a client chooses the entries.
const ERROR_TEXT_LIMIT: usize = 1024;

/// Entries the stages of a [`serve_pipeline`] pipeline skipped: how many,
/// and the errors of the latest.
struct SkipLog {
    skipped: AtomicU64,
    keep: usize,
    recent: Mutex<VecDeque<serde_json::Value>>,
}

impl SkipLog {
    fn new(keep: usize) -> Self {
        SkipLog {
            skipped: AtomicU64::new(0),
            keep,
            recent: Mutex::new(VecDeque::with_capacity(keep.min(64))),
        }
    }

    /// Called on the worker that skipped the entry; never panics (a
    /// panicking skip hook would fail the run).
    fn record(&self, skipped: &Skipped) {
        self.skipped.fetch_add(1, Ordering::SeqCst);
        if self.keep == 0 {
            return;
        }
        let mut cut = skipped.error.len().min(ERROR_TEXT_LIMIT);
        while !skipped.error.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut error = skipped.error[..cut].to_string();
        if cut < skipped.error.len() {
            error.push('…');
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let entry = serde_json::json!({
            "stage": skipped.stage,
            "worker": skipped.worker,
            "error": error,
            "unix_time_s": time,
        });
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == self.keep {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    fn errors(&self) -> serde_json::Value {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::Value::Array(recent.iter().cloned().collect())
    }
}

/// Shutdown levels sent to the server thread.
const SERVING: u8 = 0;
/// Stop accepting, close idle connections, let requests finish until the
/// grace deadline.
const STOPPING: u8 = 1;
/// Close every connection now.
const FORCED: u8 = 2;

/// A running ingestion server and the pipeline it feeds.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<u8>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: Arc<Mutex<Option<Running>>>,
    close_input: Box<dyn Fn() + Send + Sync>,
    acknowledged: Arc<AtomicU64>,
    drain_deadline: Option<Duration>,
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
/// The pipeline is already running, so the server cannot change it: its
/// stages keep the error policies they were built with ([`OnError::Fail`]
/// unless set, so one bad entry fails the run), and `/stats` counts their
/// skips per stage only (`server.skipped` and `server.errors` stay empty).
/// [`serve_pipeline`] applies [`ServerConfig::skip_errors`] and lists the
/// errors.
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
    let skips = Arc::new(SkipLog::new(config.recent_errors));
    serve_with(listener, input, running, config, skips)
}

fn serve_with<T>(
    listener: std::net::TcpListener,
    input: Input<T>,
    running: Running,
    config: ServerConfig,
    skips: Arc<SkipLog>,
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
    let acknowledged = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(SERVING);
    let shared = Arc::new(Shared {
        input: Mutex::new(Some(Arc::new(input))),
        running: running.clone(),
        config: config.clone(),
        ingests: Arc::new(Semaphore::new(config.max_ingests)),
        acknowledged: acknowledged.clone(),
        refused_connections: Arc::new(AtomicU64::new(0)),
        refused_full: AtomicU64::new(0),
        skips,
        stop: stopped.clone(),
        recent: Mutex::default(),
    });
    let refused = shared.refused_connections.clone();
    let app = Router::new()
        .route("/ingest", post(ingest::<T>))
        .route("/health", get(health::<T>))
        .route("/stats", get(stats::<T>))
        .route("/metrics", get(metrics::<T>));
    #[cfg(all(feature = "web", not(loom)))]
    let app = app
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page))
        .route("/dashboard/snapshot", get(dashboard::snapshot::<T>))
        .route("/dashboard/events", get(dashboard::events::<T>));
    let app = app.with_state(shared.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("paipa-http")
        .build()?;
    let (full_wait, drain_deadline) = (config.full_wait, config.drain_deadline);
    let thread = std::thread::Builder::new().name("paipa-http".into()).spawn(move || {
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, app, &config, stopped, refused).await,
                Err(e) => tracing::error!(target: "paipa::glue", "cannot serve: {e}"),
            }
        });
        // A put still waiting for room (at most `full_wait`) is not waited
        // for past that: its client was cut off and never got an answer.
        rt.shutdown_timeout(full_wait);
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
        acknowledged,
        drain_deadline,
    })
}

/// Waits until the shutdown level reaches `level` (or the server is gone).
async fn reached(stop: &mut watch::Receiver<u8>, level: u8) {
    let _ = stop.wait_for(|l| *l >= level).await;
}

/// Accepts connections until shutdown, then closes them: idle ones at once,
/// busy ones once their request is answered, and every one left when the
/// grace period ends (or at once on a forced shutdown).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &ServerConfig,
    mut stop: watch::Receiver<u8>,
    refused: Arc<AtomicU64>,
) {
    let open = Arc::new(Semaphore::new(config.max_connections));
    // Connections being refused (each for at most 2 s): past as many again,
    // a connection is closed without an answer.
    let refusing = Arc::new(Semaphore::new(config.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = reached(&mut stop, STOPPING) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a
                        // little rather than spin.
                        tracing::warn!(target: "paipa::glue", "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let activity = Arc::new(Activity::new());
                        let service = {
                            let (service, activity) = (TowerToHyperService::new(app.clone()), activity.clone());
                            hyper::service::service_fn(move |request| {
                                let handling = Handling::start(&activity);
                                let response = hyper::service::Service::call(&service, request);
                                async move {
                                    let response = response.await;
                                    drop(handling);
                                    response
                                }
                            })
                        };
                        let io = TokioIo::new(Tracked { io: stream, activity: activity.clone() });
                        let conn = http.serve_connection(io, service);
                        connections.spawn(serve_connection(conn, activity, config.idle_timeout, stop.clone(), permit));
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            connections.spawn(refuse_connection(stream, config.retry_after_secs, permit));
                        }
                    }
                }
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = tokio::time::sleep_until(deadline) => break,
            () = reached(&mut stop, FORCED) => break,
        }
    }
    if !connections.is_empty() {
        tracing::warn!(
            target: "paipa::glue",
            "closing {} connections still open at the shutdown deadline",
            connections.len()
        );
    }
    connections.shutdown().await;
}

/// What a connection is doing: when it last read or wrote a byte, and how
/// many requests it is handling.
struct Activity {
    born: std::time::Instant,
    /// Milliseconds since `born` of the last byte read or written.
    last: AtomicU64,
    handling: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            born: std::time::Instant::now(),
            last: AtomicU64::new(0),
            handling: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the connection has been silent with no request handled
    /// (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.handling.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let now = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A request being handled on a connection (until dropped).
struct Handling(Arc<Activity>);

impl Handling {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::SeqCst);
        Handling(activity.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP stream that records its activity.
struct Tracked {
    io: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, until it stays idle for
/// `idle_timeout`, or until shutdown asks it to close (at once if idle or
/// still sending a head, after its response if not).
async fn serve_connection<C>(
    conn: C,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    mut stop: watch::Receiver<u8>,
    _permit: OwnedSemaphorePermit,
) where
    C: std::future::Future + GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        let idle_for = activity.idle_for();
        if idle_for >= idle_timeout {
            break;
        }
        // Check again when the idle time could have run out.
        let check = (idle_timeout - idle_for).max(Duration::from_millis(1));
        tokio::select! {
            _ = conn.as_mut() => return,
            () = reached(&mut stop, STOPPING) => break,
            () = tokio::time::sleep(check) => {}
        }
    }
    conn.as_mut().shut_down_gracefully();
    // Idle: hyper closes it at once. A partly sent head may still be
    // waited for by hyper until `header_timeout`; shutdown's deadline
    // bounds that too.
    let _ = conn.await;
}

/// A hyper connection that can be asked to finish.
trait GracefulConnection {
    fn shut_down_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Answers a connection past `max_connections` with a 503 without reading
/// its request, then closes it. Bounded in time.
async fn refuse_connection(mut stream: tokio::net::TcpStream, retry_after_secs: u64, _permit: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"error":"too many connections","accepted":0}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {retry_after_secs}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let limit = Duration::from_secs(1);
    if let Ok(Ok(())) = tokio::time::timeout(limit, stream.write_all(reply.as_bytes())).await {
        let _ = stream.shutdown().await;
        // Read what the client sent until it closes (briefly), so that the
        // close is not a reset that could destroy the reply in flight.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(limit, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// Takes a live input handle on `pipeline`, runs it in the background and
/// serves that input on `listener`: the usual way to start an ingestion
/// server. Invalid settings are refused before anything starts.
///
/// Stages that set no error policy of their own skip a failing entry
/// unless [`ServerConfig::skip_errors`] is `false`, and every entry any
/// stage skips is counted and listed in `/stats` (`server.skipped`,
/// `server.errors`).
pub fn serve_pipeline<T, Out>(
    listener: std::net::TcpListener,
    pipeline: Pipeline<'static, T, Out>,
    config: ServerConfig,
) -> Result<Server, RunError>
where
    T: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
{
    config.validate()?;
    let skips = Arc::new(SkipLog::new(config.recent_errors));
    let log = skips.clone();
    let mut pipeline = pipeline.stage_defaults(StageDefaults {
        policy: if config.skip_errors {
            OnError::Skip
        } else {
            OnError::Fail
        },
        on_skip: Some(Arc::new(move |skipped: &Skipped| log.record(skipped))),
    });
    let input = pipeline.input();
    let running = pipeline.spawn()?;
    serve_with(listener, input, running, config, skips).map_err(RunError::Spawn)
}

impl Server {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Entries acknowledged so far (answered `200`): each of them is in the
    /// pipeline.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::SeqCst)
    }

    /// Starts shutdown: stops accepting connections, closes idle ones and
    /// ones still sending a request's head at once, lets requests in
    /// flight finish for at most [`ServerConfig::shutdown_grace`], then
    /// closes every connection left. [`Server::wait`] then closes the
    /// pipeline's input and drains it. Idempotent.
    pub fn shutdown(&self) {
        self.raise(STOPPING);
    }

    /// Shuts down without the grace period: every connection is closed at
    /// once (a request cut off this way is not acknowledged). What was
    /// acknowledged is still drained by [`Server::wait`].
    pub fn shutdown_now(&self) {
        self.raise(FORCED);
    }

    fn raise(&self, level: u8) {
        self.stop.send_if_modified(|l| {
            let raise = *l < level;
            if raise {
                *l = level;
            }
            raise
        });
    }

    /// On SIGTERM or SIGINT (Unix; Ctrl-C elsewhere) calls
    /// [`Server::shutdown`]; on a second one, [`Server::shutdown_now`].
    ///
    /// Returns once the signal handlers are installed (Unix): a signal sent
    /// after it returns is handled, never the default action (which would
    /// end the process).
    pub fn stop_on_signals(&self) {
        let stop = self.stop.clone();
        let (ready, installed) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("paipa-signals".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                #[cfg(unix)]
                let (mut term, mut int) = {
                    use tokio::signal::unix::{signal, SignalKind};
                    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                        (Ok(term), Ok(int)) => (term, int),
                        _ => return,
                    }
                };
                // Installed (tokio sets the handlers as it makes the streams).
                let _ = ready.send(());
                for level in [STOPPING, FORCED] {
                    #[cfg(unix)]
                    let signalled = async {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                    };
                    #[cfg(not(unix))]
                    let signalled = async {
                        let _ = tokio::signal::ctrl_c().await;
                    };
                    tokio::select! {
                        () = signalled => {}
                        () = stop.closed() => return,
                    }
                    tracing::info!(
                        target: "paipa::glue",
                        "{}",
                        if level == STOPPING { "signal: shutting down" } else { "second signal: closing every connection now" }
                    );
                    stop.send_if_modified(|l| {
                        let raise = *l < level;
                        if raise {
                            *l = level;
                        }
                        raise
                    });
                }
            });
        });
        if spawned.is_ok() {
            // Returns as soon as the handlers are in, or the thread gave up
            // (no runtime, no handlers: the sender is dropped).
            let _ = installed.recv();
        }
    }

    /// Waits for shutdown (see [`Server::shutdown`]: every connection is
    /// closed by the grace deadline), then closes the pipeline's input,
    /// drains the pipeline, and returns its result. If the run failed, what
    /// it did not finish of the acknowledged entries is logged (see
    /// [`Server::finish`] for the figures).
    pub fn wait(self) -> Result<Summary, RunError> {
        let drained = self.finish();
        if drained.result.is_err() {
            tracing::error!(
                target: "paipa::glue",
                "the pipeline failed: {} acknowledged entries, {} of them (in each stage's units) not finished",
                drained.acknowledged,
                drained.unfinished()
            );
        }
        drained.result
    }

    /// As [`Server::wait`], with the books: how many entries were
    /// acknowledged and the run's final snapshot, so that a failed run
    /// reports exactly what it did not finish.
    pub fn finish(mut self) -> Drained {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.close_input)();
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        let acknowledged = self.acknowledged();
        match running {
            Some(r) => {
                let stats = r.stats();
                let result = match self.drain_deadline {
                    Some(deadline) => r.stop_within(deadline),
                    None => r.stop(),
                };
                Drained {
                    acknowledged,
                    snapshot: stats.snapshot(),
                    result,
                }
            }
            None => Drained {
                acknowledged,
                snapshot: Snapshot {
                    pipeline: String::new(),
                    elapsed: Duration::ZERO,
                    stages: Vec::new(),
                    is_final: true,
                    stalls: Vec::new(),
                    expected: None,
                    outcome: None,
                    edges: Vec::new(),
                    inputs: None,
                },
                result: Err(RunError::NoInput),
            },
        }
    }
}

/// What a server's pipeline did with what the server acknowledged
/// ([`Server::finish`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Drained {
    /// Entries answered `200`: every one of them was put into the pipeline.
    pub acknowledged: u64,
    /// The stats of every stage once the pipeline was joined.
    pub snapshot: Snapshot,
    /// The run's result.
    pub result: Result<Summary, RunError>,
}

impl Drained {
    /// Entries the run took but did not finish: every stage's `failed` and
    /// `discarded`, and what was left on its input edge (`queue_depth`),
    /// each in that stage's own units (entries, for stages that emit one
    /// item per input). 0 for a run that ended cleanly. For such a
    /// pipeline, `acknowledged` = what came out of the last stage + every
    /// stage's `skipped` + `unfinished()`.
    pub fn unfinished(&self) -> u64 {
        self.snapshot
            .stages
            .iter()
            .map(|s| s.failed + s.discarded + s.queue_depth as u64)
            .sum()
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

fn json_error(status: StatusCode, error: impl fmt::Display) -> Response {
    json_response(status, serde_json::json!({ "accepted": 0, "error": error.to_string() }))
}

/// A 503 with `Retry-After`: nothing of the request was taken.
fn unavailable(config: &ServerConfig, body: serde_json::Value) -> Response {
    let mut r = json_response(StatusCode::SERVICE_UNAVAILABLE, body);
    r.headers_mut()
        .insert(header::RETRY_AFTER, config.retry_after_secs.into());
    r
}

/// Why a body was refused.
enum Refusal {
    /// Malformed (400).
    Invalid(String),
    /// More entries than `max_entries` (413).
    TooMany(usize),
}

/// Whether the content type says NDJSON (case-insensitive, parameters
/// ignored).
fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/x-ndjson" || v == "application/jsonl")
}

/// Parses a body: NDJSON if `ndjson`, else one JSON value or an array of
/// them; at most `max_entries` entries. Every entry is read as JSON first,
/// so a syntax error is reported as one (not as a type mismatch).
fn parse<T: DeserializeOwned>(ndjson: bool, body: &[u8], max_entries: usize) -> Result<Vec<T>, Refusal> {
    let invalid = Refusal::Invalid;
    if ndjson {
        let text = std::str::from_utf8(body).map_err(|e| invalid(format!("body is not UTF-8: {e}")))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            if entries.len() == max_entries {
                return Err(Refusal::TooMany(max_entries));
            }
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| invalid(format!("line {}: invalid JSON: {e}", i + 1)))?;
            entries.push(serde_json::from_value(value).map_err(|e| invalid(format!("line {}: {e}", i + 1)))?);
        }
        return Ok(entries);
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        // An array is refused as soon as it holds one entry too many: a
        // huge array of small entries is never built.
        let mut de = serde_json::Deserializer::from_slice(body);
        let items = match de
            .deserialize_seq(CappedArray(max_entries))
            .and_then(|items| de.end().map(|()| items))
        {
            Ok(items) => items,
            Err(e) if e.to_string().starts_with(TOO_MANY) => return Err(Refusal::TooMany(max_entries)),
            Err(e) => return Err(invalid(format!("invalid JSON: {e}"))),
        };
        return items
            .into_iter()
            .enumerate()
            .map(|(i, v)| serde_json::from_value(v).map_err(|e| invalid(format!("entry {i}: {e}"))))
            .collect();
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| serde_json::from_value(v).map_err(|e| invalid(format!("entry {i}: {e}"))))
            .collect(),
        one => serde_json::from_value(one)
            .map(|v| vec![v])
            .map_err(|e| invalid(format!("entry: {e}"))),
    }
}

/// The message `CappedArray` fails with when an array is too long.
const TOO_MANY: &str = "paipa: too many entries";

/// Reads a JSON array of at most `.0` values, failing at the first one
/// past that.
struct CappedArray(usize);

impl<'de> serde::de::Visitor<'de> for CappedArray {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            if items.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// How a request's entries fared.
enum Outcome {
    Accepted(usize),
    Refused(Refusal),
    Full(usize),
    TooLarge(usize),
    Closed(usize),
}

async fn ingest<T: DeserializeOwned + Send + 'static>(
    State(shared): State<Arc<Shared<T>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &shared.config;
    let Ok(_permit) = shared.ingests.clone().try_acquire_owned() else {
        return unavailable(
            config,
            serde_json::json!({ "accepted": 0, "error": "too many requests in flight" }),
        );
    };
    let too_big = || {
        json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({
                "accepted": 0,
                "error": format!("the body is larger than {} bytes", config.max_body_bytes),
            }),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return too_big();
    }
    let body = match tokio::time::timeout(config.body_timeout, to_bytes(body, config.max_body_bytes)).await {
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", config.body_timeout),
            )
        }
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.downcast_ref::<LengthLimitError>().is_some() {
                return too_big();
            }
            return json_error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"));
        }
        Ok(Ok(body)) => body,
    };
    let ndjson = is_ndjson(&headers);
    let max_entries = config.max_entries;
    // Parsing a large body is CPU work: off the async workers, so /health
    // and the other connections stay responsive.
    let parsed = tokio::task::spawn_blocking(move || parse::<T>(ndjson, &body, max_entries)).await;
    let outcome = match parsed {
        Err(_) => Outcome::Closed(0),
        Ok(Err(refusal)) => Outcome::Refused(refusal),
        Ok(Ok(entries)) if entries.is_empty() => Outcome::Accepted(0),
        Ok(Ok(entries)) => {
            let total = entries.len();
            let input = shared.input.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match input {
                None => Outcome::Closed(total),
                // One all-or-nothing hand-over: the request is in, or none
                // of it is, so a client may resend a refused request whole.
                // Waiting for room takes no thread of the runtime's (nor
                // one per request): the input's relay thread waits.
                Some(input) => match input.put_batch_async(entries, config.full_wait).await {
                    Ok(()) => {
                        shared.acknowledged.fetch_add(total as u64, Ordering::SeqCst);
                        Outcome::Accepted(total)
                    }
                    Err(PutError::Full(_)) => {
                        shared.refused_full.fetch_add(1, Ordering::SeqCst);
                        Outcome::Full(total)
                    }
                    Err(PutError::TooLarge(_)) => Outcome::TooLarge(total),
                    Err(PutError::Closed(_)) => Outcome::Closed(total),
                },
            }
        }
    };
    match outcome {
        Outcome::Accepted(n) => json_response(StatusCode::OK, serde_json::json!({ "accepted": n })),
        Outcome::Refused(Refusal::Invalid(msg)) => json_error(StatusCode::BAD_REQUEST, msg),
        Outcome::Refused(Refusal::TooMany(max)) => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {max} entries in one request (max_entries)"),
        ),
        Outcome::TooLarge(n) => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{n} entries are more than the pipeline's capacity: send fewer per request"),
        ),
        Outcome::Full(n) => unavailable(
            config,
            serde_json::json!({ "accepted": 0, "of": n, "error": "the pipeline is full" }),
        ),
        Outcome::Closed(n) => unavailable(
            config,
            serde_json::json!({ "accepted": 0, "of": n, "error": "the pipeline no longer takes input" }),
        ),
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

/// What `/stats` answers: the pipeline's snapshot and the server's
/// counts; `None` once the pipeline is gone.
fn stats_json<T>(shared: &Shared<T>) -> Option<serde_json::Value> {
    stats_json_judged(shared, false)
}

/// [`stats_json`], with the verdict judged on the run's last seconds when
/// `recent` (the dashboard's view) rather than on the whole run.
fn stats_json_judged<T>(shared: &Shared<T>, recent: bool) -> Option<serde_json::Value> {
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

async fn stats<T: Send + 'static>(State(shared): State<Arc<Shared<T>>>) -> Response {
    match stats_json(&shared) {
        Some(json) => json_response(StatusCode::OK, json),
        None => json_error(StatusCode::SERVICE_UNAVAILABLE, "stopped"),
    }
}

/// The live page of `report::WebReporter`, at `/dashboard`, fed from the
/// pipeline's stats (feature `web`).
#[cfg(all(feature = "web", not(loom)))]
mod dashboard {
    use super::*;
    use crate::report::web;

    pub(super) async fn page(headers: HeaderMap) -> Response {
        if !web::same_origin(&headers) {
            return web::forbidden();
        }
        web::page_response()
    }

    pub(super) async fn snapshot<T: Send + 'static>(
        State(shared): State<Arc<Shared<T>>>,
        headers: HeaderMap,
    ) -> Response {
        if !web::same_origin(&headers) {
            return web::forbidden();
        }
        match stats_json_judged(&shared, true) {
            Some(json) => web::json_response(&json.to_string()),
            None => web::json_response("null"),
        }
    }

    /// A snapshot every second (or every half `idle_timeout`, if shorter:
    /// an open page is never an idle connection), until shutdown starts or
    /// the pipeline is gone.
    pub(super) async fn events<T: Send + 'static>(
        State(shared): State<Arc<Shared<T>>>,
        headers: HeaderMap,
    ) -> Response {
        if !web::same_origin(&headers) {
            return web::forbidden();
        }
        let every = (shared.config.idle_timeout / 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
        let stop = shared.stop.clone();
        let stream = futures::stream::unfold((shared, stop, true), move |(shared, mut stop, first)| async move {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = reached(&mut stop, STOPPING) => return None,
                }
            }
            if *stop.borrow() >= STOPPING {
                return None;
            }
            let text: Arc<str> = stats_json_judged(&shared, true)?.to_string().into();
            Some((text, (shared, stop, false)))
        });
        web::events_response(stream, every)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(error: &str) -> Skipped {
        Skipped {
            stage: "check".into(),
            worker: 1,
            error: error.into(),
        }
    }

    #[test]
    fn the_skip_log_counts_every_skip_and_keeps_the_latest_errors_cut_at_the_limit() {
        let log = SkipLog::new(2);
        // A long error whose byte at the limit is inside a 2-byte
        // character: cut before it.
        let long = format!("x{}", "é".repeat(ERROR_TEXT_LIMIT));
        for error in ["first", "second", long.as_str()] {
            log.record(&skipped(error));
        }
        assert_eq!(log.skipped.load(Ordering::SeqCst), 3);
        let errors = log.errors();
        let errors = errors.as_array().unwrap();
        assert_eq!(errors.len(), 2, "only the latest two");
        assert_eq!(errors[0]["error"], "second");
        assert_eq!(
            (errors[0]["stage"].as_str(), errors[0]["worker"].as_u64()),
            (Some("check"), Some(1))
        );
        let cut = errors[1]["error"].as_str().unwrap();
        assert_eq!(cut, format!("x{}…", "é".repeat(ERROR_TEXT_LIMIT / 2 - 1)));

        let none = SkipLog::new(0);
        none.record(&skipped("x"));
        assert_eq!(none.skipped.load(Ordering::SeqCst), 1);
        assert_eq!(none.errors(), serde_json::json!([]));
    }
}
