//! Chaining: a function stage that runs on the threads of the stage before
//! it, a batch going through both by direct call (operator chaining, as
//! Flink does it).
//!
//! On a machine with few cores, a thread per worker per stage means more
//! runnable threads than cores, a hand-over between threads per batch, and
//! every item allocated by one stage freed on another thread (which the
//! system allocator makes expensive). When a function stage has the same
//! number of workers as the stage before it (at least 2, and together they
//! would have more threads than the machine has cores), the two are
//! chained: worker `i` of the first stage keeps its output in a local
//! queue, and after each of its batches runs the chained stage's worker `i`
//! over it. Each stage keeps its own row in the stats: the chained stage's
//! count, busy time and cost are measured around its own batches, and the
//! time is left out of the first stage's. The first stage's starved time is
//! the chain's; the chained stage is never starved (it never waits).
//!
//! Fold stages (`kinds/fold.rs`) chain as maps do; a chained worker runs its
//! step's `on_finish` when the worker feeding it ends without a stop.
//!
//! Not chained: ordered stages, stages of one worker (their only
//! parallelism is the pipeline's), [`Step`](super::Step) stages (their
//! hooks run on their own threads), and stages built with
//! [`Stage::unchained`](super::Stage::unchained).

use std::sync::Arc;

use crate::stats::{clock, thread_cpu_time};
use crate::sync::Mutex;
use crate::threaded::edge::Msg;
use crate::threaded::meta::Meta;
use crate::threaded::worker::{Outbox, WorkerClock};

/// A chained stage's worker, as the worker that feeds it sees it.
pub(crate) trait Downstream<T> {
    /// Called on the feeding worker's thread before anything else.
    fn start(&mut self);
    /// Runs a batch through the stage, leaving `items` empty (the caller
    /// reuses its allocation); false once it must stop (it failed, its
    /// output is gone, or the run is cancelled).
    fn batch(&mut self, items: &mut Vec<T>) -> bool;
    /// Passes a meta entry on; false once it must stop.
    fn meta(&mut self, meta: Meta) -> bool;
    /// The feeding worker's input ran dry: send what is ready.
    fn idle(&mut self);
    /// The feeding worker ends: send or discard what is left, and end.
    fn end(self: Box<Self>);
}

/// A chained stage's worker, boxed.
pub(crate) type ChainLink<'a, T> = Box<dyn Downstream<T> + Send + 'a>;

/// Per worker of a stage, the chained worker it feeds, if the next stage
/// was chained to it. Filled while the run is laid out, taken when the
/// workers start.
pub(crate) struct ChainLinks<'a, T> {
    slots: Mutex<Vec<Option<ChainLink<'a, T>>>>,
}

impl<'a, T> ChainLinks<'a, T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ChainLinks {
            slots: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn fill(&self, links: Vec<ChainLink<'a, T>>) {
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) = links.into_iter().map(Some).collect();
    }

    /// Worker `index`'s link, if the next stage is chained.
    pub(crate) fn take(&self, index: usize) -> Option<ChainLink<'a, T>> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index)
            .and_then(Option::take)
    }
}

/// Whether two stages of `workers` workers each should be chained on this
/// machine: they would have more threads than it has cores.
pub(crate) fn worth_chaining(workers: usize) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    workers >= 2 && 2 * workers > cores
}

/// Starts a worker's link (if any): takes it from `links`, puts `outbox`
/// in local mode, and starts the chained worker.
pub(crate) fn link_for<'a, T>(
    links: &Option<Arc<ChainLinks<'a, T>>>,
    index: usize,
    outbox: &mut Outbox<T>,
) -> Option<ChainLink<'a, T>> {
    let mut link = links.as_ref()?.take(index)?;
    outbox.keep_locally();
    link.start();
    Some(link)
}

/// Runs what `outbox` holds locally through `link`; the time is left out
/// of the feeding worker's clock.
pub(crate) fn run_chained<T>(
    outbox: &mut Outbox<T>,
    link: &mut Option<ChainLink<'_, T>>,
    worker_clock: &mut WorkerClock,
) {
    let Some(link) = link.as_mut() else {
        return;
    };
    if !outbox.has_local() {
        return;
    }
    let t0 = clock().raw();
    let cpu0 = thread_cpu_time();
    let mut ok = true;
    while let Some(msg) = outbox.take_local() {
        // After a stop the chained stage still takes (and discards) what
        // was handed to it, so the books balance.
        ok &= match msg {
            Msg::Items(mut items) => {
                let ok = link.batch(&mut items);
                outbox.recycle(items);
                ok
            }
            Msg::Meta(meta) => link.meta(meta),
        };
    }
    if !ok {
        outbox.stop();
    }
    worker_clock.excluded += clock().raw().saturating_sub(t0);
    // The chained stage's CPU is its own (it reads it around its calls).
    let cpu1 = thread_cpu_time();
    let x = &mut worker_clock.excluded_cpu;
    x.0 += cpu1.0.saturating_sub(cpu0.0);
    x.1 += cpu1.1.saturating_sub(cpu0.1);
}
