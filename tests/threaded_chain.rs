//! Chaining: a function stage with as many workers as the stage before it
//! (at least 2, more threads together than cores) runs on that stage's
//! threads, and still has its own row in the stats. These tests run where
//! chaining applies: a stage of `w` workers with 2 * w above the cores.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{burn_cpu, keep_last, within};
use paipa::threaded::{Pipeline, Stage};
use paipa::{RunError, Snapshot};

const LIMIT: Duration = Duration::from_secs(20);

/// Enough workers that two stages of them outnumber the cores.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).max(2)
}

/// The names of the threads that ran a step.
type Seen = Arc<Mutex<BTreeSet<String>>>;

fn record(seen: &Seen) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    // Keep the stage part of "paipa:<stage>:<index>".
    let stage = name.rsplit_once(':').map_or(name.clone(), |(s, _)| s.to_string());
    seen.lock().unwrap().insert(stage);
}

/// Books of every function stage (one item out per item in).
fn books(snap: &Snapshot) {
    for s in snap.stages[1..].iter().filter(|s| s.name != "parse") {
        assert_eq!(
            s.count_in,
            s.count + s.skipped + s.failed + s.discarded,
            "books of {}: {s:?}",
            s.name
        );
    }
}

#[test]
fn a_function_stage_runs_on_the_threads_of_the_stage_before_and_keeps_its_row() {
    within(LIMIT, || {
        let w = workers();
        let seen: Seen = Arc::default();
        let (debugger, last) = keep_last();
        let s2 = seen.clone();
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..10_000u64)
            .then(Stage::iter("parse", |it| it.filter(|x: &u64| x.is_multiple_of(2))).workers(w))
            .unwrap()
            .then(
                Stage::map("enrich", move |x: u64| {
                    record(&s2);
                    x * 3
                })
                .workers(w),
            )
            .unwrap();
        let (sum, summary) = p.run_with(|out| out.sum::<u64>()).unwrap();
        assert_eq!(sum, (0..10_000u64).filter(|x| x % 2 == 0).map(|x| x * 3).sum::<u64>());
        assert_eq!(summary.items, 5_000);
        assert_eq!(*seen.lock().unwrap(), BTreeSet::from(["paipa:parse".to_string()]));
        let snap = last.lock().unwrap().take().unwrap();
        books(&snap);
        let (parse, enrich) = (snap.stage("parse").unwrap(), snap.stage("enrich").unwrap());
        assert_eq!((parse.count_in, parse.count), (10_000, 5_000));
        assert_eq!((enrich.count_in, enrich.count), (5_000, 5_000));
        assert_eq!(enrich.workers, w);
        assert_eq!(enrich.queue_depth, 0);
    });
}

#[test]
fn unchained_stages_keep_threads_of_their_own() {
    within(LIMIT, || {
        let w = workers();
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        let p = Pipeline::new()
            .source(0..1_000u64)
            .then(Stage::map("a", |x: u64| x + 1).workers(w))
            .unwrap()
            .then(
                Stage::map("b", move |x: u64| {
                    record(&s2);
                    x
                })
                .workers(w)
                .unchained(),
            )
            .unwrap();
        assert_eq!(p.run().unwrap().items, 1_000);
        assert_eq!(*seen.lock().unwrap(), BTreeSet::from(["paipa:b".to_string()]));
    });
}

#[test]
fn stages_with_other_worker_counts_or_ordered_are_not_chained() {
    within(LIMIT, || {
        let w = workers();
        let (other, ordered): (Seen, Seen) = (Arc::default(), Arc::default());
        let (o2, r2) = (other.clone(), ordered.clone());
        let p = Pipeline::new()
            .source(0..1_000u64)
            .then(Stage::map("a", |x: u64| x + 1).workers(w))
            .unwrap()
            .then(
                Stage::map("b", move |x: u64| {
                    record(&o2);
                    x
                })
                .workers(w + 1),
            )
            .unwrap()
            .then(
                Stage::map("c", move |x: u64| {
                    record(&r2);
                    x
                })
                .workers(w + 1)
                .ordered(),
            )
            .unwrap();
        assert_eq!(p.run().unwrap().items, 1_000);
        assert_eq!(*other.lock().unwrap(), BTreeSet::from(["paipa:b".to_string()]));
        assert_eq!(*ordered.lock().unwrap(), BTreeSet::from(["paipa:c".to_string()]));
    });
}

