//! The reference's log output: a separator line, then one aligned line per
//! stage, through `tracing` at INFO under the target `paipa::debugger`.

use super::{format_summary, format_table, Reporter};
use crate::stats::Snapshot;

/// Logs every snapshot as the reference's aligned table through `tracing`.
///
/// Install any `tracing` subscriber to see it (for example
/// `tracing_subscriber::fmt::init()`).
#[derive(Debug, Default, Clone)]
pub struct LogReporter {
    _private: (),
}

impl LogReporter {
    /// A reporter logging at INFO under the target `paipa::debugger`.
    pub fn new() -> Self {
        LogReporter::default()
    }
}

impl Reporter for LogReporter {
    fn report(&mut self, snapshot: &Snapshot) {
        for line in format_table(snapshot) {
            tracing::info!(target: "paipa::debugger", "{line}");
        }
        if snapshot.is_final {
            for line in format_summary(snapshot) {
                tracing::info!(target: "paipa::debugger", "{line}");
            }
        }
    }
}
