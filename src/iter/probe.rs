//! The probe: a transparent iterator on the output of one measured stage. It
//! counts items and tells the recorder when control enters and leaves the
//! stage (see `stats::recorder` for the attribution rule).

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::stats::recorder::Recorder;
use crate::stats::{AllocScope, StageCell};

/// How much one item counts for: 1, or what the stage says (a batch counts
/// as its length).
pub trait Weigh<T> {
    /// The count of one item.
    fn weigh(&self, item: &T) -> u64;
}

/// Every item counts as one.
#[derive(Debug, Clone, Copy, Default)]
pub struct One;

impl<T> Weigh<T> for One {
    #[inline(always)]
    fn weigh(&self, _: &T) -> u64 {
        1
    }
}

impl<T, F: Fn(&T) -> u64> Weigh<T> for F {
    #[inline(always)]
    fn weigh(&self, item: &T) -> u64 {
        self(item)
    }
}

/// The output of a measured stage. Built by
/// [`DebugPipeline`](crate::iter::DebugPipeline); steps see it as their input
/// iterator.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Probe<I, W = One> {
    inner: I,
    index: usize,
    own: Tally,
    consumer: Arc<StageCell>,
    rec: Arc<Recorder>,
    weigh: W,
}

/// The items a stage has let out. The probe is the only writer of the
/// cell's count, so it publishes with a plain store: on every timed pull
/// (every pull in exact mode), at the end, and when dropped, which the
/// pipeline does before its final report.
struct Tally {
    cell: Arc<StageCell>,
    count: u64,
}

impl Tally {
    #[inline(always)]
    fn publish(&self) {
        self.cell.count.store(self.count, Relaxed);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.publish();
    }
}

impl<I, W> fmt::Debug for Probe<I, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("stage", &self.own.cell.name())
            .finish_non_exhaustive()
    }
}

impl<I> Probe<I, One> {
    pub(crate) fn new(inner: I, index: usize, rec: Arc<Recorder>) -> Self {
        let (own, consumer) = rec.cells_at(index);
        Probe {
            inner,
            index,
            own: Tally { cell: own, count: 0 },
            consumer,
            rec,
            weigh: One,
        }
    }
}

impl<I, W> Probe<I, W> {
    pub(crate) fn reweigh<V>(self, weigh: V) -> Probe<I, V> {
        Probe {
            inner: self.inner,
            index: self.index,
            own: self.own,
            consumer: self.consumer,
            rec: self.rec,
            weigh,
        }
    }
}

impl<I: Iterator, W: Weigh<I::Item>> Iterator for Probe<I, W> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let timed = self.rec.timed();
        self.rec.enter(self.index, &self.consumer, timed);
        let item = {
            // SAFETY: `self.own` outlives the scope, which ends in this block.
            let _mem = unsafe { AllocScope::enter(&self.own.cell) };
            self.inner.next()
        };
        self.rec.leave(self.index, &self.own.cell, timed);
        match &item {
            Some(x) => {
                self.own.count += self.weigh.weigh(x);
                if timed {
                    self.own.publish();
                }
            }
            None => self.own.publish(),
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
