//! Run modes, input modes, ordering, hooks, adapters and stats of threaded
//! pipelines. Every test runs under a time limit.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::within;
use paipa::threaded::{Output, Pipeline, Stage, Step, StepFactory, WorkerInfo};
use paipa::{BoxError, Debugger, Snapshot};

const LIMIT: Duration = Duration::from_secs(20);

fn jitter(x: u64) -> u64 {
    // A deterministic, uneven delay so that workers finish out of order.
    std::thread::sleep(Duration::from_micros((x * 7919) % 200));
    x
}

#[test]
fn ordered_stage_keeps_input_order_across_workers() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..2_000u64)
            .then(Stage::map("jitter", jitter).workers(4).ordered())
            .unwrap()
            .then(Stage::map("after", |x: u64| x * 2))
            .unwrap();
        let (out, s) = p.run_with(|o| o.collect::<Vec<_>>()).unwrap();
        assert_eq!(out, (0..2_000u64).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(s.items, 2_000);
    });
}

#[test]
fn unordered_stage_outputs_the_same_multiset() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..2_000u64)
            .then(Stage::map("jitter", jitter).workers(4))
            .unwrap();
        let (mut out, _) = p.run_with(|o| o.collect::<Vec<_>>()).unwrap();
        out.sort_unstable();
        assert_eq!(out, (0..2_000u64).collect::<Vec<_>>());
    });
}

#[derive(Default)]
struct Hooks {
    before: AtomicUsize,
    after: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    idle: AtomicUsize,
    indexes: Mutex<Vec<usize>>,
    /// Items per worker, summed by the after-stage hook.
    total: AtomicUsize,
    after_saw_total: AtomicUsize,
}

struct Counting {
    hooks: Arc<Hooks>,
    seen: usize,
}

