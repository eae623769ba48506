//! The item kind: a [`Step`] type with every lifecycle hook, one instance
//! per worker ([`Stage::step`]), and the worker loop every item-at-a-time
//! kind runs on its own threads (maps and folds too): receive a batch,
//! process each item under the stage's error policy, send what is ready
//! when the input runs dry.

use std::sync::Arc;

use crate::error::BoxError;
use crate::stats::StageScope;
use crate::threaded::edge::{Msg, Recv};
use crate::threaded::policy::guarded;
use crate::threaded::run::{job, stage_hook};
use crate::threaded::stage::{contexts, Kind, LaunchParts, Orderable, Stage, StagePlan, StageSettings};
use crate::threaded::step::{idle_wait, Output, Step, StepFactory, WorkerInfo};
use crate::threaded::worker::{drain_discarding, ChainLinks, Emitter, Outbox, WorkerClock, WorkerCtx};

/// The plan of a stage whose workers each run a step made by `make`, on
/// threads of their own.
pub(crate) fn item_plan<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
    hand: Hand<S>,
) -> StagePlan<'a>
where
    S: Step + 'a,
    S::In: 'a,
    S::Out: 'a,
{
    let links = p.links.clone();
    let jobs = contexts(s, p, Arc::new(|| {}))
        .into_iter()
        .enumerate()
        .map(|(i, (cx, outbox))| {
            let (step, shared, links) = (make(), cx.shared.clone(), links.clone());
            job(&s.name, i, shared, move || item_worker(step, cx, outbox, links, hand))
        })
        .collect();
    StagePlan { before: None, jobs }
}

/// A [`Step`] stage: its idle hook must run while its input is quiet,
/// and a worker waiting inside the source's `next()` never sees a quiet
/// input (a timed chunk would not flush, a sink stage would hold its
/// partial batch), so a source thread feeds it. Ordered with one worker
/// only; not chained (its hooks run on its own threads).
const KIND: Kind = Kind {
    needs_source_thread: true,
    ..Kind::threads("step stages", Orderable::OneWorker, true)
};

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// A stage of [`Step`] types, one per worker, made by `make` (called
    /// once per worker): `Stage::step_with("d", || Download)`. The short
    /// form for a step that needs nothing from its [`WorkerInfo`]; a bare
    /// closure given to [`Stage::step`] must name its argument's type
    /// (`|_: &WorkerInfo| Download`), or Rust cannot tell that it takes a
    /// borrow of any lifetime.
    pub fn step_with<F, S>(name: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> S + Send + Sync + 'a,
        S: Step<In = In, Out = Out>,
    {
        Self::step(name, move |_: &WorkerInfo| make())
    }

    /// A stage of [`Step`] types, one per worker, made by `factory`, with
    /// every lifecycle hook.
    pub fn step<Fac>(name: impl Into<String>, factory: Fac) -> Self
    where
        Fac: StepFactory + 'a,
        Fac::Step: Step<In = In, Out = Out>,
    {
        let factory = Arc::new(factory);
        Self::with(name, KIND, move |s, p| {
            let after = {
                let (factory, shared, stage) = (factory.clone(), p.shared.clone(), s.name.clone());
                Arc::new(move || stage_hook(&shared, &stage, "after_stage", || factory.after_stage()))
            };
            let shared = p.shared.clone();
            let links = p.links.clone();
            let jobs = contexts(s, p, after)
                .into_iter()
                .enumerate()
                .map(|(i, (cx, outbox))| {
                    let (factory, shared, links) = (factory.clone(), cx.shared.clone(), links.clone());
                    job(&s.name, i, shared, move || {
                        // A panic here fails the run (see `job`).
                        let step = factory.create(&cx.info);
                        item_worker(step, cx, outbox, links, each_item::<Fac::Step>)
                    })
                })
                .collect();
            let before = {
                let (factory, stage) = (factory.clone(), s.name.clone());
                Box::new(move || stage_hook(&shared, &stage, "before_stage", || factory.before_stage()))
                    as Box<dyn FnOnce() + Send + 'a>
            };
            StagePlan {
                before: Some(before),
                jobs,
            }
        })
    }
}

/// How a worker of the item loop runs one hand-over through its step:
/// item by item under the stage's policy ([`each_item`]), or whole (a
/// batch map). Leaves the batch empty; false if the worker must stop.
pub(crate) type Hand<S> = for<'c> fn(
    &mut S,
    &WorkerCtx<'c, <S as Step>::In>,
    &mut Vec<<S as Step>::In>,
    &mut Outbox<<S as Step>::Out>,
) -> bool;

/// Every item of the batch through `step.process`, under the policy.
pub(crate) fn each_item<S: Step>(
    step: &mut S,
    cx: &WorkerCtx<'_, S::In>,
    batch: &mut Vec<S::In>,
    outbox: &mut Outbox<S::Out>,
) -> bool {
    cx.process_batch(batch, |item| step.process(item, &mut Output { outbox: &mut *outbox }))
}

