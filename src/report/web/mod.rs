//! A live web page of a running pipeline (feature `web`): one
//! self-contained page (its HTML, CSS and JavaScript are embedded in the
//! crate; nothing is fetched from elsewhere) fed by server-sent events.
//!
//! See [`WebReporter`] for the routes and what the page shows.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::json::snapshot_json_judged;
use super::{Recent, Reporter};
use crate::net::answer;
use crate::net::hosts::Hosts;
use crate::net::limits::{check_count, check_hosts, check_wait, raise, Limits, FORCED, SERVING};
use crate::net::listener::{self, Site};
use crate::stats::Snapshot;

/// The limits of a [`WebReporter`]'s server ([`WebReporter::bind_with`]).
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Most connections open at once; when all are open, the one that has
    /// served nobody the longest is closed to make room for a new one, and
    /// when every one is answering, the new one gets `503`. 1 to 65,536;
    /// 256 unless set.
    pub max_connections: usize,
    /// Most pages following the events at once (more get `503`). Never
    /// more than half of `max_connections` whatever this says; at most
    /// 65,536; 32 unless set.
    pub max_viewers: usize,
    /// How long a request's head may take to arrive (`408` after it).
    /// 1 ms to 365 days; 10 s unless set.
    pub header_timeout: Duration,
    /// How long a connection may stay silent with no request handled
    /// before it is closed. 1 ms to 365 days; 5 s unless set.
    pub idle_timeout: Duration,
    /// Host names the page answers to besides IP addresses and
    /// `localhost` (`"*"`: every name). Empty unless set.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_connections: 256,
            max_viewers: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Checks every setting; the error names the field and its bounds.
    ///
    /// ```
    /// let config = paipa::report::WebConfig { max_connections: 0, ..Default::default() };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid max_connections: 0 (must be between 1 and 65536)");
    /// ```
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        check_count("max_connections", self.max_connections, 1, 65_536)?;
        check_count("max_viewers", self.max_viewers, 0, 65_536)?;
        check_wait("header_timeout", self.header_timeout, Duration::from_millis(1))?;
        check_wait("idle_timeout", self.idle_timeout, Duration::from_millis(1))?;
        check_hosts("allowed_hosts", &self.allowed_hosts)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace: Duration::ZERO,
            retry_after_secs: 1,
        }
    }
}

const HTML: &str = include_str!("index.html");
const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The page: the HTML with its style and script inlined.
pub(crate) fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| HTML.replace("/*STYLE*/", CSS).replace("/*SCRIPT*/", JS))
}

/// The page as a response.
pub(crate) fn page_response() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        page(),
    )
        .into_response()
}

/// A snapshot's JSON text as a response.
pub(crate) fn json_response(text: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.to_owned(),
    )
        .into_response()
}

