//! Receiving a request's body within the server's bounds: at most
//! `max_body_bytes`, within `body_timeout`, and within the bytes all the
//! bodies being received may hold together. A body is charged for the
//! bytes that have arrived, as they arrive: a client that trickles its
//! body holds only what it sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A body received whole, and its share of the bytes all bodies may hold
/// (given back when it is dropped).
pub(crate) struct Received {
    pub(crate) bytes: Vec<u8>,
    _share: Option<OwnedSemaphorePermit>,
}

/// Why a body was not received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotReceived {
    /// Larger than `max_body_bytes` (413).
    TooLarge,
    /// Not whole within `body_timeout` (408).
    TooSlow(Duration),
    /// The bodies being received hold every byte they may (503).
    Busy,
    /// The client broke off or sent a malformed body (400).
    Broken(String),
}

/// Receives `body`: at most `max` bytes (`declared` is its
/// `Content-Length`, if sent), within `timeout`, each arriving chunk
/// charged to `shared` (bytes all bodies being received may hold).
pub(crate) async fn receive(
    body: Body,
    declared: Option<u64>,
    max: usize,
    timeout: Duration,
    shared: &Arc<Semaphore>,
) -> Result<Received, NotReceived> {
    if declared.is_some_and(|n| n > max as u64) {
        return Err(NotReceived::TooLarge);
    }
    let read = async {
        let mut received = Received {
            // A declared length is reserved at once: pages not yet written
            // take no memory, and the body is never copied as it grows.
            bytes: Vec::with_capacity(declared.map_or(0, |n| n as usize)),
            _share: None,
        };
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| NotReceived::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if received.bytes.len() + data.len() > max {
                return Err(NotReceived::TooLarge);
            }
            let n = u32::try_from(data.len()).map_err(|_| NotReceived::TooLarge)?;
            let share = shared
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| NotReceived::Busy)?;
            match &mut received._share {
                Some(held) => held.merge(share),
                none => *none = Some(share),
            }
            received.bytes.extend_from_slice(&data);
        }
        Ok(received)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(received) => received,
        Err(_) => Err(NotReceived::TooSlow(timeout)),
    }
}
