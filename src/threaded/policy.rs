//! What a stage does when its step fails: the policy a user sets
//! ([`OnError`]), and [`Policy`], the one implementation of it that every
//! kind runs (worker threads and the async stage thread alike): retries
//! with a copy of the item, skips told to the hook, fatal failures
//! recorded as the run's error, every outcome counted once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, RunError};
use crate::stats::StageCell;
use crate::threaded::run::{panic_message, RunShared};

/// An item a skip policy dropped, as handed to [`Stage::on_skip`](super::Stage::on_skip).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The stage that skipped it.
    pub stage: String,
    /// The worker that skipped it.
    pub worker: usize,
    /// The step's error (for a panic, `panicked: ` and its message), after
    /// the last retry.
    pub error: String,
}

/// Called with every item a stage's skip policy drops.
pub(crate) type SkipHook = Arc<dyn Fn(&Skipped) + Send + Sync>;

/// A stage's error policy. Panics in steps count as errors too.
///
/// Nothing is dropped uncounted: a skipped item adds to the stage's
/// `skipped`, a retry to `retried`, a fatal failure to `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the whole pipeline and return the error from `run` (default).
    #[default]
    Fail,
    /// Drop the item, count it as skipped, and go on.
    Skip,
    /// Try the item again up to `times` more times, waiting `backoff` before
    /// the first retry and twice as long before each next one; then fail or
    /// skip. Needs the stage's input to be `Clone`.
    Retry {
        /// Retries after the first attempt.
        times: u32,
        /// Wait before the first retry.
        backoff: Duration,
        /// What to do once the retries are used up.
        then: AfterRetries,
    },
}

/// What a retrying stage does once its retries are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRetries {
    /// Stop the pipeline with the last error.
    Fail,
    /// Count the item as skipped and go on.
    Skip,
}

impl OnError {
    pub(crate) fn retries(&self) -> u32 {
        match self {
            OnError::Retry { times, .. } => *times,
            _ => 0,
        }
    }

    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        match self {
            OnError::Retry { backoff, .. } => backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(16)),
            _ => Duration::ZERO,
        }
    }

    pub(crate) fn skips_at_last(&self) -> bool {
        matches!(
            self,
            OnError::Skip
                | OnError::Retry {
                    then: AfterRetries::Skip,
                    ..
                }
        )
    }
}

/// Why a call into user code did not succeed.
pub(crate) enum Failure {
    Error(BoxError),
    Panic(String),
}

impl Failure {
    /// The error's text (for a panic, `panicked: ` and its message).
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Error(e) => e.to_string(),
            Failure::Panic(m) => format!("panicked: {m}"),
        }
    }
}

/// Calls user code, turning a panic into a `Failure`.
pub(crate) fn guarded<R>(f: impl FnOnce() -> Result<R, BoxError>) -> Result<R, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(p) => Err(Failure::Panic(panic_message(&*p))),
    }
}

/// A stage's error policy at run time, and whom it tells: the stage's
/// cell (its counts), its skip hook, and the run (its first error).
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) on_error: OnError,
    on_skip: Option<SkipHook>,
    stage: String,
    worker: usize,
    cell: Arc<StageCell>,
    shared: Arc<RunShared>,
}

impl Policy {
    pub(crate) fn new(
        on_error: OnError,
        on_skip: Option<SkipHook>,
        (stage, worker): (String, usize),
        cell: Arc<StageCell>,
        shared: Arc<RunShared>,
    ) -> Self {
        Policy {
            on_error,
            on_skip,
            stage,
            worker,
            cell,
            shared,
        }
    }

    /// Records a fatal failure of this worker as the run's error (if it is
    /// the first) and stops the run.
    pub(crate) fn fatal(&self, failure: Failure) {
        let (stage, worker) = (self.stage.clone(), self.worker);
        self.shared.fail(match failure {
            Failure::Error(source) => RunError::Step { stage, worker, source },
            Failure::Panic(message) => RunError::Panic { stage, worker, message },
        });
    }

    /// Fails the run on an item weighing `w`, counted as `failed`.
    pub(crate) fn fail(&self, w: u64, failure: Failure) {
        self.cell.failed.fetch_add(w, Relaxed);
        self.fatal(failure);
    }

    /// An item weighing `w` failed for good (no retry left): skipped
    /// (counted, told to the hook) or failed, as the policy says. True if
    /// the stage goes on.
    pub(crate) fn give_up(&self, w: u64, failure: Failure) -> bool {
        if self.on_error.skips_at_last() {
            self.cell.skipped.fetch_add(w, Relaxed);
            self.tell_skip(|| failure.describe())
        } else {
            self.fail(w, failure);
            false
        }
    }

    /// Tells the stage's skip hook (if any) that an item was skipped, under
    /// a panic guard: a panicking hook fails the run (returns false).
    pub(crate) fn tell_skip(&self, error: impl FnOnce() -> String) -> bool {
        let Some(hook) = &self.on_skip else {
            return true;
        };
        let skipped = Skipped {
            stage: self.stage.clone(),
            worker: self.worker,
            error: error(),
        };
        match catch_unwind(AssertUnwindSafe(|| hook(&skipped))) {
            Ok(()) => true,
            Err(p) => {
                self.fatal(Failure::Panic(format!("in its on_skip hook: {}", panic_message(&*p))));
                false
            }
        }
    }

    /// The copy of `unit` kept for a retry, if the policy allows another
    /// after `retry` retries and the unit can be copied. The copy is user
    /// code too (`Clone`): a panic in it is a failure, named as such.
    pub(crate) fn spare<T>(&self, unit: &T, retry: u32, copy: Option<&impl Fn(&T) -> T>) -> Result<Option<T>, Failure> {
        match copy {
            Some(copy) if retry < self.on_error.retries() => catch_unwind(AssertUnwindSafe(|| copy(unit)))
                .map(Some)
                .map_err(|p| Failure::Panic(format!("in its item's Clone: {}", panic_message(&*p)))),
            _ => Ok(None),
        }
    }

    /// Counts retry number `retry` (from 1) and returns the wait before it.
    pub(crate) fn retrying(&self, retry: u32) -> Duration {
        self.cell.retried.fetch_add(1, Relaxed);
        self.on_error.backoff(retry)
    }
}
