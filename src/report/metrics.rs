//! Publishes snapshots through the `metrics` facade, labelled by pipeline
//! and stage, so any `metrics` exporter (Prometheus, DogStatsD, ...) serves
//! them unchanged. Feature `metrics`.

use metrics::{counter, gauge};

use super::Reporter;
use crate::stats::Snapshot;

/// Publishes every stage's counters and gauges through the `metrics` crate
/// at every snapshot. Names (labels `pipeline`, `stage`):
///
/// | metric | kind | meaning |
/// |---|---|---|
/// | `paipa_stage_items_total` | counter | items out of the stage |
/// | `paipa_stage_items_in_total` | counter | items into the stage |
/// | `paipa_stage_skipped_total`, `_retried_total`, `_failed_total`, `_discarded_total` | counter | policy outcomes |
/// | `paipa_stage_busy_seconds`, `_starved_seconds`, `_blocked_seconds` | gauge | time split, summed over workers |
/// | `paipa_stage_cpu_user_seconds`, `_cpu_system_seconds` | gauge | CPU time |
/// | `paipa_stage_queue_depth` | gauge | items waiting on the stage's input |
/// | `paipa_stage_workers` | gauge | worker threads (an async stage: its in-flight bound) |
/// | `paipa_stage_in_flight` | gauge | futures in flight (async stages; 0 for others) |
/// | `paipa_stage_latency_p50_seconds`, `_p99_seconds` | gauge | async stages' per-item latency over the last interval (not set for other stages, nor for an interval that finished no item) |
/// | `paipa_stage_throughput` | gauge | items per second of busy time |
/// | `paipa_stage_share` | gauge | share of the pipeline's busy time (0 to 1) |
/// | `paipa_stage_memory_growth_bytes` | gauge | memory attributed to the stage |
/// | `paipa_stage_counter_total` (label `counter`) | counter | user counters |
/// | `paipa_pipeline_elapsed_seconds` | gauge (label `pipeline`) | wall time of the run |
#[derive(Debug, Default, Clone)]
pub struct MetricsReporter {
    /// The previous report, for the latency over the last interval.
    previous: Option<Snapshot>,
}

impl MetricsReporter {
    /// A reporter publishing through the globally installed recorder.
    pub fn new() -> Self {
        MetricsReporter::default()
    }
}

impl Reporter for MetricsReporter {
    fn report(&mut self, snap: &Snapshot) {
        let p = snap.pipeline.clone();
        let interval = match self.previous.replace(snap.clone()) {
            Some(previous) => snap.since(&previous),
            None => snap.clone(),
        };
        gauge!("paipa_pipeline_elapsed_seconds", "pipeline" => p.clone()).set(snap.elapsed.as_secs_f64());
        for (i, s) in snap.stages.iter().enumerate() {
            let labels = [("pipeline", p.clone()), ("stage", s.name.clone())];
            let latency = &interval.stages[i].latency;
            if let (Some(p50), Some(p99)) = (latency.p50(), latency.p99()) {
                gauge!("paipa_stage_latency_p50_seconds", &labels).set(p50.as_secs_f64());
                gauge!("paipa_stage_latency_p99_seconds", &labels).set(p99.as_secs_f64());
            }
            counter!("paipa_stage_items_total", &labels).absolute(s.count);
            counter!("paipa_stage_items_in_total", &labels).absolute(s.count_in);
            counter!("paipa_stage_skipped_total", &labels).absolute(s.skipped);
            counter!("paipa_stage_retried_total", &labels).absolute(s.retried);
            counter!("paipa_stage_failed_total", &labels).absolute(s.failed);
            counter!("paipa_stage_discarded_total", &labels).absolute(s.discarded);
            gauge!("paipa_stage_busy_seconds", &labels).set(s.busy.as_secs_f64());
            gauge!("paipa_stage_starved_seconds", &labels).set(s.starved.as_secs_f64());
            gauge!("paipa_stage_blocked_seconds", &labels).set(s.blocked.as_secs_f64());
            gauge!("paipa_stage_cpu_user_seconds", &labels).set(s.user_cpu.as_secs_f64());
            gauge!("paipa_stage_cpu_system_seconds", &labels).set(s.sys_cpu.as_secs_f64());
            gauge!("paipa_stage_queue_depth", &labels).set(s.queue_depth as f64);
            gauge!("paipa_stage_workers", &labels).set(s.workers as f64);
            gauge!("paipa_stage_in_flight", &labels).set(s.in_flight as f64);
            gauge!("paipa_stage_throughput", &labels).set(s.throughput());
            gauge!("paipa_stage_share", &labels).set(snap.share(s));
            gauge!("paipa_stage_memory_growth_bytes", &labels).set(s.mem_growth as f64);
            for (name, value) in &s.counters {
                let labels = [
                    ("pipeline", p.clone()),
                    ("stage", s.name.clone()),
                    ("counter", name.clone()),
                ];
                counter!("paipa_stage_counter_total", &labels).absolute(*value);
            }
        }
    }
}
