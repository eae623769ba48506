//! A worker of a stage chained onto the threads of the stage before it:
//! the feeding worker runs it over each of its batches by direct call (see
//! `worker/chain.rs` for when stages are chained).

use std::sync::Arc;

use crate::stats::StageScope;
use crate::threaded::kinds::item::{run_batch, Hand};
use crate::threaded::meta::Meta;
use crate::threaded::policy::guarded;
use crate::threaded::stage::{contexts, LaunchParts, StageSettings};
use crate::threaded::step::{Output, Step};
use crate::threaded::worker::{ChainLink, ChainLinks, Downstream, Emitter, Outbox, WorkerClock, WorkerCtx};

/// A worker of a chained stage: its step, context and way out, run on
/// the feeding worker's thread.
pub(crate) struct Chained<'a, S: Step> {
    step: S,
    cx: WorkerCtx<'a, S::In>,
    em: Emitter<'a, S::Out>,
    hand: Hand<S>,
    /// The stage after this one, if chained too.
    links: Option<Arc<ChainLinks<'a, S::Out>>>,
    stopped: bool,
}

impl<'a, S: Step> Chained<'a, S> {
    pub(crate) fn new(
        step: S,
        cx: WorkerCtx<'a, S::In>,
        outbox: Outbox<S::Out>,
        links: Option<Arc<ChainLinks<'a, S::Out>>>,
        hand: Hand<S>,
    ) -> Self {
        let mut clock = WorkerClock::start(cx.cell.clone(), cx.info.index);
        clock.own_calls_only();
        Chained {
            step,
            em: Emitter::new(outbox, clock, cx.cost.clone()),
            cx,
            hand,
            links,
            stopped: false,
        }
    }
}

impl<S: Step> Downstream<S::In> for Chained<'_, S> {
    fn start(&mut self) {
        self.em.chain(&self.links.take(), self.cx.info.index);
        self.em.clock.resume();
    }

    fn batch(&mut self, batch: &mut Vec<S::In>) -> bool {
        let _scope = StageScope::enter(self.cx.cell.clone());
        let cx = &self.cx;
        cx.take(batch);
        if self.stopped || cx.shared.cancel.is_cancelled() {
            cx.discard(batch);
            batch.clear();
            self.stopped = true;
            return false;
        }
        self.em.clock.resume();
        let ok = run_batch(cx, &mut self.step, self.hand, &mut self.em, batch);
        self.stopped |= !ok;
        ok
    }

    fn meta(&mut self, meta: Meta) -> bool {
        if self.stopped {
            return false;
        }
        let (out, step) = (&mut self.em.outbox, &mut self.step);
        if let Err(f) = guarded(|| step.process_meta(meta, &mut Output { outbox: out })) {
            self.cx.policy.fatal(f);
            self.stopped = true;
            return false;
        }
        self.em.run_chained();
        true
    }

    fn idle(&mut self) {
        self.em.clock.resume();
        self.em.idle();
        self.em.mark();
    }

    fn end(self: Box<Self>) {
        let Chained {
            mut step,
            cx,
            mut em,
            stopped,
            ..
        } = *self;
        let _scope = StageScope::enter(cx.cell.clone());
        em.clock.resume();
        if !stopped && !cx.shared.cancel.is_cancelled() && !em.outbox.is_gone() {
            // The feeding worker ended without a stop: this worker's input
            // ended, as `Recv::End` tells an unchained one.
            if let Err(f) = guarded(|| step.on_finish(&mut Output { outbox: &mut em.outbox })) {
                cx.policy.fatal(f);
            }
        }
        em.end();
        // The context goes last: the stage-end latch counts this worker out.
        drop(step);
        drop(cx);
    }
}

/// The workers of such a stage chained to the stage before (see
/// `worker/chain.rs`).
pub(crate) fn chained_links<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
    hand: Hand<S>,
) -> Vec<ChainLink<'a, S::In>>
where
    S: Step + 'a,
    S::In: 'a,
    S::Out: 'a,
{
    let links = p.links.clone();
    contexts(s, p, Arc::new(|| {}))
        .into_iter()
        .map(|(cx, outbox)| Box::new(Chained::new(make(), cx, outbox, links.clone(), hand)) as ChainLink<'a, S::In>)
        .collect()
}
