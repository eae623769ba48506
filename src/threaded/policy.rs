//! What a stage does when its step fails.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::error::BoxError;
use crate::threaded::run::panic_message;

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
