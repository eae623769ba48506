//! A lazy source pulled by the first stage's own workers.
//!
//! A source thread that reads items and hands them over costs a hop per
//! batch, and, worse, every item it allocates (a `String` per line read) is
//! freed on another thread, which the system allocator makes expensive (a
//! 5 M-line log job spent 60 % more CPU than a loop on that alone). So when
//! the first stage can take items in any order (not an ordered stage) and
//! has no idle hook to run while its input is quiet (not a
//! [`Step`](super::Step) stage: a worker waiting inside the source's
//! `next()` never sees a quiet input), its workers pull the source themselves, one batch at a time under a lock,
//! whenever their input edge is empty, as rayon's `par_bridge` and
//! morsel-driven engines do: the item is made, processed and freed on one
//! thread. Items put through [`Input`](super::Input) handles still arrive on
//! the edge, and workers look there first.
//!
//! The source's row in the stats counts what was pulled, and the time spent
//! pulling as its busy time; for the worker that pulled, the same time is
//! starved time (it was waiting for its input, as it would wait for a
//! source thread), so a slow source shows as one, with its first stage
//! starved by it. When the
//! source ends, is stopped, or panics, the pull state is dropped with its
//! sender on the input edge, so the edge ends once the input handles are
//! gone too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::channel::EdgeTx;
use super::input::InputShared;
use super::pacing::Pacing;
use super::run::{panic_message, RunShared};
use super::waiting::Pulling;
use crate::error::RunError;
use crate::stats::clock;
use crate::sync::Mutex;

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
    pub(crate) fn thread_job(self: Arc<Self>) -> Option<super::run::Job<'a>>
    where
        T: Send + 'a,
    {
        let tx = self.input.sender()?;
        let input = self.input.clone();
        Some(super::run::Job {
            name: "paipa:source".into(),
            run: Box::new(move || super::input::source_job(Vec::new(), Some(self), tx, input)),
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
    ///
    /// A puller that holds results does not wait for another worker's pull
    /// to end: a source waiting inside `next()` sees only its own puller's
    /// linger, so the results would wait as long as the source does (for
    /// ever, while a stream stays quiet). It gets "nothing yet" at once
    /// instead, sends them, and then waits its turn holding nothing.
    pub(crate) fn pull_holding(&self, n: usize, spare: Vec<T>, holding: bool) -> Option<(Vec<T>, u64)> {
        let mut left = if holding {
            match self.left.try_lock() {
                Ok(left) => left,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    let mut empty = spare;
                    empty.clear();
                    return Some((empty, 0));
                }
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
        let linger = super::input::source_linger_ticks();
        let mut buf = spare;
        buf.clear();
        buf.reserve(n);
        let mut ended = false;
        // The run's face to a source that waits (see `waiting.rs`).
        let pulling = Pulling::enter(&self.shared.cancel, self.input.closed_flag());
        if holding {
            pulling.holding_until(Instant::now() + super::input::SOURCE_LINGER);
        }
        // The worker that pulls shows as busy on the source's row, so a
        // source stuck inside `next()` is what a stuck run names.
        let busy = cell.busy_since.first();
        if let Some(b) = busy {
            b.store(t0.max(1), Relaxed);
        }
        let pulled = catch_unwind(AssertUnwindSafe(|| {
            while buf.len() < n {
                match src.iter.next() {
                    Some(x) => {
                        if buf.is_empty() && !holding {
                            pulling.holding_until(Instant::now() + super::input::SOURCE_LINGER);
                        }
                        buf.push(x)
                    }
                    None if pulling.take_yielded() => break,
                    None => {
                        ended = true;
                        break;
                    }
                }
                let k = buf.len();
                if (k.is_power_of_two() || k.is_multiple_of(16)) && clock().raw().saturating_sub(t0) > linger {
                    break;
                }
            }
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
