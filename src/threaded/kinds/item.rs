//! The item kind: a [`Step`] type with every lifecycle hook, one instance
//! per worker ([`Stage::step`]), and the worker loop every item-at-a-time
//! kind runs on its own threads (maps and folds too): receive a batch,
//! process each item under the stage's error policy, send what is ready
//! when the input runs dry.

use std::sync::Arc;

use crate::stats::StageScope;
use crate::threaded::edge::{recv, try_recv, Msg, Recv};
use crate::threaded::policy::guarded;
use crate::threaded::run::{job, stage_hook};
use crate::threaded::stage::{contexts, Kind, LaunchParts, Orderable, Stage, StagePlan, StageSettings};
use crate::threaded::step::{idle_wait, Output, Step, StepFactory, WorkerInfo};
use crate::threaded::worker::{drain_discarding, feed, link_for, Links, Outbox, WorkerClock, WorkerCtx};

/// The plan of a stage whose workers each run a step made by `make`, on
/// threads of their own.
pub(crate) fn item_plan<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
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
            job(&s.name, i, shared, move || item_worker(step, cx, outbox, links))
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
                        item_worker(step, cx, outbox, links)
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
