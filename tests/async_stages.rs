//! Async stages (feature `async`): many futures in flight on few threads,
//! the same policies and books as every stage, and no hang however a run
//! ends. No test asserts on wall-clock time: every wait is on a state
//! (a count, a gauge), guarded by `within`.
#![cfg(feature = "async")]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::{quiet_injected_panics, within};
use paipa::threaded::{Pipeline, Stage};
use paipa::{RunError, StageSnapshot};

const LIMIT: Duration = Duration::from_secs(60);

/// One test at a time: the thread count is per process, and a test that
/// waits for this lock starts no thread while another runs.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every item that went in is out, skipped, failed or discarded.
fn balanced(s: &StageSnapshot) -> bool {
    s.count_in == s.count + s.skipped + s.failed + s.discarded
}

fn sleep_ms(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

#[test]
fn a_failing_item_fails_the_run_naming_the_stage_and_the_books_balance() {
    let _serial = serial();
    within(LIMIT, || {
        let (debugger, last) = common::keep_last();
        let err = Pipeline::new()
            .debug(debugger)
            .source(0..100_000u64)
            .then(
                Stage::try_map_async("lookup", |x: u64| async move {
                    tokio::task::yield_now().await;
                    if x == 500 {
                        Err(format!("no record {x}"))
                    } else {
                        Ok(x)
                    }
                })
                .in_flight(16),
            )
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("lookup"));
        assert!(matches!(err, RunError::Step { .. }), "{err:?}");
        assert!(err.to_string().contains("no record 500"), "{err}");
        let snap = last.lock().unwrap().clone().expect("a final report");
        let s = snap.stage("lookup").unwrap();
        assert_eq!(s.failed, 1);
        assert!(balanced(s), "{s:?}");
    });
}

#[test]
fn skipped_items_are_counted_and_told() {
    let _serial = serial();
    within(LIMIT, || {
        let told = Arc::new(AtomicU64::new(0));
        let hook = told.clone();
        let (out, s) = Pipeline::new()
            .source(0..1_000u32)
            .then(
                Stage::try_map_async("check", |x: u32| async move {
                    tokio::task::yield_now().await;
                    if x % 10 == 3 {
                        Err("ends in 3")
                    } else {
                        Ok(x)
                    }
                })
                .in_flight(32)
                .skip_errors()
                .on_skip(move |s| {
                    assert_eq!((s.stage.as_str(), s.error.as_str()), ("check", "ends in 3"));
                    hook.fetch_add(1, SeqCst);
                }),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, (0..1_000).filter(|x| x % 10 != 3).collect::<Vec<_>>());
        let c = s.snapshot.stage("check").unwrap();
        assert_eq!((c.count, c.skipped, c.failed, c.discarded), (900, 100, 0, 0));
        assert_eq!(told.load(SeqCst), 100);
    });
}

