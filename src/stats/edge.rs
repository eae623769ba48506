//! Edges to other processes in a snapshot: a stream that a source reads or
//! a sink adds to (feature `redis`), as the server last described it.
//!
//! The core knows edges only as plain data ([`EdgeSnapshot`]) and as
//! probes ([`EdgeProbe`]) that a source or a sink registers with the stage
//! running on its thread (see [`watch_edge`](super::watch_edge)), the way
//! [`count`](super::count) finds its stage. Making a snapshot reads each
//! probe's last reading and does no I/O; the readings are refreshed off the
//! pipeline's threads: before each periodic report (waiting at most
//! [`REPORT_WAIT`] for them) and once at the end of the run (at most
//! [`FINAL_WAIT`]). A reading that fails, or is not back in time, leaves
//! the previous one in place, marked with its age and the error.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One edge of this process to another, as last read from the server
/// that holds it: a Redis stream (feature `redis`) that this process reads
/// (`role` `"source"`) or adds to (`"sink"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeSnapshot {
    /// What the edge is: `"stream"` for a Redis stream.
    pub kind: String,
    /// Its name: the stream's key.
    pub name: String,
    /// This process's end of it: `"source"` or `"sink"`.
    pub role: String,
    /// Entries in the stream at the last reading (`None`: never read).
    pub length: Option<u64>,
    /// Its consumer groups at the last reading.
    pub groups: Vec<EdgeGroup>,
    /// How old the last reading was when the snapshot was taken (`None`:
    /// never read).
    pub age: Option<Duration>,
    /// Why the last attempt to read failed, if it did: the values are then
    /// those of the reading before (stale), or unknown.
    pub error: Option<String>,
}

/// One consumer group of an edge's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeGroup {
    /// The group's name.
    pub name: String,
    /// Entries delivered to its consumers and not yet acked.
    pub pending: u64,
    /// Entries not yet delivered to the group (`None` when the server
    /// cannot tell, such as after a trim of undelivered entries).
    pub lag: Option<u64>,
    /// Consumers the group has.
    pub consumers: u64,
}

impl EdgeSnapshot {
    /// The group named `name`, if the stream has one.
    pub fn group(&self, name: &str) -> Option<&EdgeGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// True when the last attempt to read the edge failed: what is shown
    /// is an older reading, or nothing.
    pub fn is_stale(&self) -> bool {
        self.error.is_some()
    }
}

/// How long a periodic report waits for fresh edge readings before it
/// shows the previous ones.
pub(crate) const REPORT_WAIT: Duration = Duration::from_millis(250);

/// How long the end of a run waits for the edges' last readings (a stream
/// source's own acks going out first, see `remote/probe.rs`).
pub(crate) const FINAL_WAIT: Duration = Duration::from_secs(10);

/// Something that reads one edge for the snapshots, off the pipeline's
/// threads. Implemented by `remote` (feature `redis`).
pub(crate) trait EdgeProbe: Send + Sync {
    /// Names the edge: a second probe with the same key is not registered.
    fn key(&self) -> String;

    /// The edge as last read, without any I/O.
    fn read(&self) -> EdgeSnapshot;

    /// Asks for a new reading, made on another thread; returns a ticket
    /// for [`EdgeProbe::wait`]. `is_final`: the run is over (a source may
    /// first let its last acks go out).
    fn request(&self, is_final: bool) -> u64;

    /// Waits until the reading asked for with `ticket` is done, or
    /// `deadline` has passed.
    fn wait(&self, ticket: u64, deadline: Instant);

    /// Ends and joins whatever thread makes the readings (the run is
    /// over); the last reading stays readable, and a later request starts
    /// the thread again.
    fn close(&self);
}

/// The probes registered with one stage (or one iterator pipeline).
#[derive(Default)]
pub(crate) struct Edges(Mutex<Vec<Arc<dyn EdgeProbe>>>);

impl fmt::Debug for Edges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Edges").field(&self.probes().len()).finish()
    }
}

impl Edges {
    /// Registers `probe`, unless one for the same edge already is.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn add(&self, probe: Arc<dyn EdgeProbe>) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = probe.key();
        if !list.iter().any(|p| p.key() == key) {
            list.push(probe);
        }
    }

    /// The probes registered so far.
    pub(crate) fn probes(&self) -> Vec<Arc<dyn EdgeProbe>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every edge as last read.
    pub(crate) fn read(&self) -> Vec<EdgeSnapshot> {
        self.probes().iter().map(|p| p.read()).collect()
    }
}

/// Closes every probe: the run is over, and after its last reading no
/// thread of it is left.
pub(crate) fn close(probes: &[Arc<dyn EdgeProbe>]) {
    for probe in probes {
        probe.close();
    }
}

/// Asks every probe for a new reading at once, and waits for them all for
/// at most `wait`.
pub(crate) fn refresh(probes: &[Arc<dyn EdgeProbe>], wait: Duration, is_final: bool) {
    if probes.is_empty() {
        return;
    }
    let deadline = Instant::now() + wait;
    let tickets: Vec<u64> = probes.iter().map(|p| p.request(is_final)).collect();
    for (probe, ticket) in probes.iter().zip(tickets) {
        probe.wait(ticket, deadline);
    }
}
