//! The verdict: on pipelines whose true bottleneck is known (one row made
//! much slower than the rest: sleeps of milliseconds against no-ops), the
//! verdict and the summary name it, the source and the consumer included,
//! and a failed run says so before any advice.

use std::time::Duration;

use paipa::report::format_summary;
use paipa::threaded::{Pipeline, Stage};
use paipa::{Limit, Outcome, Snapshot, StageSnapshot, WorkerSnapshot};

mod common;
use common::{keep_final, within};

const LIMIT: Duration = Duration::from_secs(60);
const SLOW: Duration = Duration::from_millis(2);

fn nap<T>(x: T) -> T {
    std::thread::sleep(SLOW);
    x
}

/// Three one-worker stages, `slow` sleeping per item, the others no-ops.
fn three_stages(slow: &'static str) -> Snapshot {
    let stage = move |name: &'static str| Stage::map(name, move |x: u64| if name == slow { nap(x) } else { x });
    let summary = Pipeline::new()
        .source(0..150u64)
        .then(stage("a"))
        .unwrap()
        .then(stage("b"))
        .unwrap()
        .then(stage("c"))
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.items, 150);
    summary.snapshot
}

#[test]
fn each_stage_made_slow_in_turn_is_named() {
    within(LIMIT, || {
        for slow in ["a", "b", "c"] {
            let snap = three_stages(slow);
            let verdict = snap.verdict();
            assert_eq!(verdict.stage.as_deref(), Some(slow), "{snap:#?}");
            assert_eq!(verdict.limit, Limit::AddWorkers, "{slow}: {verdict:?}");
            assert_eq!(snap.bottleneck().unwrap().name, slow);
            let hint = paipa::report::hint(&snap).unwrap();
            assert!(
                hint.starts_with(&format!("add workers to stage {slow:?}: its 1 worker(s) were busy ")),
                "{hint}"
            );
            assert!(hint.contains("mostly waiting"), "a sleeping stage waits: {hint}");
        }
    });
}

#[test]
fn a_slow_source_is_named() {
    within(LIMIT, || {
        let summary = Pipeline::new()
            .source((0..150u64).map(nap))
            .then(Stage::map("a", |x: u64| x))
            .unwrap()
            .then(Stage::map("b", |x: u64| x))
            .unwrap()
            .run()
            .unwrap();
        let verdict = summary.snapshot.verdict();
        assert_eq!(verdict.limit, Limit::Source, "{verdict:?}");
        assert_eq!(verdict.stage.as_deref(), Some("source"));
        let hint = paipa::report::hint(&summary.snapshot).unwrap();
        assert!(
            hint.starts_with("the source \"source\" limits the run (busy "),
            "{hint}"
        );
        assert!(hint.ends_with("; stage \"a\" is starved by \"source\""), "{hint}");
    });
}

#[test]
fn a_slow_consumer_is_named_and_the_blocked_source_points_downstream() {
    within(LIMIT, || {
        // Items put before the run: a source thread sends them, and waits
        // for room (a lazy source would be pulled by "a" instead). Capacity
        // 2 (batches of 1 on every edge) keeps only a handful of the 300
        // items in flight: the source is blocked for all but the last few
        // of the consumer's naps, whatever the machine's load.
        const ITEMS: u64 = 300;
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .then(Stage::map("a", |x: u64| x))
            .unwrap();
        p.put_all(0..ITEMS).unwrap();
        let (read, summary) = p.run_with(|out| out.map(nap).count()).unwrap();
        assert_eq!(read, ITEMS as usize);
        let snap = &summary.snapshot;
        let consumer = snap.consumer().expect("a consumer row");
        assert_eq!(consumer.name, "consumer");
        assert_eq!((consumer.count_in, consumer.count), (ITEMS, ITEMS));
        assert!(consumer.busy >= SLOW * ITEMS as u32, "{consumer:?}");
        let verdict = snap.verdict();
        assert_eq!(verdict.limit, Limit::Consumer, "{verdict:?}");
        assert_eq!(verdict.stage.as_deref(), Some("consumer"));
        let hint = paipa::report::hint(snap).unwrap();
        assert!(hint.starts_with("the consumer limits the run (busy "), "{hint}");
        assert!(
            hint.ends_with("of the run: the limit is downstream, at \"consumer\""),
            "the source waited for room most of the run: {hint}"
        );
    });
}

