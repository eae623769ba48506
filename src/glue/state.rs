//! What the routes of one server share.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Semaphore};

use super::config::ServerConfig;
use super::skips::SkipLog;
use crate::threaded::{Input, Running};

pub(crate) struct Shared<T> {
    /// One handle, shared by the requests: its relay thread waits for
    /// room for every request in turn (see `Input::put_batch_async`).
    pub(crate) input: Mutex<Option<Arc<Input<T>>>>,
    pub(crate) running: Arc<Mutex<Option<Running>>>,
    pub(crate) config: ServerConfig,
    /// Ingest requests decoding or putting.
    pub(crate) ingests: Semaphore,
    /// Bytes the bodies being received may still take.
    pub(crate) bodies: Arc<Semaphore>,
    /// Entries acknowledged with a 200.
    pub(crate) acknowledged: Arc<AtomicU64>,
    /// Connections refused because `max_connections` were busy.
    pub(crate) refused_connections: Arc<AtomicU64>,
    /// Requests answered 503 because the pipeline stayed full for
    /// `full_wait` (nothing of them taken).
    pub(crate) refused_full: AtomicU64,
    /// Entries the pipeline's stages skipped.
    pub(crate) skips: Arc<SkipLog>,
    /// The shutdown level: dashboard event streams end when it starts.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) stop: watch::Receiver<u8>,
    /// The run's last seconds, for the dashboard's verdict.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) recent: Mutex<crate::report::Recent>,
    /// Open dashboard event streams.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) viewers: Arc<AtomicUsize>,
}
