//! Hangs and uncounted losses of the threaded core found in review: each
//! test ran into its time limit or read wrong books before its fix. Hangs
//! run under `within`; the books are read from the final report, per stage
//! `count_in = count + skipped + failed + discarded`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{keep_last, within, Kept};
use paipa::threaded::{Pipeline, Stage};
use paipa::{RunError, Snapshot};

const LIMIT: Duration = Duration::from_secs(20);

/// The final report, with every stage's books balanced.
fn final_books(last: &Kept) -> Snapshot {
    let snap = last.lock().unwrap().take().expect("a report");
    assert!(snap.is_final, "the last report is not the final one");
    for s in &snap.stages[1..] {
        assert_eq!(
            s.count_in,
            s.count + s.skipped + s.failed + s.discarded,
            "books of {}: {s:?}",
            s.name
        );
    }
    snap
}

// 1. A consumer that stops early ends a run that has a live input handle.

#[test]
fn a_consumer_that_stops_early_ends_a_run_with_a_live_input() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("a", |x: u32| x + 1).workers(2))
            .unwrap()
            .then(Stage::map("b", |x: u32| x * 10))
            .unwrap();
        let input = p.input();
        let (got, s) = p
            .run_with(|out| {
                input.put(1).unwrap();
                out.take(1).collect::<Vec<_>>()
            })
            .unwrap();
        assert_eq!(got, vec![20]);
        assert_eq!(s.items, 1);
        // The run is over: the live handle is refused.
        assert!(input.put(2).is_err());
        final_books(&last);
    });
}

#[test]
fn dropping_background_outputs_ends_a_run_with_a_live_input() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("a", |x: u32| x + 1).workers(2))
            .unwrap();
        let input = p.input();
        let mut out = p.outputs().unwrap();
        input.put(1).unwrap();
        assert_eq!(out.next(), Some(2));
        let s = out.finish().unwrap();
        assert_eq!(s.items, 1);
        assert!(input.put(2).is_err());
        final_books(&last);
    });
}

#[test]
fn a_panicking_consumer_ends_a_run_with_a_live_input() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("a", |x: u32| x + 1).workers(2))
            .unwrap();
        let input = p.input();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.run_with(|mut out| {
                input.put(1).unwrap();
                input.put(2).unwrap();
                out.next();
                panic!("injected panic in the consumer");
            })
        }));
        assert!(result.is_err(), "the consumer's panic goes on to the caller");
        assert!(input.put(3).is_err());
        let snap = final_books(&last);
        // The item the consumer did not read is discarded, not delivered.
        assert_eq!(snap.stage("a").unwrap().count, 1, "{snap:?}");
    });
}

// 4. What the consumer drops unread is counted, and `items` is what it got.

#[test]
fn dropping_outputs_early_counts_what_was_not_read() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u64)
            .then(Stage::map("a", |x: u64| x))
            .unwrap();
        let mut out = p.outputs().unwrap();
        // Part of the first batch: the rest of it is dropped unread.
        assert_eq!(out.by_ref().take(5).count(), 5);
        let s = out.finish().unwrap();
        assert_eq!(s.items, 5, "{:?}", s.snapshot);
        assert!(s.stopped_early);
        assert_eq!(s.snapshot.stage("a").unwrap().count, 5);
        let snap = final_books(&last);
        assert_eq!(snap.stage("a").unwrap().count, 5);
    });
}

#[test]
fn a_run_with_consumer_that_stops_early_gets_items_equal_to_what_it_read() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u64)
            .then(Stage::map("a", |x: u64| x).workers(3))
            .unwrap()
            .then(Stage::map("b", |x: u64| x))
            .unwrap();
        let (n, s) = p.run_with(|out| out.take(7).count()).unwrap();
        assert_eq!(n, 7);
        assert_eq!(s.items, 7);
        final_books(&last);
    });
}

// 5. What the source could not send is counted as the source's discards.

