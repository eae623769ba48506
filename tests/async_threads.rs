//! An async stage's threads: 200 requests in flight on a few threads. One
//! test in its own binary, so that no other test's threads (the harness
//! starts one per test) are counted.
#![cfg(feature = "async")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{thread_count, within};
use paipa::threaded::{Pipeline, Stage};

const LIMIT: Duration = Duration::from_secs(60);

fn sleep_ms(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

#[test]
fn ten_thousand_requests_200_in_flight_run_on_a_few_threads() {
    within(LIMIT, || {
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done, armed) = (peak.clone(), done.clone(), armed.clone());
            std::thread::spawn(move || {
                while !done.load(SeqCst) {
                    // Counted only once `before` is read: a thread of the
                    // previous test still ending must not count as this
                    // run's.
                    if armed.load(SeqCst) {
                        peak.fetch_max(thread_count(), SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        // The sampler is running: it is counted in `before`.
        let before = thread_count();
        armed.store(true, SeqCst);
        assert!(before > 0, "this check needs /proc/self/task");
        let (out, s) = Pipeline::new()
            .source(0..10_000u64)
            .then(
                Stage::map_async("request", |x: u64| async move {
                    sleep_ms(20).await;
                    x * 3
                })
                .in_flight(200),
            )
            .unwrap()
            .then(Stage::map("cpu", |x: u64| x + 1))
            .unwrap()
            .run_with(|out| out.collect::<Vec<_>>())
            .unwrap();
        done.store(true, SeqCst);
        sampler.join().unwrap();
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, (0..10_000u64).map(|x| x * 3 + 1).collect::<Vec<_>>());
        let request = s.snapshot.stage("request").unwrap();
        assert_eq!((request.count_in, request.count), (10_000, 10_000));
        assert_eq!(request.workers, 200, "an async stage counts one worker per future slot");
        assert_eq!(request.in_flight, 0, "nothing in flight once the run is over");
        // The run's threads: the async stage's feeder (which pulls the
        // source itself) and stage threads, the "cpu" worker (the consumer
        // is this thread). Sync workers for the 200 requests would have
        // been 200 threads.
        const RUN_THREADS: usize = 3;
        let peak = peak.load(SeqCst);
        assert!(
            peak <= before + RUN_THREADS,
            "{peak} threads during the run, {before} before"
        );
    });
}
