//! A running ingestion server: starting one on a listener, its shutdown,
//! and the drain of its pipeline.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Semaphore};

use super::config::ServerConfig;
use super::routes;
use super::skips::SkipLog;
use super::state::Shared;
use crate::error::RunError;
use crate::net::hosts::Hosts;
use crate::net::limits::{raise, FORCED, SERVING, STOPPING};
use crate::net::listener::{self, Site};
use crate::stats::Snapshot;
use crate::threaded::{Input, OnError, Pipeline, Running, Skipped, StageDefaults, Summary};

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
    listener::deepen_backlog(&listener);
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let running = Arc::new(Mutex::new(Some(running)));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(SERVING);
    let shared = Arc::new(Shared {
        input: Mutex::new(Some(Arc::new(input))),
        running: running.clone(),
        config: config.clone(),
        ingests: Semaphore::new(config.max_ingests),
        bodies: Arc::new(Semaphore::new(config.max_ingests * config.max_body_bytes)),
        acknowledged: acknowledged.clone(),
        refused_connections: Arc::new(AtomicU64::new(0)),
        refused_full: AtomicU64::new(0),
        skips,
        stop: stopped.clone(),
        recent: Mutex::default(),
        viewers: Arc::new(AtomicUsize::new(0)),
    });
    let refused = shared.refused_connections.clone();
    let app = Router::new()
        .route("/ingest", post(routes::ingest::<T>))
        .route("/health", get(routes::health::<T>))
        .route("/stats", get(routes::stats::<T>))
        .route("/metrics", get(routes::metrics::<T>));
    #[cfg(feature = "web")]
    let app = {
        use routes::dashboard;
        app.route("/dashboard", get(dashboard::page))
            .route("/dashboard/", get(dashboard::page))
            .route("/dashboard/snapshot", get(dashboard::snapshot::<T>))
            .route("/dashboard/events", get(dashboard::events::<T>))
    };
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
                Ok(listener) => {
                    let site = Site {
                        app,
                        hosts: Hosts::new(&config.allowed_hosts),
                    };
                    listener::serve(listener, site, config.limits(), stopped, refused).await;
                }
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
        raise(&self.stop, level);
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
                    raise(&stop, level);
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
