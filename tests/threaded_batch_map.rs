//! Batch map stages: a function over the items of one hand-over, under the
//! stage's policy for the whole batch; chained on the threads of the stage
//! before when it has as many workers.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{keep_final, quiet_injected_panics, within};
use paipa::threaded::{Meta, Pipeline, Stage};
use paipa::RunError;

const LIMIT: Duration = Duration::from_secs(30);
const N: u64 = 20_000;

/// The books of a stage whose function gives one item out per item in.
fn assert_books(s: &paipa::StageSnapshot) {
    assert_eq!(s.count_in, s.count + s.skipped + s.failed + s.discarded, "{s:?}");
}

#[test]
fn every_item_reaches_the_function_once_in_batches() {
    within(LIMIT, || {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let (mut out, summary) = Pipeline::new()
            .source(0..N)
            .then(
                Stage::batch_map("insert", move |rows: Vec<u64>| {
                    seen.fetch_add(1, SeqCst);
                    rows.into_iter().map(|x| x * 2)
                })
                .workers(2),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        out.sort_unstable();
        assert_eq!(out, (0..N).map(|x| x * 2).collect::<Vec<_>>());
        let s = summary.snapshot.stage("insert").unwrap();
        assert_eq!((s.count_in, s.count), (N, N));
        assert_books(s);
        let calls = calls.load(SeqCst);
        assert!(
            (1..N).contains(&calls),
            "{calls} calls for {N} items: batches, not items"
        );
    });
}

#[test]
fn a_chained_batch_map_counts_its_own_items() {
    within(LIMIT, || {
        let (total, summary) = Pipeline::new()
            .source(0..N)
            .then(Stage::map("inc", |x: u64| x + 1).workers(2))
            .unwrap()
            .then(Stage::batch_map("sum", |rows: Vec<u64>| [rows.iter().sum::<u64>()]).workers(2))
            .unwrap()
            .run_with(|out| out.sum::<u64>())
            .unwrap();
        assert_eq!(total, (1..=N).sum::<u64>());
        let s = summary.snapshot.stage("sum").unwrap();
        assert_eq!(s.count_in, N);
        assert_eq!(summary.snapshot.stage("inc").unwrap().count, N);
    });
}

#[test]
fn a_failed_batch_fails_the_run_naming_the_stage_and_counts_every_item_of_it() {
    within(LIMIT, || {
        let (debugger, last) = keep_final();
        let err = Pipeline::new()
            .debug(debugger)
            .source(0..N)
            .then(Stage::try_batch_map("insert", |rows: Vec<u64>| {
                if rows.contains(&777) {
                    Err(format!("refused a batch of {}", rows.len()))
                } else {
                    Ok(rows)
                }
            }))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("insert"));
        assert!(err.to_string().contains("refused a batch of"), "{err}");
        let RunError::Step { source, .. } = &err else {
            panic!("{err:?}")
        };
        let size: u64 = source
            .to_string()
            .trim_start_matches("refused a batch of ")
            .parse()
            .unwrap();
        let snap = last.lock().unwrap().clone().unwrap();
        let s = snap.stage("insert").unwrap();
        assert_eq!(s.failed, size, "the failed batch's items, every one");
        assert_books(s);
    });
}

#[test]
fn a_skipped_batch_counts_its_items_as_skipped_and_the_run_goes_on() {
    within(LIMIT, || {
        let skipped_rows = Arc::new(AtomicU64::new(0));
        let told = skipped_rows.clone();
        let (out, summary) = Pipeline::new()
            .source(0..N)
            .then(
                Stage::try_batch_map("insert", move |rows: Vec<u64>| {
                    if rows.contains(&777) {
                        told.store(rows.len() as u64, SeqCst);
                        Err("row 777")
                    } else {
                        Ok(rows)
                    }
                })
                .skip_errors(),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        let s = summary.snapshot.stage("insert").unwrap();
        let batch = skipped_rows.load(SeqCst);
        assert_eq!(s.skipped, batch);
        assert_eq!(out.len() as u64, N - batch);
        assert!(!out.contains(&777));
        assert_books(s);
    });
}

#[test]
fn a_retried_batch_is_called_again_with_the_same_items() {
    within(LIMIT, || {
        // Each batch fails its first call: a retry is known by its items.
        let failed: Arc<Mutex<HashSet<Vec<u64>>>> = Arc::default();
        let seen = failed.clone();
        let (mut out, summary) = Pipeline::new()
            .source(0..2_000u64)
            .then(
                Stage::try_batch_map("insert", move |rows: Vec<u64>| {
                    if seen.lock().unwrap().insert(rows.clone()) {
                        Err("busy")
                    } else {
                        Ok(rows)
                    }
                })
                .retry(1, Duration::from_millis(1)),
            )
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        out.sort_unstable();
        assert_eq!(out, (0..2_000u64).collect::<Vec<u64>>());
        let s = summary.snapshot.stage("insert").unwrap();
        assert_eq!(s.retried, failed.lock().unwrap().len() as u64);
        assert_eq!((s.count, s.skipped, s.failed), (2_000, 0, 0));
    });
}

#[test]
fn a_panic_in_the_function_fails_the_run_naming_the_stage() {
    quiet_injected_panics();
    within(LIMIT, || {
        let err = Pipeline::new()
            .source(0..N)
            .then(Stage::batch_map("insert", |rows: Vec<u64>| -> Vec<u64> {
                if rows.contains(&5) {
                    panic!("injected: bulk insert broke");
                }
                rows
            }))
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(err.stage(), Some("insert"));
        assert!(err.to_string().contains("injected: bulk insert broke"), "{err}");
    });
}

#[test]
fn meta_entries_pass_through_after_the_items_before_them() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .then(Stage::batch_map("insert", |rows: Vec<u32>| rows))
            .unwrap();
        p.put_all(0..10).unwrap();
        p.put_meta(Meta::new("flush")).unwrap();
        p.put_all(10..20).unwrap();
        let (out, summary) = p.run_with(|out| out.collect::<Vec<u32>>()).unwrap();
        assert_eq!(out, (0..20).collect::<Vec<u32>>());
        assert_eq!(summary.snapshot.stage("insert").unwrap().metas, 1);
    });
}

#[test]
fn an_ordered_batch_map_needs_one_worker() {
    let err = Pipeline::<u32, u32>::new()
        .then(Stage::batch_map("insert", |rows: Vec<u32>| rows).workers(2).ordered())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ordered: true (stage \"insert\": ordered mode with several workers needs a function stage)"
    );
}