impl Step for Counting {
    type In = u32;
    type Out = u32;
    fn process(&mut self, item: u32, out: &mut Output<'_, u32>) -> Result<(), BoxError> {
        self.seen += 1;
        out.emit(item);
        Ok(())
    }
    fn on_start(&mut self, worker: &WorkerInfo) -> Result<(), BoxError> {
        assert_eq!(worker.stage, "counting");
        assert_eq!(worker.workers, 3);
        self.hooks.started.fetch_add(1, Ordering::SeqCst);
        self.hooks.indexes.lock().unwrap().push(worker.index);
        Ok(())
    }
    fn on_idle(&mut self, _out: &mut Output<'_, u32>) -> Result<(), BoxError> {
        self.hooks.idle.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn on_finish(&mut self, _out: &mut Output<'_, u32>) -> Result<(), BoxError> {
        self.hooks.total.fetch_add(self.seen, Ordering::SeqCst);
        Ok(())
    }
    fn on_shutdown(&mut self) {
        self.hooks.finished.fetch_add(1, Ordering::SeqCst);
    }
}

struct CountingFactory(Arc<Hooks>);

impl StepFactory for CountingFactory {
    type Step = Counting;
    fn create(&self, _worker: &WorkerInfo) -> Counting {
        Counting {
            hooks: self.0.clone(),
            seen: 0,
        }
    }
    fn before_stage(&self) {
        assert_eq!(self.0.started.load(Ordering::SeqCst), 0, "before any worker");
        self.0.before.fetch_add(1, Ordering::SeqCst);
    }
    fn after_stage(&self) {
        assert_eq!(self.0.finished.load(Ordering::SeqCst), 3, "after every worker");
        self.0.after.fetch_add(1, Ordering::SeqCst);
        self.0
            .after_saw_total
            .store(self.0.total.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[test]
fn lifecycle_hooks_run_once_per_stage_and_once_per_worker() {
    within(LIMIT, || {
        let hooks = Arc::new(Hooks::default());
        let p = Pipeline::new()
            .source(0..500u32)
            .then(Stage::step("counting", CountingFactory(hooks.clone())).workers(3))
            .unwrap();
        let s = p.run().unwrap();
        assert_eq!(s.items, 500);
        assert_eq!(hooks.before.load(Ordering::SeqCst), 1);
        assert_eq!(hooks.after.load(Ordering::SeqCst), 1);
        assert_eq!(hooks.started.load(Ordering::SeqCst), 3);
        assert_eq!(hooks.finished.load(Ordering::SeqCst), 3);
        assert_eq!(hooks.after_saw_total.load(Ordering::SeqCst), 500);
        let mut idx = hooks.indexes.lock().unwrap().clone();
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2]);
    });
}

/// `on_idle` is promised when a worker finds its input empty, not on any
/// schedule: with a live input on which nothing is put, every worker's
/// first look finds it empty, so each calls `on_idle` before the input ends.
#[test]
fn every_worker_calls_on_idle_when_it_finds_its_input_empty() {
    within(LIMIT, || {
        let hooks = Arc::new(Hooks::default());
        let mut p = Pipeline::new()
            .then(Stage::step("counting", CountingFactory(hooks.clone())).workers(3))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        while hooks.idle.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!(s.items, 0);
        assert_eq!(hooks.started.load(Ordering::SeqCst), 3);
        assert_eq!(hooks.finished.load(Ordering::SeqCst), 3);
        assert!(hooks.idle.load(Ordering::SeqCst) >= 3);
    });
}

/// Asks for `on_idle` as often as possible, and counts the calls.
struct EagerIdle(Arc<AtomicUsize>);

impl Step for EagerIdle {
    type In = u64;
    type Out = u64;
    fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), BoxError> {
        out.emit(item);
        Ok(())
    }
    fn on_idle(&mut self, _out: &mut Output<'_, u64>) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn idle_timeout(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

#[test]
fn a_zero_idle_timeout_calls_on_idle_at_most_once_a_millisecond() {
    within(LIMIT, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let mut p = Pipeline::new()
            .then(Stage::step_with("eager", move || EagerIdle(counted.clone())))
            .unwrap();
        let input = p.input();
        let started = std::time::Instant::now();
        let running = p.spawn().unwrap();
        // One item through: the worker has found its input empty (one
        // call) before it is held idle.
        input.put(1).unwrap();
        while calls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(200));
        let seen = calls.load(Ordering::SeqCst);
        let elapsed = started.elapsed();
        drop(input);
        assert_eq!(running.wait().unwrap().items, 1);
        // Each wait of an idle worker lasts at least the 1 ms floor: at
        // most one call a millisecond (and one when the item's input ran
        // dry). Ten times that still refuses a spin, which makes thousands
        // of calls a millisecond.
        let bound = 10 * (elapsed.as_millis() as usize + 2);
        assert!(seen <= bound, "{seen} on_idle calls in {elapsed:?}");
    });
}

#[test]
fn live_input_handles_from_other_threads_end_the_run_when_dropped() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(8)
            .unwrap()
            .then(Stage::map("sq", |x: u64| x * x).workers(2))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let feeders: Vec<_> = (0..4u64)
            .map(|t| {
                let input = input.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        input.put(t * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(input);
        for f in feeders {
            f.join().unwrap();
        }
        let s = running.wait().unwrap();
        assert_eq!(s.items, 1000);
        assert_eq!(s.snapshot.stages[0].count, 1000);
    });
}

#[test]
fn background_run_is_alive_until_stopped_and_stop_drains_everything() {
    within(LIMIT, || {
        let processed = Arc::new(AtomicUsize::new(0));
        let seen = processed.clone();
        let mut p = Pipeline::new()
            .then(Stage::map("count", move |_: u32| {
                seen.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        assert!(running.alive());
        input.put_all(0..100).unwrap();
        assert!(running.alive());
        // The caller still holds a handle: stop closes the input for it.
        let s = running.stop().unwrap();
        assert_eq!(s.items, 100);
        assert_eq!(processed.load(Ordering::SeqCst), 100);
        assert!(input.put(1).is_err());
        assert!(!input.is_open());
    });
}

#[test]
fn dropping_the_outputs_early_stops_the_pipeline_cleanly() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..10_000_000u64)
            .then(Stage::map("a", |x: u64| x + 1).workers(2))
            .unwrap()
            .then(Stage::map("b", |x: u64| x * 2).workers(2))
            .unwrap();
        let mut outputs = p.outputs().unwrap();
        let first: Vec<u64> = outputs.by_ref().take(10).collect();
        assert_eq!(first.len(), 10);
        let s = outputs.finish().unwrap();
        assert!(s.stopped_early);
        for st in &s.snapshot.stages[1..] {
            assert_eq!(
                st.count_in,
                st.count + st.skipped + st.failed + st.discarded,
                "{}",
                st.name
            );
        }
    });
}

