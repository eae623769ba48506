//! The worker loop for item steps (functions and [`Step`] types): receive a
//! batch, process each item under the stage's error policy, send what is
//! ready when the input runs dry.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::error::{BoxError, RunError};
use crate::stats::StageCell;
use crate::sync::AtomicUsize;
use crate::threaded::edge::{EdgeRx, Msg};
use crate::threaded::fate;
use crate::threaded::pacing::Cost;
use crate::threaded::policy::{guarded, Failure};
use crate::threaded::policy::{OnError, SkipHook, Skipped};
use crate::threaded::run::{panic_message, RunShared};
use crate::threaded::source::SharedSource;
use crate::threaded::step::WorkerInfo;
use crate::threaded::worker::{weight, Weigher, WorkerClock};

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
    pub(crate) policy: OnError,
    pub(crate) clone_in: Option<fn(&In) -> In>,
    pub(crate) weigh_in: Option<Weigher<In>>,
    /// Told of every skipped item (`Stage::on_skip`).
    pub(crate) on_skip: Option<SkipHook>,
    /// What an item costs this stage, measured per batch; the stage before
    /// sizes its batches by it (see `pacing.rs`).
    pub(crate) cost: Arc<Cost>,
    /// The lazy source, for the first stage's workers to pull themselves
    /// when their input edge is empty (see `pull.rs`).
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

    /// Records a fatal failure of this worker and stops the run.
    pub(crate) fn fatal(&self, failure: Failure) {
        let stage = self.info.stage.clone();
        let worker = self.info.index;
        self.shared.fail(match failure {
            Failure::Error(source) => RunError::Step { stage, worker, source },
            Failure::Panic(message) => RunError::Panic { stage, worker, message },
        });
    }

    /// Tells the stage's skip hook (if any) that an item was skipped, under
    /// a panic guard: a panicking hook fails the run (returns false).
    pub(crate) fn tell_skip(&self, error: impl FnOnce() -> String) -> bool {
        let Some(hook) = &self.on_skip else {
            return true;
        };
        let skipped = Skipped {
            stage: self.info.stage.clone(),
            worker: self.info.index,
            error: error(),
        };
        match catch_unwind(AssertUnwindSafe(|| hook(&skipped))) {
            Ok(()) => true,
            Err(p) => {
                self.fatal(Failure::Panic(format!("in its on_skip hook: {}", panic_message(&*p))));
                false
            }
        }
    }

    /// Processes one item under the stage's policy. Returns false if the
    /// run must stop (a fatal failure, or cancellation during a backoff).
    pub(crate) fn attempt(&self, item: In, mut call: impl FnMut(In) -> Result<(), Failure>) -> bool {
        let retries = self.policy.retries();
        let w = self.weight_of(&item);
        let mut item = item;
        let mut retry = 0;
        loop {
            // The copy kept for a retry is user code too (`Clone`): a panic
            // in it fails the item as a panic in the step would.
            let spare = match self.clone_in {
                Some(clone) if retry < retries => match catch_unwind(AssertUnwindSafe(|| clone(&item))) {
                    Ok(copy) => Some(copy),
                    Err(p) => {
                        self.cell.failed.fetch_add(w, Relaxed);
                        self.fatal(Failure::Panic(format!("in its item's Clone: {}", panic_message(&*p))));
                        return false;
                    }
                },
                _ => None,
            };
            let failure = match call(item) {
                Ok(()) => return true,
                Err(f) => f,
            };
            match spare {
                Some(again) => {
                    retry += 1;
                    self.cell.retried.fetch_add(1, Relaxed);
                    if !self.shared.cancel.sleep(self.policy.backoff(retry)) {
                        self.cell.discarded.fetch_add(w, Relaxed);
                        return false;
                    }
                    item = again;
                }
                None if self.policy.skips_at_last() => {
                    self.cell.skipped.fetch_add(w, Relaxed);
                    return self.tell_skip(|| failure.describe());
                }
                None => {
                    self.cell.failed.fetch_add(w, Relaxed);
                    self.fatal(failure);
                    return false;
                }
            }
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
        if self.policy == OnError::Fail {
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
                    self.cell.failed.fetch_add(current, Relaxed);
                    self.discard(items.as_slice());
                    self.fatal(f);
                    false
                }
            };
        }
        // As on the fast path, a cancel is checked before each item.
        while !self.shared.cancel.is_cancelled() {
            let Some(item) = items.next() else {
                return true;
            };
            let call = |item| {
                let result = guarded(|| call(item));
                match &result {
                    Ok(()) => fate::succeeded(),
                    Err(f) => fate::failed(|| f.describe()),
                }
                result
            };
            if !self.attempt(item, call) {
                break;
            }
        }
        self.discard(items.as_slice());
        false
    }
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
