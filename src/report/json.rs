//! One JSON object per snapshot (newline-delimited JSON), with a stable,
//! documented schema. Feature `json`.

use std::io::Write;

use serde_json::{json, Map, Value};

use super::{hint, outcome_line, Reporter};
use crate::stats::{EdgeSnapshot, Outcome, Snapshot};

/// The JSON form of a snapshot. Schema (version 1), times in seconds as
/// floats, memory in bytes:
///
/// ```text
/// { "schema": 1, "pipeline": str, "elapsed_s": f64, "final": bool,
///   "bottleneck": str | null, "hint": str | null, "judged_over_s": f64,
///   "expected": u64 | null,
///   "outcome": null | { "kind": "finished" | "stopped_early" | "failed" | "interrupted",
///                       "stage": str | null, "error": str | null, "signal": str | null,
///                       "forced": bool, "line": str },
///   "stages": [ { "name": str, "workers": u64, "count": u64, "count_in": u64,
///                 "skipped": u64, "retried": u64, "failed": u64, "discarded": u64,
///                 "metas": u64, "busy_s": f64, "starved_s": f64, "blocked_s": f64,
///                 "user_cpu_s": f64, "sys_cpu_s": f64, "queue_depth": u64,
///                 "in_flight": u64, "in_flight_limit": u64,
///                 "latency": null | { "samples": u64, "p50_s": f64, "p99_s": f64 },
///                 "mem_growth_bytes": i64, "mem_peak_bytes": i64,
///                 "throughput_per_s": f64, "share": f64,
///                 "counters": { str: u64 },
///                 "per_worker": [ { "busy_s": f64, "starved_s": f64, "blocked_s": f64 } ] } ],
///   "edges": [ { "kind": str, "name": str, "role": str, "length": u64 | null,
///                "groups": [ { "name": str, "pending": u64, "lag": u64 | null, "consumers": u64 } ],
///                "age_s": f64 | null, "stale": bool, "error": str | null } ],
///   "inputs": null | { "open": u64, "quiet_for_s": f64 } }
/// ```
///
/// `edges` are the process's edges to others (feature `redis`: see
/// [`Snapshot::edges`]); `length` and `age_s` are null before the first
/// reading, `stale` is true (with the `error`) when the last one failed.
/// `inputs` counts a threaded run's live input handles still open (see
/// [`Snapshot::inputs`]), null once none is.
///
/// Fields are only ever added, never renamed or removed, within a schema
/// version. `bottleneck`, `hint` and each stage's `latency` (async stages'
/// per-item latency) are judged over the last `judged_over_s` seconds: the
/// whole run here; live views (the web page, the ingestion server's
/// `/dashboard`) judge the last 10 s of a run that is longer than that.
///
/// ```
/// use paipa::{iter::Pipeline, Debugger};
/// let pipeline = Pipeline::new(0..3u8).debug(Debugger::silent());
/// let stats = pipeline.stats();
/// paipa::iter::consume(pipeline);
/// let v = paipa::report::snapshot_json(&stats.snapshot());
/// assert_eq!(v["schema"], 1);
/// assert_eq!(v["stages"][0]["name"], "source");
/// assert_eq!(v["stages"][0]["count"], 3);
/// ```
pub fn snapshot_json(snapshot: &Snapshot) -> Value {
    snapshot_json_judged(snapshot, snapshot)
}

