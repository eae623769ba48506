//! A reporter that blocks cannot stretch a run: the end of the run waits
//! for its final report at most 2 s, and the final report is still made,
//! once and last, when the reporter returns.

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

#[test]
fn a_blocking_reporter_does_not_stretch_the_run() {
    within(Duration::from_secs(60), || {
        let (release, gate) = mpsc::channel::<()>();
        let finals: Arc<Mutex<Vec<bool>>> = Arc::default();
        let log = finals.clone();
        let reporter = move |s: &paipa::stats::Snapshot| {
            let _ = gate.recv(); // blocks until the test drops `release`
            log.lock().unwrap().push(s.is_final);
        };
        let debugger = Debugger::new()
            .name("blocked reporter")
            .interval(Duration::from_millis(50))
            .reporter(reporter);
        let started = Instant::now();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("slow", |x: u64| {
                std::thread::sleep(Duration::from_millis(10));
                x
            }))
            .unwrap();
        p.put_all(0..50u64).unwrap();
        let summary = p.run().unwrap();
        let took = started.elapsed();
        assert_eq!(summary.items, 50);
        assert!(took < Duration::from_secs(10), "a 0.5 s run took {took:?}");
        assert!(finals.lock().unwrap().is_empty(), "the reporter is still blocked");
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !finals.lock().unwrap().last().copied().unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let finals = finals.lock().unwrap().clone();
        assert_eq!(finals.iter().filter(|f| **f).count(), 1, "{finals:?}");
        assert_eq!(finals.last(), Some(&true), "the final report is the last: {finals:?}");
    });
}
