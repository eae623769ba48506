//! Property tests over random pipelines with an async stage (feature
//! `async`) between sync stages, with injected faults (errors under every
//! policy, panics, items that never finish and time out, items that fail
//! once and are retried, consumers that stop early, a live input that
//! stays open): every run ends in time, fails exactly when a fatal fault
//! was injected (naming the async stage), keeps its books on every stage
//! however it ended, gives the outputs of a sequential model (in input
//! order when the stage is ordered), and leaves no thread behind.
//!
//! One test in its own binary, so that counting the process's threads is
//! exact. `PAIPA_PROPTEST_CASES` sets the number of cases (300 unless set).
#![cfg(feature = "async")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{keep_last, quiet_injected_panics, thread_count, threads_settle_to, within};
use paipa::threaded::{Pipeline, Stage};
use paipa::{RunError, Snapshot};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The item `at` fails; `skip` absorbs it.
    Error {
        at: u64,
        skip: bool,
    },
    /// The item `at` fails on its first attempt only, and is retried.
    FailsOnce {
        at: u64,
    },
    /// The future of item `at` panics; `skip` absorbs it.
    Panic {
        at: u64,
        skip: bool,
    },
    /// The item `at` never finishes; the stage's timeout ends it, and
    /// `skip` absorbs that.
    Hangs {
        at: u64,
        skip: bool,
    },
    /// Items finish in a shuffled order (each waits 0 to 1.5 ms).
    Shuffled,
    /// The consumer reads `after` outputs, then stops.
    StopAfter {
        after: usize,
    },
    /// The input is a live handle fed from another thread, still open
    /// when the consumer stops after `after` outputs.
    StopWithLiveInput {
        after: usize,
    },
}

#[derive(Debug, Clone)]
struct Case {
    n: u64,
    in_flight: usize,
    ordered: bool,
    capacity: usize,
    before: Option<usize>,
    after: Option<usize>,
    fault: Fault,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u64..=3_000,
        1usize..=64,
        any::<bool>(),
        1usize..=64,
        prop::option::of(1usize..=3),
        prop::option::of(1usize..=3),
    )
        .prop_flat_map(|(n, in_flight, ordered, capacity, before, after)| {
            let at = 0..n.max(1);
            let fault = prop_oneof![
                2 => Just(Fault::None),
                2 => (at.clone(), any::<bool>()).prop_map(|(at, skip)| Fault::Error { at, skip }),
                1 => at.clone().prop_map(|at| Fault::FailsOnce { at }),
                1 => (at.clone(), any::<bool>()).prop_map(|(at, skip)| Fault::Panic { at, skip }),
                1 => (at, any::<bool>()).prop_map(|(at, skip)| Fault::Hangs { at, skip }),
                1 => Just(Fault::Shuffled),
                1 => (0..100usize).prop_map(|after| Fault::StopAfter { after }),
                1 => (0..100usize).prop_map(|after| Fault::StopWithLiveInput { after }),
            ];
            (
                Just(n),
                Just(in_flight),
                Just(ordered),
                Just(capacity),
                Just(before),
                Just(after),
                fault,
            )
        })
        .prop_map(|(n, in_flight, ordered, capacity, before, after, fault)| Case {
            // Shuffled items wait: keep those runs short with one in flight.
            n: if fault == Fault::Shuffled {
                n.min(100 * in_flight as u64)
            } else {
                n
            },
            // A consumer of a live input that is never closed must not ask
            // for more than will come.
            fault: match fault {
                Fault::StopWithLiveInput { after } => Fault::StopWithLiveInput {
                    after: after.min(n as usize),
                },
                other => other,
            },
            in_flight,
            ordered,
            capacity,
            before,
            after,
        })
}

/// True if the fault ends the run with an error.
fn fatal(case: &Case) -> bool {
    match case.fault {
        Fault::Error { at, skip } | Fault::Panic { at, skip } | Fault::Hangs { at, skip } => !skip && at < case.n,
        _ => false,
    }
}

