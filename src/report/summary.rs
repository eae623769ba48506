//! The end-of-run summary: wall time, items per second end to end, each
//! stage's share of the time, and the bottleneck named with a hint.

use crate::stats::{Snapshot, StageSnapshot};

/// How loaded a stage was: busy time over the wall time its workers had.
fn utilization(s: &StageSnapshot, snap: &Snapshot) -> f64 {
    let wall = snap.elapsed.as_secs_f64() * s.workers.max(1) as f64;
    if wall > 0.0 {
        (s.busy.as_secs_f64() / wall).min(1.0)
    } else {
        0.0
    }
}

/// The one-line advice for the bottleneck of a run.
pub fn hint(snapshot: &Snapshot) -> Option<String> {
    let (i, b) = snapshot
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.busy.is_zero())
        .max_by(|a, b| utilization(a.1, snapshot).total_cmp(&utilization(b.1, snapshot)))?;
    let load = 100.0 * utilization(b, snapshot);
    let threaded = snapshot
        .stages
        .iter()
        .any(|s| !(s.starved.is_zero() && s.blocked.is_zero()));
    let mut hint = if load < 50.0 && i != 0 {
        format!(
            "no stage is saturated (the busiest, {:?}, was busy {load:.0}% of the time): the run waits for its input",
            b.name
        )
    } else if i == 0 {
        format!(
            "the source {:?} limits the run (busy {load:.0}% of the time): feed it faster",
            b.name
        )
    } else if threaded {
        format!(
            "add workers to stage {:?}: its {} worker(s) were busy {load:.0}% of the time",
            b.name, b.workers
        )
    } else {
        format!(
            "stage {:?} takes {:.0}% of the time: make it faster, or run it as a threaded stage with more workers",
            b.name,
            100.0 * snapshot.share(b)
        )
    };
    if let Some(next) = snapshot.stages.get(i + 1) {
        if next.starved > next.busy {
            hint.push_str(&format!("; stage {:?} is starved by {:?}", next.name, b.name));
        }
    }
    Some(hint)
}

/// Formats the end-of-run summary of a snapshot.
///
/// ```
/// use paipa::{iter::Pipeline, Debugger};
///
/// fn slow(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
///     it.inspect(|_| std::thread::sleep(std::time::Duration::from_millis(2)))
/// }
/// let pipeline = Pipeline::new(0..20u32).debug(Debugger::silent()).step(slow);
/// let stats = pipeline.stats();
/// paipa::iter::consume(pipeline);
/// let lines = paipa::report::format_summary(&stats.snapshot());
/// assert!(lines[0].starts_with("run: 20 items in "));
/// assert!(lines.iter().any(|l| l.starts_with("bottleneck: \"slow\"")));
/// ```
pub fn format_summary(snapshot: &Snapshot) -> Vec<String> {
    let secs = snapshot.elapsed.as_secs_f64();
    let out = snapshot.stages.last().map_or(0, |s| s.count);
    let rate = if secs > 0.0 { out as f64 / secs } else { 0.0 };
    let mut lines = vec![format!(
        "run: {out} items in {secs:.2} s ({rate:.1} items/s end to end)"
    )];
    let shares: Vec<String> = snapshot
        .stages
        .iter()
        .map(|s| format!("{} {:.1}%", s.name, 100.0 * snapshot.share(s)))
        .collect();
    lines.push(format!("share of busy time: {}", shares.join(", ")));
    if let Some(b) = snapshot.bottleneck() {
        lines.push(format!(
            "bottleneck: {:?} ({:.0}% of busy time, {:.1} items/s per worker)",
            b.name,
            100.0 * snapshot.share(b),
            b.throughput()
        ));
    }
    if let Some(h) = hint(snapshot) {
        lines.push(format!("hint: {h}"));
    }
    lines
}
