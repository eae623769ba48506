//! Skipped items are visible: a stage's skip hook gets each one's stage,
//! worker and error, and the counts agree with the books.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paipa::threaded::{Pipeline, Skipped, Stage};

mod common;
use common::{quiet_injected_panics, within};

const LIMIT: Duration = Duration::from_secs(60);

type Seen = Arc<Mutex<Vec<Skipped>>>;

fn recorder() -> (Seen, impl Fn(&Skipped) + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    (seen, move |s: &Skipped| sink.lock().unwrap().push(s.clone()))
}

#[test]
fn a_function_stage_hands_every_skipped_item_to_its_hook() {
    within(LIMIT, || {
        let (seen, hook) = recorder();
        let summary = Pipeline::new()
            .source(0..100u32)
            .then(
                Stage::try_map(
                    "check",
                    |x: u32| if x % 10 == 3 { Err(format!("bad {x}")) } else { Ok(x) },
                )
                .workers(3)
                .retry(1, Duration::from_micros(10))
                .then_skip()
                .on_skip(hook),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 90);
        let check = summary.snapshot.stage("check").unwrap();
        assert_eq!((check.skipped, check.retried), (10, 10));
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.error.clone());
        let errors: Vec<&str> = seen.iter().map(|s| s.error.as_str()).collect();
        assert_eq!(
            errors,
            ["bad 13", "bad 23", "bad 3", "bad 33", "bad 43", "bad 53", "bad 63", "bad 73", "bad 83", "bad 93"]
        );
        assert!(seen.iter().all(|s| s.stage == "check" && s.worker < 3), "{seen:?}");
    });
}

#[test]
fn a_panicking_step_under_skip_reaches_the_hook_as_a_panic() {
    within(LIMIT, || {
        quiet_injected_panics();
        let (seen, hook) = recorder();
        let summary = Pipeline::new()
            .source(0..5u32)
            .then(
                Stage::map("p", |x: u32| if x == 2 { panic!("injected panic") } else { x })
                    .skip_errors()
                    .on_skip(hook),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 4);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].error, "panicked: injected panic");
    });
}

#[test]
fn an_iterator_stage_hands_its_skipped_errors_to_the_hook() {
    within(LIMIT, || {
        let (seen, hook) = recorder();
        let summary = Pipeline::new()
            .source(0..20u32)
            .then(
                Stage::try_iter("parse", |it| {
                    it.map(|x: u32| {
                        if x.is_multiple_of(5) {
                            Err(format!("cannot parse {x}"))
                        } else {
                            Ok(x)
                        }
                    })
                })
                .skip_errors()
                .on_skip(hook),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 16);
        assert_eq!(summary.snapshot.stage("parse").unwrap().skipped, 4);
        let errors: Vec<String> = seen.lock().unwrap().iter().map(|s| s.error.clone()).collect();
        assert_eq!(
            errors,
            ["cannot parse 0", "cannot parse 5", "cannot parse 10", "cannot parse 15"]
        );
    });
}

#[test]
fn a_panicking_skip_hook_fails_the_run_naming_the_stage() {
    within(LIMIT, || {
        quiet_injected_panics();
        let last: Arc<Mutex<Option<paipa::Snapshot>>> = Arc::default();
        let keep = last.clone();
        let debugger =
            paipa::Debugger::silent().reporter(move |s: &paipa::Snapshot| *keep.lock().unwrap() = Some(s.clone()));
        let err = Pipeline::new()
            .debug(debugger)
            .source(0..1_000u32)
            .then(
                Stage::try_map("check", |x: u32| if x == 7 { Err("no 7") } else { Ok(x) })
                    .skip_errors()
                    .on_skip(|_| panic!("injected panic")),
            )
            .unwrap()
            .run()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stage \"check\" (worker 0) panicked: in its on_skip hook: injected panic"
        );
        // The item was counted as skipped once; the books still balance.
        let snap = last.lock().unwrap().take().unwrap();
        for s in &snap.stages[1..] {
            assert_eq!(s.count_in, s.count + s.skipped + s.failed + s.discarded, "{s:?}");
        }
        assert_eq!(snap.stage("check").unwrap().skipped, 1);
    });
}
