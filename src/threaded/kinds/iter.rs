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
use crate::threaded::edge::{edge, Layout, Msg, Recv};
use crate::threaded::pacing::Pacing;
use crate::threaded::policy::{guarded, Failure};
use crate::threaded::run::job;
use crate::threaded::stage::{contexts, Kind, Orderable, Stage, StagePlan};
use crate::threaded::worker::{drain_discarding, StageEnd, WorkerCtx};
use crate::threaded::worker::{ChainLinks, Emitter};
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
    /// The worker's way out, shared with the loop that pushes the step's
    /// results.
    em: Rc<RefCell<Emitter<'a, Out>>>,
    ended: bool,
    /// This worker has taken at least one batch.
    took: bool,
    /// Items in the batch the step is pulling from.
    last: usize,
    /// Items in the batches handed to the step.
    handed: u64,
}

impl<In, Out> Refill<In> for Side<'_, In, Out> {
    fn refill(&mut self, used: Vec<In>) -> Option<Vec<In>> {
        let mut spare = used;
        loop {
            self.cx.cell.mark_busy(self.cx.info.index, 0);
            if self.ended {
                return None;
            }
            let mut em = self.em.borrow_mut();
            em.after_batch(std::mem::take(&mut self.last));
            // Results kept in the outbox are sent before the worker waits:
            // a source that waits inside `next()` hands control back
            // within the linger (an empty batch), so that they are.
            let got = self.cx.next_input(&mut em, &mut spare, None, |_| true)?;
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
                    em.outbox.meta(meta);
                    em.run_chained();
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
    links: Option<Arc<ChainLinks<'a, Out>>>,
) where
    J: IntoIterator<Item = Result<Out, BoxError>>,
{
    let _scope = StageScope::enter(cx.cell.clone());
    let mut em = Emitter::new(
        outbox,
        WorkerClock::start(cx.cell.clone(), cx.info.index),
        cx.cost.clone(),
    );
    em.chain(&links, cx.info.index);
    let em = Rc::new(RefCell::new(em));
    let side = Rc::new(RefCell::new(Side {
        cx,
        em: em.clone(),
        ended: false,
        took: false,
        last: 0,
        handed: 0,
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
                    let mut em = em.borrow_mut();
                    em.outbox.push(x);
                    if em.outbox.has_local() {
                        em.run_chained();
                    }
                }
                Err(e) => {
                    // Skipped and told, or the run failed: counted once.
                    if !side.borrow().cx.policy.give_up(1, Failure::Error(e)) {
                        break;
                    }
                }
            }
            let em = em.borrow();
            if em.outbox.is_cancelled() || em.outbox.is_gone() {
                break;
            }
        }
        Ok(())
    });
    drop(em);
    let Side {
        cx, em, ended, took, ..
    } = unshare(side, &pulled);
    if let Err(f) = result {
        if matches!(f, Failure::Panic(_)) && took && !ended {
            // A panic while the input flows counts as one failed item (an
            // error already did): the one the step was working on, so a
            // one-for-one step keeps its books. A panic before the first
            // item or after the end held no item.
            cx.cell.failed.fetch_add(1, Relaxed);
        }
        cx.policy.fatal(f);
    }
    if !ended {
        // The step stopped before its input ended (an error, a cancel, or
        // a step like `take(n)`): count what is queued, then drop the input,
        // which stops the stages upstream.
        drain_discarding(&cx);
    }
    match Rc::try_unwrap(em) {
        Ok(em) => em.into_inner().end(),
        Err(_) => unreachable!("the worker holds the only handle on its emitter"),
    }
}

/// The worker's side once the step and its input iterator are gone. A
/// step that leaked its iterator (`mem::forget`, `Box::leak`) still shares
/// it: its parts are taken out, leaving stand-ins (its input receiver, so
/// upstream sees this worker go; its share of the stage-end latch; an
/// emitter on a dead edge), so that the error is reported, the outbox
/// flushed, and the edges released as usual.
fn unshare<'a, In, Out>(side: Rc<RefCell<Side<'a, In, Out>>>, pulled: &Cell<u64>) -> Side<'a, In, Out> {
    let leaked = match Rc::try_unwrap(side) {
        Ok(side) => return side.into_inner(),
        Err(leaked) => leaked,
    };
    let side = &mut *leaked.borrow_mut();
    let cx = &mut side.cx;
    let stand_in_end = StageEnd {
        remaining: Arc::new(AtomicUsize::new(usize::MAX)),
        after: Arc::new(|| {}),
    };
    let (dead_tx, _) = edge(Layout::for_capacity(1));
    let stand_in = Emitter::new(
        Outbox::new(dead_tx, Pacing::fixed(1), cx.cell.clone(), cx.shared.clone(), None),
        WorkerClock::start(cx.cell.clone(), cx.info.index),
        cx.cost.clone(),
    );
    let em = std::mem::replace(&mut *side.em.borrow_mut(), stand_in);
    let reclaimed = Side {
        cx: WorkerCtx {
            info: cx.info.clone(),
            rx: std::mem::replace(&mut cx.rx, edge(Layout::for_capacity(1)).1),
            cell: cx.cell.clone(),
            shared: cx.shared.clone(),
            policy: cx.policy.clone(),
            clone_in: cx.clone_in,
            weigh_in: cx.weigh_in.clone(),
            cost: cx.cost.clone(),
            source: cx.source.take(),
            end: std::mem::replace(&mut cx.end, stand_in_end),
        },
        em: Rc::new(RefCell::new(em)),
        ended: side.ended,
        took: side.took,
        last: side.last,
        handed: side.handed,
    };
    // What the leaked iterator held, never pulled.
    reclaimed.cx.discard_n(reclaimed.handed.saturating_sub(pulled.get()));
    reclaimed
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