#[test]
fn the_consumer_row_measures_an_outputs_iterator_too() {
    within(LIMIT, || {
        let mut p = Pipeline::new().then(Stage::map("a", nap)).unwrap();
        p.put_all(0..50u64).unwrap();
        let mut out = p.outputs().unwrap();
        assert_eq!(out.by_ref().count(), 50);
        let summary = out.finish().unwrap();
        let snap = &summary.snapshot;
        let consumer = snap.consumer().unwrap();
        assert_eq!(consumer.count, 50);
        // It waited for "a", which sleeps: starved, barely busy.
        assert!(consumer.starved > consumer.busy, "{consumer:?}");
        assert_eq!(snap.verdict().stage.as_deref(), Some("a"));
        assert_eq!(snap.outcome, Some(Outcome::Finished));
    });
}

#[test]
fn an_io_bound_stage_whose_workers_cover_the_cores_still_gets_more_workers() {
    within(LIMIT, || {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = cores.max(4);
        let summary = Pipeline::new()
            .source(0..(40 * workers as u64))
            .then(
                Stage::map("fetch", |x: u64| {
                    std::thread::sleep(Duration::from_millis(5));
                    x
                })
                .workers(workers),
            )
            .unwrap()
            .then(Stage::map("store", |x: u64| x))
            .unwrap()
            .run()
            .unwrap();
        let verdict = summary.snapshot.verdict();
        assert_eq!(verdict.stage.as_deref(), Some("fetch"), "{verdict:?}");
        // It waits, so the cores are not what limits it.
        assert_eq!(verdict.limit, Limit::AddWorkers, "{verdict:?}");
        let hint = paipa::report::hint(&summary.snapshot).unwrap();
        assert!(
            hint.starts_with(&format!(
                "add workers to stage \"fetch\": its {workers} worker(s) were busy "
            )),
            "{hint}"
        );
        assert!(hint.contains("mostly waiting"), "{hint}");
    });
}

/// CPU per item of the CPU-bound stage: burnt on its worker thread's own
/// CPU clock, so it is the same whatever the load (its wall time is not).
const CRUNCH: Duration = Duration::from_millis(2);

fn crunch(x: u64) -> u64 {
    common::burn_cpu(CRUNCH, x)
}

#[test]
fn a_cpu_bound_stage_is_named_and_judged_against_the_cores() {
    within(LIMIT, || {
        const ITEMS: u64 = 150;
        // "crunch" burns 2 ms of CPU per item, "wait" sleeps a tenth of
        // that: however late a loaded machine wakes it, "wait" stays far
        // from the 85% of crunch's load that would make the two balanced.
        let summary = Pipeline::new()
            .source(0..ITEMS)
            .then(Stage::map("crunch", crunch))
            .unwrap()
            .then(Stage::map("wait", |x: u64| {
                std::thread::sleep(CRUNCH / 10);
                x
            }))
            .unwrap()
            .run()
            .unwrap();
        let snap = &summary.snapshot;
        let crunch = snap.stage("crunch").unwrap();
        let wait = snap.stage("wait").unwrap();
        // The CPU burnt is known: the stage is charged all of it (the
        // rusage clock the stats read rounds to microseconds).
        let burnt = CRUNCH * ITEMS as u32;
        assert!(
            crunch.user_cpu + crunch.sys_cpu >= burnt.mul_f64(0.95),
            "crunch burnt {burnt:?}: {crunch:?}"
        );
        // A loaded machine lowers a CPU-bound stage's CPU share of its busy
        // time (it waits for a core), but it stays far above that of a stage
        // that sleeps in the same run.
        assert!(
            crunch.cpu_ratio() > 2.0 * wait.cpu_ratio(),
            "crunch {} against wait {}: {snap:#?}",
            crunch.cpu_ratio(),
            wait.cpu_ratio()
        );
        // One worker on a machine of four cores: more workers help.
        let verdict = snap.verdict_for_cores(4);
        assert_eq!(
            (verdict.limit, verdict.stage.as_deref()),
            (Limit::AddWorkers, Some("crunch"))
        );
        // One worker on a one-core machine: saturated if the run measured
        // crunch as CPU-bound (CPU at least 30% of its busy time), which
        // depends on how much of a core the machine's load left it; the
        // rule itself is checked on constructed snapshots below.
        let verdict = snap.verdict_for_cores(1);
        let expected = if crunch.cpu_ratio() >= 0.3 {
            Limit::Saturated
        } else {
            Limit::AddWorkers
        };
        assert_eq!(
            (verdict.limit, verdict.stage.as_deref()),
            (expected, Some("crunch")),
            "cpu ratio {}",
            crunch.cpu_ratio()
        );
    });
}

