//! [`Running`]: a pipeline running in the background.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::join::{join_on_drop, join_run, join_run_within, RunThread};
use super::summary::{Cells, Summary};
use crate::error::RunError;
use crate::threaded::run::RunShared;
use crate::Stats;

/// A pipeline running in the background.
///
/// Dropping it stops the run the way [`Running::stop`] does (input closed,
/// everything drained and joined), but waits at most [`DROP_GRACE`](crate::threaded::DROP_GRACE): a run
/// held longer by a step that does not return is left running, detached,
/// with a warning naming the stage. [`Running::detach`] lets the process
/// exit without waiting instead, losing what is in flight.
///
/// **Which calls wait on your code for ever**: [`Running::stop`],
/// [`Running::wait`] and [`Running::abort`] join every thread of the run,
/// so a step that never returns (blocked on I/O with no timeout, or
/// retried for ever) keeps them waiting for ever; a cancel reaches a step
/// only between items, or through [`Output::is_stopping`](crate::threaded::Output::is_stopping).
/// [`Running::stop_within`](crate::threaded::Running::stop_within) and [`Running::abort_within`] give up at their
/// deadline, and a drop after [`DROP_GRACE`](crate::threaded::DROP_GRACE).
pub struct Running {
    pub(crate) thread: Option<RunThread>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) close_input: Arc<dyn Fn() + Send + Sync>,
    pub(crate) stats: Stats,
    /// Every stage's cell, to name a worker stuck in a step.
    pub(crate) cells: Cells,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("alive", &self.alive())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// True while the run goes on and nothing has failed.
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && !self.shared.has_error()
            && !self.shared.cancel.is_cancelled()
    }

    /// Live stats of the run.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Closes the input (every [`Input`](crate::threaded::Input) handle is refused
    /// from now on), lets everything put so far drain through, joins every
    /// thread, and returns the result.
    ///
    /// Waits for ever on a step that never returns: use
    /// [`Running::stop_within`](crate::threaded::Running::stop_within) to bound the wait.
    pub fn stop(mut self) -> Result<Summary, RunError> {
        (self.close_input)();
        self.join()
    }

    /// Waits for the run to end by itself (its input ended).
    ///
    /// Waits for ever on an input that never ends or a step that never
    /// returns.
    pub fn wait(mut self) -> Result<Summary, RunError> {
        self.join()
    }

    /// Stops at once: in-flight items are discarded (and counted), every
    /// thread is joined. Returns the summary, or the run's error if one
    /// happened first.
    ///
    /// Waits for ever on a step that never returns (the cancel reaches a
    /// step only between items): use [`Running::abort_within`] to bound
    /// the wait.
    pub fn abort(mut self) -> Result<Summary, RunError> {
        self.shared.cancel.cancel();
        (self.close_input)();
        self.join()
    }

    /// [`Running::stop`], but gives up after `deadline`: if the run has
    /// not ended by then (a step that never returns, or retries for ever),
    /// returns [`RunError::Stuck`] naming the stage and worker that has been
    /// on its batch the longest. The run's threads are then **detached**:
    /// they go on in the background (the input stays closed), and end by
    /// themselves once the stuck step returns; nothing joins them, and the
    /// process may exit while they run. A deadline too long to land on the
    /// clock (`Duration::MAX`) never comes: this is then [`Running::stop`].
    pub fn stop_within(mut self, deadline: Duration) -> Result<Summary, RunError> {
        (self.close_input)();
        join_run_within(&mut self.thread, &self.cells, deadline)
    }

    /// [`Running::abort`], but gives up after `deadline` as
    /// [`Running::stop_within`](crate::threaded::Running::stop_within) does (a step that never returns cannot see
    /// the cancel): [`RunError::Stuck`], the threads detached. A deadline
    /// too long to land on the clock (`Duration::MAX`) never comes: this
    /// is then [`Running::abort`].
    pub fn abort_within(mut self, deadline: Duration) -> Result<Summary, RunError> {
        self.shared.cancel.cancel();
        (self.close_input)();
        join_run_within(&mut self.thread, &self.cells, deadline)
    }

    /// Lets the run go on unjoined: the process may exit without waiting
    /// for it, losing whatever is in flight at that moment.
    pub fn detach(mut self) {
        self.thread.take();
    }

    pub(crate) fn join(&mut self) -> Result<Summary, RunError> {
        join_run(self.thread.take().expect("joined once"))
    }
}

impl Drop for Running {
    /// Stops the run as [`Running::stop_within`](crate::threaded::Running::stop_within) with [`DROP_GRACE`](crate::threaded::DROP_GRACE) does,
    /// and logs what it could not join.
    fn drop(&mut self) {
        if self.thread.is_some() {
            (self.close_input)();
            join_on_drop(&mut self.thread, &self.cells);
        }
    }
}
