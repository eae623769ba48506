//! Accepting connections: at most `max_connections` open, an idle one
//! closed to make room for a newcomer, the rest answered `503`; every
//! request checked for its host and origin and answered in one shape;
//! and shutdown in levels.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::activity::{Activity, Handling, WatchedIo};
use super::answer;
use super::connection::{self, last_words};
use super::hosts::Hosts;
use super::limits::{reached, Limits, FORCED, STOPPING};

/// What a server serves: its routes and the names it answers to.
#[derive(Clone)]
pub(crate) struct Site {
    pub(crate) app: Router,
    pub(crate) hosts: Hosts,
}

/// The connections open, for choosing one to close when the limit is
/// reached.
#[derive(Default)]
struct Open(Mutex<Vec<Weak<Activity>>>);

/// A place given up by a connection closed to make room, for the
/// newcomer it was closed for.
type Handoff = oneshot::Receiver<OwnedSemaphorePermit>;

impl Open {
    fn add(&self, activity: &Arc<Activity>) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|a| a.strong_count() > 0);
        list.push(Arc::downgrade(activity));
    }

    /// Asks the connection that serves nobody the longest to close: one
    /// that sent nothing since its last answer first, then one with a
    /// half-sent head. Its place is handed to the caller when it has
    /// closed. `None` if every connection is handling a request.
    fn make_room(&self) -> Option<Handoff> {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let victim = list
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|a| !a.busy() && !a.closing())
            .max_by_key(|a| (!a.head_started(), a.idle_for()))?;
        let (give, take) = oneshot::channel();
        *victim.handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(give);
        victim.close();
        Some(take)
    }
}

/// Connections the kernel completes and queues for a listener before it
/// accepts them. The system's usual 128 lets a flood of idle connections
/// fill the queue between two accepts, and a client whose handshake finds
/// it full waits a second or more to try again.
const BACKLOG: i32 = 1024;

/// Deepens `listener`'s queue of completed connections to [`BACKLOG`]
/// (Unix; a listening socket takes a new backlog by being listened on
/// again). A failure leaves the queue as it was.
pub(crate) fn deepen_backlog(listener: &std::net::TcpListener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `listen` on a file descriptor the listener owns and keeps
        // open for the whole call; it changes no memory of ours.
        let _ = unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    }
    #[cfg(not(unix))]
    let _ = listener;
}

/// Accepts connections on `listener` and serves `site` on them until
/// shutdown reaches [`STOPPING`], then closes them: idle ones and half-sent
/// heads at once, busy ones once their answer is sent, every one left at
/// the grace deadline (or at once at [`FORCED`]). `refused` counts the
/// connections answered `503` for want of room.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    site: Site,
    limits: Limits,
    mut stop: watch::Receiver<u8>,
    refused: Arc<AtomicU64>,
) {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Connections being refused (each for at most 2 s): past as many
    // again, a connection is closed without an answer.
    let waiting = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Open::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
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
                        tracing::warn!(target: "paipa::net", "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let serving = Serving { site: site.clone(), limits: limits.clone(), http: http.clone(), open: open.clone(), stop: stop.clone() };
                if let Ok(permit) = permits.clone().try_acquire_owned() {
                    connections.spawn(serving.run(stream, permit));
                    continue;
                }
                if let Some(handoff) = open.make_room() {
                    // Waited for here, not in a task of its own: accepting
                    // more before the room is made would hold a file per
                    // newcomer, and a flood of them would run the process
                    // out of files. The kernel queues the next ones.
                    if let Ok(Ok(permit)) = tokio::time::timeout(connection::LAST_WORDS, handoff).await {
                        connections.spawn(serving.run(stream, permit));
                        continue;
                    }
                }
                // Every connection is handling a request (or none made
                // room in time): a 503, unless as many are being refused
                // already (then closed without an answer).
                let Ok(wait) = waiting.clone().try_acquire_owned() else { continue };
                let (limits, refused) = (limits.clone(), refused.clone());
                connections.spawn(async move {
                    refuse(stream, &limits, &refused).await;
                    drop(wait);
                });
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = tokio::time::sleep_until(deadline) => break,
            () = reached(&mut stop, FORCED) => break,
        }
    }
    if !connections.is_empty() {
        tracing::warn!(
            target: "paipa::net",
            "closing {} connections still open at the shutdown deadline",
            connections.len()
        );
    }
    connections.shutdown().await;
}

/// Answers a connection there is no room for with a `503` without reading
/// its request, and closes it.
async fn refuse(stream: TcpStream, limits: &Limits, refused: &AtomicU64) {
    refused.fetch_add(1, Ordering::Relaxed);
    let answer = answer::raw(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "too many connections",
        Some(limits.retry_after_secs),
    );
    last_words(stream, &answer).await;
}

/// What serving one connection needs.
struct Serving {
    site: Site,
    limits: Arc<Limits>,
    http: Arc<hyper::server::conn::http1::Builder>,
    open: Arc<Open>,
    stop: watch::Receiver<u8>,
}

impl Serving {
    async fn run(self, stream: TcpStream, permit: OwnedSemaphorePermit) {
        let activity = Arc::new(Activity::new());
        self.open.add(&activity);
        let io = Arc::new(Mutex::new(stream));
        let tracked = WatchedIo {
            io: io.clone(),
            activity: activity.clone(),
        };
        let (app, hosts, on) = (
            TowerToHyperService::new(self.site.app),
            self.site.hosts,
            activity.clone(),
        );
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let handling = Handling::start(&on);
            let checked = hosts.check(request.headers());
            let response = checked.map(|()| hyper::service::Service::call(&app, request));
            async move {
                let response = match response {
                    Ok(response) => match response.await {
                        Ok(response) => answer::one_shape(response),
                        Err(never) => match never {},
                    },
                    Err((status, why)) => answer::error(status, why),
                };
                Ok::<_, Infallible>(response.map(|body| Answering {
                    body,
                    _handling: handling,
                }))
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(tracked), service);
        connection::serve(conn, io, activity.clone(), self.limits, self.stop).await;
        // Closed to make room: the place goes to the newcomer (or back to
        // every one if it gave up waiting).
        let handoff = activity.handoff.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(give) = handoff {
            let _ = give.send(permit);
        }
    }
}

/// An answer's body, which keeps its request counted as handled until it
/// is sent whole (or dropped).
struct Answering {
    body: Body,
    _handling: Handling,
}

impl hyper::body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}