#[test]
fn a_balanced_pipeline_names_every_busy_stage() {
    within(LIMIT, || {
        // Balanced means busy within 15% of each other: each stage's time
        // per item is its sleep plus how late the machine wakes it, so the
        // sleeps are long enough that no load makes the two differ by that.
        let nap20 = |x: u64| {
            std::thread::sleep(Duration::from_millis(20));
            x
        };
        let summary = Pipeline::new()
            .source(0..30u64)
            .then(Stage::map("a", nap20))
            .unwrap()
            .then(Stage::map("b", nap20))
            .unwrap()
            .run()
            .unwrap();
        let verdict = summary.snapshot.verdict();
        assert_eq!(verdict.limit, Limit::Balanced, "{verdict:?}");
        let mut named: Vec<String> = verdict.others.clone();
        named.extend(verdict.stage.clone());
        named.sort();
        assert_eq!(named, ["a", "b"]);
        let hint = paipa::report::hint(&summary.snapshot).unwrap();
        assert!(hint.starts_with("no single bottleneck: "), "{hint}");
    });
}

#[test]
fn a_failed_run_says_so_first_with_its_stage_and_error() {
    within(LIMIT, || {
        let (debugger, last) = keep_final();
        let err = Pipeline::new()
            .debug(debugger)
            .source(0..1_000u64)
            .then(Stage::try_map(
                "explode",
                |x: u64| if x == 5 { Err("boom") } else { Ok(x) },
            ))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.to_string(), "stage \"explode\" (worker 0) failed: boom");
        let snap = last.lock().unwrap().take().expect("a final report");
        assert_eq!(
            snap.outcome,
            Some(Outcome::Failed {
                stage: Some("explode".into()),
                error: "stage \"explode\" (worker 0) failed: boom".into(),
            })
        );
        let lines = format_summary(&snap);
        assert_eq!(
            lines[0],
            "outcome: failed in stage \"explode\": stage \"explode\" (worker 0) failed: boom"
        );
        assert_eq!(
            lines.last().unwrap(),
            "hint: the run failed in stage \"explode\": fix that first; the timings cover only the part \
             that ran, so they say nothing about speed"
        );
        assert!(!lines.iter().any(|l| l.contains("add workers")), "{lines:#?}");
    });
}

#[test]
fn a_consumer_that_stops_early_is_reported_as_stopped_early() {
    within(LIMIT, || {
        let (debugger, last) = keep_final();
        let (first, summary) = Pipeline::new()
            .debug(debugger)
            .source(0..100_000u64)
            .then(Stage::map("a", |x: u64| x))
            .unwrap()
            .run_with(|mut out| out.next())
            .unwrap();
        assert_eq!(first, Some(0));
        assert!(summary.stopped_early);
        let snap = last.lock().unwrap().take().unwrap();
        assert_eq!(snap.outcome, Some(Outcome::StoppedEarly));
        assert_eq!(
            format_summary(&snap)[0],
            "outcome: stopped early (the consumer stopped reading, or the run was stopped; see discarded)"
        );
        assert_eq!(snap.consumer().unwrap().count, 1);
    });
}

// The same rules on constructed snapshots, whose numbers are exact.

fn row(name: &str, workers: usize, busy_ms: u64, cpu_ms: u64) -> StageSnapshot {
    StageSnapshot {
        name: name.into(),
        workers,
        count: 1_000,
        count_in: 1_000,
        busy: Duration::from_millis(busy_ms),
        user_cpu: Duration::from_millis(cpu_ms),
        per_worker: vec![WorkerSnapshot::default(); workers],
        ..StageSnapshot::default()
    }
}

fn edge_row(name: &str, busy_ms: u64, blocked_ms: u64) -> StageSnapshot {
    StageSnapshot {
        name: name.into(),
        workers: 1,
        count: 1_000,
        count_in: 1_000,
        busy: Duration::from_millis(busy_ms),
        blocked: Duration::from_millis(blocked_ms),
        ..StageSnapshot::default()
    }
}

fn threaded(stages: Vec<StageSnapshot>) -> Snapshot {
    Snapshot {
        pipeline: "p".into(),
        elapsed: Duration::from_secs(1),
        stages,
        is_final: true,
        outcome: Some(Outcome::Finished),
        ..Snapshot::default()
    }
}

