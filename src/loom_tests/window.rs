//! The reorder window of ordered stages, through the real worker loop.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::{model, model_bounded, put};
use crate::error::BoxError;
use crate::stats::StageCell;
use crate::threaded::loom_support::{
    edge_for_test, ordered_worker, Cancel, EdgeRx, EdgeTx, Layout, Msg, OnError, Outbox, Policy, Reorder, RunShared,
    StageEnd, Window, WorkerCtx, WorkerInfo,
};

#[test]
fn the_window_bounds_places_taken() {
    model(|| {
        let cancel = Cancel::new();
        let window = Arc::new(Window::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (window, inside, cancel) = (window.clone(), inside.clone(), cancel.clone());
                thread::spawn(move || {
                    assert!(window.enter(&cancel));
                    let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                    assert!(now <= 2, "{now} inside a window of 2");
                    assert!(window.in_flight() <= 2);
                    inside.fetch_sub(1, Ordering::Relaxed);
                    window.leave();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(window.in_flight(), 0, "every place came back");
    });
}

/// An ordered stage of `workers` workers and a window of `window` batches,
/// as `Stage::map(..).ordered()` builds it, applying `x * 10`. The map
/// function checks the bound on every call: its own batch plus those
/// waiting for an earlier one never exceed the window.
struct OrderedStage {
    reorder: Arc<Reorder<u32>>,
    input: EdgeTx<u32>,
    output: EdgeRx<u32>,
    cell: Arc<StageCell>,
    shared: Arc<RunShared>,
    workers: Vec<thread::JoinHandle<()>>,
}

fn ordered_stage(workers: usize, window: usize) -> OrderedStage {
    let (input, rx) = edge_for_test::<u32>(Layout::for_capacity(4));
    // Room for every batch the tests send: the consumer reads at the end.
    let (tx, output) = edge_for_test::<u32>(Layout::for_capacity(8));
    let cell = Arc::new(StageCell::new("ordered"));
    let shared = RunShared::new(Cancel::new());
    let reorder = Reorder::new(
        Outbox::new(
            tx,
            crate::threaded::loom_support::Pacing::fixed(1),
            cell.clone(),
            shared.clone(),
            None,
        ),
        window,
    );
    let remaining = Arc::new(crate::sync::AtomicUsize::new(workers));
    let handles = (0..workers)
        .map(|index| {
            let r = reorder.clone();
            let f = Arc::new(move |x: u32| -> Result<u32, BoxError> {
                let in_flight = r.window().in_flight();
                assert!(in_flight <= window, "{in_flight} batches in flight, window {window}");
                let waiting = r.waiting();
                assert!(waiting < window, "{waiting} waiting besides this one, window {window}");
                Ok(x * 10)
            });
            let cx = WorkerCtx {
                info: WorkerInfo {
                    stage: "ordered".into(),
                    index,
                    workers,
                },
                rx: rx.clone(),
                cell: cell.clone(),
                shared: shared.clone(),
                policy: Policy::new(
                    OnError::default(),
                    None,
                    ("ordered".into(), index),
                    cell.clone(),
                    shared.clone(),
                ),
                clone_in: None,
                weigh_in: None,
                cost: crate::threaded::loom_support::Cost::new(),
                source: None,
                end: StageEnd {
                    remaining: remaining.clone(),
                    after: Arc::new(|| {}),
                },
            };
            let reorder = reorder.clone();
            thread::spawn(move || ordered_worker(f, reorder, cx))
        })
        .collect();
    OrderedStage {
        reorder,
        input,
        output,
        cell,
        shared,
        workers: handles,
    }
}

/// What the stage sent, once its workers have ended.
fn items(output: &EdgeRx<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    while let Ok(msg) = output.try_recv() {
        if let Msg::Items(b) = msg {
            got.extend(b);
        }
    }
    got
}

#[test]
fn an_ordered_stage_sends_in_input_order_within_its_window() {
    model_bounded(2, || {
        let stage = ordered_stage(2, 2);
        for x in 0..3 {
            assert!(put(&stage.input, x));
        }
        drop(stage.input);
        stage.workers.into_iter().for_each(|w| w.join().unwrap());
        let got = items(&stage.output);
        assert_eq!(got, vec![0, 10, 20]);
        assert_eq!(stage.reorder.window().in_flight(), 0, "every place came back");
        assert_eq!(stage.cell.count_in.load(Relaxed), 3);
        assert_eq!(stage.cell.count.load(Relaxed), 3);
        assert_eq!(stage.cell.discarded.load(Relaxed), 0);
    });
}

#[test]
fn a_window_of_one_passes_its_place_on_to_the_end() {
    model(|| {
        // One place for two workers: whoever sees the end must give it back
        // or the other waits for ever.
        let stage = ordered_stage(2, 1);
        assert!(put(&stage.input, 1));
        drop(stage.input);
        stage.workers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(items(&stage.output), vec![10]);
        assert_eq!(stage.reorder.window().in_flight(), 0);
    });
}

#[test]
fn a_cancelled_ordered_stage_ends_and_accounts_for_every_item() {
    model(|| {
        // A window of 1: one worker waits for the place while the other
        // works; the input stays open, so only the cancel can end them.
        let stage = ordered_stage(2, 1);
        for x in 0..2 {
            assert!(put(&stage.input, x));
        }
        stage.shared.cancel.cancel();
        stage.workers.into_iter().for_each(|w| w.join().unwrap());
        let taken = stage.cell.count_in.load(Relaxed);
        let sent = stage.cell.count.load(Relaxed);
        let discarded = stage.cell.discarded.load(Relaxed);
        assert_eq!(taken, 2, "what was queued is taken (and discarded) on the way out");
        assert_eq!(
            sent + discarded,
            taken,
            "sent {sent} + discarded {discarded} != taken {taken}"
        );
        drop(stage.input);
        let got = items(&stage.output);
        assert_eq!(got.len() as u64, sent);
        assert!(
            got.is_empty() || got == [0] || got == [0, 10],
            "a prefix in order: {got:?}"
        );
    });
}

#[test]
fn closing_the_window_wakes_a_worker_waiting_for_a_place() {
    model(|| {
        let cancel = Cancel::new();
        let window = Arc::new(Window::new(1));
        assert!(window.enter(&cancel));
        let (w, c) = (window.clone(), cancel.clone());
        let waiter = thread::spawn(move || w.enter(&c));
        window.close();
        assert!(!waiter.join().unwrap(), "no place came back: only the close woke it");
        assert!(!cancel.is_cancelled());
    });
}

#[test]
fn an_ordered_stage_whose_output_is_gone_stops_every_worker() {
    // One preemption only: with two, this model takes two minutes. The
    // hang it guards against (places dropped with waiting batches, workers
    // left waiting for one) needs more; the real-thread test
    // `an_ordered_stage_whose_consumer_leaves_while_batches_wait_ends`
    // reproduces it deterministically, and `closing_the_window_wakes_...`
    // models the wake-up that fixes it.
    model_bounded(1, || {
        // Three workers, a window of two: when the output goes, batches can
        // be waiting for an earlier one, and a worker can be waiting for a
        // place. Every worker must still end, with every item accounted.
        let stage = ordered_stage(3, 2);
        drop(stage.output);
        // The stage may stop taking input before all five are in (which
        // stops this sender in turn, as it would stop an upstream stage).
        let accepted = (0..5).take_while(|&x| put(&stage.input, x)).count() as u64;
        drop(stage.input);
        stage.workers.into_iter().for_each(|w| w.join().unwrap());
        let taken = stage.cell.count_in.load(Relaxed);
        let sent = stage.cell.count.load(Relaxed);
        let discarded = stage.cell.discarded.load(Relaxed);
        assert_eq!(sent, 0, "nothing can be sent");
        // What was accepted but not taken is still on the edge, which a
        // report shows as the edge's queue depth.
        assert!(taken <= accepted, "took {taken} of {accepted}");
        assert_eq!(discarded, taken, "every item taken is discarded");
        assert!(
            !stage.shared.cancel.is_cancelled(),
            "a consumer leaving is not a failure"
        );
    });
}
