//! The step type with lifecycle hooks, and the handle through which a step
//! emits items and meta entries.

use std::fmt;
use std::time::Duration;

use crate::error::BoxError;
use crate::threaded::meta::Meta;
use crate::threaded::worker::Outbox;

/// The shortest wait of an idle worker between two [`Step::on_idle`]
/// calls: a shorter [`Step::idle_timeout`] counts as this.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(1);

/// The wait between two `on_idle` calls for a step's `idle_timeout`.
pub(crate) fn idle_wait(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.max(MIN_IDLE_TIMEOUT))
}

/// Who a worker is: its stage and its index among the stage's workers.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The stage's name.
    pub stage: String,
    /// This worker's index, from 0.
    pub index: usize,
    /// How many workers the stage has.
    pub workers: usize,
}

/// Where a step puts what it produces. Items are batched internally and sent
/// downstream when a batch is full or the worker is about to wait.
pub struct Output<'a, T> {
    pub(crate) outbox: &'a mut Outbox<T>,
}

impl<T> fmt::Debug for Output<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

impl<T> Output<'_, T> {
    /// Sends one item downstream (it may wait for space: backpressure). If
    /// the run is stopping, the item is counted as discarded.
    #[inline]
    pub fn emit(&mut self, item: T) {
        self.outbox.push(item);
    }

    /// Sends a meta entry downstream, after every item emitted before it.
    pub fn emit_meta(&mut self, meta: Meta) {
        self.outbox.meta(meta);
    }

    /// True once the run is stopping: it was cancelled (an error elsewhere,
    /// an abort, a second signal), or nothing downstream reads any more. A
    /// step that waits inside a call (for room on a server, say) should
    /// give up then, so that the stop is not held up by it.
    pub fn is_stopping(&self) -> bool {
        self.outbox.is_gone() || self.outbox.is_cancelled()
    }
}

/// A step with state and lifecycle hooks: one instance per worker, made by a
/// [`StepFactory`].
///
/// ```
/// use paipa::threaded::{Output, Step};
///
/// /// Emits a running total of its worker's items.
/// struct RunningSum(u64);
///
/// impl Step for RunningSum {
///     type In = u64;
///     type Out = u64;
///     fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), paipa::BoxError> {
///         self.0 += item;
///         out.emit(self.0);
///         Ok(())
///     }
/// }
/// ```
pub trait Step: Send {
    /// The items the stage takes.
    type In: Send;
    /// The items the stage emits.
    type Out: Send;

    /// Handles one item, emitting any number of items.
    fn process(&mut self, item: Self::In, out: &mut Output<'_, Self::Out>) -> Result<(), BoxError>;

    /// Handles a meta entry; passes it on unchanged unless overridden.
    fn process_meta(&mut self, meta: Meta, out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        out.emit_meta(meta);
        Ok(())
    }

    /// Called once in the worker's thread before its first item.
    fn on_start(&mut self, _worker: &WorkerInfo) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called when the worker's input is empty, before it waits; and again
    /// every [`Step::idle_timeout`] while the input stays empty.
    fn on_idle(&mut self, _out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        Ok(())
    }

    /// How often `on_idle` is called while the input stays empty (never
    /// again after the first call, if `None`).
    ///
    /// A timeout under [`MIN_IDLE_TIMEOUT`] (1 ms), zero included, counts
    /// as 1 ms: an idle worker waits at least that long between two calls,
    /// so it never spins a core. A timeout too long to land on the clock
    /// (`Duration::MAX`) is `None`: no call after the first.
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }

    /// Called once when the input has ended (not when the run was stopped by
    /// an error); may emit a last partial result.
    fn on_finish(&mut self, _out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once per worker as it shuts down, however the run ends (after
    /// `on_finish` when the input ended; alone when the run was stopped).
    /// Release per-worker resources here.
    fn on_shutdown(&mut self) {}

    /// How many items this worker has taken and still holds without having
    /// emitted their results (a partial batch it has not sent): read as
    /// the worker ends, before `on_shutdown`, and counted as discarded, so
    /// a step that emits one result per item keeps its stage's books
    /// (`count_in = count + skipped + failed + discarded`) when a run stops
    /// with items in its hands. Zero unless overridden.
    fn held(&self) -> u64 {
        0
    }
}

/// Makes one [`Step`] per worker, and holds what the stage's workers share.
///
/// Any `Fn(&WorkerInfo) -> S` is a factory with no stage hooks; implement
/// the trait to run code once per stage before the first worker starts and
/// after the last one ends.
pub trait StepFactory: Send + Sync {
    /// The step each worker runs.
    type Step: Step;

    /// Makes the step for one worker.
    fn create(&self, worker: &WorkerInfo) -> Self::Step;

    /// Called once, before the stage's first worker starts. A panic in it
    /// fails the run as [`RunError::Panic`](crate::RunError::Panic) of the
    /// stage (worker 0, the message `in its before_stage hook: ...`), and
    /// no worker starts.
    fn before_stage(&self) {}

    /// Called once, after the stage's last worker has ended. A panic in it
    /// fails the run as [`RunError::Panic`](crate::RunError::Panic) of the
    /// stage (worker 0, the message `in its after_stage hook: ...`).
    fn after_stage(&self) {}
}

impl<S: Step, F: Fn(&WorkerInfo) -> S + Send + Sync> StepFactory for F {
    type Step = S;
    fn create(&self, worker: &WorkerInfo) -> S {
        self(worker)
    }
}