/// The item the fault removes from the outputs, if any.
fn removed(case: &Case) -> Option<u64> {
    match case.fault {
        Fault::Error { at, .. } | Fault::Panic { at, .. } | Fault::Hangs { at, .. } => Some(at),
        _ => None,
    }
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    let (debugger, last) = keep_last();
    let failed_once = Arc::new(AtomicBool::new(false));
    let fault = case.fault;
    let mut async_stage = Stage::try_map_async("fetch", move |x: u64| {
        let failed_once = failed_once.clone();
        async move {
            match fault {
                Fault::Error { at, .. } if x == at => return Err(format!("fault at {at}")),
                Fault::FailsOnce { at } if x == at && !failed_once.swap(true, SeqCst) => {
                    return Err(format!("first try of {at}"))
                }
                Fault::Panic { at, .. } if x == at => panic!("injected panic at {at}"),
                Fault::Hangs { at, .. } if x == at => std::future::pending::<()>().await,
                Fault::Shuffled => tokio::time::sleep(Duration::from_micros(x * 7_919 % 1_500)).await,
                _ => tokio::task::yield_now().await,
            }
            Ok(x * 2)
        }
    })
    .in_flight(case.in_flight)
    .timeout(Duration::from_millis(200));
    if case.ordered {
        async_stage = async_stage.ordered();
    }
    async_stage = match fault {
        Fault::FailsOnce { .. } => async_stage.retry(2, Duration::from_millis(1)),
        Fault::Error { skip: true, .. } | Fault::Panic { skip: true, .. } | Fault::Hangs { skip: true, .. } => {
            async_stage.skip_errors()
        }
        _ => async_stage,
    };
    let mut pipeline = Pipeline::new().debug(debugger).capacity(case.capacity).unwrap();
    let live = matches!(fault, Fault::StopWithLiveInput { .. });
    let input = live.then(|| pipeline.input());
    if !live {
        pipeline = pipeline.source(0..case.n);
    }
    // The sync stages around keep the order too when the case is ordered.
    let sync = |name: &str, workers: Option<usize>| {
        let stage = Stage::map(name, |x: u64| x).workers(workers.unwrap_or(1));
        if case.ordered {
            stage.ordered()
        } else {
            stage
        }
    };
    let pipeline = pipeline.then(sync("before", case.before)).unwrap();
    let pipeline = pipeline.then(async_stage).unwrap();
    let pipeline = pipeline.then(sync("after", case.after)).unwrap();
    let feeder = input.map(|input| {
        let n = case.n;
        std::thread::spawn(move || {
            for x in 0..n {
                if input.put(x).is_err() {
                    break;
                }
            }
            // The handle stays open until the run no longer takes input.
            while input.is_open() {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let stop = match fault {
        Fault::StopAfter { after } | Fault::StopWithLiveInput { after } => Some(after),
        _ => None,
    };
    let result = pipeline.run_with(move |out| match stop {
        Some(after) => out.take(after).collect::<Vec<u64>>(),
        None => out.collect(),
    });
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    let snap: Snapshot = last.lock().unwrap().clone().expect("a final report");
    for s in &snap.stages[1..snap.stages.len() - 1] {
        prop_assert_eq!(
            s.count_in,
            s.count + s.skipped + s.failed + s.discarded,
            "books of {}: {:?}",
            s.name,
            s
        );
    }
    let model: Vec<u64> = (0..case.n)
        .filter(|x| Some(*x) != removed(&case))
        .map(|x| x * 2)
        .collect();
    match result {
        Err(e) => {
            prop_assert!(fatal(&case), "unexpected failure: {e}");
            prop_assert_eq!(e.stage(), Some("fetch"));
            prop_assert!(matches!(e, RunError::Step { .. } | RunError::Panic { .. }), "{:?}", e);
        }
        Ok((got, _)) => {
            prop_assert!(!fatal(&case), "the fault at the item did not fail the run");
            let expected: Vec<u64> = match stop {
                Some(after) if case.ordered => model.iter().copied().take(after).collect(),
                Some(after) => {
                    prop_assert_eq!(got.len(), after.min(model.len()));
                    let all: BTreeSet<u64> = model.iter().copied().collect();
                    prop_assert!(got.iter().all(|x| all.contains(x)), "an output not in the model");
                    got.clone()
                }
                None => model.clone(),
            };
            if case.ordered {
                prop_assert_eq!(got, expected);
            } else {
                let mut got = got;
                got.sort_unstable();
                let mut expected = expected;
                expected.sort_unstable();
                prop_assert_eq!(got, expected);
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PAIPA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn random_async_pipelines_with_faults_end_account_and_match_the_model(case in case()) {
        quiet_injected_panics();
        let before = thread_count();
        within(Duration::from_secs(20), move || run_case(case))?;
        prop_assert_eq!(threads_settle_to(before), before, "a thread outlived the run");
    }
}
