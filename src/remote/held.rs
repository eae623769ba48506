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

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashSet<String>>);

impl Held {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while the lock was held cannot leave the set half
        // changed (each change is one insert or remove).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn hold(&self, stream_id: &str) {
        self.set().insert(stream_id.to_owned());
    }

    pub(crate) fn release(&self, stream_ids: &[String]) {
        if stream_ids.is_empty() {
            return;
        }
        let mut set = self.set();
        for id in stream_ids {
            set.remove(id);
        }
    }

    /// The rows whose entry this consumer does not hold.
    pub(crate) fn not_held<R>(&self, rows: Vec<R>, id: impl Fn(&R) -> &str) -> Vec<R> {
        let set = self.set();
        rows.into_iter().filter(|r| !set.contains(id(r))).collect()
    }
}