#[test]
fn a_source_whose_send_fails_counts_what_it_could_not_send() {
    within(LIMIT, || {
        // Items put before the run: the first stage stops after 3.
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .debug(debugger)
            .then(Stage::iter("take", |it| it.take(3)))
            .unwrap();
        p.put_all(0..1000u32).unwrap();
        let s = p.run().unwrap();
        assert_eq!(s.items, 3);
        let snap = final_books(&last);
        let source = &snap.stages[0];
        assert_eq!(source.count + source.discarded, 1000, "{source:?}");

        // A lazy source: what it pulled is sent or discarded.
        let (debugger, last) = keep_last();
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = pulled.clone();
        let s = Pipeline::new()
            .capacity(2)
            .unwrap()
            .debug(debugger)
            .source((0..1_000_000u32).inspect(move |_| {
                counter.fetch_add(1, SeqCst);
            }))
            .then(Stage::iter("take", |it| it.take(3)))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 3);
        let snap = final_books(&last);
        let source = &snap.stages[0];
        assert_eq!(source.count + source.discarded, pulled.load(SeqCst), "{source:?}");
    });
}

#[test]
fn a_failing_run_counts_what_the_source_still_held() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .debug(debugger)
            .then(Stage::map(
                "a",
                |x: u32| if x == 5 { panic!("injected panic at 5") } else { x },
            ))
            .unwrap();
        p.put_all(0..1000u32).unwrap();
        let err = p.run().unwrap_err();
        assert!(matches!(err, RunError::Panic { .. }), "{err}");
        let snap = final_books(&last);
        let source = &snap.stages[0];
        assert_eq!(source.count + source.discarded, 1000, "{source:?}");
    });
}

// 2. User callbacks outside the step's panic guard fail the run, naming the
// stage, and keep the books.

/// The run failed with a panic of `stage`, and its final books balance.
fn failed_with_panic_of(result: Result<paipa::threaded::Summary, RunError>, stage: &str) {
    match result {
        Err(RunError::Panic { stage: s, .. }) if s == stage => {}
        other => panic!("expected a panic of {stage}, got {other:?}"),
    }
}

#[test]
fn a_panicking_count_by_in_an_ordered_stage_fails_the_run_without_hanging() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let result = Pipeline::new()
            .capacity(4)
            .unwrap()
            .debug(debugger)
            .source(0..2_000u64)
            .then(Stage::map("o", |x: u64| x).workers(3).ordered().count_by(|x: &u64| {
                if *x == 500 {
                    panic!("injected panic in count_by")
                } else {
                    1
                }
            }))
            .unwrap()
            .then(Stage::map("next", |x: u64| x))
            .unwrap()
            .run();
        failed_with_panic_of(result, "o");
        final_books(&last);
    });
}

#[test]
fn a_panicking_count_by_on_the_idle_flush_fails_the_run() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        // Items one at a time: each is sent by the flush before waiting,
        // outside any step call.
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("w", |x: u64| x).workers(2).count_by(|x: &u64| {
                if *x == 3 {
                    panic!("injected panic in count_by")
                } else {
                    1
                }
            }))
            .unwrap()
            .then(Stage::map("next", |x: u64| x))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        for i in 0..10 {
            if input.put(i).is_err() {
                break;
            }
        }
        drop(input);
        failed_with_panic_of(running.wait(), "w");
        final_books(&last);
    });
}

#[test]
fn a_panicking_step_factory_fails_the_run() {
    use paipa::threaded::{Output, Step, WorkerInfo};
    common::quiet_injected_panics();
    struct Id;
    impl Step for Id {
        type In = u64;
        type Out = u64;
        fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), paipa::BoxError> {
            out.emit(item);
            Ok(())
        }
    }
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let result = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u64)
            .then(
                Stage::step("made", |w: &WorkerInfo| {
                    if w.index == 1 {
                        panic!("injected panic in create");
                    }
                    Id
                })
                .workers(2),
            )
            .unwrap()
            .run();
        failed_with_panic_of(result, "made");
        final_books(&last);
    });
}

#[test]
fn a_panicking_idle_timeout_fails_the_run_and_still_shuts_the_worker_down() {
    use paipa::threaded::{Output, Step};
    common::quiet_injected_panics();
    struct Idle(Arc<AtomicU64>);
    impl Step for Idle {
        type In = u64;
        type Out = u64;
        fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), paipa::BoxError> {
            out.emit(item);
            Ok(())
        }
        fn idle_timeout(&self) -> Option<Duration> {
            panic!("injected panic in idle_timeout")
        }
        fn on_shutdown(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let shut_down = Arc::new(AtomicU64::new(0));
        let created = Arc::new(AtomicU64::new(0));
        let (s, c) = (shut_down.clone(), created.clone());
        let result = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u64)
            .then(
                Stage::step("idle", move |_: &_| {
                    c.fetch_add(1, SeqCst);
                    Idle(s.clone())
                })
                .workers(2),
            )
            .unwrap()
            .run();
        failed_with_panic_of(result, "idle");
        final_books(&last);
        // Every step made was shut down (a worker not yet started when the
        // run failed is never started).
        assert!(created.load(SeqCst) >= 1);
        assert_eq!(shut_down.load(SeqCst), created.load(SeqCst));
    });
}