/// Runs one batch taken from the input through the step (the worker
/// shows as busy since it started, for a stuck run to name) and hands on
/// what is ready. False when the worker must stop.
pub(crate) fn run_batch<S: Step>(
    cx: &WorkerCtx<'_, S::In>,
    step: &mut S,
    hand: Hand<S>,
    em: &mut Emitter<'_, S::Out>,
    batch: &mut Vec<S::In>,
) -> bool {
    let n = batch.len();
    cx.cell.mark_busy(cx.info.index, crate::stats::clock().raw());
    let ok = hand(step, cx, batch, &mut em.outbox);
    cx.cell.mark_busy(cx.info.index, 0);
    em.after_batch(n) && ok
}

/// The loop of one worker of an item stage, on its own thread.
pub(crate) fn item_worker<'a, S: Step>(
    step: S,
    cx: WorkerCtx<'a, S::In>,
    outbox: Outbox<S::Out>,
    links: Option<Arc<ChainLinks<'a, S::Out>>>,
    hand: Hand<S>,
) {
    let _scope = StageScope::enter(cx.cell.clone());
    // Moved in after the scope, so it is dropped (and its memory freed)
    // inside it, charged to this stage.
    let clock = WorkerClock::start(cx.cell.clone(), cx.info.index);
    let mut em = Emitter::new(outbox, clock, cx.cost.clone());
    em.chain(&links, cx.info.index);
    let mut worker = ItemWorker {
        step,
        cx,
        em,
        hand,
        idle: None,
        spare: Vec::new(),
    };
    let mut ok = worker.start();
    while ok {
        ok = match worker.next() {
            Some(got) => worker.handle(got),
            None => false,
        };
    }
    worker.end();
}

/// One worker of the item loop: its step, context and way out.
struct ItemWorker<'a, S: Step> {
    step: S,
    cx: WorkerCtx<'a, S::In>,
    em: Emitter<'a, S::Out>,
    hand: Hand<S>,
    /// How long to wait between two `on_idle` calls (see `Step::idle_timeout`).
    idle: Option<std::time::Duration>,
    /// The last batch's buffer, emptied: the next pull fills it.
    spare: Vec<S::In>,
}

impl<S: Step> ItemWorker<'_, S> {
    /// Runs a call into the step with its output; a failure is fatal.
    fn call(&mut self, f: impl FnOnce(&mut S, &mut Output<'_, S::Out>) -> Result<(), BoxError>) -> bool {
        let (step, outbox) = (&mut self.step, &mut self.em.outbox);
        match guarded(|| f(step, &mut Output { outbox })) {
            Ok(()) => true,
            Err(e) => {
                self.cx.policy.fatal(e);
                false
            }
        }
    }

    fn start(&mut self) -> bool {
        let (step, info) = (&mut self.step, &self.cx.info);
        let idle = &mut self.idle;
        match guarded(|| {
            *idle = idle_wait(step.idle_timeout());
            step.on_start(info)
        }) {
            Ok(()) => true,
            Err(f) => {
                self.cx.policy.fatal(f);
                false
            }
        }
    }

    /// The next message (see `WorkerCtx::next_input`), calling the
    /// step's idle hook while the input is quiet; `None` if it failed.
    fn next(&mut self) -> Option<Recv<S::In>> {
        let ItemWorker {
            step,
            cx,
            em,
            idle,
            spare,
            ..
        } = self;
        cx.next_input(em, spare, *idle, |em| {
            match guarded(|| step.on_idle(&mut Output { outbox: &mut em.outbox })) {
                Ok(()) => true,
                Err(f) => {
                    cx.policy.fatal(f);
                    false
                }
            }
        })
    }

    /// Handles one message; false when the worker must stop.
    fn handle(&mut self, got: Recv<S::In>) -> bool {
        let cx = &self.cx;
        match got {
            Recv::Msg(Msg::Items(mut batch)) => {
                cx.take(&batch);
                let ok = run_batch(cx, &mut self.step, self.hand, &mut self.em, &mut batch);
                self.spare = batch;
                ok
            }
            Recv::Msg(Msg::Meta(meta)) => {
                let ok = self.call(|step, out| step.process_meta(meta, out));
                self.em.run_chained();
                ok
            }
            // An input that ended because the run was cancelled (the
            // stages before it stopped) is a stop, not an end: no
            // `on_finish` (a sink would finish its producer in a failed run).
            Recv::End if !cx.shared.cancel.is_cancelled() => {
                self.call(|step, out| step.on_finish(out));
                false
            }
            Recv::End | Recv::Cancelled | Recv::Idle => false,
        }
    }

    /// The worker ends: what the step holds unsent is abandoned (see
    /// `Step::held`), its shutdown hook runs, and after a stop what waits
    /// on the input is counted as discarded.
    fn end(self) {
        let ItemWorker { mut step, cx, em, .. } = self;
        match guarded(|| Ok(step.held())) {
            Ok(n) => cx.discard_n(n),
            Err(f) => cx.policy.fatal(f),
        }
        if let Err(f) = guarded(|| {
            step.on_shutdown();
            Ok(())
        }) {
            cx.policy.fatal(f);
        }
        if cx.shared.cancel.is_cancelled() || em.outbox.is_gone() {
            drain_discarding(&cx);
        }
        em.end();
    }
}