/// An event stream of snapshots' JSON texts, with a comment every
/// `keep_alive` so that idle-connection timeouts leave it open.
pub(crate) fn events_response<S>(texts: S, keep_alive: Duration) -> Response
where
    S: Stream<Item = Arc<str>> + Send + 'static,
{
    let events = texts.map(|text| Ok::<_, Infallible>(Event::default().data(&*text)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}

/// The latest snapshot's JSON text (`None` before the first report).
type Latest = watch::Receiver<Option<Arc<str>>>;

/// What the reporter's routes share.
#[derive(Clone)]
struct Shared {
    latest: Latest,
    viewers: Arc<AtomicUsize>,
    max_viewers: usize,
}

/// One open event stream, counted in `viewers` while it lives.
pub(crate) struct Viewer(Arc<AtomicUsize>);

impl Viewer {
    /// A new viewer, unless `max` are open already.
    pub(crate) fn admit(viewers: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        viewers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()?;
        Some(Viewer(viewers.clone()))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The latest snapshot, then each new one as it is reported; ends when the
/// reporter is gone.
fn follow(rx: Latest, viewer: Viewer) -> impl Stream<Item = Arc<str>> {
    futures::stream::unfold((rx, viewer, true), |(mut rx, viewer, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        loop {
            let latest = rx.borrow_and_update().clone();
            if let Some(text) = latest {
                return Some((text, (rx, viewer, false)));
            }
            rx.changed().await.ok()?;
        }
    })
}

async fn index() -> Response {
    page_response()
}

async fn snapshot(State(shared): State<Shared>) -> Response {
    let text = shared.latest.borrow().clone();
    json_response(text.as_deref().unwrap_or("null"))
}

async fn events(State(shared): State<Shared>) -> Response {
    let Some(viewer) = Viewer::admit(&shared.viewers, shared.max_viewers) else {
        return answer::unavailable(
            format!("{} pages are open already (max_viewers)", shared.max_viewers),
            1,
        );
    };
    events_response(follow(shared.latest, viewer), Duration::from_secs(10))
}

/// A reporter that serves a live web page of the pipeline it reports on
/// (feature `web`). It works with both pipeline kinds, like any
/// [`Reporter`].
///
/// Routes, on the address the reporter is bound to:
///
/// - `GET /`: the page. It draws the pipeline as a row of stage boxes
///   (name, workers, count, items per second, a sparkline of the last five
///   minutes' throughput, the busy / starved / blocked split, memory where
///   measured) with the queue depth on each edge, the verdict with the
///   bottleneck's box highlighted (CSS class `bottleneck`; bottleneck and
///   advice judged on the last 10 s of a longer run, so a bottleneck that
///   moves is shown where it is now), async stages' latency (p50 and p99 over
///   the same window), and once the
///   run is over its outcome (finished, stopped early, failed with the stage
///   and error, interrupted). When the connection drops it says
///   "connection lost, reconnecting" and reconnects by itself.
/// - `GET /snapshot`: the latest snapshot as JSON
///   ([`snapshot_json`](crate::report::snapshot_json)'s schema), `null` before the
///   first report.
/// - `GET /events`: `text/event-stream`, one `data:` line per snapshot (the
///   same JSON), starting with the latest one.
///
/// Read-only: nothing on these routes changes the pipeline. A request
/// must name the server by an IP address, `localhost` or one of
/// [`WebConfig::allowed_hosts`] (`421` otherwise: a page that rebinds its
/// own name to this address is refused), and one that carries an `Origin`
/// other than its own host is refused with `403`; no CORS header is ever
/// set. So other sites cannot read the stats from a visitor's browser.
/// Every error answer is JSON, `{"accepted": 0, "error": "..."}`.
///
/// No client can make the page unreachable: connections are bounded and
/// timed as the ingestion server's are ([`WebConfig`]): when all are open,
/// the one that has served nobody the longest is closed to make room; a
/// head must arrive within `header_timeout`, a silent connection is closed
/// after `idle_timeout`, and at most `max_viewers` pages follow the events
/// at once.
///
/// [`bind`](Self::bind) starts the server at once, on a thread of its own
/// with a single-threaded tokio runtime; the page shows "waiting for the
/// first report" until the pipeline reports. Each report replaces the
/// latest snapshot and is pushed to every open page.
///
/// The server keeps serving, the final state included, **until the
/// reporter is dropped**. A debugger drops its reporters when its run is
/// over, so keep a clone (clones share one server) for as long as the page
/// should stay up after the run; dropping the last clone stops the server
/// and closes every connection.
///
/// ```
/// use paipa::{iter::Pipeline, report::WebReporter, Debugger};
///
/// let web = WebReporter::bind("127.0.0.1:0")?;   // a free port on loopback
/// println!("open {}", web.url());
/// let debugger = Debugger::silent().reporter(web.clone());
/// paipa::iter::consume(Pipeline::new(0..1_000u32).debug(debugger));
/// // The run is over; `web` still serves its final state.
/// let last = web.latest().expect("the final report");
/// assert!(last.contains(r#""final":true"#));
/// drop(web);                                      // the server stops
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct WebReporter {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    latest: watch::Sender<Option<Arc<str>>>,
    viewers: Arc<AtomicUsize>,
    /// The run's last seconds: the verdict is judged on them.
    recent: Mutex<Recent>,
    stop: watch::Sender<u8>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for WebReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebReporter")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl WebReporter {
    /// Binds `addr` and starts serving the page with the default
    /// [`WebConfig`]. Use `"127.0.0.1:0"` for a free port on loopback
    /// (then [`addr`](Self::addr) says which); binding another interface
    /// serves the stats to whoever can reach it.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, WebConfig::default())
    }

    /// As [`bind`](Self::bind), with `config`'s limits; settings out of
    /// their bounds ([`WebConfig::validate`]) are an `InvalidInput` error.
    pub fn bind_with(addr: impl ToSocketAddrs, config: WebConfig) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener::deepen_backlog(&listener);
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (latest, rx) = watch::channel(None);
        let viewers = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/", get(index))
            .route("/snapshot", get(snapshot))
            .route("/events", get(events))
            .with_state(Shared {
                latest: rx,
                viewers: viewers.clone(),
                max_viewers: config.max_viewers.min(config.max_connections / 2),
            });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = watch::channel(SERVING);
        let site = Site {
            app,
            hosts: Hosts::new(&config.allowed_hosts),
        };
        let limits = config.limits();
        let thread = std::thread::Builder::new().name("paipa-web".into()).spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener::serve(listener, site, limits, stopped, Arc::default()).await,
                    Err(e) => tracing::error!(target: "paipa::web", "cannot serve: {e}"),
                }
            });
            // Dropping the runtime closes every connection still open.
        })?;
        Ok(WebReporter {
            inner: Arc::new(Inner {
                addr,
                latest,
                viewers,
                recent: Mutex::default(),
                stop,
                thread: Some(thread),
            }),
        })
    }

    /// The address the page is served on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The page's URL (`http://` and [`addr`](Self::addr)).
    pub fn url(&self) -> String {
        format!("http://{}/", self.inner.addr)
    }

    /// The latest snapshot's JSON text, as `/snapshot` serves it (`None`
    /// before the first report).
    pub fn latest(&self) -> Option<Arc<str>> {
        self.inner.latest.borrow().clone()
    }

    /// Event streams open right now: the pages watching (each open page
    /// holds one `/events` connection).
    pub fn viewers(&self) -> usize {
        self.inner.viewers.load(Ordering::SeqCst)
    }
}

impl Reporter for WebReporter {
    fn report(&mut self, snapshot: &Snapshot) {
        let judged = self
            .inner
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .judge(snapshot);
        let text: Arc<str> = snapshot_json_judged(snapshot, &judged).to_string().into();
        self.inner.latest.send_replace(Some(text));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        raise(&self.stop, FORCED);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        let page = page();
        assert!(page.contains("<script>") && page.contains("EventSource"));
        assert!(!page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/"));
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    }
}
