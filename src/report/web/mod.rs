//! A live web page of a running pipeline (feature `web`): one
//! self-contained page (its HTML, CSS and JavaScript are embedded in the
//! crate; nothing is fetched from elsewhere) fed by server-sent events.
//!
//! See [`WebReporter`] for the routes and what the page shows.

use std::convert::Infallible;
use std::fmt;
use std::future::IntoFuture;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use tokio::sync::{oneshot, watch};

use super::json::snapshot_json_judged;
use super::{Recent, Reporter};
use crate::stats::Snapshot;

const HTML: &str = include_str!("index.html");
const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The page: the HTML with its style and script inlined.
pub(crate) fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| HTML.replace("/*STYLE*/", CSS).replace("/*SCRIPT*/", JS))
}

/// True unless the request names an `Origin` that is not the host it was
/// sent to (a page of another site reading the stats through the visitor's
/// browser). Requests without `Origin` (same-origin navigation, curl) pass.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// The answer to a request from another origin.
pub(crate) fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "requests from other origins are refused\n").into_response()
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
}

/// One open event stream, counted in `viewers` while it lives.
struct Viewer(Arc<AtomicUsize>);

impl Viewer {
    fn new(viewers: &Arc<AtomicUsize>) -> Self {
        viewers.fetch_add(1, Ordering::SeqCst);
        Viewer(viewers.clone())
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

async fn index(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    page_response()
}

async fn snapshot(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let text = shared.latest.borrow().clone();
    json_response(text.as_deref().unwrap_or("null"))
}

async fn events(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let viewer = Viewer::new(&shared.viewers);
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
/// Read-only: nothing on these routes changes the pipeline. A request that
/// carries an `Origin` header other than the server's own host is refused
/// with `403`, and no CORS header is ever set, so other sites cannot read
/// the stats from a visitor's browser.
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
    stop: Option<oneshot::Sender<()>>,
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
    /// Binds `addr` and starts serving the page. Use `"127.0.0.1:0"` for a
    /// free port on loopback (then [`addr`](Self::addr) says which);
    /// binding another interface serves the stats to whoever can reach it.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
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
            });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("paipa-web".into()).spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return tracing::error!(target: "paipa::web", "cannot serve: {e}"),
                };
                tokio::select! {
                    served = axum::serve(listener, app).into_future() => if let Err(e) = served {
                        tracing::error!(target: "paipa::web", "the web reporter stopped serving: {e}");
                    },
                    _ = stopped => {}
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
                stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:9090")
        ])));
        assert!(!same_origin(&headers(&[host, (header::ORIGIN, "null")])));
        assert!(!same_origin(&headers(&[(header::ORIGIN, "http://127.0.0.1:8080")])));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = page();
        assert!(page.contains("<script>") && page.contains("EventSource"));
        assert!(!page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/"));
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    }
}
