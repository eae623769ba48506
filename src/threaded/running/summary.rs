//! What a run reports: the [`Summary`] it returns, its snapshots, and
//! its final report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::Schedule;
use crate::stats::edge::{self, EdgeProbe};
use crate::stats::{clock, ticks_to_duration, OpenInputs, Outcome, Snapshot, StageCell, Stall};

/// What a finished run reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Items that came out of the last stage and reached the consumer (what
    /// an [`Outputs`](crate::threaded::Outputs) dropped unread is counted as the last stage's
    /// `discarded` instead).
    pub items: u64,
    /// Meta entries that came out of the last stage.
    pub metas: u64,
    /// True if the consumer stopped reading before the end, or the run was
    /// aborted: some items were discarded (see each stage's `discarded`).
    pub stopped_early: bool,
    /// The final stats of every stage.
    pub snapshot: Snapshot,
}

impl Summary {
    /// How the run ended (the final report's first line says the same).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.snapshot.outcome.as_ref()
    }

    /// The signal that interrupted the run (`"SIGINT"` or `"SIGTERM"`), if
    /// one did: the run opted in with `stop_on_signals` (feature `signals`).
    pub fn interrupted(&self) -> Option<&str> {
        match self.outcome()? {
            Outcome::Interrupted { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

pub(crate) type Cells = Arc<Vec<(Arc<StageCell>, usize)>>;

/// How the run ended, filled in just before its final report.
pub(crate) type OutcomeSlot = Arc<std::sync::Mutex<Option<Outcome>>>;

/// A point-in-time snapshot of a threaded run.
pub(crate) fn snapshot(
    name: &str,
    started: Instant,
    cells: &Cells,
    watchdog: Option<Duration>,
    outcome: Option<&OutcomeSlot>,
    is_final: bool,
) -> Snapshot {
    let mut stages: Vec<_> = cells.iter().map(|(cell, workers)| cell.snapshot(*workers)).collect();
    for k in 1..stages.len() {
        let upstream = stages[k - 1].count;
        stages[k].queue_depth = upstream.saturating_sub(stages[k].count_in) as usize;
    }
    let mut stalls = Vec::new();
    if let Some(limit) = watchdog.filter(|_| !is_final) {
        let now = clock().raw();
        for (cell, _) in cells.iter() {
            for (worker, since) in cell.busy_since.iter().enumerate() {
                let since = since.load(std::sync::atomic::Ordering::Relaxed);
                if since == 0 {
                    continue;
                }
                let stuck_for = ticks_to_duration(now.saturating_sub(since));
                if stuck_for >= limit {
                    stalls.push(Stall {
                        stage: cell.name(),
                        worker,
                        stuck_for,
                    });
                }
            }
        }
    }
    Snapshot {
        pipeline: name.to_string(),
        elapsed: started.elapsed(),
        stages,
        is_final,
        stalls,
        expected: cells.first().and_then(|(cell, _)| cell.expected()),
        outcome: outcome
            .filter(|_| is_final)
            .and_then(|o| o.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        edges: cells.iter().flat_map(|(cell, _)| cell.edges.read()).collect(),
        inputs: cells.first().and_then(|(cell, _)| {
            let open = cell.open_inputs.load(std::sync::atomic::Ordering::Relaxed);
            let last = cell.last_put.load(std::sync::atomic::Ordering::Relaxed);
            (open > 0).then(|| OpenInputs {
                open,
                quiet_for: if last == 0 {
                    started.elapsed()
                } else {
                    ticks_to_duration(clock().raw().saturating_sub(last))
                },
            })
        }),
    }
}

/// The edge probes registered with any stage of the run.
pub(crate) fn edge_probes(cells: &Cells) -> Vec<Arc<dyn EdgeProbe>> {
    cells.iter().flat_map(|(cell, _)| cell.edges.probes()).collect()
}

/// The run's last report: the edges' last readings (a stream source's
/// last acks go out first), the final report of every reporter, and the
/// snapshot the summary carries.
pub(crate) fn final_report(cells: &Cells, schedule: Option<Schedule>, snap: &dyn Fn(bool) -> Snapshot) -> Snapshot {
    let probes = edge_probes(cells);
    edge::refresh(&probes, edge::FINAL_WAIT, true);
    if let Some(mut s) = schedule {
        s.finish();
    }
    // No reports are made any more: the edges' reading threads end.
    edge::close(&probes);
    snap(true)
}
