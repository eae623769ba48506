//! The ordering rule of a stage that keeps input order: units (batches of
//! an ordered function stage, results of an ordered async stage) arrive
//! numbered, in any order, and leave strictly by number.

use std::collections::BTreeMap;

/// The ordering rule of the window: batches arrive numbered, in any order,
/// and leave strictly by number.
#[derive(Debug)]
pub(crate) struct ReorderBuffer<M> {
    next_out: u64,
    waiting: BTreeMap<u64, M>,
}

impl<M> ReorderBuffer<M> {
    pub(crate) fn new() -> Self {
        ReorderBuffer {
            next_out: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// Takes batch `seq`; returns every batch that is now next, in order.
    pub(crate) fn insert(&mut self, seq: u64, batch: M) -> Vec<M> {
        self.waiting.insert(seq, batch);
        let mut released = Vec::new();
        while let Some(b) = self.waiting.remove(&self.next_out) {
            released.push(b);
            self.next_out += 1;
        }
        released
    }

    /// The number of the next unit to leave.
    #[cfg_attr(not(all(feature = "async", not(loom))), allow(dead_code))]
    pub(crate) fn next_out(&self) -> u64 {
        self.next_out
    }

    /// Units waiting for an earlier one.
    #[cfg(loom)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Everything still waiting (units that can no longer go out in order).
    pub(crate) fn take_waiting(&mut self) -> Vec<M> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }
}
