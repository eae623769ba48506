//! Serving one connection: until it ends, stays idle too long, is asked
//! to close (to make room, or at shutdown), and then answering in JSON
//! what hyper refused without an answer of the routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::activity::Activity;
use super::answer;
use super::limits::{reached, Limits, STOPPING};

/// A hyper connection that can be asked to finish once idle.
pub(crate) trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
    fn shut_down_gracefully(self: Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How long the connection layer spends writing an answer of its own and
/// reading what the client still sends before it closes (so that the close
/// is not a reset that destroys the answer in flight).
pub(crate) const LAST_WORDS: Duration = Duration::from_secs(1);

/// Serves `conn` (hyper's, over the stream `io`) until it ends, until it
/// stays idle for `idle_timeout`, or until it is asked to close or
/// shutdown starts: then at once if no request is handled (a half-sent head
/// is dropped), after the answer in hand if one is.
///
/// hyper answers some malformed requests itself (`400`, `414`, `431`: held
/// back by the stream), refuses others without a word, and drops a head
/// that took longer than `header_timeout`: each of them is answered here,
/// in JSON, once hyper has let go of the stream.
pub(crate) async fn serve<C: GracefulConnection>(
    conn: C,
    io: Arc<Mutex<TcpStream>>,
    activity: Arc<Activity>,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<u8>,
) {
    let mut conn = Box::pin(conn);
    let mut graceful = false;
    let ended = loop {
        let stopping = *stop.borrow() >= STOPPING;
        if (stopping || activity.closing()) && !graceful {
            conn.as_mut().shut_down_gracefully();
            graceful = true;
        }
        let idle_for = activity.idle_for();
        if !activity.busy() && (graceful || idle_for >= limits.idle_timeout) {
            break None;
        }
        // Check again when the idle time could have run out.
        let check = limits
            .idle_timeout
            .saturating_sub(idle_for)
            .max(Duration::from_millis(1));
        tokio::select! {
            ended = conn.as_mut() => break Some(ended),
            () = reached(&mut stop, STOPPING), if !stopping => {}
            () = activity.changed.notified() => {}
            () = tokio::time::sleep(check) => {}
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None if activity.head_started() && graceful => {
            // Part of a head is in: hyper would wait for the rest until
            // `header_timeout`. Nothing of this request was taken.
            return;
        }
        None if activity.head_started() => {
            // A head that stopped arriving: answered as one too slow.
            drop(conn);
            let Some(stream) = take(io) else { return };
            let text = format!(
                "the request's head stopped arriving for {:?} (idle_timeout)",
                limits.idle_timeout
            );
            return last_words(stream, &answer::raw(StatusCode::REQUEST_TIMEOUT, &text, None)).await;
        }
        None if !activity.served() => {
            // Opened and never used: nothing to send (hyper would wait for
            // a head even when asked to finish).
            return;
        }
        None => {
            // Idle after an answer: hyper closes it at once, after sending
            // what it still holds of that answer.
            conn.as_mut().shut_down_gracefully();
            match tokio::time::timeout(LAST_WORDS, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
        }
    };
    drop(conn);
    let status = match (&ended, activity.canned()) {
        (_, Some(status)) => StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        (Err(e), None) if e.is_timeout() && activity.head_started() => StatusCode::REQUEST_TIMEOUT,
        (Err(e), None) if e.is_parse() => StatusCode::BAD_REQUEST,
        _ => return,
    };
    let Some(stream) = take(io) else { return };
    let text = match status {
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request's head did not arrive within {:?} (header_timeout)",
            limits.header_timeout
        ),
        other => answer::reason(other).to_string(),
    };
    last_words(stream, &answer::raw(status, &text, None)).await;
}

/// The stream back from hyper (once its connection is dropped).
fn take(io: Arc<Mutex<TcpStream>>) -> Option<TcpStream> {
    let io = Arc::try_unwrap(io).ok()?;
    Some(io.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Writes `answer` and closes the stream, reading what the client still
/// sends for a moment first; bounded by [`LAST_WORDS`] twice.
pub(crate) async fn last_words(mut stream: TcpStream, answer: &[u8]) {
    if let Ok(Ok(())) = tokio::time::timeout(LAST_WORDS, stream.write_all(answer)).await {
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LAST_WORDS, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}
