//! What one worker needs ([`WorkerCtx`]): its input, its stage's cell and
//! policy, the lazy source it may pull; and the stage's error policy
//! applied to a batch, item by item or whole.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::error::BoxError;
use crate::stats::StageCell;
use crate::sync::AtomicUsize;
use crate::threaded::edge::{recv, try_recv, EdgeRx, Msg, Recv};
use crate::threaded::fate;
use crate::threaded::pacing::Cost;
use crate::threaded::policy::{guarded, Failure};
use crate::threaded::policy::{OnError, Policy};
use crate::threaded::run::RunShared;
use crate::threaded::source::SharedSource;
use crate::threaded::step::WorkerInfo;
use crate::threaded::worker::{weight, Emitter, Weigher, WorkerClock};

/// Runs the stage's "after" hook when the last worker ends (also if a
/// worker unwinds); the hook comes under its panic guard (see
/// `run::stage_hook`), so a panic in it fails the run. The latch counts
/// down with `AcqRel`, as `Arc`'s drop does: each worker's release
/// publishes everything it did (its `on_shutdown` included), and the last
/// one acquires all of it before the hook runs
/// (`loom_tests::state::the_stage_end_hook_runs_once_after_every_worker`
/// models it with plain, unsynchronised per-worker state).
pub(crate) struct StageEnd<'a> {
    pub(crate) remaining: Arc<AtomicUsize>,
    pub(crate) after: Arc<dyn Fn() + Send + Sync + 'a>,
}

impl Drop for StageEnd<'_> {
    fn drop(&mut self) {
        if self.remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            (self.after)();
        }
    }
}

/// What one worker needs.
pub(crate) struct WorkerCtx<'a, In> {
    pub(crate) info: WorkerInfo,
    pub(crate) rx: EdgeRx<In>,
    pub(crate) cell: Arc<StageCell>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) policy: Policy,
    pub(crate) clone_in: Option<fn(&In) -> In>,
    pub(crate) weigh_in: Option<Weigher<In>>,
    /// What an item costs this stage, measured per batch; the stage before
    /// sizes its batches by it (see `pacing.rs`).
    pub(crate) cost: Arc<Cost>,
    /// The lazy source, for the first stage's workers to pull themselves
    /// when their input edge is empty (see `source.rs`).
    pub(crate) source: Option<Arc<SharedSource<'a, In>>>,
    /// Held for its `Drop`: the last worker to end runs the stage's hook.
    #[allow(dead_code)]
    pub(crate) end: StageEnd<'a>,
}

