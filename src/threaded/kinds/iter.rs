//! The worker loop for iterator steps: the step gets an iterator over the
//! stage's input ([`InputIter`]) and may keep any state while it pulls.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::sync::AtomicUsize;

use crate::error::BoxError;
use crate::iter::BoxedStep;
use crate::stats::StageScope;
use crate::threaded::edge::{edge, recv, try_recv, Layout, Msg, Recv};
use crate::threaded::pacing::Pacing;
use crate::threaded::policy::{guarded, Failure};
use crate::threaded::run::job;
use crate::threaded::stage::{contexts, Kind, Orderable, Stage, StagePlan};
use crate::threaded::worker::{drain_discarding, StageEnd, WorkerCtx};
use crate::threaded::worker::{feed, link_for, Link, Links};
use crate::threaded::worker::{Outbox, WorkerClock};

/// The input of an iterator step in a threaded stage: the items that reach
/// this worker, in the order it takes them. It sends what the worker has
/// produced so far whenever it is about to wait for more input, and passes
/// meta entries on.
pub struct InputIter<'a, T> {
    /// The batch being pulled from; a deque so that its emptied buffer
    /// goes back to the worker for the next batch.
    current: VecDeque<T>,
    side: Rc<RefCell<dyn Refill<T> + 'a>>,
    /// Items handed to the step, seen by the worker even if the step leaks
    /// this iterator (then the rest of the batch it holds is counted as
    /// discarded).
    pulled: Rc<Cell<u64>>,
}

impl<T> fmt::Debug for InputIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputIter")
            .field("buffered", &self.current.len())
            .finish_non_exhaustive()
    }
}

impl<T> Iterator for InputIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if let Some(x) = self.current.pop_front() {
            self.pulled.set(self.pulled.get() + 1);
            return Some(x);
        }
        // Empty, so this conversion moves nothing and keeps the buffer.
        let used = Vec::from(std::mem::take(&mut self.current));
        let batch = self.side.borrow_mut().refill(used)?;
        self.current = VecDeque::from(batch);
        let x = self.current.pop_front();
        self.pulled.set(self.pulled.get() + u64::from(x.is_some()));
        x
    }
}

impl<T> Drop for InputIter<'_, T> {
    fn drop(&mut self) {
        // Items taken but never pulled by the step.
        if !self.current.is_empty() {
            // Counted here: not as unread by a worker looking for a leak.
            self.pulled.set(self.pulled.get() + self.current.len() as u64);
            let (a, b) = self.current.as_slices();
            let mut side = self.side.borrow_mut();
            side.discard(a);
            side.discard(b);
        }
    }
}

trait Refill<T> {
    /// The next batch; `used` is the last one's emptied buffer, to reuse.
    fn refill(&mut self, used: Vec<T>) -> Option<Vec<T>>;
    fn discard(&mut self, items: &[T]);
}

struct Side<'a, In, Out> {
    cx: WorkerCtx<'a, In>,
    outbox: Rc<RefCell<Outbox<Out>>>,
    clock: WorkerClock,
    ended: bool,
    /// This worker has taken at least one batch.
    took: bool,
    /// Items in the batch the step is pulling from.
    last: usize,
    /// Items in the batches handed to the step.
    handed: u64,
    /// A chained next stage, run on this thread (see `chain.rs`).
    link: Option<Link<'a, Out>>,
}

impl<In, Out> Side<'_, In, Out> {
    /// Runs what the outbox keeps locally through the chained stage.
    fn feed(&mut self) {
        let mut ob = self.outbox.borrow_mut();
        feed(&mut ob, &mut self.link, &mut self.clock);
    }

    fn mark(&mut self) {
        let mut ob = self.outbox.borrow_mut();
        let busy = self.clock.mark(&mut ob.blocked);
        self.cx.cost.observe(busy, std::mem::take(&mut self.last));
        ob.repace();
    }
}

