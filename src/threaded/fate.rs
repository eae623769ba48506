//! The fate of what a step call drops: a part of an item that must know
//! how its item ended learns whether the call that dropped it failed, and
//! with which error.
//!
//! An item a step drops inside a call that fails (a [`Stage::try_map`]
//! closure that returns `Err`, a step that panics) is lost with the error,
//! which only the stage's policy sees. A part of the item that reports how
//! it ended (a stream entry's token: failed with an error to record, or
//! left pending) would otherwise see a plain drop. So while a worker runs
//! a batch through its step (`WorkerCtx::process_batch`), such a part
//! defers its verdict here ([`defer`]), and after each item's call the
//! worker gives the deferred verdicts the call's outcome: its error
//! ([`failed`]) or none ([`succeeded`]).
//!
//! Invariants: a verdict is given once, on the thread that deferred it,
//! before the next item's call starts; what is dropped outside a call (the
//! rest of a batch discarded after a failure, what a step holds at its end)
//! is given no error. Iterator and async stages do not defer: what they
//! drop is a plain drop. The hot path pays one thread-local flag read per
//! item.
//!
//! [`Stage::try_map`]: super::Stage::try_map

use std::cell::{Cell, RefCell};

type Verdict = Box<dyn FnOnce(Option<&str>)>;

thread_local! {
    /// A batch is under way on this thread: drops defer their verdict.
    static OPEN: Cell<bool> = const { Cell::new(false) };
    /// Verdicts wait in `DEFERRED`.
    static WAITING: Cell<bool> = const { Cell::new(false) };
    static DEFERRED: RefCell<Vec<Verdict>> = const { RefCell::new(Vec::new()) };
}

/// Defers `verdict` until the end of the step call under way on this
/// thread: it is then called with the call's error, or `None` if the call
/// succeeded. Outside a call it is called at once with `None`.
// Only stream tokens defer (feature `redis`).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn defer(verdict: impl FnOnce(Option<&str>) + 'static) {
    if !OPEN.with(Cell::get) {
        return verdict(None);
    }
    DEFERRED.with(|d| d.borrow_mut().push(Box::new(verdict)));
    WAITING.with(|w| w.set(true));
}

/// The item's call succeeded.
#[inline]
pub(crate) fn succeeded() {
    if WAITING.with(Cell::get) {
        give(None);
    }
}

/// The item's call failed with `error`.
#[inline]
pub(crate) fn failed(error: impl FnOnce() -> String) {
    if WAITING.with(Cell::get) {
        give(Some(&error()));
    }
}

#[cold]
fn give(error: Option<&str>) {
    WAITING.with(|w| w.set(false));
    let verdicts = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for verdict in verdicts {
        verdict(error);
    }
}

/// A batch under way on this thread, from [`Batch::open`] until dropped
/// (also on unwind): verdicts still waiting then are given no error. A
/// batch opened inside another's call (a step that runs a pipeline on its
/// own thread) keeps the outer call's verdicts apart.
pub(crate) struct Batch {
    was_open: bool,
    outer: Option<Vec<Verdict>>,
}

impl Batch {
    pub(crate) fn open() -> Self {
        let was_open = OPEN.with(|o| o.replace(true));
        let outer = (was_open && WAITING.with(|w| w.replace(false)))
            .then(|| DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut())));
        Batch { was_open, outer }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        succeeded();
        if let Some(outer) = self.outer.take() {
            DEFERRED.with(|d| *d.borrow_mut() = outer);
            WAITING.with(|w| w.set(true));
        }
        OPEN.with(|o| o.set(self.was_open));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    type Seen = Rc<RefCell<Vec<Option<String>>>>;

    /// A verdict that records what it is given in `seen`.
    fn recorder(seen: &Seen) -> Verdict {
        let seen = seen.clone();
        Box::new(move |e: Option<&str>| seen.borrow_mut().push(e.map(str::to_owned)))
    }

    #[test]
    fn a_verdict_deferred_in_a_failing_call_gets_its_error_and_others_none() {
        let seen = Seen::default();
        defer(recorder(&seen)); // outside a batch: at once
        {
            let _batch = Batch::open();
            defer(recorder(&seen));
            succeeded();
            defer(recorder(&seen));
            failed(|| "boom".into());
            defer(recorder(&seen)); // left at the batch's end
        }
        assert_eq!(*seen.borrow(), [None, None, Some("boom".into()), None]);
    }

    #[test]
    fn an_inner_batch_keeps_the_outer_call_s_verdicts_apart() {
        let seen = Seen::default();
        let _outer = Batch::open();
        defer(recorder(&seen));
        {
            let _inner = Batch::open();
            defer(recorder(&seen));
            failed(|| "inner".into());
        }
        failed(|| "outer".into());
        assert_eq!(*seen.borrow(), [Some("inner".into()), Some("outer".into())]);
    }
}