#[test]
fn a_panic_inside_a_future_fails_the_run_naming_the_stage() {
    let _serial = serial();
    quiet_injected_panics();
    within(LIMIT, || {
        let err = Pipeline::new()
            .source(0..10_000u32)
            .then(
                Stage::map_async("explode", |x: u32| async move {
                    tokio::task::yield_now().await;
                    if x == 77 {
                        panic!("injected panic at {x}");
                    }
                    x
                })
                .in_flight(8),
            )
            .unwrap()
            .then(Stage::map("after", |x: u32| x))
            .unwrap()
            .run()
            .unwrap_err();
        match &err {
            RunError::Panic { stage, message, .. } => {
                assert_eq!(stage, "explode");
                assert!(message.contains("injected panic at 77"), "{message}");
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
    });
}

#[test]
fn a_panic_in_a_skipping_stage_skips_the_item() {
    let _serial = serial();
    quiet_injected_panics();
    within(LIMIT, || {
        let s = Pipeline::new()
            .source(0..100u32)
            .then(
                Stage::map_async("explode", |x: u32| async move {
                    if x == 7 {
                        panic!("injected panic");
                    }
                    x
                })
                .skip_errors(),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 99);
        assert_eq!(s.snapshot.stage("explode").unwrap().skipped, 1);
    });
}

#[test]
fn an_item_that_never_finishes_times_out() {
    let _serial = serial();
    within(LIMIT, || {
        // The quick items finish at their first poll and the stuck one
        // never does: whatever the machine's load, only it times out.
        let (out, s) = Pipeline::new()
            .source(0..50u32)
            .then(
                Stage::map_async("maybe", |x: u32| async move {
                    if x == 13 {
                        std::future::pending::<()>().await;
                    }
                    x
                })
                .in_flight(4)
                .timeout(Duration::from_millis(300))
                .skip_errors(),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        assert_eq!(out.len(), 49);
        assert!(!out.contains(&13));
        assert_eq!(s.snapshot.stage("maybe").unwrap().skipped, 1);

        let err = Pipeline::new()
            .source(0..5u32)
            .then(Stage::map_async("stuck", |_: u32| std::future::pending::<u32>()).timeout(Duration::from_millis(100)))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("stuck"));
        assert!(err.to_string().contains("timed out after 100ms"), "{err}");
    });
}

#[test]
fn retries_wait_on_the_timer_and_count() {
    let _serial = serial();
    within(LIMIT, || {
        let tries: Arc<Mutex<BTreeMap<u32, u32>>> = Arc::default();
        let seen = tries.clone();
        let s = Pipeline::new()
            .source(0..20u32)
            .then(
                Stage::try_map_async("flaky", move |x: u32| {
                    let n = {
                        let mut t = seen.lock().unwrap();
                        let n = t.entry(x).or_default();
                        *n += 1;
                        *n
                    };
                    async move {
                        // Every odd item fails twice, then succeeds.
                        if x % 2 == 1 && n <= 2 {
                            Err("not yet")
                        } else {
                            Ok(x)
                        }
                    }
                })
                .retry(2, Duration::from_millis(1)),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 20);
        assert_eq!(s.snapshot.stage("flaky").unwrap().retried, 20);
    });
}

#[test]
fn abort_drops_the_futures_in_flight_and_the_books_balance() {
    let _serial = serial();
    within(LIMIT, || {
        let dropped = Arc::new(AtomicU64::new(0));
        struct CountDrop(Arc<AtomicU64>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let d = dropped.clone();
        let p = Pipeline::new()
            .source(0u64..)
            .then(
                Stage::map_async("hang", move |x: u64| {
                    let guard = CountDrop(d.clone());
                    async move {
                        let _guard = guard;
                        sleep_ms(3_600_000).await;
                        x
                    }
                })
                .in_flight(50),
            )
            .unwrap();
        let running = p.spawn().unwrap();
        let stats = running.stats();
        // Wait (guarded by `within`) until the stage is at its bound.
        while stats.snapshot().stage("hang").unwrap().in_flight < 50 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = running.abort().unwrap();
        let h = s.snapshot.stage("hang").unwrap();
        assert!(h.discarded >= 50, "{h:?}");
        assert_eq!(h.count, 0);
        assert_eq!(h.in_flight, 0);
        assert!(balanced(h), "{h:?}");
        assert_eq!(dropped.load(SeqCst), 50, "every future in flight was dropped");
    });
}

#[test]
fn a_consumer_that_stops_early_stops_the_async_stage() {
    let _serial = serial();
    within(LIMIT, || {
        let (first, s) = Pipeline::new()
            .source(0u64..)
            .then(
                Stage::map_async("fetch", |x: u64| async move {
                    sleep_ms(1).await;
                    x
                })
                .in_flight(64),
            )
            .unwrap()
            .run_with(|out| out.take(100).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(first.len(), 100);
        assert!(s.stopped_early);
        let f = s.snapshot.stage("fetch").unwrap();
        assert!(balanced(f), "{f:?}");

        // The same with a background run's outputs dropped.
        let out = Pipeline::new()
            .source(0u64..)
            .then(Stage::map_async("fetch", |x: u64| async move { x }).in_flight(8))
            .unwrap()
            .outputs()
            .unwrap();
        let first: Vec<u64> = out.take(10).collect();
        assert_eq!(first.len(), 10);
    });
}

#[test]
fn sync_and_async_stages_mixed_with_full_edges_between_them() {
    let _serial = serial();
    within(LIMIT, || {
        // Edges of 2 items everywhere: the async stage is blocked by the
        // slow sync stage after it and starved by the one before it.
        let (out, s) = Pipeline::new()
            .capacity(2)
            .unwrap()
            .source(0..2_000u64)
            .then(Stage::map("before", |x: u64| x + 1).capacity(2))
            .unwrap()
            .then(
                Stage::map_async("io", |x: u64| async move {
                    tokio::task::yield_now().await;
                    x * 2
                })
                .in_flight(16)
                .capacity(2),
            )
            .unwrap()
            .then(
                Stage::map("slow", |x: u64| {
                    std::thread::sleep(Duration::from_micros(50));
                    x
                })
                .capacity(2),
            )
            .unwrap()
            .then(
                Stage::map_async("io2", |x: u64| async move { x + 1 })
                    .in_flight(3)
                    .capacity(2),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, (0..2_000u64).map(|x| (x + 1) * 2 + 1).collect::<Vec<_>>());
        for name in ["before", "io", "slow", "io2"] {
            let st = s.snapshot.stage(name).unwrap();
            assert_eq!((st.count_in, st.count), (2_000, 2_000), "{name}");
        }
    });
}

#[test]
fn a_live_input_feeds_an_async_stage_and_dropping_it_ends_the_run() {
    let _serial = serial();
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::map_async("echo", |x: u32| async move { x }).in_flight(4))
            .unwrap();
        let input = p.input();
        let mut out = p.outputs().unwrap();
        for i in 0..5 {
            // One at a time: each answer comes back before the next put,
            // so nothing waits for a full batch.
            input.put(i).unwrap();
            assert_eq!(out.next(), Some(i));
        }
        drop(input);
        assert_eq!(out.next(), None);
        assert_eq!(out.finish().unwrap().items, 5);
    });
}

#[test]
fn the_callers_runtime_can_run_the_futures() {
    let _serial = serial();
    within(LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let s = Pipeline::new()
            .source(0..500u32)
            .then(
                Stage::map_async("on_callers", |x: u32| async move {
                    sleep_ms(1).await;
                    x
                })
                .in_flight(50)
                .on_runtime(rt.handle().clone()),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 500);

        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = Pipeline::<u32, u32>::new()
            .then(Stage::map_async("x", |x: u32| async move { x }).on_runtime(current.handle().clone()))
            .unwrap_err();
        assert_eq!(err.field(), "runtime");
    });
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let _serial = serial();
    let refuse =
        |stage: paipa::threaded::AsyncStage<'static, u32, u32>| Pipeline::<u32, u32>::new().then(stage).unwrap_err();
    let e = refuse(Stage::map_async("a", |x: u32| async move { x }).in_flight(0));
    assert_eq!(e.to_string(), "invalid in_flight: 0 (stage \"a\" needs at least 1)");
    let e = refuse(Stage::map_async("a", |x: u32| async move { x }).in_flight(paipa::threaded::MAX_IN_FLIGHT + 1));
    assert_eq!(e.field(), "in_flight");
    let e = refuse(Stage::map_async("a", |x: u32| async move { x }).timeout(Duration::ZERO));
    assert_eq!(e.field(), "timeout");
    // As a plain stage (one type for a list of stages of every kind), the
    // same settings are refused the same way when the stage is added.
    let plain = |stage: paipa::threaded::AsyncStage<'static, u32, u32>| {
        let stage: Stage<'static, u32, u32> = stage.into();
        Pipeline::<u32, u32>::new().then(stage).unwrap_err()
    };
    let e = plain(Stage::map_async("a", |x: u32| async move { x }).timeout(Duration::ZERO));
    assert_eq!(
        e.to_string(),
        "invalid timeout: 0ns (stage \"a\" takes from 1 ns to 86400s)"
    );
    let e = plain(Stage::map_async("a", |x: u32| async move { x }).in_flight(0));
    assert_eq!(e.to_string(), "invalid in_flight: 0 (stage \"a\" needs at least 1)");
}