#[test]
fn scoped_run_with_stops_cleanly_when_the_consumer_takes_a_few() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..10_000_000u64)
            .then(Stage::map("a", |x: u64| x).workers(3))
            .unwrap();
        let (first, s) = p.run_with(|out| out.take(5).collect::<Vec<_>>()).unwrap();
        assert_eq!(first.len(), 5);
        assert!(s.stopped_early);
    });
}

fn caster(it: impl Iterator<Item = u32>) -> impl Iterator<Item = String> {
    it.map(|x| x.to_string())
}

#[test]
fn adapters_iterator_steps_sources_and_outputs() {
    within(LIMIT, || {
        // An iterator pipeline is the source, an iterator step is a stage,
        // and the outputs feed another iterator pipeline.
        let source = paipa::iter::Pipeline::new(0..100u32).step(|it| it.filter(|x| x % 2 == 0));
        let threaded = Pipeline::new()
            .source(source)
            .then(Stage::iter("caster", caster))
            .unwrap()
            .then(Stage::map("len", |s: String| s.len()).workers(2))
            .unwrap();
        let outputs = threaded.outputs().unwrap();
        let total: usize = paipa::iter::Pipeline::new(outputs)
            .step(|it| it.map(|n| n * 10))
            .into_iter()
            .sum();
        // 0..=8 even: 5 one-digit numbers; 10..=98 even: 45 two-digit numbers.
        assert_eq!(total, 10 * (5 + 45 * 2));
    });
}

#[test]
fn memory_stays_bounded_by_capacity_with_a_slow_consumer() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .capacity(16)
            .unwrap()
            .source(0..u64::MAX)
            .then(Stage::map("a", |x: u64| x))
            .unwrap();
        let (_, s) = p
            .run_with(|out| {
                let mut out = out;
                let mut seen = 0;
                for _ in 0..50 {
                    out.next();
                    seen += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen
            })
            .unwrap();
        // The source was pulled only as the pipeline drained: a bounded
        // number of items ahead of the consumer (edges, batches in hand).
        let pulled = s.snapshot.stages[0].count;
        assert!(pulled < 50 + 200, "source ran ahead by {}", pulled - 50);
    });
}

