//! The reference's own threaded-pipeline tests, with exact numbers, plus the
//! run modes. Every test runs under a time limit.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use paipa::threaded::{Meta, Pipeline, Stage, TimedChunk};
use paipa::RunError;

const LIMIT: Duration = Duration::from_secs(20);

/// Download x10 -> fails on 17 (retry once, then skip) -> chunk(10) x2 ->
/// flatten -> Upload x40.
fn reference_pipeline(uploaded: Arc<AtomicUsize>) -> Pipeline<'static, u64, ()> {
    let chunk = paipa::iter::chunk(10).unwrap();
    Pipeline::new()
        .then(Stage::map("download", |x: u64| x).workers(10))
        .unwrap()
        .then(
            Stage::try_map("fails_on_17", |x: u64| {
                if x == 17 {
                    Err(format!("cannot take {x}"))
                } else {
                    Ok(x)
                }
            })
            .retry(1, Duration::from_millis(1))
            .then_skip(),
        )
        .unwrap()
        .then(
            Stage::iter("chunk", move |it| chunk.clone()(it))
                .workers(2)
                .count_by(|b: &Vec<u64>| b.len() as u64),
        )
        .unwrap()
        .then(Stage::iter("flatten", paipa::iter::flatten))
        .unwrap()
        .then(
            Stage::map("upload", move |_x: u64| {
                uploaded.fetch_add(1, Ordering::Relaxed);
            })
            .workers(40),
        )
        .unwrap()
}

fn check_reference_summary(summary: &paipa::threaded::Summary, uploaded: &AtomicUsize) {
    assert_eq!(summary.items, 999);
    assert_eq!(uploaded.load(Ordering::Relaxed), 999);
    let snap = &summary.snapshot;
    let f = snap.stage("fails_on_17").unwrap();
    assert_eq!(
        (f.count_in, f.count, f.skipped, f.retried, f.failed),
        (1000, 999, 1, 1, 0)
    );
    assert_eq!(snap.stage("chunk").unwrap().count, 999);
    assert_eq!(snap.stage("flatten").unwrap().count, 999);
    for s in &snap.stages[1..] {
        assert_eq!(
            s.count_in,
            s.count + s.skipped + s.failed + s.discarded,
            "accounting of {}",
            s.name
        );
    }
}

#[test]
fn reference_pipeline_fed_lazily_gives_999() {
    within(LIMIT, || {
        let uploaded = Arc::new(AtomicUsize::new(0));
        let summary = reference_pipeline(uploaded.clone()).source(0..1000u64).run().unwrap();
        check_reference_summary(&summary, &uploaded);
    });
}

#[test]
fn reference_pipeline_fed_with_put_all_and_finish_gives_999() {
    within(LIMIT, || {
        let uploaded = Arc::new(AtomicUsize::new(0));
        let mut p = reference_pipeline(uploaded.clone());
        assert_eq!(p.put_all(0..1000u64), Ok(1000));
        p.close_input();
        assert!(p.put(5).is_err(), "put after finish is refused");
        let summary = p.run().unwrap();
        check_reference_summary(&summary, &uploaded);
    });
}

#[test]
fn three_items_and_three_metas_through_three_workers_give_six() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::map("work", |x: u32| x + 1).workers(3))
            .unwrap();
        for i in 0..3 {
            p.put(i).unwrap();
            p.put_meta(Meta::new(format!("meta {i}"))).unwrap();
        }
        let s = p.run().unwrap();
        assert_eq!((s.items, s.metas), (3, 3));
        assert_eq!(s.items + s.metas, 6);
    });
}

#[test]
fn meta_entries_keep_their_order_on_single_worker_stages() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::map("a", |x: u32| x))
            .unwrap()
            .then(Stage::step("b", |_: &_| {
                TimedChunk::<u32>::new(100, Duration::from_secs(5)).unwrap()
            }))
            .unwrap();
        p.put_all(0..3).unwrap();
        p.put_meta(Meta::new(1u8)).unwrap();
        p.put_all(3..5).unwrap();
        let (batches, s) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
        // The meta entry flushed the partial batch before it.
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(s.metas, 1);
    });
}

#[test]
fn a_crashing_step_without_retries_makes_run_return_its_error() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source(0..10_000u32)
            .then(Stage::map("fine", |x: u32| x).workers(2))
            .unwrap()
            .then(Stage::try_map("crash", |x: u32| if x == 500 { Err("crashed on 500") } else { Ok(x) }).workers(3))
            .unwrap();
        let err = p.run().unwrap_err();
        assert_eq!(err.stage(), Some("crash"));
        let msg = err.to_string();
        assert!(msg.starts_with("stage \"crash\" (worker "), "{msg}");
        assert!(msg.ends_with("failed: crashed on 500"), "{msg}");
    });
}

#[test]
fn a_panicking_step_is_an_error_naming_the_stage() {
    within(LIMIT, || {
        let err = Pipeline::new()
            .source(0..100u32)
            .then(Stage::map(
                "boom",
                |x: u32| {
                    if x == 7 {
                        panic!("exploded at {x}")
                    } else {
                        x
                    }
                },
            ))
            .unwrap()
            .run()
            .unwrap_err();
        match &err {
            RunError::Panic { stage, message, .. } => {
                assert_eq!(stage, "boom");
                assert_eq!(message, "exploded at 7");
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
    });
}

#[test]
fn a_failing_iterator_step_stops_a_million_item_source_quickly() {
    within(LIMIT, || {
        let made = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = made.clone();
        let err = Pipeline::new()
            .source((0..1_000_000u64).inspect(move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }))
            .then(Stage::map("before", |x: u64| x).workers(2))
            .unwrap()
            .then(Stage::try_iter("fails_after_1000", |it| {
                it.enumerate()
                    .map(|(i, x)| if i == 1000 { Err("iterator step failed") } else { Ok(x) })
            }))
            .unwrap()
            .then(Stage::map("after", |x: u64| x))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("fails_after_1000"));
        assert!(err.to_string().ends_with("failed: iterator step failed"));
        // Quickly in items, not seconds: the edges hold at most 2048 items
        // each, so the source is read no further than a few thousand items
        // past the failure, however slow the machine.
        let made = made.load(std::sync::atomic::Ordering::Relaxed);
        assert!(made < 20_000, "the source made {made} items");
    });
}

