//! Batches sized by measured cost, not by a fixed count.
//!
//! Every stage measures what one item costs it (busy time per input item,
//! an average over its recent batches) and publishes it in a [`Cost`]
//! shared with the stage before it. A sender (a worker's outbox, the source
//! thread, [`Input::put_all`](super::Input::put_all)) cuts its batches so
//! that each holds about [`TARGET`] of work for whoever is slower: the
//! stage that will take the batch (so work spreads over its workers and a
//! 20 ms item travels alone) or the stage that made it (so a finished item
//! never waits behind slow ones). Cheap items travel in batches up to the
//! edge's bound, which makes a hand-over cost a few nanoseconds per item.
//! Until the next stage has measured anything, batches hold one item.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::stats::duration_to_ticks;

/// The work one batch should carry: long enough to amortise a hand-over
/// (a few microseconds with a wake-up), short enough that a worker never
/// holds finished items for long. Chosen by measurement: see
/// docs/BENCHMARKS.md ("batch target").
pub(crate) const TARGET: Duration = Duration::from_micros(200);

/// Not measured yet.
const UNMEASURED: u64 = 0;
/// Nobody measures: the edge ends at the caller's consumer.
const NO_READER: u64 = u64::MAX;

/// What one input item costs a stage, in raw clock ticks (an `f64` kept as
/// its bits), shared between the stage that measures it and the sender
/// that sizes batches for it.
#[derive(Debug)]
pub(crate) struct Cost(AtomicU64);

impl Cost {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Cost(AtomicU64::new(UNMEASURED)))
    }

    /// Marks the edge as read by the caller's consumer, which measures
    /// nothing: batches are sized by the sender's own cost alone.
    pub(crate) fn no_reader(&self) {
        self.0.store(NO_READER, Relaxed);
    }

    /// Adds one batch's measure: `busy` ticks for `items` items.
    pub(crate) fn observe(&self, busy: u64, items: usize) {
        if items == 0 {
            return;
        }
        let sample = (busy as f64 / items as f64).max(1e-3);
        let old = self.0.load(Relaxed);
        let new = match old {
            UNMEASURED | NO_READER => sample,
            bits => 0.75 * f64::from_bits(bits) + 0.25 * sample,
        };
        self.0.store(new.to_bits(), Relaxed);
    }

    /// The cost in ticks per item: `Some(0.0)` if nobody measures, `None`
    /// if not measured yet.
    fn get(&self) -> Option<f64> {
        match self.0.load(Relaxed) {
            UNMEASURED => None,
            NO_READER => Some(0.0),
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// The cost per item as a duration (zero if not measured).
    #[allow(dead_code)]
    pub(crate) fn per_item(&self) -> Duration {
        crate::stats::ticks_to_duration(self.get().unwrap_or(0.0) as u64)
    }
}

/// How a sender cuts its batches.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    /// The sender's own cost (None for the source and input handles).
    own: Option<Arc<Cost>>,
    /// The cost of the stage that takes the batches.
    next: Arc<Cost>,
    /// The edge's bound on one batch.
    max: usize,
    target: f64,
}

impl Pacing {
    pub(crate) fn new(own: Option<Arc<Cost>>, next: Arc<Cost>, max: usize) -> Self {
        Pacing {
            own,
            next,
            max: max.max(1),
            target: duration_to_ticks(TARGET) as f64,
        }
    }

    /// Batches of exactly `max` items, whatever anything costs.
    #[allow(dead_code)]
    pub(crate) fn fixed(max: usize) -> Self {
        let next = Cost::new();
        next.no_reader();
        Pacing::new(None, next, max)
    }

    /// How many items the next batch should hold, from 1 to the bound.
    pub(crate) fn limit(&self) -> usize {
        let Some(next) = self.next.get() else {
            return 1;
        };
        let own = match &self.own {
            None => 0.0,
            Some(own) => match own.get() {
                Some(c) => c,
                // This stage has not measured itself yet: its items may be
                // slow, so none is held back until it has.
                None => return 1,
            },
        };
        let cost = next.max(own);
        if cost <= 0.0 {
            return self.max;
        }
        let n = self.target / cost;
        if n >= self.max as f64 {
            self.max
        } else {
            (n as usize).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_slower_side_between_one_item_and_the_bound() {
        let (own, next) = (Cost::new(), Cost::new());
        let p = Pacing::new(Some(own.clone()), next.clone(), 1000);
        assert_eq!(p.limit(), 1, "nothing measured downstream: one item at a time");
        let target = duration_to_ticks(TARGET);
        next.observe(target / 10, 1); // a tenth of the target per item
        assert_eq!(p.limit(), 1, "this stage has not measured itself yet");
        own.observe(1, 100);
        assert!((9..=10).contains(&p.limit()), "{}", p.limit());
        own.observe(target * 2, 1); // this stage is slower: items go alone
        assert_eq!(p.limit(), 1);
        let cheap = Pacing::new(None, Cost::new(), 1000);
        cheap.next.observe(1, 1000);
        assert_eq!(cheap.limit(), 1000, "cheap items fill the bound");
        assert_eq!(Pacing::fixed(7).limit(), 7);
    }
}