#[test]
fn reporters_get_periodic_and_one_final_snapshot_naming_the_bottleneck() {
    within(LIMIT, || {
        let reports: Arc<Mutex<Vec<Snapshot>>> = Arc::default();
        let sink = reports.clone();
        let debugger = Debugger::silent()
            .name("etl")
            .interval(Duration::from_millis(20))
            .reporter(move |s: &Snapshot| sink.lock().unwrap().push(s.clone()));
        // A small capacity: "fast" must wait for room behind "slow" for
        // most of the run, whatever the batch sizes.
        let p = Pipeline::new()
            .capacity(16)
            .unwrap()
            .debug(debugger)
            .source(0..300u64)
            .then(Stage::map("fast", |x: u64| x).workers(2))
            .unwrap()
            .then(Stage::map("slow", |x: u64| {
                std::thread::sleep(Duration::from_micros(500));
                x
            }))
            .unwrap();
        let s = p.run().unwrap();
        // The final report is made on a thread of its own (the run waits
        // for it at most 2 s): wait for it here, bounded by `within`.
        while !reports.lock().unwrap().iter().any(|r| r.is_final) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let reports = reports.lock().unwrap();
        assert!(reports.len() >= 2, "{} reports", reports.len());
        assert_eq!(reports.iter().filter(|r| r.is_final).count(), 1);
        let last = reports.last().unwrap();
        assert!(last.is_final);
        assert_eq!(last.pipeline, "etl");
        let names: Vec<_> = last.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["source", "fast", "slow", "consumer"]);
        assert_eq!(last.bottleneck().unwrap().name, "slow");
        assert_eq!(last.outcome, Some(paipa::Outcome::Finished));
        let slow = s.snapshot.stage("slow").unwrap();
        assert!(slow.busy >= Duration::from_millis(150), "{:?}", slow.busy);
        assert_eq!(s.snapshot.stage("fast").unwrap().workers, 2);
        // Busy + starved + blocked covers each worker's wall time.
        let fast = s.snapshot.stage("fast").unwrap();
        assert!(fast.starved + fast.blocked > fast.busy, "fast mostly waits: {fast:?}");
        // Per worker, the split adds up to the stage's totals.
        assert_eq!(fast.per_worker.len(), 2);
        let sum = |f: fn(&paipa::WorkerSnapshot) -> Duration| fast.per_worker.iter().map(f).sum::<Duration>();
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(10);
        assert!(close(sum(|w| w.busy), fast.busy), "{fast:?}");
        assert!(close(sum(|w| w.starved), fast.starved), "{fast:?}");
        assert!(close(sum(|w| w.blocked), fast.blocked), "{fast:?}");
        let wall = s.snapshot.elapsed;
        for w in &slow.per_worker {
            let total = w.busy + w.starved + w.blocked;
            assert!(total <= wall + Duration::from_millis(20), "{w:?} over {wall:?}");
            // It starts with the run and ends with it (a loaded machine
            // may start its thread late, so not all of it).
            assert!(
                total * 4 >= wall,
                "a worker's split covers most of the run: {w:?} of {wall:?}"
            );
        }
    });
}

#[test]
fn counters_from_threaded_steps_go_to_their_stage() {
    within(LIMIT, || {
        let s = Pipeline::new()
            .source(0..100u32)
            .then(
                Stage::map("q", |x: u32| {
                    paipa::stats::count("queries", 2);
                    x
                })
                .workers(3),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.snapshot.stage("q").unwrap().counter("queries"), 200);
    });
}

#[test]
fn skip_policy_counts_and_goes_on() {
    within(LIMIT, || {
        let s = Pipeline::new()
            .source(0..1000u32)
            .then(
                Stage::try_map("odd_fail", |x: u32| if x % 2 == 1 { Err("odd") } else { Ok(x) })
                    .skip_errors()
                    .workers(3),
            )
            .unwrap()
            .run()
            .unwrap();
        let st = s.snapshot.stage("odd_fail").unwrap();
        assert_eq!((s.items, st.skipped, st.failed), (500, 500, 0));
    });
}

#[test]
fn retry_then_fail_returns_the_last_error_after_the_retries() {
    within(LIMIT, || {
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        let err = Pipeline::new()
            .source(0..10u32)
            .then(
                Stage::try_map("flaky", move |x: u32| {
                    if x == 3 {
                        a.fetch_add(1, Ordering::SeqCst);
                        Err("always fails")
                    } else {
                        Ok(x)
                    }
                })
                .retry(2, Duration::from_millis(1)),
            )
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(err.to_string(), "stage \"flaky\" (worker 0) failed: always fails");
    });
}