#[test]
fn a_panicking_lazy_source_fails_the_run_and_counts_what_it_pulled() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = pulled.clone();
        let source = (0..100_000u64).inspect(move |&x| {
            if x == 300 {
                panic!("injected panic in the source");
            }
            counter.fetch_add(1, SeqCst);
        });
        let result = Pipeline::new()
            .capacity(8)
            .unwrap()
            .debug(debugger)
            .source(source)
            .then(Stage::map("a", |x: u64| x))
            .unwrap()
            .run();
        failed_with_panic_of(result, "source");
        let snap = final_books(&last);
        let source = &snap.stages[0];
        assert_eq!(source.count + source.discarded, pulled.load(SeqCst), "{source:?}");
    });
}

/// A factory whose `before_stage` or `after_stage` hook panics.
struct PanickingHook {
    in_before: bool,
}

impl paipa::threaded::StepFactory for PanickingHook {
    type Step = Pass;
    fn create(&self, _worker: &paipa::threaded::WorkerInfo) -> Pass {
        Pass
    }
    fn before_stage(&self) {
        if self.in_before {
            panic!("injected panic in before_stage");
        }
    }
    fn after_stage(&self) {
        if !self.in_before {
            panic!("injected panic in after_stage");
        }
    }
}

struct Pass;

impl paipa::threaded::Step for Pass {
    type In = u64;
    type Out = u64;
    fn process(&mut self, item: u64, out: &mut paipa::threaded::Output<'_, u64>) -> Result<(), paipa::BoxError> {
        out.emit(item);
        Ok(())
    }
}

#[test]
fn a_panicking_stage_hook_fails_the_run_naming_the_stage_and_the_hook() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        for (in_before, hook) in [(true, "before_stage"), (false, "after_stage")] {
            let (debugger, last) = keep_last();
            let result = Pipeline::new()
                .debug(debugger)
                .source(0..1000u64)
                .then(Stage::step("hooked", PanickingHook { in_before }).workers(2))
                .unwrap()
                .run();
            let err = result.expect_err(hook);
            assert_eq!(
                err.to_string(),
                format!("stage \"hooked\" (worker 0) panicked: in its {hook} hook: injected panic in {hook}")
            );
            assert!(matches!(err, RunError::Panic { .. }), "{err:?}");
            let snap = final_books(&last);
            assert!(
                matches!(&snap.outcome, Some(paipa::Outcome::Failed { stage: Some(s), .. }) if s == "hooked"),
                "{:?}",
                snap.outcome
            );
        }
    });
}

// 6. After a cancel, a worker does not go on through its batch.

#[test]
fn a_worker_stops_within_its_batch_when_the_run_is_aborted() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let mut p = Pipeline::new().capacity(1000).unwrap().debug(debugger);
        // A handle used only to see the cancel from inside the step.
        let probe = p.input();
        let calls = Arc::new(AtomicU64::new(0));
        let (at_first, first) = std::sync::mpsc::channel::<()>();
        let at_first = Mutex::new(at_first);
        let c = calls.clone();
        let mut p = p
            .then(Stage::map("x", move |x: u64| {
                c.fetch_add(1, SeqCst);
                if x == 0 {
                    // Let the test abort, and wait until the cancel is seen.
                    at_first.lock().unwrap().send(()).unwrap();
                    while probe.is_open() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                x
            }))
            .unwrap();
        // Batches of 500: the worker holds 0..500 when it sees the cancel.
        p.put_all(0..1000u64).unwrap();
        let running = p.spawn().unwrap();
        first.recv().unwrap();
        let s = running.abort().unwrap();
        assert!(s.stopped_early);
        assert_eq!(calls.load(SeqCst), 1, "items processed after the cancel");
        let snap = final_books(&last);
        let x = snap.stage("x").unwrap();
        assert_eq!(x.count, 0, "{x:?}");
    });
}

// 3. A step that leaks its input iterator still reports, flushes and lets
// the edges end.

