//! Fold stages: one partial result per worker, merged by the consumer;
//! chained on the threads of the stage before when it has as many workers.

mod common;

use std::time::Duration;

use common::{keep_last, quiet_injected_panics, within};
use paipa::threaded::{Pipeline, Stage};
use paipa::RunError;

const LIMIT: Duration = Duration::from_secs(30);

fn sum_stage(workers: usize) -> Stage<'static, u64, u64> {
    Stage::fold("sum", || 0u64, |acc: &mut u64, x: u64| *acc += x).workers(workers)
}

#[test]
fn a_fold_after_a_stage_of_as_many_workers_gives_one_partial_per_worker() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        let (partials, summary) = Pipeline::new()
            .debug(debugger)
            .source(0..100_000u64)
            .then(Stage::map("double", |x: u64| x * 2).workers(2))
            .unwrap()
            .then(sum_stage(2))
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        assert_eq!(partials.iter().sum::<u64>(), 2 * (0..100_000u64).sum::<u64>());
        assert!((1..=2).contains(&partials.len()), "{partials:?}");
        let s = summary.snapshot.stage("sum").unwrap();
        assert_eq!((s.count_in, s.count), (100_000, partials.len() as u64));
        assert_eq!(s.per_worker.len(), 2);
        let snap = last.lock().unwrap().clone().unwrap();
        assert_eq!(snap.stage("sum").unwrap().count_in, 100_000);
    });
}

#[test]
fn a_fold_on_threads_of_its_own_and_an_empty_input() {
    within(LIMIT, || {
        let (total, _) = Pipeline::new()
            .source(1..=1_000u64)
            .then(Stage::map("id", |x: u64| x))
            .unwrap()
            .then(sum_stage(3))
            .unwrap()
            .run_with(|out| out.sum::<u64>())
            .unwrap();
        assert_eq!(total, 500_500);
        let (partials, s) = Pipeline::new()
            .source(0..0u64)
            .then(Stage::map("id", |x: u64| x).workers(2))
            .unwrap()
            .then(sum_stage(2))
            .unwrap()
            .run_with(|out| out.count())
            .unwrap();
        assert_eq!(partials, 0, "no item, no partial");
        assert_eq!(s.snapshot.stage("sum").unwrap().count, 0);
    });
}

#[test]
fn a_run_that_fails_hands_on_no_partial() {
    within(LIMIT, || {
        // One worker checks every item in order, so the fold's input
        // cannot end before the bad row fails the run.
        let mut seen = 0;
        let err = Pipeline::new()
            .source(0..100_000u64)
            .then(Stage::try_map("check", |x: u64| {
                if x == 50_000 {
                    Err("bad row")
                } else {
                    Ok(x)
                }
            }))
            .unwrap()
            .then(sum_stage(2))
            .unwrap()
            .run_with(|out| seen = out.count())
            .unwrap_err();
        assert_eq!(err.stage(), Some("check"));
        assert_eq!(seen, 0);
    });
}

#[test]
fn a_panic_in_the_fold_fails_the_run_naming_the_stage() {
    quiet_injected_panics();
    within(LIMIT, || {
        let err = Pipeline::new()
            .source(0..10_000u64)
            .then(Stage::map("id", |x: u64| x).workers(2))
            .unwrap()
            .then(
                Stage::fold(
                    "sum",
                    || 0u64,
                    |acc: &mut u64, x: u64| {
                        if x == 777 {
                            panic!("injected panic at {x}");
                        }
                        *acc += x;
                    },
                )
                .workers(2),
            )
            .unwrap()
            .run()
            .unwrap_err();
        assert!(matches!(err, RunError::Panic { .. }), "{err:?}");
        assert_eq!(err.stage(), Some("sum"));
    });
}

#[test]
fn an_ordered_fold_is_refused() {
    let err = Pipeline::<u64, u64>::new().then(sum_stage(2).ordered()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ordered: true (stage \"sum\": a fold stage gives one result per worker, which have no input order)"
    );
}

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Random sizes, worker counts (chained or not) and capacities, with
        /// or without a failure upstream: a run that ends well hands on at
        /// most one partial per fold worker and they add up to the whole; a
        /// failed one hands on none. Every run ends within the bound.
        #[test]
        fn partials_add_up_or_none_are_handed_on(
            n in 0u64..20_000,
            before in 1usize..=4,
            fold_workers in 1usize..=4,
            capacity in 1usize..=256,
            fail_at in prop::option::of(0u64..20_000),
        ) {
            let result = within(LIMIT, move || {
                Pipeline::new()
                    .capacity(capacity)
                    .unwrap()
                    .source(0..n)
                    .then(
                        Stage::try_map("check", move |x: u64| if Some(x) == fail_at { Err("bad row") } else { Ok(x) })
                            .workers(before),
                    )
                    .unwrap()
                    .then(sum_stage(fold_workers))
                    .unwrap()
                    .run_with(|out| out.collect::<Vec<u64>>())
            });
            match result {
                Ok((partials, summary)) => {
                    prop_assert!(fail_at.is_none_or(|at| at >= n), "the failure at {fail_at:?} did not fail the run");
                    prop_assert_eq!(partials.iter().sum::<u64>(), (0..n).sum::<u64>());
                    prop_assert!(partials.len() <= fold_workers, "{} partials from {} workers", partials.len(), fold_workers);
                    prop_assert_eq!(partials.is_empty(), n == 0);
                    let s = summary.snapshot.stage("sum").unwrap();
                    prop_assert_eq!((s.count_in, s.count), (n, partials.len() as u64));
                }
                Err(e) => {
                    prop_assert!(fail_at.is_some_and(|at| at < n), "unexpected failure: {e}");
                    prop_assert_eq!(e.stage(), Some("check"));
                }
            }
        }
    }
}
