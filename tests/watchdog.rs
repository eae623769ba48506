//! The watchdog reports work stuck inside a stage while it is stuck.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paipa::iter::Pipeline as IterPipeline;
use paipa::threaded::{Pipeline, Stage};
use paipa::{Debugger, Reporter, Snapshot, Stall};

#[derive(Clone, Default)]
struct Stalls(Arc<Mutex<Vec<Stall>>>);

impl Reporter for Stalls {
    fn report(&mut self, _: &Snapshot) {}
    fn stall(&mut self, stall: &Stall) {
        self.0.lock().unwrap().push(stall.clone());
    }
}

#[test]
fn a_stuck_threaded_worker_is_reported_while_stuck() {
    common::within(Duration::from_secs(20), || {
        let stalls = Stalls::default();
        let debugger = Debugger::silent()
            .reporter(stalls.clone())
            .watchdog(Duration::from_millis(50))
            .unwrap();
        // Item 3 stays stuck until the watchdog has reported it stuck for
        // 100 ms (however late a loaded machine runs the watchdog; if it
        // never does, `within` fails the test), and says how long it was.
        let seen = stalls.clone();
        let stuck = Arc::new(Mutex::new(None));
        let stuck_in = stuck.clone();
        let s = Pipeline::new()
            .debug(debugger)
            .source(0..10u32)
            .then(Stage::map("fast", |x: u32| x).workers(2))
            .unwrap()
            .then(
                Stage::map("stuck", move |x: u32| {
                    if x == 3 {
                        let t = Instant::now();
                        while !seen
                            .0
                            .lock()
                            .unwrap()
                            .iter()
                            .any(|s| s.stuck_for >= Duration::from_millis(100))
                        {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        *stuck_in.lock().unwrap() = Some(t.elapsed());
                    }
                    x
                })
                .workers(3),
            )
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 10);
        assert!(s.snapshot.stalls.is_empty(), "nothing is stuck at the end");
        let seen = stalls.0.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the stall was reported while it lasted");
        assert!(seen.iter().all(|s| s.stage == "stuck" && s.worker < 3), "{seen:?}");
        // A stall is measured from when its batch entered the stage: no
        // longer than the stuck call, give or take the hand-over around it.
        let stuck = stuck.lock().unwrap().expect("item 3 went through");
        let longest = seen.iter().map(|s| s.stuck_for).max().unwrap();
        assert!(
            longest >= Duration::from_millis(100) && longest <= stuck + Duration::from_millis(200),
            "longest stall {longest:?}, stuck for {stuck:?}"
        );
    });
}

#[test]
fn a_stuck_iterator_stage_is_reported_while_stuck() {
    common::within(Duration::from_secs(20), || {
        let stalls = Stalls::default();
        let debugger = Debugger::silent()
            .reporter(stalls.clone())
            .watchdog(Duration::from_millis(50))
            .unwrap();
        // Item 1 stays stuck until the watchdog has reported a stall
        // (however late a loaded machine runs it; never: `within` fails).
        let reported = stalls.clone();
        let p = IterPipeline::new(0..3u32)
            .debug(debugger)
            .step_named("stuck", move |it| {
                it.inspect(move |x| {
                    if *x == 1 {
                        while reported.0.lock().unwrap().is_empty() {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            });
        assert_eq!(paipa::iter::consume(p), 3);
        let seen = stalls.0.lock().unwrap().clone();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|s| s.stage == "stuck" && s.worker == 0), "{seen:?}");
    });
}
