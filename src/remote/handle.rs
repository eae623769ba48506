//! The handle of a stream source, kept outside the pipeline: stop the
//! source (a signal handler), read its counters, and wait for its last
//! acks once the run is over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::stats::{Counters, EdgeStats};

/// Controls a [`StreamSource`](super::StreamSource) from outside the pipeline: stop it, read its
/// counters, wait for its last acks.
#[derive(Debug)]
pub struct SourceHandle {
    pub(super) cfg: EdgeConfig,
    pub(super) stream: String,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
    pub(super) in_flight: Arc<AtomicU64>,
    pub(super) error: Arc<Mutex<Option<RemoteError>>>,
    pub(super) acker: Option<JoinHandle<()>>,
}

impl SourceHandle {
    /// Stops reading: the source hands out what it has read and ends its
    /// input (see the reading protocol in `source.rs`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// The flag [`stop`](Self::stop) sets, for a signal handler
    /// (`signal_hook::flag::register(SIGTERM, handle.stop_flag())`).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Entries delivered to this process and not yet finished or dropped.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The error that ended the source's input, or ends it at its next
    /// call (its own, or its acker's), as text; `None` while there is
    /// none. [`finish`](Self::finish) returns it.
    pub fn failure(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.as_ref().map(ToString::to_string))
    }

    /// This end's counters, for a [`Publisher`](super::Publisher).
    pub fn watch(&self) -> super::EdgeWatch {
        super::EdgeWatch {
            role: "source",
            cfg: self.cfg.clone(),
            counters: self.counters.clone(),
        }
    }

    /// This end's counters now.
    pub fn stats(&self) -> EdgeStats {
        self.counters.snapshot(&self.stream)
    }

    /// Waits until every item the source delivered is gone and their acks
    /// are sent, and returns the counters; or the error that ended the
    /// input or stopped the acker. Call it after the run: it blocks while
    /// any item of the source is alive, or the source itself until its
    /// input has ended.
    pub fn finish(mut self) -> Result<EdgeStats, RemoteError> {
        // The acker reports its own failure (a panic too) in the error
        // slot, before its thread ends.
        let joined = self.acker.take().map_or(Ok(()), |h| h.join());
        if let Some(e) = self.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        if joined.is_err() {
            return Err(RemoteError::Acker {
                stream: self.stream.clone(),
                what: "panicked".into(),
            });
        }
        Ok(self.stats())
    }
}