impl<In, Out> Refill<In> for Side<'_, In, Out> {
    fn refill(&mut self, used: Vec<In>) -> Option<Vec<In>> {
        let mut spare = used;
        loop {
            self.cx.cell.mark_busy(self.cx.info.index, 0);
            if self.ended {
                return None;
            }
            self.mark();
            self.feed();
            // Results kept in the outbox: a source that waits inside
            // `next()` hands control back within the linger (an empty
            // batch), so that they are sent instead of waiting with it.
            let holding = {
                let ob = self.outbox.borrow();
                ob.holds() || ob.has_local()
            };
            let got = match try_recv(&self.cx.rx).or_else(|| {
                let batch = self.cx.pull(&mut self.clock, &mut spare, holding)?;
                Some(Recv::Msg(Msg::Items(batch)))
            }) {
                Some(Recv::Msg(Msg::Items(empty))) if empty.is_empty() => {
                    // The source has nothing yet: send what is held, then
                    // pull again.
                    spare = empty;
                    self.outbox.borrow_mut().flush();
                    self.feed();
                    if let Some(link) = self.link.as_mut() {
                        link.idle();
                    }
                    continue;
                }
                Some(got) => got,
                None => {
                    self.outbox.borrow_mut().flush();
                    self.feed();
                    if let Some(link) = self.link.as_mut() {
                        link.idle();
                    }
                    recv(&self.cx.rx, &self.cx.shared.cancel, None, &mut self.clock.starved)
                }
            };
            match got {
                Recv::Msg(Msg::Items(batch)) => {
                    self.took = true;
                    self.last = batch.len();
                    self.handed += batch.len() as u64;
                    self.cx.take(&batch);
                    self.cx.cell.mark_busy(self.cx.info.index, crate::stats::clock().raw());
                    return Some(batch);
                }
                Recv::Msg(Msg::Meta(meta)) => {
                    self.outbox.borrow_mut().meta(meta);
                    self.feed();
                }
                Recv::End | Recv::Cancelled | Recv::Idle => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    fn discard(&mut self, items: &[In]) {
        self.cx.discard(items);
    }
}

/// The loop of one worker of an iterator stage. `step` turns the input
/// iterator into an iterator of results.
pub(crate) fn iter_worker<'a, In: 'a, Out: 'a, J>(
    step: impl FnOnce(InputIter<'a, In>) -> J,
    cx: WorkerCtx<'a, In>,
    outbox: Outbox<Out>,
    links: Option<Arc<Links<'a, Out>>>,
) where
    J: IntoIterator<Item = Result<Out, BoxError>>,
{
    let cell = cx.cell.clone();
    let _scope = StageScope::enter(cell.clone());
    let skip = cx.policy.skips_at_last();
    let shared = cx.shared.clone();
    let mut outbox = outbox;
    let link = link_for(&links, cx.info.index, &mut outbox);
    let outbox = Rc::new(RefCell::new(outbox));
    let side = Rc::new(RefCell::new(Side {
        clock: WorkerClock::start(cell.clone(), cx.info.index),
        cx,
        outbox: outbox.clone(),
        ended: false,
        took: false,
        last: 0,
        handed: 0,
        link,
    }));
    let pulled = Rc::new(Cell::new(0));
    let input = InputIter {
        current: VecDeque::new(),
        side: side.clone(),
        pulled: pulled.clone(),
    };
    let result = guarded(|| {
        for r in step(input) {
            match r {
                Ok(x) => {
                    let mut ob = outbox.borrow_mut();
                    ob.push(x);
                    if ob.has_local() {
                        drop(ob);
                        side.borrow_mut().feed();
                    }
                }
                Err(e) if skip => {
                    cell.skipped.fetch_add(1, Relaxed);
                    if !side.borrow().cx.tell_skip(|| e.to_string()) {
                        break;
                    }
                }
                Err(e) => {
                    cell.failed.fetch_add(1, Relaxed);
                    return Err(e);
                }
            }
            if shared.cancel.is_cancelled() || outbox.borrow().is_gone() {
                break;
            }
        }
        Ok(())
    });
    // The step and its input iterator are gone: this worker owns the rest.
    // A step that leaked its iterator (`mem::forget`, `Box::leak`) still
    // shares the worker's side: take its parts out, so that the error is
    // reported, the outbox flushed, and the edges released as usual.
    let (side, outbox) = match Rc::try_unwrap(side) {
        Ok(side) => (side.into_inner(), outbox),
        Err(leaked) => {
            let mut side = reclaim(&mut leaked.borrow_mut());
            // What the leaked iterator held, never pulled.
            side.cx.discard_n(side.handed.saturating_sub(pulled.get()));
            let (dead_tx, _) = edge(Layout::for_capacity(1));
            let stand_in = Outbox::new(dead_tx, Pacing::fixed(1), cell.clone(), shared.clone(), None);
            let outbox = Rc::new(RefCell::new(std::mem::replace(&mut *outbox.borrow_mut(), stand_in)));
            side.outbox = outbox.clone();
            (side, outbox)
        }
    };
    if let Err(f) = result {
        if matches!(f, Failure::Panic(_)) && side.took && !side.ended {
            // A panic while the input flows counts as one failed item (an
            // error already did): the one the step was working on, so a
            // one-for-one step keeps its books. A panic before the first
            // item or after the end held no item.
            cell.failed.fetch_add(1, Relaxed);
        }
        side.cx.fatal(f);
    }
    let mut ob = outbox.borrow_mut();
    if shared.cancel.is_cancelled() || ob.is_gone() {
        ob.discard_pending();
    } else {
        ob.flush();
    }
    if !side.ended {
        // The step stopped before its input ended (an error, a cancel, or
        // a step like `take(n)`): count what is queued, then drop the input,
        // which stops the stages upstream.
        drain_discarding(&side.cx);
    }
    let mut side = side;
    feed(&mut ob, &mut side.link, &mut side.clock);
    if let Some(link) = side.link.take() {
        link.finish();
    }
    side.clock.finish(&mut ob.blocked);
}

/// Takes a leaked side's parts out, leaving stand-ins: its input receiver
/// (so upstream sees this worker go), its share of the stage-end latch, and
/// its clock.
fn reclaim<'a, In, Out>(side: &mut Side<'a, In, Out>) -> Side<'a, In, Out> {
    let cx = &mut side.cx;
    let stand_in_end = StageEnd {
        remaining: Arc::new(AtomicUsize::new(usize::MAX)),
        after: Arc::new(|| {}),
    };
    let clock = WorkerClock::start(cx.cell.clone(), cx.info.index);
    Side {
        cx: WorkerCtx {
            info: cx.info.clone(),
            rx: std::mem::replace(&mut cx.rx, edge(Layout::for_capacity(1)).1),
            cell: cx.cell.clone(),
            shared: cx.shared.clone(),
            policy: cx.policy,
            clone_in: cx.clone_in,
            weigh_in: cx.weigh_in.clone(),
            on_skip: cx.on_skip.clone(),
            cost: cx.cost.clone(),
            source: cx.source.take(),
            end: std::mem::replace(&mut cx.end, stand_in_end),
        },
        outbox: side.outbox.clone(),
        clock: std::mem::replace(&mut side.clock, clock),
        ended: side.ended,
        took: side.took,
        last: side.last,
        handed: side.handed,
        link: side.link.take(),
    }
}

