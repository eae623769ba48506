//! How a source that waits inside `next()` (a Redis stream, a `Stream`)
//! learns of the run that pulls it: whether the run wants it to stop, and
//! how long its puller may wait before it hands on the items it holds.
//!
//! The puller (`source.rs`: a first stage's worker, a source thread, an async
//! stage's feeder) opens a [`Pulling`] scope around its calls to `next()`.
//! Inside it, a source about to wait asks [`wait`]:
//! - [`Wait::Stop`]: the run was cancelled or its input closed (a stop, an
//!   abort, a failure, a consumer that stopped early, a signal): the source
//!   ends, returning `None`.
//! - [`Wait::Yield`]: the puller holds items and its linger has passed: the
//!   source calls [`yield_now`] and returns `None`, which the puller takes
//!   as "nothing yet", not as the end, and hands on what it holds.
//! - [`Wait::For`]: it may wait up to this long, then ask again. The bound
//!   is at most [`SLICE`], so a cancel is seen within a slice of any wait.
//!
//! Outside a scope (a source read in a plain loop) [`wait`] always answers
//! `For(SLICE)`-free: [`Wait::Forever`], and nothing changes.
//!
//! A user's own iterator that blocks inside `next()` cannot be interrupted
//! this way: see `Running::abort_within` for what a run does then.

// The sources that wait come with the `async` and `redis` features.
#![cfg_attr(not(any(feature = "async", feature = "redis")), allow(dead_code))]

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::StageCell;
use crate::sync::AtomicBool;
use crate::threaded::cancel::Cancel;

/// The longest a source that waits goes without looking at the run.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// What a source about to wait should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// End the input.
    Stop,
    /// Return `None` after [`yield_now`]: the puller hands on what it holds.
    Yield,
    /// Wait at most this long, then ask again.
    For(Duration),
    /// Not pulled by a run: wait as long as needed.
    Forever,
}

struct Scope {
    /// The source's row: a source that asks how to wait is waiting, not
    /// stuck, so its busy mark is cleared (see `source.rs`).
    cell: Arc<StageCell>,
    cancel: Arc<Cancel>,
    closed: Arc<AtomicBool>,
    /// When the puller's linger ends (it holds items), if it does.
    hand_on_by: Option<Instant>,
    yielded: bool,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// A puller's scope: while it lives, sources pulled on this thread see the
/// run through [`wait`].
pub(crate) struct Pulling {
    outer: Option<Scope>,
}

impl Pulling {
    pub(crate) fn enter(cell: &Arc<StageCell>, cancel: &Arc<Cancel>, closed: &Arc<AtomicBool>) -> Self {
        let scope = Scope {
            cell: cell.clone(),
            cancel: cancel.clone(),
            closed: closed.clone(),
            hand_on_by: None,
            yielded: false,
        };
        Pulling {
            outer: SCOPE.with(|s| s.borrow_mut().replace(scope)),
        }
    }

    /// The puller holds items from now on: a wait past `by` should yield.
    pub(crate) fn holding_until(&self, by: Instant) {
        SCOPE.with(|s| {
            if let Some(s) = s.borrow_mut().as_mut() {
                s.hand_on_by = Some(by);
            }
        });
    }

    /// Whether the `None` just returned by the source meant "nothing yet"
    /// (it called [`yield_now`]); clears the mark.
    pub(crate) fn take_yielded(&self) -> bool {
        SCOPE.with(|s| s.borrow_mut().as_mut().is_some_and(|s| std::mem::take(&mut s.yielded)))
    }
}

impl Drop for Pulling {
    fn drop(&mut self) {
        let outer = self.outer.take();
        SCOPE.with(|s| *s.borrow_mut() = outer);
    }
}

/// What a source about to wait should do (see the module doc).
pub(crate) fn wait() -> Wait {
    SCOPE.with(|s| {
        let s = s.borrow();
        let Some(s) = s.as_ref() else { return Wait::Forever };
        if s.cancel.is_cancelled() || s.closed.load(Ordering::SeqCst) {
            return Wait::Stop;
        }
        if let Some(b) = s.cell.busy_since.first() {
            b.store(0, Ordering::Relaxed);
        }
        match s.hand_on_by {
            None => Wait::For(SLICE),
            Some(by) => match by.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Wait::For(left.min(SLICE)),
                _ => Wait::Yield,
            },
        }
    })
}

/// Marks the `None` a source is about to return as "nothing yet".
pub(crate) fn yield_now() {
    SCOPE.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            s.yielded = true;
        }
    });
}
