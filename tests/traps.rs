//! Traps found in review, each removed: what used to not compile, hang,
//! panic, abort or quietly do nothing now works or is refused with a clear
//! message.

use std::time::Duration;

use paipa::threaded::{Meta, Output, Pipeline, Stage, Step, TimedChunk, MAX_BACKOFF, MAX_RETRIES, MAX_WORKERS};
use paipa::BoxError;

mod common;
use common::within;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn iterator_chunk_plugs_into_a_threaded_stage() {
    within(LIMIT, || {
        let run = || -> Result<Vec<Vec<u32>>, Box<dyn std::error::Error>> {
            let mut p = Pipeline::new().then(Stage::iter("chunk", paipa::iter::chunk(4)?))?;
            p.put_all(0..10u32)?;
            Ok(p.run_with(|out| out.collect::<Vec<_>>())?.0)
        };
        assert_eq!(run().unwrap(), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    });
}

/// A step that needs nothing from its worker.
#[derive(Default)]
struct Download;

impl Step for Download {
    type In = u32;
    type Out = u32;
    fn process(&mut self, item: u32, out: &mut Output<'_, u32>) -> Result<(), BoxError> {
        out.emit(item * 10);
        Ok(())
    }
}

#[test]
fn a_step_made_by_a_plain_closure() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::step_with("download", || Download).workers(2))
            .unwrap();
        p.put_all(0..5u32).unwrap();
        let (mut out, summary) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
        out.sort();
        assert_eq!(out, [0, 10, 20, 30, 40]);
        assert_eq!(summary.items, 5);
    });
}

#[test]
fn put_all_after_finish_is_refused_like_put() {
    let mut p = Pipeline::<u32, u32>::new();
    assert_eq!(p.put_all(0..3), Ok(3));
    p.close_input();
    let err = p.put_all(vec![7, 8]).unwrap_err();
    assert_eq!(err.to_string(), "the pipeline no longer takes input");
    assert_eq!(err.into_inner(), vec![7, 8]);
    assert_eq!(p.put(9).unwrap_err().into_inner(), 9);
}

#[test]
fn a_meta_entry_read_as_the_wrong_type_names_the_stored_one() {
    let meta = Meta::new(123);
    assert_eq!(meta.downcast_ref::<i64>(), None);
    let err = meta.get::<i64>().unwrap_err();
    assert_eq!(err.to_string(), "the meta entry holds a i32, not a i64");
    assert_eq!((err.stored, err.asked), ("i32", "i64"));
    assert_eq!(meta.get::<i32>(), Ok(&123));
    assert_eq!(meta.type_name(), "i32");
    assert_eq!(format!("{meta:?}"), "Meta { type: \"i32\", .. }");
    // The type's name rides behind the same pointer: a meta entry is still
    // two words, so the messages on every edge did not grow (they did, and
    // the per-stage memory of a run moved by 8 KiB).
    assert_eq!(std::mem::size_of::<Meta>(), 2 * std::mem::size_of::<usize>());
}

fn plus_one(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    it.map(|x| x + 1)
}

#[test]
fn closures_of_one_function_get_distinct_stage_names() {
    let pipeline = paipa::iter::Pipeline::new(0..10u32)
        .debug(paipa::Debugger::silent())
        .step(|it| it.map(|x| x * 2))
        .step(plus_one)
        .step(|it| it.filter(|x| x % 3 == 0))
        .step(|it| it.map(|x| x + 1));
    let stats = pipeline.stats();
    assert_eq!(paipa::iter::consume(pipeline), 3);
    let snap = stats.snapshot();
    let names: Vec<(&str, u64)> = snap.stages.iter().map(|s| (s.name.as_str(), s.count)).collect();
    assert_eq!(
        names,
        [
            ("source", 10),
            ("closures_of_one_function_get_distinct_stage_names", 10),
            ("plus_one", 10),
            ("closures_of_one_function_get_distinct_stage_names#2", 3),
            ("closures_of_one_function_get_distinct_stage_names#3", 3),
        ]
    );
}

fn refused(stage: Stage<'static, u8, u8>) -> String {
    Pipeline::<u8, u8>::new().then(stage).unwrap_err().to_string()
}

