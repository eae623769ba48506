//! Joining a run: bounded waits, what a stuck run names, the drop
//! grace, and the signal watcher of a run that listens.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::summary::{Cells, Summary};
use crate::error::RunError;
#[cfg(all(feature = "signals", not(loom)))]
use crate::stats::heard::{self, Heard};
use crate::stats::{clock, ticks_to_duration};
use crate::sync::deadline::deadline;
#[cfg(all(feature = "signals", not(loom)))]
use crate::threaded::run::RunShared;

pub(crate) type RunThread = JoinHandle<Result<Summary, RunError>>;

/// How long dropping a [`Running`](crate::threaded::Running) (or a background [`Outputs`](crate::threaded::Outputs)) waits for
/// its run to end. A run still going then, held by a step that does not
/// return, is left running, detached, and a warning (target `paipa`)
/// names the stage and worker busy the longest, as
/// [`Running::stop_within`](crate::threaded::Running::stop_within) reports it: a drop never waits for ever on
/// user code.
pub const DROP_GRACE: Duration = Duration::from_secs(10);

/// How long a run that opted into signals
/// ([`Pipeline::stop_on_signals`](crate::threaded::Pipeline::stop_on_signals)) has
/// to end once the second signal aborted it. A run still going then, held
/// by a step that does not return, cannot be detached (a scoped run's
/// steps may borrow from its caller): a warning (target `paipa`) names the
/// stage and worker busy the longest, and the process ends with the
/// signal's default effect, as a third signal would end it.
#[cfg(all(feature = "signals", not(loom)))]
pub const SIGNAL_GRACE: Duration = Duration::from_secs(10);

/// Acts on each signal a listening run hears (the first closes the input,
/// the second also cancels the run) until the run ends and its listener
/// is dropped. Once the second signal aborted the run, it has
/// [`SIGNAL_GRACE`](crate::threaded::SIGNAL_GRACE) to end; a step that holds it longer ends the process
/// (see `signals::give_up`), naming the worker busy the longest.
#[cfg(all(feature = "signals", not(loom)))]
pub(crate) fn watch_signals(
    bell: &crossbeam_channel::Receiver<()>,
    heard: &Heard,
    shared: &RunShared,
    cells: &Cells,
    close_input: &(dyn Fn() + Send + Sync),
) {
    use crossbeam_channel::RecvTimeoutError;
    let mut grace_ends = None;
    loop {
        let rang = match grace_ends {
            None => bell.recv().is_ok(),
            Some(end) => match bell.recv_deadline(end) {
                Ok(()) => true,
                Err(RecvTimeoutError::Disconnected) => false,
                Err(RecvTimeoutError::Timeout) => {
                    let held = longest_busy(cells).map_or_else(
                        || "no step is running".to_string(),
                        |(stage, worker, busy)| format!("stage {stage:?} (worker {worker}) has been busy for {busy:?}"),
                    );
                    crate::signals::give_up(
                        heard.as_ref(),
                        &format!("the run did not end within {SIGNAL_GRACE:?} of the signal that aborted it: {held}"),
                    )
                }
            },
        };
        if !rang {
            return;
        }
        if heard::count(heard) >= 2 {
            shared.cancel.cancel();
            grace_ends.get_or_insert_with(|| Instant::now() + SIGNAL_GRACE);
        }
        close_input();
    }
}

/// Joins the run thread, a panic of its own as the run's error.
pub(crate) fn join_run(thread: RunThread) -> Result<Summary, RunError> {
    thread.join().unwrap_or_else(|p| {
        Err(RunError::Panic {
            stage: "pipeline".into(),
            worker: 0,
            message: crate::threaded::run::panic_message(&*p),
        })
    })
}

/// Joins the run thread if it ends within `limit`; else leaves it running,
/// detached (taken out of `thread`), and names the longest-busy worker. A
/// limit too long to be a deadline on the clock waits for ever, as
/// [`join_run`] does.
pub(crate) fn join_run_within(
    thread: &mut Option<RunThread>,
    cells: &Cells,
    limit: Duration,
) -> Result<Summary, RunError> {
    let Some(end) = deadline(limit) else {
        return join_run(thread.take().expect("joined once"));
    };
    let mut pause = Duration::from_micros(100);
    while thread.as_ref().is_some_and(|t| !t.is_finished()) {
        let now = Instant::now();
        if now >= end {
            thread.take(); // detached
            return Err(stuck(cells, limit));
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    join_run(thread.take().expect("joined once"))
}

/// The worker that has been on its current batch the longest: its stage,
/// its index and how long.
pub(crate) fn longest_busy(cells: &Cells) -> Option<(String, usize, Duration)> {
    let now = clock().raw();
    cells
        .iter()
        .flat_map(|(cell, _)| {
            cell.busy_since.iter().enumerate().filter_map(move |(worker, since)| {
                let since = since.load(Ordering::Relaxed);
                (since != 0).then(|| (since, cell.name(), worker))
            })
        })
        .min_by_key(|(since, _, _)| *since)
        .map(|(since, stage, worker)| (stage, worker, ticks_to_duration(now.saturating_sub(since))))
}

/// The error of a run that did not end within `waited`, naming the worker
/// busy the longest.
pub(crate) fn stuck(cells: &Cells, waited: Duration) -> RunError {
    let (stage, worker, busy_for) = longest_busy(cells).unwrap_or(("pipeline".into(), 0, Duration::ZERO));
    RunError::Stuck {
        stage,
        worker,
        busy_for,
        waited,
    }
}

/// What a dropped handle does with its run: joins it within
/// [`DROP_GRACE`](crate::threaded::DROP_GRACE), else leaves it detached with a warning.
pub(crate) fn join_on_drop(thread: &mut Option<RunThread>, cells: &Cells) {
    match join_run_within(thread, cells, DROP_GRACE) {
        Ok(_) => {}
        Err(e @ RunError::Stuck { .. }) => tracing::warn!(target: "paipa", "pipeline dropped: {e}"),
        Err(e) => tracing::error!(target: "paipa", "pipeline stopped on drop with an error: {e}"),
    }
}
