//! Counters of one edge end (what a sink added, what a source read, acked,
//! claimed, dead-lettered; connection errors), and the server's view of the
//! stream (length, and per group: pending, lag, consumers).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Live counters, shared by an edge's threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) added: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) waited_ns: AtomicU64,
    pub(crate) trimmed: AtomicU64,
    pub(crate) read: AtomicU64,
    pub(crate) claimed: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(crate) fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self, stream: &str) -> EdgeStats {
        EdgeStats {
            stream: stream.to_string(),
            added: self.added.load(Relaxed),
            batches: self.batches.load(Relaxed),
            waited: Duration::from_nanos(self.waited_ns.load(Relaxed)),
            trimmed: self.trimmed.load(Relaxed),
            read: self.read.load(Relaxed),
            claimed: self.claimed.load(Relaxed),
            acked: self.acked.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dead: self.dead.load(Relaxed),
            connection_errors: self.connection_errors.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

/// What one end of an edge did, from this process's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EdgeStats {
    /// The stream.
    pub stream: String,
    /// Entries this sink added (XADD confirmed).
    pub added: u64,
    /// XADD pipelines this sink sent.
    pub batches: u64,
    /// Time this sink waited for the stream to drain below its bound.
    pub waited: Duration,
    /// Entries this sink trimmed (all acked by every group).
    pub trimmed: u64,
    /// Entries this source read (new ones and claimed ones).
    pub read: u64,
    /// Entries this source claimed (XCLAIM): from other consumers, and its
    /// own that were failed or dropped unfinished.
    pub claimed: u64,
    /// Entries this source acked (XACK confirmed).
    pub acked: u64,
    /// Entries that failed here and were left pending for redelivery.
    pub failed: u64,
    /// Entries this source moved to the dead-letter stream.
    pub dead: u64,
    /// Commands that failed on a connection error (each then retried).
    pub connection_errors: u64,
    /// Connections made again after an error.
    pub reconnects: u64,
    /// The last connection error, if there was one.
    pub last_error: Option<String>,
}

/// The server's view of a stream: what every process of the distributed
/// pipeline shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamInfo {
    /// The stream.
    pub stream: String,
    /// Entries in the stream (XLEN): not yet trimmed.
    pub length: u64,
    /// One per consumer group.
    pub groups: Vec<GroupInfo>,
}

/// One consumer group of a stream (XINFO GROUPS).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Consumers that have read from the group.
    pub consumers: u64,
    /// Entries delivered and not yet acked.
    pub pending: u64,
    /// Entries not yet delivered to the group (`None` when the server
    /// cannot tell, such as after a trim of undelivered entries).
    pub lag: Option<u64>,
    /// The last id delivered to the group (empty in a published view made
    /// from a snapshot's edges, see [`EdgeRow::info`](super::EdgeRow::info)).
    pub last_delivered: String,
}
