//! Every operation that can wait is woken by what it waits for.

use std::sync::Arc;

use loom::thread;

use super::{input_on_edge, model, put};
use crate::stats::StageCell;
use crate::threaded::loom_support::{
    edge_for_test, recv, send, Cancel, EdgeRx, EdgeTx, Input, Layout, Msg, Recv, Window,
};

/// Runs `wait` on another thread while this one cancels the run; returns
/// what `wait` returned. Whatever `wait` blocks on must be woken by the
/// cancel, or loom reports a deadlock.
fn cancelled_while(cancel: &Arc<Cancel>, wait: impl FnOnce(&Cancel) -> bool + Send + 'static) -> bool {
    let c = cancel.clone();
    let waiter = thread::spawn(move || wait(&c));
    cancel.cancel();
    waiter.join().unwrap()
}

/// Sends one batch on `tx` from another thread: true if it was given back.
fn send_from_another_thread(tx: EdgeTx<u32>, cancel: &Arc<Cancel>) -> thread::JoinHandle<bool> {
    let c = cancel.clone();
    thread::spawn(move || send(&tx, Msg::Items(vec![1]), &c, &mut 0).is_err())
}

/// An edge of capacity 1, already full.
fn full_edge() -> (EdgeTx<u32>, EdgeRx<u32>) {
    let (tx, rx) = edge_for_test::<u32>(Layout::for_capacity(1));
    assert!(put(&tx, 0));
    (tx, rx)
}

#[test]
fn a_sender_waiting_for_room_wakes_when_a_batch_is_taken() {
    model(|| {
        let cancel = Cancel::new();
        let (tx, rx) = full_edge();
        let sender = send_from_another_thread(tx, &cancel);
        // Taking the first batch gives its room back and must wake the
        // sender; loom reports a deadlock if the wake-up can be lost.
        assert!(matches!(recv(&rx, &cancel, None, &mut 0), Recv::Msg(Msg::Items(v)) if v == [0]));
        assert!(!sender.join().unwrap(), "the waiting batch went in");
        assert!(matches!(recv(&rx, &cancel, None, &mut 0), Recv::Msg(Msg::Items(v)) if v == [1]));
        assert!(matches!(recv(&rx, &cancel, None, &mut 0), Recv::End));
    });
}

#[test]
fn cancel_wakes_a_sender_waiting_for_space() {
    model(|| {
        let cancel = Cancel::new();
        let (tx, rx) = full_edge();
        let given_back = cancelled_while(&cancel, move |c| send(&tx, Msg::Items(vec![1]), c, &mut 0).is_err());
        assert!(given_back, "a cancelled send gives its message back");
        // The receiver was alive all along: only the cancel could wake it.
        drop(rx);
    });
}

#[test]
fn cancel_wakes_a_receiver_waiting_for_input() {
    model(|| {
        let cancel = Cancel::new();
        let (tx, rx) = edge_for_test::<u32>(Layout::for_capacity(2));
        let cancelled = cancelled_while(&cancel, move |c| matches!(recv(&rx, c, None, &mut 0), Recv::Cancelled));
        assert!(cancelled, "the receive reports the cancel");
        drop(tx);
    });
}

#[test]
fn the_end_of_input_wakes_every_waiting_worker_after_the_last_batch() {
    model(|| {
        let cancel = Cancel::new();
        let (tx, rx) = edge_for_test::<u32>(Layout::for_capacity(2));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (rx, c) = (rx.clone(), cancel.clone());
                thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut starved = 0;
                    loop {
                        match recv(&rx, &c, None, &mut starved) {
                            Recv::Msg(Msg::Items(b)) => got.extend(b),
                            Recv::End => return got,
                            _ => panic!("only batches and the end were sent"),
                        }
                    }
                })
            })
            .collect();
        drop(rx);
        let mut blocked = 0;
        assert!(send(&tx, Msg::Items(vec![7]), &cancel, &mut blocked).is_ok());
        drop(tx);
        let got: Vec<u32> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        assert_eq!(got, vec![7], "the batch reaches exactly one worker before the end");
    });
}

#[test]
fn a_consumer_that_leaves_wakes_a_sender_waiting_for_space() {
    model(|| {
        let cancel = Cancel::new();
        let (tx, rx) = full_edge();
        let sender = send_from_another_thread(tx, &cancel);
        drop(rx);
        assert!(sender.join().unwrap(), "the send gives its message back");
    });
}

#[test]
fn cancel_wakes_a_put_waiting_on_a_full_pipeline() {
    model(|| {
        let cancel = Cancel::new();
        let (shared, rx) = input_on_edge(1, cancel.clone());
        let input = Input::new(shared);
        input.put(1).expect("the first item fits");
        let given_back = cancelled_while(&cancel, move |_| input.put(2).is_err());
        assert!(given_back, "a cancelled put gives its item back");
        drop(rx);
    });
}

#[test]
fn cancel_wakes_a_worker_waiting_for_a_place_in_the_window() {
    model(|| {
        let cancel = Cancel::new();
        let window = Arc::new(Window::new(1));
        assert!(window.enter(&cancel), "the only place is free");
        let w = window.clone();
        let entered = cancelled_while(&cancel, move |c| w.enter(c));
        assert!(!entered, "no place was given back: only the cancel woke it");
    });
}

#[test]
fn a_retry_waiting_in_its_backoff_stops_on_cancel_and_counts_its_item_once() {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::threaded::loom_support::{
        AfterRetries, Failure, OnError, Policy, RunShared, StageEnd, WorkerCtx, WorkerInfo,
    };

    model(|| {
        let (_tx, rx) = edge_for_test::<u32>(Layout::for_capacity(2));
        let cell = Arc::new(StageCell::new("retrying"));
        let shared = RunShared::new(Cancel::new());
        let cx = WorkerCtx {
            info: WorkerInfo {
                stage: "retrying".into(),
                index: 0,
                workers: 1,
            },
            rx,
            cell: cell.clone(),
            shared: shared.clone(),
            policy: Policy::new(
                OnError::Retry {
                    times: 2,
                    backoff: std::time::Duration::from_secs(3600),
                    then: AfterRetries::Fail,
                },
                None,
                ("retrying".into(), 0),
                cell.clone(),
                shared.clone(),
            ),
            clone_in: Some(|x: &u32| *x),
            weigh_in: None,
            cost: crate::threaded::loom_support::Cost::new(),
            source: None,
            end: StageEnd {
                remaining: Arc::new(crate::sync::AtomicUsize::new(1)),
                after: Arc::new(|| {}),
            },
        };
        // The real retry loop, on an item that always fails; the backoff
        // sleeps until cancelled (or, as time is not modelled, ends at once).
        let worker =
            thread::spawn(move || cx.attempt(7, 1, cx.clone_in.as_ref(), |_| Err(Failure::Error("always".into()))));
        shared.cancel.cancel();
        assert!(!worker.join().unwrap(), "the attempt stops the worker");
        let (failed, discarded) = (cell.failed.load(Relaxed), cell.discarded.load(Relaxed));
        assert_eq!(
            failed + discarded,
            1,
            "failed {failed}, discarded {discarded}: the item counts once"
        );
        assert!(cell.retried.load(Relaxed) <= 2);
        // Failed after its retries: the error is the run's; stopped by the
        // cancel in a backoff: discarded, and no error of its own.
        assert_eq!(shared.take_error().is_some(), failed == 1);
    });
}
