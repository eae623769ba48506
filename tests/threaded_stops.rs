//! Ways a threaded run stops early, each of which must end promptly with
//! its items accounted for (found in review; each test failed or hung
//! before its fix).

mod common;

use std::time::{Duration, Instant};

use common::within;
use paipa::threaded::{Pipeline, Stage};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn ordered_stage_sends_what_is_in_order_without_waiting_for_a_full_batch() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::map("ordered", |x: u32| x * 10).workers(2).ordered())
            .unwrap();
        let input = p.input();
        let mut out = p.outputs().unwrap();
        for i in 0..5 {
            // The producer waits for each answer before sending the next.
            input.put(i).unwrap();
            assert_eq!(out.next(), Some(i * 10));
        }
        drop(input);
        assert_eq!(out.next(), None);
        assert_eq!(out.finish().unwrap().items, 5);
    });
}

#[test]
fn stop_ends_a_run_fed_by_an_endless_lazy_source() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0u64..)
            .then(Stage::map("a", |x: u64| x).workers(2))
            .unwrap();
        let running = p.spawn().unwrap();
        // Stop once items have gone through "a" (however long a loaded
        // machine takes to start the run; `within` guards the wait).
        let stats = running.stats();
        while stats.snapshot().stage("a").unwrap().count == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = running.stop().unwrap();
        assert!(s.items > 0);
        // Stop drains: what the source pulled went through.
        assert_eq!(s.snapshot.stage("a").unwrap().count, s.snapshot.stages[0].count);
    });
}

#[test]
fn outputs_returned_from_run_with_do_not_hang_the_run() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..100_000u64)
            .then(Stage::map("a", |x: u64| x))
            .unwrap();
        let (escaped, s) = p.run_with(|out| out.map(|x| x + 1)).unwrap();
        assert!(s.stopped_early);
        // What is left is whatever was already through; it ends.
        assert!(escaped.count() < 100_000);
    });
}

#[test]
fn an_iterator_stage_that_stops_pulling_stops_upstream_only() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0u64..)
            .then(Stage::map("up", |x: u64| x).workers(2))
            .unwrap()
            .then(Stage::iter("take", |it| it.take(10)))
            .unwrap()
            .then(Stage::map("down", |x: u64| x * 2))
            .unwrap();
        let (mut out, s) = p.run_with(|o| o.collect::<Vec<_>>()).unwrap();
        out.sort_unstable();
        assert_eq!(out.len(), 10);
        let down = s.snapshot.stage("down").unwrap();
        assert_eq!((down.count_in, down.count, down.discarded), (10, 10, 0));
        let up = s.snapshot.stage("up").unwrap();
        assert_eq!(up.count_in, up.count + up.discarded, "{up:?}");
        assert!(s.stopped_early);
    });
}

#[test]
fn a_slow_source_sends_its_first_item_promptly() {
    within(LIMIT, || {
        // The source has no item 1 until the reader has item 0: a pipeline
        // that held item 0 back (to fill a batch, say) would wait for ever,
        // and `within` fails the test.
        let (got, first_read) = std::sync::mpsc::channel::<()>();
        let slow = (0..3u32).inspect(move |&i| {
            if i == 1 {
                let _ = first_read.recv();
            }
        });
        let p = Pipeline::new().source(slow).then(Stage::map("a", |x: u32| x)).unwrap();
        let mut out = p.outputs().unwrap();
        assert_eq!(out.next(), Some(0));
        got.send(()).unwrap();
        assert_eq!(out.by_ref().count(), 2);
        assert_eq!(out.finish().unwrap().items, 3);
    });
}

#[test]
fn put_all_on_a_stopped_pipeline_returns_instead_of_reading_forever() {
    within(LIMIT, || {
        let mut p = Pipeline::new().then(Stage::map("a", |x: u64| x)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        running.abort().unwrap();
        let err = input.put_all(0u64..).unwrap_err();
        assert!(!err.into_inner().is_empty());
    });
}

#[test]
fn abort_is_not_held_up_by_a_put_waiting_for_space() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .then(Stage::map("stuck", |x: u64| {
                std::thread::sleep(Duration::from_millis(200));
                x
            }))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = input.put_all(0..1000u64);
        });
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let s = running.abort().unwrap();
        // Far below the 200 s the queued items would take: the abort does
        // not wait for them, only for the one item in hand.
        assert!(t.elapsed() < Duration::from_secs(30), "abort took {:?}", t.elapsed());
        assert!(s.stopped_early);
        feeder.join().unwrap();
    });
}

#[test]
fn an_ordered_stage_whose_consumer_leaves_while_batches_wait_ends() {
    within(LIMIT, || {
        // Batches of one item. Item 0 takes 100 ms and item 1 takes 500 ms,
        // so batches 2 to 9 wait in the reorder window behind them when the
        // consumer's absence is found (sending batch 0). Those batches are
        // dropped with their places in the window; the workers waiting for
        // a place must be woken, not left waiting for ever.
        let p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .source(0..1_000u64)
            .then(
                Stage::map("ordered", |x: u64| {
                    match x {
                        0 => std::thread::sleep(Duration::from_millis(100)),
                        1 => std::thread::sleep(Duration::from_millis(500)),
                        _ => {}
                    }
                    x
                })
                .workers(5)
                .ordered(),
            )
            .unwrap();
        let mut out = p.outputs().unwrap();
        // Read the first output, so that batches are in flight when the
        // consumer leaves (leaving closes the input, as `Running`'s drop
        // does: a consumer that left at once would find nothing pulled yet).
        assert_eq!(out.next(), Some(0));
        let started = Instant::now();
        let summary = out.finish().unwrap();
        assert!(summary.stopped_early);
        let s = summary.snapshot.stage("ordered").unwrap();
        assert_eq!(s.count_in, s.count + s.discarded, "{s:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn a_panic_in_an_iterator_stage_keeps_the_books_wherever_it_happens() {
    use paipa::{Debugger, RunError, Snapshot};
    use std::sync::{Arc, Mutex};
    common::quiet_injected_panics();
    within(LIMIT, || {
        // Before the first pull, while items flow (one-for-one), after the end.
        for at in ["before", "during", "after"] {
            let last: Arc<Mutex<Option<Snapshot>>> = Arc::default();
            let keep = last.clone();
            let debugger = Debugger::silent().reporter(move |s: &Snapshot| *keep.lock().unwrap() = Some(s.clone()));
            let err = Pipeline::new()
                .debug(debugger)
                .source(0..100u32)
                .then(Stage::iter("p", move |it| {
                    if at == "before" {
                        panic!("injected panic before");
                    }
                    it.inspect(move |&x| {
                        if at == "during" && x == 30 {
                            panic!("injected panic at 30");
                        }
                    })
                    .chain(std::iter::from_fn(move || {
                        if at == "after" {
                            panic!("injected panic after");
                        }
                        None
                    }))
                }))
                .unwrap()
                .run()
                .unwrap_err();
            assert!(matches!(err, RunError::Panic { .. }), "{at}: {err}");
            let snap = last.lock().unwrap().take().expect("a final report");
            let s = snap.stage("p").unwrap();
            assert_eq!(s.count_in, s.count + s.skipped + s.failed + s.discarded, "{at}: {s:?}");
            assert_eq!(s.failed, u64::from(at == "during"), "{at}: {s:?}");
        }
    });
}