#[test]
fn three_stages_chain_on_the_first_ones_threads() {
    within(LIMIT, || {
        let w = workers();
        let seen: Seen = Arc::default();
        let (s2, s3) = (seen.clone(), seen.clone());
        let p = Pipeline::new()
            .source(0..2_000u64)
            .then(Stage::map("a", |x: u64| x + 1).workers(w))
            .unwrap()
            .then(
                Stage::map("b", move |x: u64| {
                    record(&s2);
                    x * 2
                })
                .workers(w),
            )
            .unwrap()
            .then(
                Stage::map("c", move |x: u64| {
                    record(&s3);
                    x + 7
                })
                .workers(w),
            )
            .unwrap();
        let (sum, s) = p.run_with(|out| out.sum::<u64>()).unwrap();
        assert_eq!(sum, (0..2_000u64).map(|x| (x + 1) * 2 + 7).sum::<u64>());
        assert_eq!(s.snapshot.stage("c").unwrap().count, 2_000);
        assert_eq!(*seen.lock().unwrap(), BTreeSet::from(["paipa:a".to_string()]));
    });
}

#[test]
fn a_failing_chained_stage_fails_the_run_naming_it_and_keeps_the_books() {
    within(LIMIT, || {
        let w = workers();
        let (debugger, last) = keep_last();
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..100_000u64)
            .then(Stage::map("a", |x: u64| x).workers(w))
            .unwrap()
            .then(Stage::try_map("b", |x: u64| if x == 5_000 { Err("bad item") } else { Ok(x) }).workers(w))
            .unwrap();
        match p.run() {
            Err(RunError::Step { stage, source, .. }) => {
                assert_eq!(stage, "b");
                assert_eq!(source.to_string(), "bad item");
            }
            other => panic!("expected b's error: {other:?}"),
        }
        let snap = last.lock().unwrap().take().unwrap();
        books(&snap);
        assert_eq!(snap.stage("b").unwrap().failed, 1);
    });
}

#[test]
fn a_consumer_that_stops_early_ends_a_chained_run_and_keeps_the_books() {
    within(LIMIT, || {
        let w = workers();
        let (debugger, last) = keep_last();
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..1_000_000u64)
            .then(Stage::map("a", |x: u64| x).workers(w))
            .unwrap()
            .then(Stage::map("b", |x: u64| x + 1).workers(w))
            .unwrap();
        let (got, s) = p.run_with(|out| out.take(10).count()).unwrap();
        assert_eq!(got, 10);
        assert_eq!(s.items, 10);
        books(&last.lock().unwrap().take().unwrap());
    });
}

#[test]
fn a_chained_stage_is_charged_only_the_cpu_of_its_own_calls() {
    within(LIMIT, || {
        let w = workers();
        let (debugger, last) = keep_last();
        // "spin" burns 200 us of its thread's CPU per item (on the thread's
        // CPU clock: the same whatever the load), "tag" almost nothing: both
        // run on the same threads, each is charged its own CPU.
        let spin = |x: u64| burn_cpu(Duration::from_micros(200), x);
        let p = Pipeline::new()
            .debug(debugger)
            .source(0..1_000u64)
            .then(Stage::map("spin", spin).workers(w))
            .unwrap()
            .then(Stage::map("tag", |x: u64| x & 1).workers(w))
            .unwrap();
        assert_eq!(p.run().unwrap().items, 1_000);
        let snap = last.lock().unwrap().take().unwrap();
        let cpu = |name: &str| {
            let s = snap.stage(name).unwrap();
            s.user_cpu + s.sys_cpu
        };
        // 1,000 calls of 200 us each (the rusage clock the stats read rounds
        // to microseconds: a little slack below the 200 ms burnt).
        assert!(cpu("spin") >= Duration::from_millis(190), "spin {:?}", cpu("spin"));
        assert!(
            cpu("tag") * 10 < cpu("spin"),
            "tag {:?} of spin {:?}",
            cpu("tag"),
            cpu("spin")
        );
    });
}
