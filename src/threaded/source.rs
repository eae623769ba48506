//! The source side of a run: a lazy source pulled by the first stage's
//! own workers ([`SharedSource`]), and the source thread ([`source_job`])
//! that sends the puts held back before the run, the items put with
//! `Pipeline::put`, then a lazy source that no stage pulls.
//!
//! A source thread that reads items and hands them over costs a hop per
//! batch, and, worse, every item it allocates (a `String` per line read) is
//! freed on another thread, which the system allocator makes expensive (a
//! 5 M-line log job spent 60 % more CPU than a loop on that alone). So when
//! the first stage can take items in any order (not an ordered stage) and
//! has no idle hook to run while its input is quiet (not a
//! [`Step`](super::Step) stage: a worker waiting inside the source's
//! `next()` never sees a quiet input), its workers pull the source
//! themselves, one batch at a time under a lock, whenever their input edge
//! is empty, as rayon's `par_bridge` and
//! morsel-driven engines do: the item is made, processed and freed on one
//! thread. Items put through [`Input`](super::Input) handles still arrive on
//! the edge, and workers look there first.
//!
//! The source's row in the stats counts what was pulled, and the time spent
//! pulling as its busy time; for the worker that pulled, the same time is
//! starved time (it was waiting for its input, as it would wait for a
//! source thread), so a slow source shows as one, with its first stage
//! starved by it. When the source ends, is stopped, or panics, the pull
//! state is dropped with its sender on the input edge, so the edge ends
//! once the input handles are gone too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::RunError;
use crate::stats::clock;
use crate::stats::StageScope;
use crate::sync::Mutex;
use crate::threaded::edge::{send, EdgeTx, Msg};
use crate::threaded::input::InputShared;
use crate::threaded::pacing::Pacing;
use crate::threaded::run::{panic_message, RunShared};
use crate::threaded::waiting::Pulling;

type Source<'a, T> = Box<dyn Iterator<Item = T> + Send + 'a>;

/// What is left of the source: the iterator and the input edge's sender it
/// keeps open.
struct Left<'a, T> {
    iter: Source<'a, T>,
    _tx: EdgeTx<T>,
}

/// A lazy source shared by the workers that pull it.
pub(crate) struct SharedSource<'a, T> {
    left: Mutex<Option<Left<'a, T>>>,
    input: Arc<InputShared<T>>,
    shared: Arc<RunShared>,
}

impl<'a, T> SharedSource<'a, T> {
    pub(crate) fn new(iter: Source<'a, T>, tx: EdgeTx<T>, input: Arc<InputShared<T>>, shared: Arc<RunShared>) -> Self {
        SharedSource {
            left: Mutex::new(Some(Left { iter, _tx: tx })),
            input,
            shared,
        }
    }

    /// A thread that pulls the source and sends what it gets on the input
    /// edge, for a first stage that does not pull (an ordered one, or none).
    pub(crate) fn thread_job(self: Arc<Self>) -> Option<crate::threaded::run::Job<'a>>
    where
        T: Send + 'a,
    {
        let tx = self.input.sender()?;
        let input = self.input.clone();
        Some(crate::threaded::run::Job {
            name: "paipa:source".into(),
            run: Box::new(move || crate::threaded::source::source_job(Vec::new(), Some(self), tx, input)),
        })
    }

    /// How batches pulled for the first stage are sized (by its cost).
    pub(crate) fn pacing(&self) -> Pacing {
        self.input.pacing()
    }

    /// Pulls up to `n` items (fewer if the source is slow: what it has after
    /// a millisecond). `None` once the source is done, stopped or failed, or
    /// the run is cancelled; the time spent is returned with the items, in
    /// raw ticks, so the caller can leave it out of its own busy time.
    pub(crate) fn pull(&self, n: usize) -> Option<(Vec<T>, u64)> {
        self.pull_into(n, Vec::new())
    }