#[test]
fn timed_chunk_groups_by_size() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::step("chunk", |_: &_| {
                TimedChunk::<u32>::new(5, Duration::from_secs(10)).unwrap()
            }))
            .unwrap();
        p.put_all(0..10).unwrap();
        let (out, _) = p.run_with(|o| o.collect::<Vec<_>>()).unwrap();
        assert_eq!(out, vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]);
    });
}

#[test]
fn timed_chunk_flushes_a_single_item_after_its_timeout_in_the_background() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::step("chunk", |_: &_| {
                TimedChunk::<u32>::new(5, Duration::from_millis(50)).unwrap()
            }))
            .unwrap();
        let input = p.input();
        let mut outputs = p.outputs().unwrap();
        let t = Instant::now();
        input.put(42).unwrap();
        // The input stays open: only the timeout can flush this batch.
        assert_eq!(outputs.next(), Some(vec![42]));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "flushed after {waited:?}");
        drop(input);
        assert_eq!(outputs.next(), None);
        let s = outputs.finish().unwrap();
        assert_eq!(s.items, 1);
    });
}

#[test]
fn zero_settings_are_refused_with_their_field_and_value() {
    let err = Pipeline::<u8, u8>::new()
        .then(Stage::map("x", |x: u8| x).workers(0))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid workers: 0 (stage \"x\" needs at least 1)");
    assert_eq!((err.field(), err.value()), ("workers", "0"));
    let err = Pipeline::<u8, u8>::new().capacity(0).unwrap_err();
    assert_eq!(err.to_string(), "invalid capacity: 0 (must be at least 1)");
    assert_eq!((err.field(), err.value()), ("capacity", "0"));
    let err = Pipeline::<u8, u8>::new().capacity(usize::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid capacity: {} (must be at most 1073741824)", usize::MAX)
    );
    let err = Pipeline::<u8, u8>::new()
        .then(Stage::map("z", |x: u8| x).capacity(paipa::threaded::MAX_CAPACITY + 1))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid capacity: 1073741825 (stage \"z\" takes at most 1073741824)"
    );
    let err = Pipeline::<u8, u8>::new()
        .then(Stage::map("y", |x: u8| x).capacity(0))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid capacity: 0 (stage \"y\" needs at least 1)");
    let err = TimedChunk::<u8>::new(0, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.to_string(), "invalid chunk size: 0 (must be at least 1)");
    let err = TimedChunk::<u8>::new(3, Duration::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "invalid chunk timeout: 0s (must be more than zero)");
    let err = Pipeline::<u8, u8>::new()
        .then(Stage::iter("it", |i| i).workers(2).ordered())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ordered: true (stage \"it\": ordered mode with several workers needs a function stage)"
    );
    assert_eq!((err.field(), err.value()), ("ordered", "true"));
    let err = Pipeline::<u8, u8>::new()
        .then(Stage::iter("it", |i| i).retry(2, Duration::from_millis(1)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid retry: 2 (stage \"it\": iterator stages cannot retry an item; use skip or fail)"
    );
    assert_eq!((err.field(), err.value()), ("retry", "2"));
}

#[test]
fn running_with_no_input_is_a_clear_error() {
    within(LIMIT, || {
        let err = Pipeline::<u8, u8>::new().run().unwrap_err();
        assert!(matches!(err, RunError::NoInput));
        assert_eq!(
            err.to_string(),
            "pipeline has no input (no source, no item put, no input handle): \
             give it a source, put items, or take an input handle before running"
        );
        let err = Pipeline::new()
            .then(Stage::map("s", |x: u8| x))
            .unwrap()
            .run()
            .unwrap_err();
        assert!(matches!(err, RunError::NoInput));
    });
}

/// A timed chunk right after a lazy source that waits between items: the
/// partial batch goes out on its timeout while the source waits, not when
/// the next item comes. (A `Step` stage is fed by a source thread: a
/// worker waiting inside the source's `next()` would never see its input
/// quiet. Before, this test ran into its time limit.)
#[test]
fn a_timed_chunk_after_a_source_that_waits_flushes_on_its_timeout() {
    within(LIMIT, || {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let source = (0..2u32).inspect(move |&i| {
            if i == 1 {
                // The second item comes only once the first chunk is out.
                wait.recv().unwrap();
            }
        });
        let p = Pipeline::new()
            .source(source)
            .then(Stage::step("chunk", |_: &_| {
                TimedChunk::<u32>::new(5, Duration::from_millis(50)).unwrap()
            }))
            .unwrap();
        let mut out = p.outputs().unwrap();
        assert_eq!(out.next(), Some(vec![0]));
        go.send(()).unwrap();
        assert_eq!(out.next(), Some(vec![1]));
        assert_eq!(out.next(), None);
        assert_eq!(out.finish().unwrap().items, 2);
    });
}
