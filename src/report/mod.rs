//! Reporters: where snapshots go. Both pipeline kinds call their reporters
//! every interval while running (5 s unless set) and exactly once at the end,
//! from one reporting thread per run.
//!
//! A reporter is anything that implements [`Reporter`], closures included:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use paipa::{iter::Pipeline, Debugger, Snapshot};
//!
//! // A reporter for a metrics service in ten lines: here it keeps the
//! // final count of every stage.
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let reporter = move |snap: &Snapshot| {
//!     if snap.is_final {
//!         for stage in &snap.stages {
//!             sink.lock().unwrap().push((stage.name.clone(), stage.count));
//!         }
//!     }
//! };
//! let pipeline = Pipeline::new(0..5u8).debug(Debugger::silent().reporter(reporter));
//! paipa::iter::consume(pipeline);
//! assert_eq!(*seen.lock().unwrap(), vec![("source".to_string(), 5)]);
//! ```

mod chart;
#[cfg(feature = "json")]
pub(crate) mod json;
mod log;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "progress")]
mod progress;
#[cfg(any(feature = "progress", feature = "web", feature = "http"))]
mod recent;
mod schedule;
mod summary;
mod table;
#[cfg(all(feature = "web", not(loom)))]
pub(crate) mod web;

pub use self::chart::ChartReporter;
#[cfg(feature = "json")]
pub use self::json::{snapshot_json, JsonReporter};
pub use self::log::LogReporter;
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsReporter;
#[cfg(feature = "progress")]
pub use self::progress::ProgressReporter;
#[cfg(any(feature = "progress", feature = "web", feature = "http"))]
pub(crate) use recent::Recent;
pub(crate) use schedule::Schedule;
pub use summary::{advice, format_summary, hint, outcome_line};
pub use table::{edge_lines, format_table, input_line};
#[cfg(all(feature = "web", not(loom)))]
pub use web::{WebConfig, WebReporter};

use crate::stats::Snapshot;

/// Receives snapshots of a pipeline: periodically while it runs, and once
/// with [`Snapshot::is_final`] set when it is over.
pub trait Reporter: Send {
    /// Called with every snapshot, from a reporting thread. The end of a
    /// run waits at most 2 s for its final report: a reporter that blocks
    /// longer gets the final report late (still exactly once, and last),
    /// after the run has returned.
    fn report(&mut self, snapshot: &Snapshot);

    /// Called by the watchdog (see [`crate::Debugger::watchdog`]) for work
    /// stuck inside a stage, while it is stuck. Does nothing unless
    /// overridden.
    fn stall(&mut self, _stall: &crate::Stall) {}
}

impl<F> Reporter for F
where
    F: FnMut(&Snapshot) + Send,
{
    fn report(&mut self, snapshot: &Snapshot) {
        self(snapshot)
    }
}
