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
    own: Arc<StageCell>,
    consumer: Arc<StageCell>,
    rec: Arc<Recorder>,
    weigh: W,
    /// Items out so far; this probe is the only writer of `own.count`, so it
    /// publishes with a plain store.
    count: u64,
}

impl<I, W> fmt::Debug for Probe<I, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("stage", &self.own.name())
            .finish_non_exhaustive()
    }
}

impl<I> Probe<I, One> {
    pub(crate) fn new(inner: I, index: usize, rec: Arc<Recorder>) -> Self {
        let (own, consumer) = rec.cells_at(index);
        Probe {
            inner,
            index,
            own,
            consumer,
            rec,
            weigh: One,
            count: 0,
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
            count: self.count,
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
            let _mem = unsafe { AllocScope::enter(&self.own) };
            self.inner.next()
        };
        self.rec.leave(self.index, &self.own, timed);
        if let Some(x) = &item {
            self.count += self.weigh.weigh(x);
            self.own.count.store(self.count, Relaxed);
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
