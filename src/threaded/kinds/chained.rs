//! A worker of a stage chained onto the threads of the stage before it:
//! the feeding worker runs it over each of its batches by direct call (see
//! `worker/chain.rs` for when stages are chained).

use std::sync::Arc;

use crate::stats::{clock, StageScope};
use crate::threaded::meta::Meta;
use crate::threaded::policy::guarded;
use crate::threaded::stage::{contexts, LaunchParts, StageSettings};
use crate::threaded::step::{Output, Step};
use crate::threaded::worker::{feed, link_for, Downstream, Link, Links, Outbox, WorkerClock, WorkerCtx};

/// A worker of a chained stage: its step, context, outbox and clock, run
/// on the feeding worker's thread.
pub(crate) struct Chained<'a, S: Step> {
    step: S,
    cx: WorkerCtx<'a, S::In>,
    outbox: Outbox<S::Out>,
    clock: WorkerClock,
    /// The stage after this one, if chained too.
    links: Option<Arc<Links<'a, S::Out>>>,
    link: Option<Link<'a, S::Out>>,
    stopped: bool,
}

impl<'a, S: Step> Chained<'a, S> {
    pub(crate) fn new(
        step: S,
        cx: WorkerCtx<'a, S::In>,
        outbox: Outbox<S::Out>,
        links: Option<Arc<Links<'a, S::Out>>>,
    ) -> Self {
        let mut clock = WorkerClock::start(cx.cell.clone(), cx.info.index);
        clock.own_calls_only();
        Chained {
            step,
            cx,
            outbox,
            clock,
            links,
            link: None,
            stopped: false,
        }
    }
}

impl<S: Step> Downstream<S::In> for Chained<'_, S> {
    fn start(&mut self) {
        self.link = link_for(&self.links.take(), self.cx.info.index, &mut self.outbox);
        self.clock.resume();
    }

    fn batch(&mut self, batch: &mut Vec<S::In>) -> bool {
        let cell = self.cx.cell.clone();
        let _scope = StageScope::enter(cell.clone());
        self.cx.take(batch);
        if self.stopped || self.cx.shared.cancel.is_cancelled() {
            self.cx.discard(batch);
            batch.clear();
            self.stopped = true;
            return false;
        }
        self.clock.resume();
        let n = batch.len();
        let (out, step) = (&mut self.outbox, &mut self.step);
        cell.mark_busy(self.cx.info.index, clock().raw());
        let ok = self
            .cx
            .process_batch(batch, |item| step.process(item, &mut Output { outbox: &mut *out }));
        cell.mark_busy(self.cx.info.index, 0);
        feed(&mut self.outbox, &mut self.link, &mut self.clock);
        let busy = self.clock.mark(&mut self.outbox.blocked);
        self.cx.cost.observe(busy, n);
        self.outbox.repace();
        feed(&mut self.outbox, &mut self.link, &mut self.clock);
        let ok = ok && !self.outbox.is_gone() && !self.cx.shared.cancel.is_cancelled();
        self.stopped |= !ok;
        ok
    }

    fn meta(&mut self, meta: Meta) -> bool {
        if self.stopped {
            return false;
        }
        let (out, step) = (&mut self.outbox, &mut self.step);
        if let Err(f) = guarded(|| step.process_meta(meta, &mut Output { outbox: out })) {
            self.cx.fatal(f);
            self.stopped = true;
            return false;
        }
        feed(&mut self.outbox, &mut self.link, &mut self.clock);
        true
    }

    fn idle(&mut self) {
        self.clock.resume();
        self.outbox.flush();
        feed(&mut self.outbox, &mut self.link, &mut self.clock);
        if let Some(link) = self.link.as_mut() {
            link.idle();
        }
        self.clock.mark(&mut self.outbox.blocked);
    }

    fn finish(self: Box<Self>) {
        let mut this = *self;
        let cell = this.cx.cell.clone();
        let _scope = StageScope::enter(cell.clone());
        this.clock.resume();
        if !this.stopped && !this.cx.shared.cancel.is_cancelled() && !this.outbox.is_gone() {
            // The feeding worker ended without a stop: this worker's input
            // ended, as `Recv::End` tells an unchained one.
            let (out, step) = (&mut this.outbox, &mut this.step);
            if let Err(f) = guarded(|| step.on_finish(&mut Output { outbox: out })) {
                this.cx.fatal(f);
            }
        }
        if this.cx.shared.cancel.is_cancelled() || this.outbox.is_gone() {
            this.outbox.discard_pending();
        } else {
            this.outbox.flush();
        }
        feed(&mut this.outbox, &mut this.link, &mut this.clock);
        if let Some(link) = this.link.take() {
            link.finish();
        }
        this.clock.finish(&mut this.outbox.blocked);
        // The context goes last: the stage-end latch counts this worker out.
    }
}

/// The workers of such a stage chained to the stage before (see
/// `chain.rs`).
pub(crate) fn chained_links<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
) -> Vec<Link<'a, S::In>>
where
    S: Step + 'a,
    S::In: 'a,
    S::Out: 'a,
{
    let links = p.links.clone();
    contexts(s, p, Arc::new(|| {}))
        .into_iter()
        .map(|(cx, outbox)| Box::new(Chained::new(make(), cx, outbox, links.clone())) as Link<'a, S::In>)
        .collect()
}
