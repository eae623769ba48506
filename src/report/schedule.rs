//! The reporting schedule: a thread that hands a snapshot to every reporter
//! each interval while the pipeline runs, and the one final report.
//!
//! Protocol: the schedule thread waits on a channel with a timeout. A timeout
//! means "report now"; disconnection (the `Schedule` finishing or being
//! dropped) means "stop". `finish` disconnects, joins the thread, and only
//! then makes the final report on the calling thread, so the final report is
//! always the last one and is made exactly once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::Reporter;
use crate::stats::Snapshot;

type Reporters = Arc<Mutex<Vec<Box<dyn Reporter>>>>;
type SnapshotFn = Arc<dyn Fn(bool) -> Snapshot + Send + Sync>;

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
    /// Starts reporting every `interval` (never, if it is zero or there are
    /// no reporters).
    pub(crate) fn start(reporters: Vec<Box<dyn Reporter>>, interval: Duration, snapshot: SnapshotFn) -> Self {
        let reporters: Reporters = Arc::new(Mutex::new(reporters));
        let periodic = !interval.is_zero() && !reporters.lock().map(|r| r.is_empty()).unwrap_or(true);
        let (stop, thread) = if periodic {
            let (tx, rx) = bounded::<()>(0);
            let reporters = reporters.clone();
            let snapshot = snapshot.clone();
            let thread = std::thread::Builder::new()
                .name("paipa-report".into())
                .spawn(move || loop {
                    match rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => deliver(&reporters, &snapshot(false)),
                        _ => return,
                    }
                })
                .ok();
            (Some(tx), thread)
        } else {
            (None, None)
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
    /// nothing).
    pub(crate) fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let snap = (self.snapshot)(true);
        deliver(&self.reporters, &snap);
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.finish();
    }
}
