//! The end-of-run summary: how the run ended, wall time, items per second
//! end to end, each stage's share of the time, and the bottleneck named with
//! a hint that knows the machine's cores.

use crate::stats::{Limit, Outcome, Snapshot, Verdict, CPU_BOUND};

/// One line on how the run ended (final reports that know it).
pub fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Finished => "outcome: finished (every item went through)".to_string(),
        Outcome::StoppedEarly => {
            "outcome: stopped early (the consumer stopped reading, or the run was stopped; see discarded)".to_string()
        }
        Outcome::Failed {
            stage: Some(stage),
            error,
        } => format!("outcome: failed in stage {stage:?}: {error}"),
        Outcome::Failed { stage: None, error } => format!("outcome: failed: {error}"),
        Outcome::Interrupted { signal, forced: false } => {
            format!("outcome: interrupted by {signal} (input stopped, everything taken drained through)")
        }
        Outcome::Interrupted { signal, forced: true } => {
            format!(
                "outcome: interrupted by {signal}, stopped at once (a second signal; what was in flight is discarded)"
            )
        }
    }
}

/// The one-line advice for the bottleneck of a run, judged for this
/// machine's cores (see [`Snapshot::verdict`]). A failed run gets no advice
/// on speed: its timings cover only the part that ran.
pub fn hint(snapshot: &Snapshot) -> Option<String> {
    advice(snapshot, &snapshot.verdict())
}

/// The advice for a verdict on `snapshot` (from [`Snapshot::verdict`], or
/// [`Snapshot::verdict_for_cores`] to judge it for another machine).
pub fn advice(snapshot: &Snapshot, verdict: &Verdict) -> Option<String> {
    if let Some(Outcome::Failed { stage, .. }) = &snapshot.outcome {
        let at = stage.as_ref().map_or(String::new(), |s| format!(" in stage {s:?}"));
        return Some(format!(
            "the run failed{at}: fix that first; the timings cover only the part that ran, so they say nothing about speed"
        ));
    }
    // A run that waits on open input handles says so: a handle kept by
    // mistake keeps a run going with nothing in it.
    if let (Some(inputs), Limit::Unknown | Limit::Waiting) = (&snapshot.inputs, verdict.limit) {
        return Some(format!(
            "the run waits for its input: {} open input handle{}, nothing put for {:.1} s (the run ends once \
             every handle is dropped or finished)",
            inputs.open,
            if inputs.open == 1 { "" } else { "s" },
            inputs.quiet_for.as_secs_f64()
        ));
    }
    let name = verdict.stage.as_ref()?;
    let b = snapshot.stage(name)?;
    let load = 100.0 * verdict.load;
    let cpu = 100.0 * b.cpu_ratio();
    let mut hint = match verdict.limit {
        Limit::Unknown => return None,
        Limit::Waiting => format!(
            "no stage is saturated (the busiest, {name:?}, was busy {load:.0}% of the time): the run waits for its input"
        ),
        Limit::Source => format!("the source {name:?} limits the run (busy {load:.0}% of the time): feed it faster"),
        Limit::Sequential => format!(
            "stage {name:?} takes {:.0}% of the time: make it faster, or run it as a threaded stage with more workers",
            100.0 * snapshot.share(b)
        ),
        Limit::AddWorkers | Limit::Saturated if b.in_flight_limit > 0 && b.cpu_ratio() >= CPU_BOUND => format!(
            "async stage {name:?} keeps its one thread busy (CPU {cpu:.0}% of the time its futures were in \
             flight): move the CPU work out of its futures into a stage with workers"
        ),
        Limit::AddWorkers | Limit::Saturated if b.in_flight_limit > 0 => format!(
            "raise in_flight on async stage {name:?}: its futures filled {load:.0}% of its bound of {} in flight, \
             mostly waiting (CPU {cpu:.0}% of busy time), so more in flight overlap more waits",
            b.in_flight_limit
        ),
        Limit::AddWorkers if b.cpu_ratio() >= CPU_BOUND => format!(
            "add workers to stage {name:?}: its {} worker(s) were busy {load:.0}% of the time, CPU-bound \
             (CPU {cpu:.0}% of busy time), and the machine has {} cores",
            b.workers, verdict.cores
        ),
        Limit::AddWorkers => format!(
            "add workers to stage {name:?}: its {} worker(s) were busy {load:.0}% of the time, mostly waiting \
             (CPU {cpu:.0}% of busy time), so more workers overlap the waits",
            b.workers
        ),
        Limit::Saturated => format!(
            "the machine is saturated: stage {name:?} is CPU-bound (CPU {cpu:.0}% of busy time, busy {load:.0}%) \
             and its {} worker(s) already cover the {} cores, so more workers will not help: make the step \
             cheaper, give it coarser items (more work per item, fewer hand-overs), or merge it with its neighbours",
            b.workers, verdict.cores
        ),
        Limit::Consumer => format!(
            "the consumer limits the run (busy {load:.0}% of the time between its reads): make the code that \
             reads the outputs faster, or move its work into a stage with workers"
        ),
        Limit::Balanced => {
            let mut all = vec![format!("{name:?}")];
            all.extend(verdict.others.iter().map(|o| format!("{o:?}")));
            format!(
                "no single bottleneck: {} are about equally busy (up to {load:.0}% of the time): speed them up \
                 together (more workers for each, or coarser items)",
                all.join(", ")
            )
        }
    };
    let source = snapshot.stages.first();
    if let Some(src) = source.filter(|s| s.name != *name) {
        let blocked = src.blocked.as_secs_f64() / snapshot.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        if blocked >= 0.5 && matches!(verdict.limit, Limit::AddWorkers | Limit::Saturated | Limit::Consumer) {
            hint.push_str(&format!(
                "; the source was blocked {:.0}% of the run: the limit is downstream, at {name:?}",
                100.0 * blocked.min(1.0)
            ));
        }
    }
    let index = snapshot.stages.iter().position(|s| s.name == *name);
    if let Some(next) = index.and_then(|i| snapshot.stages.get(i + 1)) {
        if next.starved > next.busy && !matches!(verdict.limit, Limit::Balanced | Limit::Waiting) {
            hint.push_str(&format!("; stage {:?} is starved by {name:?}", next.name));
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
/// assert_eq!(lines[0], "outcome: finished (every item went through)");
/// assert!(lines[1].starts_with("run: 20 items in "));
/// assert!(lines.iter().any(|l| l.starts_with("bottleneck: \"slow\"")));
/// ```
pub fn format_summary(snapshot: &Snapshot) -> Vec<String> {
    let secs = snapshot.elapsed.as_secs_f64();
    let out = snapshot.stages.last().map_or(0, |s| s.count);
    let rate = if secs > 0.0 { out as f64 / secs } else { 0.0 };
    let mut lines: Vec<String> = snapshot.outcome.iter().map(outcome_line).collect();
    lines.push(format!(
        "run: {out} items in {secs:.2} s ({rate:.1} items/s end to end)"
    ));
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