    /// As [`pull`](Self::pull), into `spare` (an empty buffer whose
    /// allocation is reused: see `Outbox::recycle` for why that matters).
    pub(crate) fn pull_into(&self, n: usize, mut spare: Vec<T>) -> Option<(Vec<T>, u64)> {
        loop {
            match self.pull_holding(n, spare, false)? {
                (batch, spent) if !batch.is_empty() => return Some((batch, spent)),
                (empty, _) => spare = empty,
            }
        }
    }

    /// As [`pull_into`](Self::pull_into); `holding` says the puller holds
    /// results it has not sent: a source that waits then hands control back
    /// within the linger (see `waiting.rs`), as an empty batch, so that the
    /// puller can send them. `None` once the source is done.
    pub(crate) fn pull_holding(&self, n: usize, spare: Vec<T>, holding: bool) -> Option<(Vec<T>, u64)> {
        // A puller that holds results does not wait for another puller
        // (which may wait on the source for ever): it sends them first.
        let mut left = if holding {
            match self.left.try_lock() {
                Ok(left) => left,
                Err(std::sync::TryLockError::WouldBlock) => {
                    let mut nothing = spare;
                    nothing.clear();
                    return Some((nothing, 0));
                }
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            }
        } else {
            self.left.lock().unwrap_or_else(|e| e.into_inner())
        };
        let src = left.as_mut()?;
        if self.shared.cancel.is_cancelled() || self.input.is_closed() {
            *left = None;
            return None;
        }
        let cell = &self.input.cell;
        let t0 = clock().raw();
        let mut buf = spare;
        buf.clear();
        buf.reserve(n);
        let mut ended = false;
        // The run's face to a source that waits (see `waiting.rs`).
        let pulling = Pulling::enter(cell, &self.shared.cancel, self.input.closed_flag());
        if holding {
            pulling.holding_until(Instant::now() + SOURCE_LINGER);
        }
        // The worker that pulls shows as busy on the source's row, so a
        // source stuck inside `next()` is what a stuck run names.
        let busy = cell.busy_since.first();
        if let Some(b) = busy {
            b.store(t0.max(1), Relaxed);
        }
        let pulled = catch_unwind(AssertUnwindSafe(|| {
            ended = fill(&mut src.iter, &mut buf, n, &pulling, holding, t0);
        }));
        drop(pulling);
        if let Some(b) = busy {
            b.store(0, Relaxed);
        }
        let spent = clock().raw().saturating_sub(t0);
        cell.busy_ticks.fetch_add(spent, Relaxed);
        if let Err(p) = pulled {
            cell.discarded.fetch_add(buf.len() as u64, Relaxed);
            *left = None;
            self.shared.fail(RunError::Panic {
                stage: cell.name(),
                worker: 0,
                message: panic_message(&*p),
            });
            return None;
        }
        if ended {
            *left = None;
        }
        if buf.is_empty() {
            return if ended || left.is_none() {
                None
            } else {
                Some((buf, spent))
            };
        }
        cell.count.fetch_add(buf.len() as u64, Relaxed);
        Some((buf, spent))
    }
}

/// Pulls up to `n` items from `iter` into `buf`, for at most the linger
/// once it has some (read on the clock every 16 items and at powers of
/// two, so a fast source pays for few clock reads). True once the source
/// has ended; a source that hands control back to a puller that holds
/// results (see `waiting.rs`) has not.
fn fill<T>(iter: &mut Source<'_, T>, buf: &mut Vec<T>, n: usize, pulling: &Pulling, holding: bool, t0: u64) -> bool {
    let linger = source_linger_ticks();
    while buf.len() < n {
        match iter.next() {
            Some(x) => {
                if buf.is_empty() && !holding {
                    pulling.holding_until(Instant::now() + SOURCE_LINGER);
                }
                buf.push(x)
            }
            None if pulling.take_yielded() => return false,
            None => return true,
        }
        let k = buf.len();
        if (k.is_power_of_two() || k.is_multiple_of(16)) && clock().raw().saturating_sub(t0) > linger {
            return false;
        }
    }
    false
}

/// How long a source batch may wait for more items before it is sent.
pub(crate) const SOURCE_LINGER: Duration = Duration::from_millis(1);

/// [`SOURCE_LINGER`] in raw clock ticks.
pub(crate) fn source_linger_ticks() -> u64 {
    crate::stats::duration_to_ticks(SOURCE_LINGER)
}

