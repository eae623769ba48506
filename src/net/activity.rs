//! What one connection is doing, recorded by the stream it reads and
//! writes through: when it last moved a byte, whether it is handling a
//! request, whether it holds part of a request's head, and whether hyper
//! answered a malformed request itself.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The record of one connection.
pub(crate) struct Activity {
    born: Instant,
    /// Milliseconds since `born` of the last byte read or written.
    last: AtomicU64,
    /// Requests whose answer is not yet sent whole (an event stream counts
    /// for as long as it is open).
    handling: AtomicUsize,
    /// Bytes were read since the last request was handed to a route or the
    /// last answer was sent: part of a head is in.
    head_started: AtomicBool,
    /// The status of an answer hyper made itself for a malformed request
    /// (held back, to be sent as JSON once hyper lets go), or 0.
    canned: AtomicU16,
    /// Asked to close (to make room for a new connection, or at shutdown).
    closing: AtomicBool,
    /// A request was handed to a route on this connection.
    served: AtomicBool,
    /// Where the connection's place goes once it has closed, when it was
    /// asked to close to make room for a newcomer.
    pub(crate) handoff: Mutex<Option<tokio::sync::oneshot::Sender<tokio::sync::OwnedSemaphorePermit>>>,
    /// Wakes the connection's task when `handling` drops to zero or it is
    /// asked to close.
    pub(crate) changed: Notify,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            born: Instant::now(),
            last: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            head_started: AtomicBool::new(false),
            canned: AtomicU16::new(0),
            closing: AtomicBool::new(false),
            served: AtomicBool::new(false),
            handoff: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Whether a request is being handled or answered.
    pub(crate) fn busy(&self) -> bool {
        self.handling.load(Ordering::SeqCst) > 0
    }

    /// Whether part of a request's head has arrived and no route has it
    /// yet.
    pub(crate) fn head_started(&self) -> bool {
        self.head_started.load(Ordering::SeqCst)
    }

    /// How long the connection has been silent with no request handled
    /// (zero while one is).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.busy() {
            return Duration::ZERO;
        }
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// The status of the answer hyper made itself, if it did.
    pub(crate) fn canned(&self) -> Option<u16> {
        Some(self.canned.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Asks the connection to close (it does once no request is handled).
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Whether a request was ever handed to a route on this connection.
    pub(crate) fn served(&self) -> bool {
        self.served.load(Ordering::SeqCst)
    }
}

/// A request being handled on a connection, until its answer is sent whole
/// (the guard travels with the answer's body) or dropped.
pub(crate) struct Handling(Arc<Activity>);

impl Handling {
    pub(crate) fn start(activity: &Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::SeqCst);
        activity.served.store(true, Ordering::SeqCst);
        activity.head_started.store(false, Ordering::SeqCst);
        Handling(activity.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.head_started.store(false, Ordering::SeqCst);
        if self.0.handling.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// The status of a whole answer hyper wrote itself, if `bytes` is one.
///
/// hyper answers a request it cannot parse (`400`, `414`, `431`) with a
/// head and no body and no content type, written in one piece before it
/// closes the connection; every answer of the routes carries a content
/// type (`answer::one_shape`). So a head with no content type and nothing
/// after it is hyper's.
pub(crate) fn canned_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))?;
    let status = std::str::from_utf8(rest.get(..3)?).ok()?.parse::<u16>().ok()?;
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != bytes.len() {
        return None;
    }
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") {
        return None;
    }
    (400..600).contains(&status).then_some(status)
}

/// A TCP stream that records its activity. The stream is shared with the
/// connection's task, which takes it back to answer in JSON once hyper
/// lets go of it (hyper's own error answers are held back here).
pub(crate) struct WatchedIo {
    pub(crate) io: Arc<Mutex<TcpStream>>,
    pub(crate) activity: Arc<Activity>,
}

impl WatchedIo {
    fn with_io<R>(&self, f: impl FnOnce(Pin<&mut TcpStream>) -> R) -> R {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        f(Pin::new(&mut io))
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.with_io(|io| io.poll_read(cx, buf));
        if buf.filled().len() > before {
            self.activity.touch();
            if !self.activity.busy() {
                self.activity.head_started.store(true, Ordering::SeqCst);
            }
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if !self.activity.busy() {
            if let Some(status) = canned_status(buf) {
                self.activity.canned.store(status, Ordering::SeqCst);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let r = self.with_io(|io| io.poll_write(cx, buf));
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with_io(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.canned().is_some() {
            // The held-back answer is written first, by the connection's task.
            return Poll::Ready(Ok(()));
        }
        self.with_io(|io| io.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_head_with_no_content_type_is_hypers_own() {
        assert_eq!(
            canned_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            canned_status(b"HTTP/1.0 431 Request Header Fields Too Large\r\n\r\n"),
            Some(431)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(canned_status(ours), None);
        assert_eq!(canned_status(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(
            canned_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(canned_status(b"{\"accepted\":1}"), None);
    }
}
