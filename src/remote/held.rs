//! The entries a consumer holds: delivered to it, and not yet acked,
//! failed or dropped as far as the server knows.
//!
//! The source adds an entry before it hands it out; the ack rounds take it
//! out once the server has confirmed what became of it (its XACK, its
//! recorded error, its dead letter), or at once for an entry dropped
//! unfinished (nothing is sent for it). So an entry is never missing here
//! while this consumer may still act on it, and a claim that skips what
//! is here never delivers again to this consumer an entry it still holds
//! (see `source.rs`). An entry still here after it was finished only has
//! its claim put off until the next round.
//!
//! Every change of the set is counted, so that the source can tell a set
//! that still moves (entries being finished) from one that stands still
//! (entries parked until the end of input, see `source.rs`).

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<Ids>);

#[derive(Debug, Default)]
struct Ids {
    set: HashSet<String>,
    /// Inserts and removes so far.
    changes: u64,
}

impl Held {
    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        // A panic while the lock was held cannot leave the set half
        // changed (each change is one insert or remove, and its count).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn hold(&self, stream_id: &str) {
        let mut ids = self.ids();
        if ids.set.insert(stream_id.to_owned()) {
            ids.changes += 1;
        }
    }

    pub(crate) fn release(&self, stream_ids: &[String]) {
        if stream_ids.is_empty() {
            return;
        }
        let mut ids = self.ids();
        for id in stream_ids {
            if ids.set.remove(id) {
                ids.changes += 1;
            }
        }
    }

    /// How many entries are held, and how many changes the set has seen.
    pub(crate) fn state(&self) -> (usize, u64) {
        let ids = self.ids();
        (ids.set.len(), ids.changes)
    }

    /// The ids this consumer holds, of `ids`.
    pub(crate) fn only_held(&self, ids: Vec<String>) -> Vec<String> {
        let held = self.ids();
        ids.into_iter().filter(|id| held.set.contains(id)).collect()
    }

    /// The rows whose entry this consumer does not hold.
    pub(crate) fn not_held<R>(&self, rows: Vec<R>, id: impl Fn(&R) -> &str) -> Vec<R> {
        let ids = self.ids();
        rows.into_iter().filter(|r| !ids.set.contains(id(r))).collect()
    }
}