impl<In> WorkerCtx<'_, In> {
    /// Pulls the next batch from the lazy source, if this stage reads it
    /// and it has more. The time spent pulling is the source's busy time,
    /// and this worker's starved time: it is waiting for its input, as it
    /// would wait for a source thread.
    /// `spare` is an empty buffer to pull into (its allocation is reused).
    /// `holding`: this worker holds results it has not sent; an empty batch
    /// then means the source has nothing yet (see [`SharedSource::pull_holding`]).
    pub(crate) fn pull(&self, clock: &mut WorkerClock, spare: &mut Vec<In>, holding: bool) -> Option<Vec<In>> {
        let source = self.source.as_ref()?;
        let (batch, spent) = source.pull_holding(source.pacing().limit(), std::mem::take(spare), holding)?;
        clock.starved += spent;
        Some(batch)
    }

    /// The worker's next message, by the rule every loop follows: the
    /// input edge first (items put through input handles), then the lazy
    /// source if this stage pulls it, then a wait on the edge. What the
    /// worker holds is sent whenever the source has nothing yet and before
    /// it waits. `quiet` runs each time the input is found dry, and again
    /// every `idle` while it stays dry (a step's idle hook); `None` if it
    /// says stop.
    pub(crate) fn next_input<T>(
        &self,
        em: &mut Emitter<'_, T>,
        spare: &mut Vec<In>,
        idle: Option<Duration>,
        mut quiet: impl FnMut(&mut Emitter<'_, T>) -> bool,
    ) -> Option<Recv<In>> {
        loop {
            let holding = em.holds();
            let pulled = try_recv(&self.rx).or_else(|| {
                let batch = self.pull(&mut em.clock, spare, holding)?;
                Some(Recv::Msg(Msg::Items(batch)))
            });
            match pulled {
                Some(Recv::Msg(Msg::Items(empty))) if empty.is_empty() => {
                    *spare = empty;
                    em.idle();
                }
                Some(got) => return Some(got),
                None => loop {
                    if !quiet(em) {
                        return None;
                    }
                    em.idle();
                    em.mark();
                    match recv(&self.rx, &self.shared.cancel, idle, &mut em.clock.starved) {
                        Recv::Idle => continue,
                        got => return Some(got),
                    }
                },
            }
        }
    }

    /// Runs `call` on one unit of work weighing `w` (an item, or a whole
    /// batch for a kind that takes batches) under the stage's policy: tried
    /// again on a copy (made by `copy`) while the policy allows, then
    /// skipped or failed. False if the worker must stop (a fatal failure,
    /// or a cancel during a backoff, which discards the unit).
    pub(crate) fn attempt<T>(
        &self,
        unit: T,
        w: u64,
        copy: Option<&impl Fn(&T) -> T>,
        mut call: impl FnMut(T) -> Result<(), Failure>,
    ) -> bool {
        let (mut unit, mut retry) = (unit, 0);
        loop {
            let spare = match self.policy.spare(&unit, retry, copy) {
                Ok(spare) => spare,
                Err(f) => {
                    self.policy.fail(w, f);
                    return false;
                }
            };
            let failure = match call(unit) {
                Ok(()) => return true,
                Err(f) => f,
            };
            let Some(again) = spare else {
                return self.policy.give_up(w, failure);
            };
            retry += 1;
            if !self.shared.cancel.sleep(self.policy.retrying(retry)) {
                self.cell.discarded.fetch_add(w, Relaxed);
                return false;
            }
            unit = again;
        }
    }

    /// Counts the items of a batch taken from the input.
    pub(crate) fn take(&self, batch: &[In]) {
        self.cell.count_in.fetch_add(weight(batch, &self.weigh_in), Relaxed);
    }

    /// The weight of one input item.
    pub(crate) fn weight_of(&self, item: &In) -> u64 {
        self.weigh_in.as_ref().map_or(1, |w| w(item))
    }

    /// Counts input items abandoned because the run or the stage stopped.
    pub(crate) fn discard(&self, items: &[In]) {
        self.cell.discarded.fetch_add(weight(items, &self.weigh_in), Relaxed);
    }

    /// Counts `n` already-processed items abandoned because the run stopped.
    pub(crate) fn discard_n(&self, n: u64) {
        self.cell.discarded.fetch_add(n, Relaxed);
    }

    /// Processes a batch under the stage's policy; returns false if the
    /// worker must stop. With the default policy (fail, no retries) the whole
    /// batch runs under one panic guard: the per-item cost is the call itself.
    /// The batch is left empty, its allocation kept for the next one.
    ///
    /// What a call drops of its item learns the call's outcome (see
    /// `fate.rs`).
    pub(crate) fn process_batch(&self, batch: &mut Vec<In>, mut call: impl FnMut(In) -> Result<(), BoxError>) -> bool {
        let mut items = batch.drain(..);
        // Declared after `items`, so dropped before it: the rest of a batch
        // discarded after a failure is dropped outside the scope, given no
        // error.
        let _fate = fate::Batch::open();
        if self.policy.on_error == OnError::Fail {
            let mut current = 1;
            let cancel = &self.shared.cancel;
            let result = guarded(|| {
                // Stop at a cancel (another worker failed, or an abort):
                // the rest of the batch is discarded, not processed.
                while !cancel.is_cancelled() {
                    let Some(item) = items.next() else { break };
                    current = self.weight_of(&item);
                    call(item)?;
                    fate::succeeded();
                }
                Ok(())
            });
            return match result {
                Ok(()) if items.as_slice().is_empty() => true,
                Ok(()) => {
                    self.discard(items.as_slice());
                    false
                }
                Err(f) => {
                    fate::failed(|| f.describe());
                    self.discard(items.as_slice());
                    self.policy.fail(current, f);
                    false
                }
            };
        }
        // As on the fast path, a cancel is checked before each item.
        while !self.shared.cancel.is_cancelled() {
            let Some(item) = items.next() else {
                return true;
            };
            let w = self.weight_of(&item);
            if !self.attempt(item, w, self.clone_in.as_ref(), |item| told(|| call(item))) {
                break;
            }
        }
        self.discard(items.as_slice());
        false
    }

    /// Processes a whole batch as one call under the stage's policy (for
    /// a kind that takes batches): a skip counts every item of it as
    /// skipped, a retry calls again with a copy of the batch. False if
    /// the worker must stop; the batch is left empty.
    pub(crate) fn process_whole(
        &self,
        batch: &mut Vec<In>,
        mut call: impl FnMut(Vec<In>) -> Result<(), BoxError>,
    ) -> bool {
        let unit = std::mem::take(batch);
        if self.shared.cancel.is_cancelled() {
            self.discard(&unit);
            return false;
        }
        let w = weight(&unit, &self.weigh_in);
        let _fate = fate::Batch::open();
        let copy = self
            .clone_in
            .map(|c| move |b: &Vec<In>| b.iter().map(c).collect::<Vec<In>>());
        self.attempt(unit, w, copy.as_ref(), |unit| told(|| call(unit)))
    }
}

/// Runs one call into the step under a panic guard and tells what it
/// dropped of its item how the call ended (see `fate.rs`).
fn told(call: impl FnOnce() -> Result<(), BoxError>) -> Result<(), Failure> {
    let result = guarded(call);
    match &result {
        Ok(()) => fate::succeeded(),
        Err(f) => fate::failed(|| f.describe()),
    }
    result
}

/// When a stage stops early, counts what is still queued on its input as
/// taken and discarded, without waiting.
pub(crate) fn drain_discarding<In>(cx: &WorkerCtx<'_, In>) {
    while let Ok(msg) = cx.rx.try_recv() {
        if let Msg::Items(b) = msg {
            cx.take(&b);
            cx.discard(&b);
        }
    }
}
