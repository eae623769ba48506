//! The runtime debugger's configuration, shared by both pipeline kinds: which
//! reporters, how often, and how precisely to time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::report::{LogReporter, Reporter};
use crate::stats::edge::EdgeProbe;
use crate::stats::recorder::Timing;
use crate::stats::Snapshot;

/// How often reporters are called while a pipeline runs, unless set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Configures what a pipeline measures and where the reports go.
///
/// `Debugger::new()` logs the reference's table through `tracing` every 5 s
/// and once at the end, or writes it to stderr when the program installed
/// no `tracing` subscriber (see [`LogReporter`]); [`Debugger::silent`]
/// reports nowhere (read the stats yourself through [`Stats`]).
///
/// ```
/// use std::time::Duration;
/// use paipa::{iter::Pipeline, Debugger};
///
/// let debugger = Debugger::new()
///     .name("products")
///     .source_name("list")
///     .interval(Duration::from_secs(1));
/// let pipeline = Pipeline::new(vec![1, 2, 3]).debug(debugger);
/// assert_eq!(paipa::iter::consume(pipeline), 3);
/// ```
pub struct Debugger {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) interval: Duration,
    pub(crate) reporters: Vec<Box<dyn Reporter>>,
    pub(crate) timing: Timing,
    pub(crate) watchdog: Option<Duration>,
    /// Edges to other processes shown in the snapshots from the start (a
    /// sink or source used by hand, outside any stage): see `Debugger::edge`
    /// (feature `redis`).
    pub(crate) edges: Vec<Arc<dyn EdgeProbe>>,
}

impl fmt::Debug for Debugger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debugger")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("interval", &self.interval)
            .field("reporters", &self.reporters.len())
            .field("timing", &self.timing)
            .field("watchdog", &self.watchdog)
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl Default for Debugger {
    fn default() -> Self {
        Debugger::new()
    }
}

impl Debugger {
    /// A debugger with the log reporter, reporting every 5 s and at the end,
    /// timing every item exactly. Without a `tracing` subscriber the table
    /// goes to stderr, so it always shows.
    pub fn new() -> Self {
        Debugger::silent().reporter(LogReporter::new())
    }

    /// A debugger with no reporters: it measures, and the program reads the
    /// stats through [`Stats`].
    pub fn silent() -> Self {
        Debugger {
            name: "pipeline".into(),
            source: "source".into(),
            interval: DEFAULT_INTERVAL,
            reporters: Vec::new(),
            timing: Timing::Exact,
            watchdog: None,
            edges: Vec::new(),
        }
    }

    /// Names the pipeline in reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Names the source stage (`"source"` unless set). For iterator
    /// pipelines, everything built before the debugger was attached is
    /// measured as the source.
    pub fn source_name(mut self, name: impl Into<String>) -> Self {
        self.source = name.into();
        self
    }

    /// Reports every `interval` while running; `Duration::ZERO`, or an
    /// interval too long to land on the clock (`Duration::MAX`), turns
    /// periodic reports off and keeps only the final one.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Adds a reporter.
    pub fn reporter(mut self, reporter: impl Reporter + 'static) -> Self {
        self.reporters.push(Box::new(reporter));
        self
    }

    /// Watches for work stuck inside one stage: every `threshold / 2`, any
    /// batch (or iterator call) that has been inside a stage longer than
    /// `threshold` is logged as a warning (target `paipa::watchdog`) with the
    /// stage, the worker and how long, handed to every reporter's
    /// [`Reporter::stall`], and listed in [`Snapshot::stalls`]. A zero
    /// threshold is refused.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = paipa::Debugger::new().watchdog(Duration::ZERO).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid watchdog threshold: 0s (must be more than zero)");
    /// ```
    pub fn watchdog(mut self, threshold: Duration) -> Result<Self, ConfigError> {
        if threshold.is_zero() {
            return Err(ConfigError::new("watchdog threshold", "0s", "must be more than zero"));
        }
        self.watchdog = Some(threshold);
        Ok(self)
    }

    /// Times one pull in `every` (counted at the pipeline's output) through
    /// all stages instead of every pull, and scales the times up: final
    /// counts stay exact, time shares stay close, and the cost per item
    /// drops to about 3 ns per stage. Counts are published on the timed
    /// pulls, so a periodic report may lag by up to `every` items per stage;
    /// the final report is exact. `every = 0` is refused.
    ///
    /// ```
    /// let err = paipa::Debugger::new().sampled(0).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid sample interval: 0 (must be at least 1)");
    /// ```
    pub fn sampled(mut self, every: u32) -> Result<Self, ConfigError> {
        if every == 0 {
            return Err(ConfigError::new("sample interval", every, "must be at least 1"));
        }
        self.timing = if every == 1 {
            Timing::Exact
        } else {
            Timing::Sampled(every)
        };
        Ok(self)
    }
}

/// A handle on a pipeline's live stats: take a [`Snapshot`] at any time,
/// during or after the run.
#[derive(Clone)]
pub struct Stats {
    pub(crate) source: Arc<dyn Fn(bool) -> Snapshot + Send + Sync>,
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

impl Stats {
    /// A copy of every stage's stats now.
    pub fn snapshot(&self) -> Snapshot {
        (self.source)(false)
    }
}
