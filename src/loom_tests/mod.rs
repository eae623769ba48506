//! Model checks of paipa's own synchronisation with loom: every
//! interleaving of the threads in each test is explored, up to a bound on
//! preemptions (3, or 2 for the largest model; set `LOOM_MAX_PREEMPTIONS`
//! to explore further: a bound of 3 everywhere takes about 3 minutes).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --lib --release loom_tests`
//! (CI runs it). Under `--cfg loom` the crate's mutexes, atomics and
//! channels are loom's models (`src/sync/`), so the code under test is the
//! crate's own: the functions every stage uses to send, receive, wait for a
//! place in the reorder window, and stop.
//!
//! - `state`: latches, the first-error slot, input handles, reorder order.
//! - `wakeups`: every blocked operation wakes on the event it waits for
//!   (cancel, end of input, downstream gone), so a stopping run never hangs.
//!   A thread that is never woken is a deadlock, which loom reports.
//! - `window`: an ordered stage never has more batches in flight than its
//!   window, sends them in input order, and accounts for every item when it
//!   is cancelled.

mod state;
mod wakeups;
mod window;

/// A live input of capacity `capacity` on a fresh edge, with the edge's
/// receiving end (keep it, or the input sees the pipeline gone).
pub(super) fn input_on_edge(
    capacity: usize,
    cancel: std::sync::Arc<crate::threaded::loom_support::Cancel>,
) -> (
    std::sync::Arc<crate::threaded::loom_support::InputShared<u32>>,
    crate::threaded::loom_support::EdgeRx<u32>,
) {
    use crate::threaded::loom_support::{edge_for_test, InputShared, Layout};
    let layout = Layout::for_capacity(capacity);
    let (tx, rx) = edge_for_test::<u32>(layout);
    let cell = std::sync::Arc::new(crate::stats::StageCell::new("source"));
    let shared = InputShared::new(tx, cancel, cell, layout);
    // The run has started: puts go to the edge (none are held back).
    assert!(!shared.start(), "nothing was put before the run");
    (shared, rx)
}

/// Runs `f` under loom with at most 3 preemptions per interleaving (or
/// `LOOM_MAX_PREEMPTIONS`, for a longer local run), once with `Select`
/// picking the first ready operation and once the last.
pub(super) fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_bounded(3, f);
}

/// As [`model`] with another default bound, for the largest models (a
/// bound of 3 on the three-batch ordered stage takes over two minutes).
pub(super) fn model_bounded<F>(preemptions: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let f = std::sync::Arc::new(f);
    // Crossbeam picks among ready operations at random: explore both ends.
    for last in [false, true] {
        crate::sync::chan::prefer_last(last);
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        let f = f.clone();
        builder.check(move || f());
    }
    crate::sync::chan::prefer_last(false);
}

/// Sends one item on `tx` the way a stage does, never cancelled: waits for
/// room; false if every receiver is gone.
pub(super) fn put(tx: &crate::threaded::loom_support::EdgeTx<u32>, x: u32) -> bool {
    use crate::threaded::loom_support::{send, Cancel, Msg};
    send(tx, Msg::Items(vec![x]), &Cancel::new(), &mut 0).is_ok()
}