#[test]
fn an_async_stage_at_its_bound_is_the_bottleneck() {
    let _serial = serial();
    within(LIMIT, || {
        // 4 slots of 5 ms requests: the input is always there, so the
        // slots are full but for the start and the end.
        let s = Pipeline::new()
            .source(0..400u32)
            .then(
                Stage::map_async("fetch", |x: u32| async move {
                    sleep_ms(5).await;
                    x
                })
                .in_flight(4),
            )
            .unwrap()
            .run()
            .unwrap();
        let f = s.snapshot.stage("fetch").unwrap();
        assert_eq!(f.workers, 4);
        assert_eq!(f.per_worker.len(), 1, "one row: the stage's thread");
        assert_eq!(s.snapshot.bottleneck().map(|b| b.name.as_str()), Some("fetch"));
    });
}

#[test]
fn an_ordered_async_stage_hands_results_on_in_input_order() {
    let _serial = serial();
    within(LIMIT, || {
        // Later items finish first: item i waits (13 - i % 13) ms.
        let (out, s) = Pipeline::new()
            .source(0..2_000u32)
            .then(
                Stage::try_map_async("lookup", |x: u32| async move {
                    sleep_ms(u64::from(13 - x % 13)).await;
                    if x % 100 == 7 {
                        Err("no record")
                    } else {
                        Ok(x * 2)
                    }
                })
                .in_flight(40)
                .ordered()
                .skip_errors(),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        let expected: Vec<u32> = (0..2_000).filter(|x| x % 100 != 7).map(|x| x * 2).collect();
        assert_eq!(out, expected);
        let st = s.snapshot.stage("lookup").unwrap();
        assert_eq!((st.count, st.skipped, st.discarded), (1_980, 20, 0));
    });
}

#[test]
fn an_ordered_async_stage_starts_nothing_past_its_window() {
    let _serial = serial();
    within(LIMIT, || {
        // Item 0 waits until items 1-3 have started (and finished), then
        // a while longer, and reads how many items have started by then:
        // with a window of 4, no item past 3 may start before 0 is handed
        // on, however long it takes.
        let started = Arc::new(AtomicUsize::new(0));
        let seen_by_first = Arc::new(AtomicUsize::new(0));
        let (s2, seen) = (started.clone(), seen_by_first.clone());
        let (out, _) = Pipeline::new()
            .source(0..100u32)
            .then(
                Stage::map_async("slow_head", move |x: u32| {
                    let (started, seen) = (s2.clone(), seen.clone());
                    async move {
                        started.fetch_add(1, SeqCst);
                        if x == 0 {
                            while started.load(SeqCst) < 4 {
                                sleep_ms(1).await;
                            }
                            sleep_ms(50).await;
                            seen.store(started.load(SeqCst), SeqCst);
                        }
                        x
                    }
                })
                .in_flight(4)
                .ordered(),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        assert_eq!(out, (0..100).collect::<Vec<_>>());
        assert_eq!(seen_by_first.load(SeqCst), 4);
        assert_eq!(started.load(SeqCst), 100);
    });
}

#[test]
fn an_ordered_async_stage_whose_consumer_leaves_discards_what_it_holds() {
    let _serial = serial();
    within(LIMIT, || {
        let (debugger, last) = common::keep_last();
        let taken = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u32)
            .then(
                Stage::map_async("lookup", |x: u32| async move {
                    sleep_ms(u64::from(x % 3)).await;
                    x
                })
                .in_flight(16)
                .ordered(),
            )
            .unwrap()
            .run_with(|out| out.take(100).collect::<Vec<_>>())
            .unwrap()
            .0;
        assert_eq!(taken, (0..100).collect::<Vec<_>>());
        let snap = last.lock().unwrap().clone().expect("a final report");
        let s = snap.stage("lookup").unwrap();
        assert!(balanced(s), "{s:?}");
        assert!(s.count >= 100, "{s:?}");
    });
}

#[test]
fn per_item_latency_is_measured_and_read_over_an_interval() {
    let _serial = serial();
    within(LIMIT, || {
        let (_, s) = Pipeline::new()
            .source(0..200u32)
            .then(
                Stage::map_async("fetch", |x: u32| async move {
                    sleep_ms(if x < 100 { 2 } else { 30 }).await;
                    x
                })
                .in_flight(50),
            )
            .unwrap()
            .run_with(|out| out.count())
            .unwrap();
        let st = s.snapshot.stage("fetch").unwrap();
        assert_eq!(st.in_flight_limit, 50);
        assert_eq!(st.latency.samples(), 200);
        // A sleep lasts at least its time; a bucket is within 6.25%.
        let p50 = st.latency.p50().unwrap();
        let p99 = st.latency.p99().unwrap();
        assert!(p50 >= Duration::from_micros(1_875), "{p50:?}");
        assert!(p99 >= Duration::from_micros(28_125), "{p99:?}");
        // Other rows measure no latency.
        assert_eq!(s.snapshot.stages[0].latency.samples(), 0);
        assert_eq!(s.snapshot.stages[0].in_flight_limit, 0);
        // Since itself: nothing happened.
        assert_eq!(
            s.snapshot.since(&s.snapshot).stage("fetch").unwrap().latency.samples(),
            0
        );
    });
}

#[test]
fn an_async_stage_at_its_bound_gets_the_raise_in_flight_hint() {
    let _serial = serial();
    within(LIMIT, || {
        let (_, s) = Pipeline::new()
            .source(0..100u32)
            .then(
                Stage::map_async("fetch", |x: u32| async move {
                    sleep_ms(20).await;
                    x
                })
                .in_flight(2),
            )
            .unwrap()
            .run_with(|out| out.count())
            .unwrap();
        let hint = paipa::report::hint(&s.snapshot).expect("a hint");
        assert!(
            hint.starts_with("raise in_flight on async stage \"fetch\": its futures filled "),
            "{hint}"
        );
        assert!(hint.contains("of its bound of 2 in flight"), "{hint}");
    });
}

/// An item whose `Clone` panics when its retry copy is made.
struct Brittle(u32);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        panic!("injected: cannot copy item {}", self.0)
    }
}

#[test]
fn a_panicking_retry_copy_is_named_as_the_items_clone_and_counted_once() {
    let _serial = serial();
    quiet_injected_panics();
    within(LIMIT, || {
        let err = Pipeline::new()
            .source((0..3u32).map(Brittle))
            .then(
                Stage::try_map_async("fetch", |b: Brittle| async move { Ok::<u32, &str>(b.0) })
                    .retry(2, Duration::from_millis(1)),
            )
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("fetch"));
        assert!(
            err.to_string()
                .contains("in its item's Clone: injected: cannot copy item"),
            "{err}"
        );
    });
}
