//! The reference's log output: a separator line, then one aligned line per
//! stage, through `tracing` at INFO under the target `paipa::debugger`.

use std::io::Write;

use super::{format_summary, format_table, Reporter};
use crate::stats::Snapshot;

/// Logs every snapshot as the reference's aligned table through `tracing`.
///
/// With a `tracing` subscriber installed (for example
/// `tracing_subscriber::fmt::init()`, or a scoped default), the lines go to
/// it, at INFO under the target `paipa::debugger`, and its filters decide.
/// With none (the program never set one), the lines are written to stderr
/// instead, so that `Debugger::new()` is never silent by accident.
///
/// Async stages' per-item latency (`p50:`, `p99:`) is the latency over the
/// last interval (since the previous report); the final report's is the
/// whole run's.
#[derive(Debug, Default, Clone)]
pub struct LogReporter {
    /// The previous report, for the latency over the last interval.
    previous: Option<Snapshot>,
}

impl LogReporter {
    /// A reporter logging at INFO under the target `paipa::debugger`.
    pub fn new() -> Self {
        LogReporter::default()
    }
}

/// True when no `tracing` subscriber would receive the lines: neither a
/// global default nor a scoped one on this thread.
fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

impl Reporter for LogReporter {
    fn report(&mut self, snapshot: &Snapshot) {
        let mut lines = match self.previous.replace(snapshot.clone()) {
            Some(previous) if !snapshot.is_final => format_table(&latency_since(snapshot, &previous)),
            _ => format_table(snapshot),
        };
        if snapshot.is_final {
            lines.extend(format_summary(snapshot));
        }
        if no_subscriber() {
            let mut err = std::io::stderr().lock();
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
        } else {
            for line in lines {
                tracing::info!(target: "paipa::debugger", "{line}");
            }
        }
    }
}

/// `snapshot` with each stage's latency over the interval since
/// `previous` (whole, where `previous` has no such stage).
fn latency_since(snapshot: &Snapshot, previous: &Snapshot) -> Snapshot {
    let interval = snapshot.since(previous);
    let mut out = snapshot.clone();
    for (s, i) in out.stages.iter_mut().zip(interval.stages) {
        s.latency = i.latency;
    }
    out
}
