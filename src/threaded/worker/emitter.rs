//! A worker's way out ([`Emitter`]): its outbox, the chained stage it
//! feeds (if any), its clock, and what an item costs it, handed on at the
//! same moments by every loop: after a batch, when idle, at the end.

use std::sync::Arc;

use crate::threaded::pacing::Cost;
use crate::threaded::worker::{link_for, run_chained, ChainLink, ChainLinks, Outbox, WorkerClock};

/// Everything a worker sends its results through.
///
/// Invariant: whatever the outbox keeps locally for a chained stage is
/// run through that stage (`feed`) before the worker waits or ends, and
/// the chained stage's time is left out of this worker's clock.
pub(crate) struct Emitter<'a, T> {
    pub(crate) outbox: Outbox<T>,
    link: Option<ChainLink<'a, T>>,
    pub(crate) clock: WorkerClock,
    cost: Arc<Cost>,
}

impl<'a, T> Emitter<'a, T> {
    pub(crate) fn new(outbox: Outbox<T>, clock: WorkerClock, cost: Arc<Cost>) -> Self {
        Emitter {
            outbox,
            link: None,
            clock,
            cost,
        }
    }

    /// Takes worker `index`'s link if the next stage is chained onto this
    /// one (the outbox then keeps batches on this thread) and starts the
    /// chained worker. Called as the worker starts: the links are filled
    /// once the whole run is laid out.
    pub(crate) fn chain(&mut self, links: &Option<Arc<ChainLinks<'a, T>>>, index: usize) {
        self.link = link_for(links, index, &mut self.outbox);
    }

    /// Runs what the outbox keeps locally through the chained stage.
    pub(crate) fn run_chained(&mut self) {
        run_chained(&mut self.outbox, &mut self.link, &mut self.clock);
    }

    /// Results wait in this worker, unsent (in its buffer or for the
    /// chained stage).
    pub(crate) fn holds(&self) -> bool {
        self.outbox.holds() || self.outbox.has_local()
    }

    /// Marks the clock (what was neither starved nor blocked was busy) and
    /// returns the busy ticks.
    pub(crate) fn mark(&mut self) -> u64 {
        self.clock.mark(&mut self.outbox.blocked)
    }

    /// After a batch of `items`: hands on what is ready, books the time,
    /// records what an item cost and re-paces the outbox by it. False once
    /// the worker must stop taking input (downstream gone, or cancelled).
    pub(crate) fn after_batch(&mut self, items: usize) -> bool {
        self.run_chained();
        let busy = self.mark();
        self.cost.observe(busy, items);
        self.outbox.repace();
        self.run_chained();
        !self.outbox.is_gone() && !self.outbox.is_cancelled()
    }

    /// The input ran dry: sends what is ready, here and in the chained
    /// stage.
    pub(crate) fn idle(&mut self) {
        self.outbox.flush();
        self.run_chained();
        if let Some(link) = self.link.as_mut() {
            link.idle();
        }
    }

    /// The worker ends: what is ready is sent (or, after a stop, counted
    /// as discarded), the chained stage ends, and the clock's last mark is
    /// made.
    pub(crate) fn end(mut self) {
        if self.outbox.is_cancelled() || self.outbox.is_gone() {
            self.outbox.discard_pending();
        } else {
            self.outbox.flush();
        }
        self.run_chained();
        if let Some(link) = self.link.take() {
            link.end();
        }
        self.clock.last_mark(&mut self.outbox.blocked);
    }
}
