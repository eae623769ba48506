//! The state machines: the stage-end latch, the first-error slot and the
//! cancel flag, the input handles' close-on-last-drop and stop, and the
//! reorder buffer's ordering under its lock.

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::{input_on_edge, model};
use crate::error::{ConfigError, RunError};
use crate::sync::Mutex;
use crate::threaded::loom_support::{Cancel, Input, ReorderBuffer, RunShared, StageEnd};

/// Each worker's shut-down state: written by its worker, read by the stage's
/// after-hook with no lock and no atomic of its own, so the only order
/// between them is the one the stage-end latch gives (loom reports a read
/// that is not ordered after the write).
struct ShutDown([loom::cell::UnsafeCell<bool>; 2]);

// SAFETY: each cell is written by one worker and read by the hook after the
// latch; the model checks exactly that this order holds.
unsafe impl Sync for ShutDown {}

#[test]
fn the_stage_end_hook_runs_once_after_every_worker() {
    model(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let shut = Arc::new(ShutDown([
            loom::cell::UnsafeCell::new(false),
            loom::cell::UnsafeCell::new(false),
        ]));
        let remaining = Arc::new(crate::sync::AtomicUsize::new(2));
        let (r, s) = (ran.clone(), shut.clone());
        let after: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            // Every worker shut down before the hook, and the hook sees it
            // (through the latch's own ordering: the model's other atomics
            // are not involved).
            for cell in &s.0 {
                // SAFETY: see `ShutDown`.
                assert!(cell.with(|p| unsafe { *p }), "after_stage before a worker shut down");
            }
            r.fetch_add(1, Ordering::Relaxed);
        });
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let end = StageEnd {
                    remaining: remaining.clone(),
                    after: after.clone(),
                };
                let shut = shut.clone();
                thread::spawn(move || {
                    // The worker's on_shutdown: a plain write.
                    // SAFETY: see `ShutDown`.
                    shut.0[i].with_mut(|p| unsafe { *p = true });
                    drop(end);
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    });
}

fn err(n: usize) -> RunError {
    RunError::Config(ConfigError::new("test", n, "loom"))
}

#[test]
fn the_first_error_wins_and_cancels() {
    model(|| {
        let shared = RunShared::new(Cancel::new());
        let a_done = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let a = {
            let (shared, a_done) = (shared.clone(), a_done.clone());
            thread::spawn(move || {
                shared.fail(err(0));
                a_done.store(true, Ordering::SeqCst);
            })
        };
        let b = {
            let (shared, a_done) = (shared.clone(), a_done.clone());
            thread::spawn(move || {
                let a_was_first = a_done.load(Ordering::SeqCst);
                shared.fail(err(1));
                a_was_first
            })
        };
        a.join().unwrap();
        let a_was_first = b.join().unwrap();
        assert!(shared.cancel.is_cancelled());
        let kept = match shared.take_error().expect("an error is kept") {
            RunError::Config(e) => e.value().to_string(),
            other => panic!("unexpected {other}"),
        };
        assert!(kept == "0" || kept == "1", "kept {kept}");
        if a_was_first {
            assert_eq!(kept, "0", "a later error replaced the first");
        }
        assert!(shared.take_error().is_none(), "only one error is kept");
    });
}

#[test]
fn the_input_closes_when_the_last_handle_goes() {
    model(|| {
        let (shared, _rx) = input_on_edge(4, Cancel::new());
        let a = Input::new(shared.clone());
        let b = a.clone();
        let t = thread::spawn(move || drop(b));
        drop(a);
        t.join().unwrap();
        assert!(shared.sender().is_none(), "closed once every handle is gone");
    });
}

#[test]
fn stop_closes_the_input_for_a_live_handle() {
    model(|| {
        let (shared, _rx) = input_on_edge(4, Cancel::new());
        let handle = Input::new(shared.clone());
        let stopper = {
            let shared = shared.clone();
            thread::spawn(move || shared.stop())
        };
        let _ = handle.put_timeout(1, std::time::Duration::ZERO);
        stopper.join().unwrap();
        assert!(shared.is_closed());
        assert!(handle.put(2).is_err(), "a stopped input refuses items");
    });
}

#[test]
fn the_reorder_window_releases_batches_in_order() {
    model(|| {
        let buffer = Arc::new(Mutex::new(ReorderBuffer::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = [2u64, 0, 1]
            .into_iter()
            .map(|seq| {
                let (buffer, out) = (buffer.clone(), out.clone());
                thread::spawn(move || {
                    let mut b = buffer.lock().unwrap();
                    let released = b.insert(seq, seq);
                    out.lock().unwrap().extend(released);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*out.lock().unwrap(), vec![0, 1, 2]);
    });
}