#[test]
fn hints_in_full_for_each_kind_of_limit() {
    let cpu_bound = threaded(vec![
        edge_row("source", 0, 900),
        row("parse", 2, 1_960, 1_900),
        row("store", 1, 100, 10),
        edge_row("consumer", 10, 0),
    ]);
    let lines = format_summary(&cpu_bound);
    assert_eq!(lines[0], "outcome: finished (every item went through)");
    assert_eq!(lines[1], "run: 1000 items in 1.00 s (1000.0 items/s end to end)");
    assert_eq!(
        lines[2],
        "share of busy time: source 0.0%, parse 94.7%, store 4.8%, consumer 0.5%"
    );
    assert_eq!(
        lines[3],
        "bottleneck: \"parse\" (95% of busy time, 510.2 items/s per worker)"
    );
    let two = cpu_bound.verdict_for_cores(2);
    assert_eq!(two.limit, Limit::Saturated);
    assert_eq!(
        paipa::report::advice(&cpu_bound, &two).unwrap(),
        "the machine is saturated: stage \"parse\" is CPU-bound (CPU 97% of busy time, busy 98%) and its 2 \
         worker(s) already cover the 2 cores, so more workers will not help: make the step cheaper, give it \
         coarser items (more work per item, fewer hand-overs), or merge it with its neighbours; the source was \
         blocked 90% of the run: the limit is downstream, at \"parse\""
    );
    let four = cpu_bound.verdict_for_cores(4);
    assert_eq!(four.limit, Limit::AddWorkers);
    assert_eq!(
        paipa::report::advice(&cpu_bound, &four).unwrap(),
        "add workers to stage \"parse\": its 2 worker(s) were busy 98% of the time, CPU-bound (CPU 97% of busy \
         time), and the machine has 4 cores; the source was blocked 90% of the run: the limit is downstream, at \
         \"parse\""
    );

    let waiting = threaded(vec![
        edge_row("source", 0, 0),
        row("a", 1, 100, 1),
        edge_row("consumer", 10, 0),
    ]);
    assert_eq!(waiting.verdict().limit, Limit::Waiting);
    assert_eq!(
        paipa::report::hint(&waiting).unwrap(),
        "no stage is saturated (the busiest, \"a\", was busy 10% of the time): the run waits for its input"
    );
}

#[test]
fn a_stage_is_saturated_only_when_cpu_bound_with_workers_covering_the_cores() {
    let snap = |cpu_ms| {
        threaded(vec![
            edge_row("source", 0, 900),
            row("work", 1, 980, cpu_ms),
            edge_row("consumer", 10, 0),
        ])
    };
    let judged = |cpu_ms, cores| {
        let v = snap(cpu_ms).verdict_for_cores(cores);
        assert_eq!(v.stage.as_deref(), Some("work"));
        v.limit
    };
    // CPU-bound (CPU at least 30% of its busy time), one worker.
    assert_eq!(judged(950, 1), Limit::Saturated);
    assert_eq!(judged(294, 1), Limit::Saturated);
    assert_eq!(judged(950, 2), Limit::AddWorkers);
    assert_eq!(judged(950, 4), Limit::AddWorkers);
    // Waiting: more workers help even where they cover the cores.
    assert_eq!(judged(290, 1), Limit::AddWorkers);
    assert_eq!(judged(10, 1), Limit::AddWorkers);
}

#[test]
fn a_fold_is_measured_on_what_it_takes_in() {
    let fold = StageSnapshot {
        name: "sum".into(),
        workers: 1,
        count: 1,
        count_in: 10_000,
        busy: Duration::from_secs(1),
        counters: vec![("q".into(), 20_000)],
        ..StageSnapshot::default()
    };
    assert_eq!(fold.items(), 10_000);
    assert_eq!(fold.throughput(), 10_000.0);
    let snap = Snapshot {
        elapsed: Duration::from_secs(1),
        stages: vec![fold],
        ..Snapshot::default()
    };
    let line = &paipa::report::format_table(&snap)[1];
    assert!(
        line.starts_with("> sum: count: 1 in: 10000 runtime: 1.00 10000.00/s "),
        "{line}"
    );
    assert!(line.contains("q: 20000 q/e: 2.00"), "{line}");
}

#[test]
fn iterator_pipelines_say_how_they_ended() {
    within(LIMIT, || {
        use paipa::iter::Pipeline as Iter;
        let (debugger, last) = keep_final();
        assert_eq!(paipa::iter::consume(Iter::new(0..5u32).debug(debugger)), 5);
        assert_eq!(last.lock().unwrap().take().unwrap().outcome, Some(Outcome::Finished));

        let (debugger, last) = keep_final();
        let mut it = Iter::new(0..5u32).debug(debugger).into_iter();
        assert_eq!(it.next(), Some(0));
        drop(it);
        assert_eq!(
            last.lock().unwrap().take().unwrap().outcome,
            Some(Outcome::StoppedEarly)
        );

        common::quiet_injected_panics();
        let (debugger, last) = keep_final();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let pipeline = Iter::new(0..5u32).debug(debugger).step_named("boom", |it| {
                it.map(|x| if x == 3 { panic!("injected panic") } else { x })
            });
            paipa::iter::consume(pipeline)
        }));
        assert!(result.is_err());
        let snap = last.lock().unwrap().take().unwrap();
        assert_eq!(
            snap.outcome,
            Some(Outcome::Failed {
                stage: Some("boom".into()),
                error: "panicked".into()
            })
        );
        assert_eq!(format_summary(&snap)[0], "outcome: failed in stage \"boom\": panicked");
    });
}