/// An iterator stage: ordered with one worker only, no retries (the
/// step holds its input iterator: an item cannot be handed to it again).
const KIND: Kind = Kind::threads("iterator stages", Orderable::OneWorker, false);

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// A stage whose workers each run an iterator step over the stage's
    /// input: any function from an iterator to an iterator, which may keep
    /// state (a running count, a batch). Iterator-pipeline steps plug in
    /// unchanged.
    pub fn iter<F, J>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(InputIter<'a, In>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = Out>,
    {
        Self::try_iter(name, move |it| f(it).into_iter().map(Ok::<Out, BoxError>))
    }

    /// An iterator stage whose items are results; an error goes to the
    /// stage's policy (fail, or skip that entry).
    pub fn try_iter<F, J, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(InputIter<'a, In>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = Result<Out, E>>,
        E: Into<BoxError>,
    {
        let f = Arc::new(f);
        Self::with(name, KIND, move |s, p| {
            let links = p.links.clone();
            let jobs = contexts(s, p, Arc::new(|| {}))
                .into_iter()
                .enumerate()
                .map(|(i, (cx, outbox))| {
                    let (f, shared, links) = (f.clone(), cx.shared.clone(), links.clone());
                    job(&s.name, i, shared, move || {
                        iter_worker(
                            move |input| f(input).into_iter().map(|r| r.map_err(Into::into)),
                            cx,
                            outbox,
                            links,
                        )
                    })
                })
                .collect();
            StagePlan { before: None, jobs }
        })
    }
}

/// A boxed iterator step as a threaded stage of the step's name: the same
/// [`BoxedStep`] runs in an iterator pipeline or, on each worker over the
/// items that reach it, in a threaded one (as [`Stage::iter`] runs a step).
///
/// ```
/// use paipa::iter::{boxed, BoxIter};
/// use paipa::threaded::{Pipeline, Stage};
///
/// fn evens(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.filter(|x| x % 2 == 0) }
/// let summary = Pipeline::new()
///     .source(0..100u32)
///     .then(Stage::from(boxed(evens)).workers(2))?
///     .run()?;
/// assert_eq!(summary.items, 50);
/// assert_eq!(summary.snapshot.stage("evens").unwrap().count_in, 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<'a, T: Send + 'a> From<BoxedStep<'a, T>> for Stage<'a, T, T> {
    fn from(step: BoxedStep<'a, T>) -> Self {
        let name = step.name().to_owned();
        Stage::iter(name, move |input: InputIter<'a, T>| step.apply(Box::new(input)))
    }
}