#[test]
fn a_step_that_forgets_its_input_iterator_lets_the_run_end() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let s = Pipeline::new()
            .capacity(8)
            .unwrap()
            .debug(debugger)
            .source(0..10_000u64)
            .then(Stage::iter("forget", |it| {
                let mut it = it;
                let first: Vec<u64> = it.by_ref().take(5).collect();
                std::mem::forget(it);
                first
            }))
            .unwrap()
            .then(Stage::map("down", |x: u64| x))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 5);
        let snap = final_books(&last);
        assert_eq!(snap.stage("down").unwrap().count_in, 5);
    });
}

#[test]
fn a_step_that_leaks_its_input_iterator_and_fails_reports_its_error() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let err = Pipeline::new()
            .capacity(8)
            .unwrap()
            .debug(debugger)
            .source(0..10_000u64)
            .then(Stage::try_iter("leak", |it| {
                let mut it = it;
                let first: Vec<u64> = it.by_ref().take(5).collect();
                Box::leak(Box::new(it));
                // One result per item pulled: the fifth is an error.
                first.into_iter().map(|x| {
                    if x == 4 {
                        Err("injected error after a leak")
                    } else {
                        Ok(x)
                    }
                })
            }))
            .unwrap()
            .then(Stage::map("down", |x: u64| x))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("leak"), "{err}");
        final_books(&last);
    });
}

// Steps that hold items across calls (a batcher, a sink with a partial
// batch) say how many with `Step::held`.

/// Keeps every item until its input ends; records whether `on_finish` ran.
/// With a gate, its first item waits until the gate opens, and 100 ms more.
struct Hoarder {
    held: Vec<u64>,
    finished: Arc<AtomicU64>,
    gate: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl paipa::threaded::Step for Hoarder {
    type In = u64;
    type Out = u64;

    fn process(&mut self, item: u64, _out: &mut paipa::threaded::Output<'_, u64>) -> Result<(), paipa::BoxError> {
        if let Some(gate) = self.gate.take() {
            while !gate.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.held.push(item);
        Ok(())
    }

    fn on_finish(&mut self, out: &mut paipa::threaded::Output<'_, u64>) -> Result<(), paipa::BoxError> {
        self.finished.fetch_add(1, SeqCst);
        self.held.drain(..).for_each(|x| out.emit(x));
        Ok(())
    }

    fn held(&self) -> u64 {
        self.held.len() as u64
    }
}

#[test]
fn what_a_step_holds_when_the_run_is_aborted_is_counted_as_discarded() {
    within(LIMIT, || {
        let finished = Arc::new(AtomicU64::new(0));
        let (debugger, last) = keep_last();
        let f = finished.clone();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::step("hoard", move |_: &_| Hoarder {
                held: Vec::new(),
                finished: f.clone(),
                gate: None,
            }))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        input.put_all(0..10u64).unwrap();
        let stats = running.stats();
        while stats.snapshot().stage("hoard").unwrap().count_in < 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let summary = running.abort().unwrap();
        assert!(summary.stopped_early);
        let snap = final_books(&last);
        let hoard = snap.stage("hoard").unwrap();
        assert_eq!((hoard.count_in, hoard.count, hoard.discarded), (10, 0, 10), "{hoard:?}");
        assert_eq!(finished.load(SeqCst), 0, "an abort is not an end of input");
    });
}

#[test]
fn a_step_after_a_failed_stage_is_not_finished_and_counts_what_it_holds() {
    within(LIMIT, || {
        let finished = Arc::new(AtomicU64::new(0));
        let (debugger, last) = keep_last();
        let f = finished.clone();
        // "hoard" is busy with its first item while "check" fails: it
        // stops after that item, holding what it took, and is not
        // finished (a failed run's input did not end).
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = failed.clone();
        let err = Pipeline::new()
            .debug(debugger)
            .source(0..100u64)
            .then(Stage::try_map("check", move |x: u64| {
                if x == 50 {
                    failed.store(true, SeqCst);
                    Err("no 50")
                } else {
                    Ok(x)
                }
            }))
            .unwrap()
            .then(Stage::step("hoard", move |_: &_| Hoarder {
                held: Vec::new(),
                finished: f.clone(),
                gate: Some(gate.clone()),
            }))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("check"));
        let snap = final_books(&last);
        let hoard = snap.stage("hoard").unwrap();
        assert_eq!(hoard.count, 0, "{hoard:?}");
        assert_eq!(hoard.count_in, hoard.discarded, "{hoard:?}");
        assert_eq!(finished.load(SeqCst), 0, "the input ended because the run failed");
    });
}