/// The source thread: sends the items put before the run, then pulls the
/// lazy source only as fast as the first stage takes batches. What it holds
/// when a send fails (the run stopped, or the first stage stopped taking
/// input) is counted as the source's `discarded`: the piece that failed,
/// every item put before the run and not yet sent, the batch pulled from the
/// lazy source. A panic in the lazy source's `next()` fails the run (stage
/// "source"), and the items pulled before it are discarded.
pub(crate) fn source_job<T>(
    pending: Vec<Msg<T>>,
    source: Option<Arc<SharedSource<'_, T>>>,
    tx: EdgeTx<T>,
    input: Arc<InputShared<T>>,
) {
    let cell = input.cell.clone();
    // The lazy source's own counters and edges (a stream source's) and
    // its allocations go to the source's row.
    let _scope = StageScope::enter(cell.clone());
    // Dropped inside the scope, charged to the source.
    let (source, tx, input) = (source, tx, input);
    let mut blocked = 0u64;
    if send_backlog(&tx, &input, &mut blocked) && send_pending(pending, &tx, &input, &mut blocked) {
        // A lazy source nobody pulls: this thread pulls it and sends what
        // it gets, as fast as the first stage takes it.
        if let Some(src) = source {
            while let Some((buf, _)) = src.pull(input.pacing().limit()) {
                if let Err(m) = send(&tx, Msg::Items(buf), &input.cancel, &mut blocked) {
                    // Pulled and counted, never delivered.
                    let n = m.count();
                    cell.count.fetch_sub(n, Ordering::Relaxed);
                    cell.discarded.fetch_add(n, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    cell.blocked_ticks.fetch_add(blocked, Ordering::Relaxed);
}

/// Sends the puts held back before the run first (they follow what the
/// same handles put on the edge before it), as long as more keep coming.
/// Once a send fails (the run stopped), what is left is discarded: false.
fn send_backlog<T>(tx: &EdgeTx<T>, input: &InputShared<T>, blocked: &mut u64) -> bool {
    loop {
        let mut msgs = input.take_backlog().into_iter();
        if msgs.len() == 0 {
            return true;
        }
        while let Some(msg) = msgs.next() {
            let n = msg.count();
            if let Err(msg) = send(tx, msg, &input.cancel, blocked) {
                let mut unsent = msg.count() + msgs.map(|m| m.count()).sum::<u64>();
                loop {
                    let more = input.take_backlog();
                    if more.is_empty() {
                        break;
                    }
                    unsent += more.iter().map(Msg::count).sum::<u64>();
                }
                input.cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                // The pending items fail to send too, and are counted there.
                return true;
            }
            input.counted(n);
        }
    }
}

/// Sends the items put before the run, cut from the front as they are
/// sent, each piece as large as the first stage's pacing allows at that
/// moment: linear in the items, however small the first pieces are. Once a
/// send fails (the run stopped), what is left is discarded: false.
fn send_pending<T>(pending: Vec<Msg<T>>, tx: &EdgeTx<T>, input: &InputShared<T>, blocked: &mut u64) -> bool {
    let (cell, cancel, pacing) = (&input.cell, &input.cancel, input.pacing());
    let mut pending = pending.into_iter();
    while let Some(msg) = pending.next() {
        let mut items = match msg {
            Msg::Items(items) => items.into_iter(),
            meta => {
                if let Err(meta) = send(tx, meta, cancel, blocked) {
                    let unsent = meta.count() + pending.by_ref().map(|m| m.count()).sum::<u64>();
                    cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                    return false;
                }
                cell.metas.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        while items.len() > 0 {
            let piece: Vec<T> = items.by_ref().take(pacing.limit()).collect();
            let n = piece.len() as u64;
            if let Err(piece) = send(tx, Msg::Items(piece), cancel, blocked) {
                let unsent = piece.count() + items.len() as u64 + pending.by_ref().map(|m| m.count()).sum::<u64>();
                cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                return false;
            }
            cell.count.fetch_add(n, Ordering::Relaxed);
        }
    }
    true
}