/// [`snapshot_json`] with the bottleneck, the hint and the latency taken
/// from `judged` (the same run's recent change, see `Recent`).
pub(crate) fn snapshot_json_judged(snapshot: &Snapshot, judged: &Snapshot) -> Value {
    let stages: Vec<Value> = snapshot
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let latency = judged.stages.get(i).unwrap_or(s).latency.clone();
            let latency = match (latency.p50(), latency.p99()) {
                (Some(p50), Some(p99)) => json!({
                    "samples": latency.samples(),
                    "p50_s": p50.as_secs_f64(),
                    "p99_s": p99.as_secs_f64(),
                }),
                _ => Value::Null,
            };
            let counters: Map<String, Value> = s.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({
                "name": s.name,
                "workers": s.workers,
                "count": s.count,
                "count_in": s.count_in,
                "skipped": s.skipped,
                "retried": s.retried,
                "failed": s.failed,
                "discarded": s.discarded,
                "metas": s.metas,
                "busy_s": s.busy.as_secs_f64(),
                "starved_s": s.starved.as_secs_f64(),
                "blocked_s": s.blocked.as_secs_f64(),
                "user_cpu_s": s.user_cpu.as_secs_f64(),
                "sys_cpu_s": s.sys_cpu.as_secs_f64(),
                "queue_depth": s.queue_depth,
                "in_flight": s.in_flight,
                "in_flight_limit": s.in_flight_limit,
                "latency": latency,
                "mem_growth_bytes": s.mem_growth,
                "mem_peak_bytes": s.mem_peak,
                "throughput_per_s": s.throughput(),
                "share": snapshot.share(s),
                "counters": counters,
                "per_worker": s.per_worker.iter().map(|w| json!({
                    "busy_s": w.busy.as_secs_f64(),
                    "starved_s": w.starved.as_secs_f64(),
                    "blocked_s": w.blocked.as_secs_f64(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "schema": 1,
        "pipeline": snapshot.pipeline,
        "elapsed_s": snapshot.elapsed.as_secs_f64(),
        "final": snapshot.is_final,
        "bottleneck": judged.bottleneck().map(|b| b.name.clone()),
        "hint": hint(judged),
        "judged_over_s": judged.elapsed.as_secs_f64(),
        "expected": snapshot.expected,
        "outcome": snapshot.outcome.as_ref().map(outcome_json),
        "stages": stages,
        "edges": snapshot.edges.iter().map(edge_json).collect::<Vec<_>>(),
        "inputs": snapshot.inputs.map(|i| json!({ "open": i.open, "quiet_for_s": i.quiet_for.as_secs_f64() })),
    })
}

/// One entry of the `edges` array of [`snapshot_json`].
fn edge_json(edge: &EdgeSnapshot) -> Value {
    json!({
        "kind": edge.kind,
        "name": edge.name,
        "role": edge.role,
        "length": edge.length,
        "groups": edge.groups.iter().map(|g| json!({
            "name": g.name,
            "pending": g.pending,
            "lag": g.lag,
            "consumers": g.consumers,
        })).collect::<Vec<_>>(),
        "age_s": edge.age.map(|a| a.as_secs_f64()),
        "stale": edge.is_stale(),
        "error": edge.error,
    })
}

/// The `outcome` object of [`snapshot_json`].
fn outcome_json(outcome: &Outcome) -> Value {
    let (kind, stage, error, signal, forced) = match outcome {
        Outcome::Finished => ("finished", None, None, None, false),
        Outcome::StoppedEarly => ("stopped_early", None, None, None, false),
        Outcome::Failed { stage, error } => ("failed", stage.as_deref(), Some(error.as_str()), None, false),
        Outcome::Interrupted { signal, forced } => ("interrupted", None, None, Some(signal.as_str()), *forced),
    };
    json!({
        "kind": kind,
        "stage": stage,
        "error": error,
        "signal": signal,
        "forced": forced,
        "line": outcome_line(outcome),
    })
}

/// Writes one JSON object per snapshot, one per line, to any writer.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use paipa::{iter::Pipeline, report::JsonReporter, Debugger};
///
/// #[derive(Clone, Default)]
/// struct Buf(Arc<Mutex<Vec<u8>>>);
/// impl std::io::Write for Buf {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
/// let buf = Buf::default();
/// let debugger = Debugger::silent().reporter(JsonReporter::new(buf.clone()));
/// paipa::iter::consume(Pipeline::new(0..5u8).debug(debugger));
/// let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
/// let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
/// assert_eq!(last["final"], true);
/// assert_eq!(last["stages"][0]["count"], 5);
/// ```
#[derive(Debug)]
pub struct JsonReporter<W> {
    out: W,
}

impl<W: Write + Send> JsonReporter<W> {
    /// Reports to `out` (a file, stdout, a socket...).
    pub fn new(out: W) -> Self {
        JsonReporter { out }
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn report(&mut self, snapshot: &Snapshot) {
        let line = snapshot_json(snapshot).to_string();
        if writeln!(self.out, "{line}").and_then(|_| self.out.flush()).is_err() {
            tracing::warn!(target: "paipa::debugger", "the JSON reporter could not write a snapshot");
        }
    }
}
