//! `Running::stop_within` and `abort_within` return past their deadline,
//! naming the stage whose step never returns, with its threads detached.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{thread_count, within};
use paipa::threaded::{Pipeline, Running, Stage};
use paipa::RunError;

/// A run whose `blocked` stage waits on a channel the test holds, with one
/// item inside it. Returns the run and the sender that releases the step.
fn stuck_run() -> (Running, mpsc::Sender<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let mut p = Pipeline::new()
        .then(Stage::map("pass", |x: u64| x))
        .unwrap()
        .then(Stage::map("blocked", move |x: u64| {
            let _ = gate.lock().unwrap().recv();
            x
        }))
        .unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    input.put(1).unwrap();
    drop(input);
    let stats = running.stats();
    while stats.snapshot().stage("blocked").map_or(0, |s| s.count_in) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    (running, release)
}

fn assert_stuck(err: RunError) {
    match &err {
        RunError::Stuck {
            stage, worker, waited, ..
        } => {
            assert_eq!((stage.as_str(), *worker), ("blocked", 0), "{err}");
            assert_eq!(*waited, Duration::from_millis(300));
        }
        other => panic!("expected Stuck, got {other}"),
    }
    assert_eq!(err.stage(), Some("blocked"));
    assert!(err.to_string().contains("left running, detached"), "{err}");
}

/// A run whose `flaky` step fails (and is retried for ever) until
/// `released` is set, with one item inside it.
fn retrying_run(released: Arc<AtomicBool>) -> Running {
    let mut p = Pipeline::new()
        .then(
            Stage::try_map("flaky", move |x: u64| {
                if released.load(Ordering::SeqCst) {
                    Ok(x)
                } else {
                    Err("always")
                }
            })
            .retry(100, Duration::from_millis(1)),
        )
        .unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    input.put(1).unwrap();
    drop(input);
    let stats = running.stats();
    while stats.snapshot().stage("flaky").map_or(0, |s| s.retried) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    running
}

// One test: it counts the process's threads, which parallel tests would
// disturb.
#[test]
fn stop_within_and_abort_within_give_up_on_a_step_that_never_returns() {
    within(Duration::from_secs(60), || {
        let before = thread_count();

        // A run that ends in time: its summary, as `stop`.
        let mut p = Pipeline::new().then(Stage::map("id", |x: u64| x)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        input.put_all(0..100).unwrap();
        assert_eq!(running.stop_within(Duration::from_secs(10)).unwrap().items, 100);

        let (running, release) = stuck_run();
        assert_stuck(running.stop_within(Duration::from_millis(300)).unwrap_err());
        let (running2, release2) = stuck_run();
        assert_stuck(running2.abort_within(Duration::from_millis(300)).unwrap_err());

        // `stop` on a step retried for ever (100 retries, backoff doubling from 1 ms).
        let released = Arc::new(AtomicBool::new(false));
        let running3 = retrying_run(released.clone());
        match running3.stop_within(Duration::from_millis(300)).unwrap_err() {
            RunError::Stuck { stage, worker, .. } => assert_eq!((stage.as_str(), worker), ("flaky", 0)),
            other => panic!("expected Stuck, got {other}"),
        }

        // Released, the detached threads end by themselves: none leaks.
        drop((release, release2));
        released.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while thread_count() != before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(thread_count(), before, "a detached thread outlived its release");
    });
}
