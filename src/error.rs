//! Error types: configuration errors found while building a pipeline, and
//! run errors that a pipeline returns when a step fails.

use std::fmt;

/// A configuration value that paipa refuses, found while building.
///
/// The message names the field and the value, so that a zero worker count or
/// a zero chunk size is reported where it was written, not as a panic deep
/// inside a worker.
///
/// ```
/// let err = paipa::iter::chunk::<std::ops::Range<u32>>(0).err().unwrap();
/// assert_eq!(err.to_string(), "invalid chunk size: 0 (must be at least 1)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    rule: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, value: impl fmt::Display, rule: impl Into<String>) -> Self {
        ConfigError {
            field,
            value: value.to_string(),
            rule: rule.into(),
        }
    }

    /// The name of the refused field, such as `"chunk size"` or `"workers"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The refused value, as written.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {} ({})", self.field, self.value, self.rule)
    }
}

impl std::error::Error for ConfigError {}

/// The error type steps return: any error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a threaded pipeline run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A step returned an error that its stage's policy did not absorb.
    #[error("stage {stage:?} (worker {worker}) failed: {source}")]
    Step {
        /// The stage's name.
        stage: String,
        /// The index of the worker that failed.
        worker: usize,
        /// The step's error.
        #[source]
        source: BoxError,
    },
    /// A step panicked; the panic was caught and stopped the run.
    #[error("stage {stage:?} (worker {worker}) panicked: {message}")]
    Panic {
        /// The stage's name.
        stage: String,
        /// The index of the worker that panicked.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// The pipeline was asked to run to completion with nothing to read.
    #[error(
        "pipeline has no input (no source, no item put, no input handle): \
         give it a source, put items, or take an input handle before running"
    )]
    NoInput,
    /// The pipeline was configured wrongly.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A thread of the pipeline could not be started.
    #[error("could not start a pipeline thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The run opted into signals and could not listen for them.
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signals(#[source] std::io::Error),
    /// The run did not end within the deadline given to
    /// `Running::stop_within` or `Running::abort_within`: a step has not
    /// returned. The run's threads were left running, detached.
    #[error(
        "the run did not end within {waited:?}: stage {stage:?} (worker {worker}) has been busy for {busy_for:?}; \
         its threads are left running, detached"
    )]
    Stuck {
        /// The stage whose worker has been busy the longest (`"pipeline"`
        /// if no worker was inside a step).
        stage: String,
        /// That worker's index.
        worker: usize,
        /// How long that worker had been on its current batch.
        busy_for: std::time::Duration,
        /// The deadline that passed.
        waited: std::time::Duration,
    },
}

impl RunError {
    /// The name of the stage that failed, if a stage failed.
    pub fn stage(&self) -> Option<&str> {
        match self {
            RunError::Step { stage, .. } | RunError::Panic { stage, .. } | RunError::Stuck { stage, .. } => Some(stage),
            _ => None,
        }
    }
}
