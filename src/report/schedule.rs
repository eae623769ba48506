//! The reporting schedule: a thread that hands a snapshot to every reporter
//! each interval while the pipeline runs, and the one final report.
//!
//! Protocol: the schedule thread waits on a channel with a timeout. A timeout
//! means "report now"; disconnection (the `Schedule` finishing or being
//! dropped) means "stop". `finish` takes the final snapshot, disconnects,
//! and a final-report thread joins the schedule thread and only then hands
//! the final snapshot to the reporters, so the
//! final report is always the last one and is made exactly once. `finish`
//! waits for that thread at most `FINAL_REPORT_WAIT`: a blocking reporter
//! cannot stretch the run.
//!
//! Before each periodic report, the schedule thread asks the run's edge
//! probes for fresh readings (waiting at most `edge::REPORT_WAIT`), so that
//! a remote edge is read at most once per report interval and never on the
//! pipeline's threads. The run refreshes them itself before `finish`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::Reporter;
use crate::stats::edge::{self, EdgeProbe};
use crate::stats::Snapshot;
use crate::sync::deadline::{after, deadline};

type Reporters = Arc<Mutex<Vec<Box<dyn Reporter>>>>;
type SnapshotFn = Arc<dyn Fn(bool) -> Snapshot + Send + Sync>;
/// The edge probes registered with the run so far.
pub(crate) type EdgesFn = Arc<dyn Fn() -> Vec<Arc<dyn EdgeProbe>> + Send + Sync>;

/// Periodic and final reporting for one pipeline run.
pub(crate) struct Schedule {
    reporters: Reporters,
    snapshot: SnapshotFn,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    done: bool,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Logs every stall of a snapshot and hands it to every reporter.
fn watch(reporters: &Reporters, snap: &Snapshot) {
    if snap.stalls.is_empty() {
        return;
    }
    let mut list = reporters.lock().unwrap_or_else(|e| e.into_inner());
    for stall in &snap.stalls {
        tracing::warn!(
            target: "paipa::watchdog",
            "stage {:?} worker {}: work inside the stage for {:.1} s",
            stall.stage,
            stall.worker,
            stall.stuck_for.as_secs_f64()
        );
        for r in list.iter_mut() {
            let _ = catch_unwind(AssertUnwindSafe(|| r.stall(stall)));
        }
    }
}

/// Hands one snapshot to every reporter; a panicking reporter is logged and
/// does not take the pipeline (or the other reporters) down.
fn deliver(reporters: &Reporters, snap: &Snapshot) {
    let mut list = reporters.lock().unwrap_or_else(|e| e.into_inner());
    for r in list.iter_mut() {
        if catch_unwind(AssertUnwindSafe(|| r.report(snap))).is_err() {
            tracing::error!(target: "paipa::debugger", "a reporter panicked; report skipped");
        }
    }
}

impl Schedule {
    /// Starts reporting every `interval` (never, if it is zero, too long to
    /// land on the clock, or there are no reporters), and watching for
    /// stalls every `watchdog / 2` if set; `edges` are refreshed before
    /// each periodic report.
    pub(crate) fn start(
        reporters: Vec<Box<dyn Reporter>>,
        interval: Duration,
        watchdog: Option<Duration>,
        snapshot: SnapshotFn,
        edges: EdgesFn,
    ) -> Self {
        let reporters: Reporters = Arc::new(Mutex::new(reporters));
        let periodic = !interval.is_zero()
            && deadline(interval).is_some()
            && !reporters.lock().map(|r| r.is_empty()).unwrap_or(true);
        let tick = match (periodic, watchdog) {
            (true, Some(w)) => Some(interval.min(w / 2)),
            (true, None) => Some(interval),
            (false, Some(w)) => Some(w / 2),
            (false, None) => None,
        };
        // Reports are made on threads of their own, under the caller's
        // `tracing` subscriber (a scoped one included), as if made here.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let (stop, thread) = match tick {
            Some(tick) => {
                let (tx, rx) = bounded::<()>(0);
                let reporters = reporters.clone();
                let snapshot = snapshot.clone();
                let dispatch = dispatch.clone();
                let thread = std::thread::Builder::new()
                    .name("paipa-report".into())
                    .spawn(move || {
                        let _subscriber = tracing::dispatcher::set_default(&dispatch);
                        // `None`: an interval too long to land on the
                        // clock, whose report never comes round.
                        let mut next_report = deadline(interval);
                        loop {
                            match rx.recv_timeout(tick.max(Duration::from_millis(1))) {
                                Err(RecvTimeoutError::Timeout) => {}
                                _ => return,
                            }
                            let due = periodic && next_report.is_some_and(|at| Instant::now() >= at);
                            if due {
                                edge::refresh(&edges(), edge::REPORT_WAIT, false);
                            }
                            let snap = snapshot(false);
                            if watchdog.is_some() {
                                watch(&reporters, &snap);
                            }
                            if due {
                                next_report = next_report.and_then(|at| after(at, interval));
                                deliver(&reporters, &snap);
                            }
                        }
                    })
                    .ok();
                (Some(tx), thread)
            }
            None => (None, None),
        };
        Schedule {
            reporters,
            snapshot,
            stop,
            thread,
            done: false,
        }
    }

    /// Stops periodic reports and makes the final one (once; later calls do
    /// nothing), on a reporting thread: the caller waits for it at most
    /// [`FINAL_REPORT_WAIT`]. A reporter that blocks longer (in a periodic
    /// report or the final one) does not hold the run up: `finish` returns,
    /// with a warning, and the final report is still made, once and last,
    /// as soon as that reporter returns, by a thread left to finish it.
    pub(crate) fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        drop(self.stop.take());
        let periodic = self.thread.take();
        // Taken here: an iterator pipeline's final snapshot reads this
        // thread's CPU time.
        let snap = (self.snapshot)(true);
        let reporters = self.reporters.clone();
        let (done_tx, done_rx) = bounded::<()>(1);
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let final_report = move || {
            let _subscriber = tracing::dispatcher::set_default(&dispatch);
            if let Some(t) = periodic {
                let _ = t.join();
            }
            deliver(&reporters, &snap);
            let _ = done_tx.send(());
        };
        match std::thread::Builder::new()
            .name("paipa-report".into())
            .spawn(final_report)
        {
            Ok(thread) => match done_rx.recv_timeout(FINAL_REPORT_WAIT) {
                Ok(()) => {
                    let _ = thread.join();
                }
                Err(_) => tracing::warn!(
                    target: "paipa::debugger",
                    "a reporter is still busy after {FINAL_REPORT_WAIT:?}: the run returns without waiting; \
                     its final report is made when that reporter returns"
                ),
            },
            Err(e) => tracing::error!(target: "paipa::debugger", "final report skipped: cannot start its thread: {e}"),
        }
    }
}

/// How long the end of a run waits for its final report (and for a
/// periodic report still being made) before it returns without it.
pub(crate) const FINAL_REPORT_WAIT: Duration = Duration::from_secs(2);

impl Drop for Schedule {
    fn drop(&mut self) {
        self.finish();
    }
}
