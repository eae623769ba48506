//! No thread outlives a run, however it ends. One test in its own binary,
//! so that no other test's threads are counted.

mod common;

use std::time::Duration;

use common::{thread_count, within};
use paipa::threaded::{Pipeline, Stage};

#[test]
fn no_thread_outlives_a_run_however_it_ends() {
    within(Duration::from_secs(30), || {
        let before = thread_count();
        assert!(before > 0, "this check needs /proc/self/task");

        // Completed.
        let s = Pipeline::new()
            .source(0..10_000u32)
            .then(Stage::map("a", |x: u32| x).workers(4))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(s.items, 10_000);
        assert_eq!(common::threads_settle_to(before), before, "after a completed run");

        // Failed.
        let err = Pipeline::new()
            .source(0..1_000_000u32)
            .then(Stage::try_map("f", |x: u32| if x == 99 { Err("x") } else { Ok(x) }).workers(3))
            .unwrap()
            .run();
        assert!(err.is_err());
        assert_eq!(common::threads_settle_to(before), before, "after a failed run");

        // Background handle dropped mid-run.
        {
            let mut p = Pipeline::new().then(Stage::map("x", |x: u32| x).workers(4)).unwrap();
            let input = p.input();
            let running = p.spawn().unwrap();
            input.put_all(0..1000).unwrap();
            drop(running);
            assert!(input.put(1).is_err());
        }
        assert_eq!(
            common::threads_settle_to(before),
            before,
            "after dropping a background handle"
        );

        // Outputs dropped early.
        let p = Pipeline::new()
            .source(0..100_000_000u64)
            .then(Stage::map("a", |x: u64| x + 1).workers(2))
            .unwrap();
        let mut outputs = p.outputs().unwrap();
        assert_eq!(outputs.by_ref().take(10).count(), 10);
        drop(outputs);
        assert_eq!(
            common::threads_settle_to(before),
            before,
            "after dropping the outputs early"
        );

        // Aborted.
        let p = Pipeline::new()
            .source(0..u64::MAX)
            .then(
                Stage::map("slow", |x: u64| {
                    std::thread::sleep(Duration::from_micros(50));
                    x
                })
                .workers(2),
            )
            .unwrap();
        let running = p.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let s = running.abort().unwrap();
        assert!(s.stopped_early);
        assert_eq!(common::threads_settle_to(before), before, "after an abort");
    });
}
