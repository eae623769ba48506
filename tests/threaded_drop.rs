//! Dropping a background run (its `Running` handle, or its `Outputs`)
//! never waits for ever on a step that never returns: the drop stops the
//! run as `stop` does, but gives up after `DROP_GRACE`, logs a warning
//! naming the stuck stage, and leaves the run's threads running, detached.

mod common;

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use paipa::threaded::{Input, Pipeline, Stage, DROP_GRACE};

/// Log lines written through `tracing`, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pipeline whose `stuck` stage waits in its step until the returned
/// sender is dropped, its input handle, and the gate's sender.
fn stuck_pipeline() -> (Pipeline<'static, u64, u64>, Input<u64>, mpsc::Sender<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let mut p = Pipeline::new()
        .then(Stage::map("pass", |x: u64| x))
        .unwrap()
        .then(Stage::map("stuck", move |x: u64| {
            let _ = gate.lock().unwrap().recv();
            x
        }))
        .unwrap();
    let input = p.input();
    (p, input, release)
}

/// Waits until the `stuck` stage holds an item.
fn wait_stuck(stats: paipa::Stats) {
    while stats.snapshot().stage("stuck").map_or(0, |s| s.count_in) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Drops `handle` under a subscriber that keeps the logs: how long the
/// drop took, and what it logged.
fn drop_logged<H>(handle: H) -> (Duration, String) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let dropped = Instant::now();
    tracing::subscriber::with_default(subscriber, || drop(handle));
    let took = dropped.elapsed();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (took, text)
}

/// The drop waited its grace (the step never returned), no longer than a
/// generous bound past it, and warned naming the stage.
fn gave_up(took: Duration, text: &str) {
    assert!(took >= DROP_GRACE, "the drop took {took:?}");
    assert!(took < DROP_GRACE + Duration::from_secs(20), "the drop took {took:?}");
    assert!(text.contains(" WARN "), "{text}");
    assert!(
        text.contains(
            r#"pipeline dropped: the run did not end within 10s: stage "stuck" (worker 0) has been busy for"#
        ),
        "{text}"
    );
    assert!(text.contains("left running, detached"), "{text}");
}

#[test]
fn dropping_a_running_whose_step_never_returns_gives_up_and_names_the_stage() {
    within(Duration::from_secs(60), || {
        let (p, input, release) = stuck_pipeline();
        let running = p.spawn().unwrap();
        input.put(1).unwrap();
        wait_stuck(running.stats());
        let (took, text) = drop_logged(running);
        gave_up(took, &text);
        // The detached run ends once its step returns.
        drop(release);
        drop(input);
    });
}

#[test]
fn dropping_background_outputs_whose_step_never_returns_gives_up_and_names_the_stage() {
    within(Duration::from_secs(60), || {
        let (p, input, release) = stuck_pipeline();
        let outputs = p.outputs().unwrap();
        input.put(1).unwrap();
        wait_stuck(outputs.stats().unwrap());
        let (took, text) = drop_logged(outputs);
        gave_up(took, &text);
        drop(release);
        drop(input);
    });
}