#[test]
fn every_setting_has_an_upper_bound_named_in_its_error() {
    assert_eq!(MAX_WORKERS, 1024);
    assert_eq!(
        refused(Stage::map("x", |x: u8| x).workers(usize::MAX)),
        format!("invalid workers: {} (stage \"x\" takes at most 1024)", usize::MAX)
    );
    assert_eq!(
        refused(Stage::map("x", |x: u8| x).workers(100_000)),
        "invalid workers: 100000 (stage \"x\" takes at most 1024)"
    );
    // The bound itself is accepted.
    assert!(Pipeline::<u8, u8>::new()
        .then(Stage::map("x", |x: u8| x).workers(MAX_WORKERS))
        .is_ok());

    assert_eq!(MAX_RETRIES, 100);
    assert_eq!(
        refused(Stage::map("r", |x: u8| x).retry(u32::MAX, Duration::from_millis(1))),
        "invalid retry: 4294967295 (stage \"r\" retries an item at most 100 times)"
    );
    assert_eq!(MAX_BACKOFF, Duration::from_secs(3600));
    assert_eq!(
        refused(Stage::map("r", |x: u8| x).retry(3, Duration::MAX)),
        "invalid retry backoff: 18446744073709551615.999999999s (stage \"r\" waits at most 3600s before a first retry)"
    );
    assert!(Pipeline::<u8, u8>::new()
        .then(Stage::map("r", |x: u8| x).retry(MAX_RETRIES, MAX_BACKOFF))
        .is_ok());

    let err = paipa::iter::chunk::<std::ops::Range<u32>>(usize::MAX).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("invalid chunk size: {} (must be at most 1073741824)", usize::MAX)
    );
    assert_eq!((err.field(), err.value()), ("chunk size", "18446744073709551615"));
    let err = TimedChunk::<u8>::new(usize::MAX, Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid chunk size: {} (must be at most 1073741824)", usize::MAX)
    );
}

#[test]
fn a_large_chunk_size_does_not_reserve_its_whole_size_up_front() {
    within(LIMIT, || {
        // 2^30 items of 8 bytes would be 8 GiB reserved at the first pull.
        let chunk = paipa::iter::chunk(paipa::iter::MAX_CHUNK).unwrap();
        let out: Vec<Vec<u64>> = paipa::iter::Pipeline::new(0..5u64).step(chunk).into_iter().collect();
        assert_eq!(out, vec![vec![0, 1, 2, 3, 4]]);
        let mut p = Pipeline::new()
            .then(Stage::step("chunk", |_: &_| {
                TimedChunk::<u64>::new(paipa::iter::MAX_CHUNK, Duration::from_secs(5)).unwrap()
            }))
            .unwrap();
        p.put_all(0..5u64).unwrap();
        let (batches, _) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
        assert_eq!(batches, vec![vec![0, 1, 2, 3, 4]]);
    });
}

#[test]
fn an_input_filled_on_the_same_thread_before_the_run_does_not_block() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(8)
            .unwrap()
            .then(Stage::map("double", |x: u32| x * 2))
            .unwrap();
        let input = p.input();
        // 8 fit on the edge; the rest used to wait for ever for a run that
        // this thread had yet to start.
        for i in 0..100 {
            input.put(i).unwrap();
        }
        input.put_meta(Meta::new("end of first lot")).unwrap();
        for i in 100..150 {
            input.put(i).unwrap();
        }
        drop(input);
        let (out, summary) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
        // In the order they were put.
        assert_eq!(out, (0..150).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(summary.items, 150);
        assert_eq!(summary.metas, 1);
        let source = &summary.snapshot.stages[0];
        assert_eq!((source.count, source.discarded, source.metas), (150, 0, 1));
    });
}

#[test]
fn puts_after_a_held_back_lot_keep_their_order_while_it_drains() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(4)
            .unwrap()
            .then(Stage::map("id", |x: u32| x))
            .unwrap();
        let input = p.input();
        for i in 0..50 {
            input.put(i).unwrap();
        }
        let feeder = input.clone();
        drop(input);
        let mut outputs = p.outputs().unwrap();
        // Put from another thread while the held-back items go out.
        let t = std::thread::spawn(move || {
            for i in 50..200 {
                feeder.put(i).unwrap();
            }
        });
        let got: Vec<u32> = outputs.by_ref().collect();
        t.join().unwrap();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        let summary = outputs.finish().unwrap();
        assert_eq!(summary.snapshot.stages[0].count, 200);
    });
}

#[test]
fn a_timed_put_before_the_run_reports_a_full_pipeline() {
    let mut p = Pipeline::new()
        .capacity(2)
        .unwrap()
        .then(Stage::map("id", |x: u32| x))
        .unwrap();
    let input = p.input();
    input.put(1).unwrap();
    input.put(2).unwrap();
    assert_eq!(
        input.put_timeout(3, Duration::from_millis(1)),
        Err(paipa::threaded::PutError::Full(3))
    );
    drop(input);
    let (out, _) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
    assert_eq!(out, [1, 2]);
}
