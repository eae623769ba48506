//! The worker loop for item steps (functions and [`Step`] types): receive a
//! batch, process each item under the stage's error policy, send what is
//! ready when the input runs dry.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::chain::{feed, link_for, Links};
use super::channel::{recv, try_recv, EdgeRx, Msg, Recv};
use super::fate;
use super::outbox::{weight, Outbox, Weigher, WorkerClock};
use super::pacing::Cost;
use super::policy::{OnError, SkipHook, Skipped};
use super::pull::SharedSource;
use super::run::{panic_message, RunShared};
use super::step::{idle_wait, Output, Step, WorkerInfo};
use crate::error::{BoxError, RunError};
use crate::stats::{StageCell, StageScope};
use crate::sync::AtomicUsize;

/// Why a call into user code did not succeed.
pub(crate) enum Failure {
    Error(BoxError),
    Panic(String),
}

impl Failure {
    /// The error's text (for a panic, `panicked: ` and its message).
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Error(e) => e.to_string(),
            Failure::Panic(m) => format!("panicked: {m}"),
        }
    }
}

/// Calls user code, turning a panic into a `Failure`.
pub(crate) fn guarded<R>(f: impl FnOnce() -> Result<R, BoxError>) -> Result<R, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(p) => Err(Failure::Panic(panic_message(&*p))),
    }
}

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

/// The loop of one worker of an item stage.
pub(crate) fn item_worker<'a, S: Step>(
    step: S,
    cx: WorkerCtx<'a, S::In>,
    outbox: Outbox<S::Out>,
    links: Option<Arc<Links<'a, S::Out>>>,
) {
    let cell = cx.cell.clone();
    let _scope = StageScope::enter(cell.clone());
    // Moved into locals declared after the scope, so they are dropped (and
    // their memory freed) inside it, charged to this stage.
    let (mut step, cx, mut outbox) = (step, cx, outbox);
    // A chained next stage runs on this thread (see `chain.rs`).
    let mut link = link_for(&links, cx.info.index, &mut outbox);
    let mut clock = WorkerClock::start(cell.clone(), cx.info.index);
    let mut idle = None;
    // The last batch's buffer, emptied: the next pull fills it.
    let mut spare = Vec::new();
    let mut ok = match guarded(|| {
        idle = idle_wait(step.idle_timeout());
        step.on_start(&cx.info)
    }) {
        Ok(()) => true,
        Err(f) => {
            cx.fatal(f);
            false
        }
    };
    while ok {
        // The input edge first (items put through input handles), then
        // the lazy source if this stage pulls it, then wait.
        let holding = outbox.holds() || outbox.has_local();
        let got = match try_recv(&cx.rx).or_else(|| {
            cx.pull(&mut clock, &mut spare, holding)
                .map(|b| Recv::Msg(Msg::Items(b)))
        }) {
            Some(Recv::Msg(Msg::Items(empty))) if empty.is_empty() => {
                // The source has nothing yet: send what this worker holds
                // before it waits on the source again.
                spare = empty;
                outbox.flush();
                feed(&mut outbox, &mut link, &mut clock);
                if let Some(link) = link.as_mut() {
                    link.idle();
                }
                continue;
            }
            Some(got) => got,
            None => {
                // The input ran dry: send what is ready, then wait.
                if let Err(f) = guarded(|| step.on_idle(&mut Output { outbox: &mut outbox })) {
                    cx.fatal(f);
                    break;
                }
                outbox.flush();
                feed(&mut outbox, &mut link, &mut clock);
                if let Some(link) = link.as_mut() {
                    link.idle();
                }
                clock.mark(&mut outbox.blocked);
                loop {
                    match recv(&cx.rx, &cx.shared.cancel, idle, &mut clock.starved) {
                        Recv::Idle => {
                            if let Err(f) = guarded(|| step.on_idle(&mut Output { outbox: &mut outbox })) {
                                cx.fatal(f);
                                break Recv::Cancelled;
                            }
                            outbox.flush();
                            feed(&mut outbox, &mut link, &mut clock);
                        }
                        got => break got,
                    }
                }
            }
        };
        match got {
            Recv::Msg(Msg::Items(mut batch)) => {
                cx.take(&batch);
                let n = batch.len();
                let (out, step) = (&mut outbox, &mut step);
                cx.cell.mark_busy(cx.info.index, crate::stats::clock().raw());
                ok = cx.process_batch(&mut batch, |item| step.process(item, &mut Output { outbox: &mut *out }));
                cx.cell.mark_busy(cx.info.index, 0);
                spare = batch;
                feed(&mut outbox, &mut link, &mut clock);
                let busy = clock.mark(&mut outbox.blocked);
                cx.cost.observe(busy, n);
                outbox.repace();
                feed(&mut outbox, &mut link, &mut clock);
                ok = ok && !outbox.is_gone() && !cx.shared.cancel.is_cancelled();
            }
            Recv::Msg(Msg::Meta(meta)) => {
                if let Err(f) = guarded(|| step.process_meta(meta, &mut Output { outbox: &mut outbox })) {
                    cx.fatal(f);
                    ok = false;
                }
                feed(&mut outbox, &mut link, &mut clock);
            }
            // An input that ended because the run was cancelled (the
            // stages before it stopped) is a stop, not an end: no
            // `on_finish` (a sink would finish its producer in a failed run).
            Recv::End if !cx.shared.cancel.is_cancelled() => {
                if let Err(f) = guarded(|| step.on_finish(&mut Output { outbox: &mut outbox })) {
                    cx.fatal(f);
                }
                break;
            }
            Recv::End | Recv::Cancelled | Recv::Idle => break,
        }
    }
    // What the step still holds unsent is abandoned (see `Step::held`).
    match guarded(|| Ok(step.held())) {
        Ok(n) => cx.discard_n(n),
        Err(f) => cx.fatal(f),
    }
    if let Err(f) = guarded(|| {
        step.on_shutdown();
        Ok(())
    }) {
        cx.fatal(f);
    }
    if cx.shared.cancel.is_cancelled() || outbox.is_gone() {
        outbox.discard_pending();
        drain_discarding(&cx);
    } else {
        outbox.flush();
    }
    feed(&mut outbox, &mut link, &mut clock);
    if let Some(link) = link {
        link.finish();
    }
    clock.finish(&mut outbox.blocked);
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
