//! Point-in-time copies of a pipeline's stats, handed to reporters and
//! readable by the program after (or during) a run.

use std::time::Duration;

/// A point-in-time copy of every stage of one pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The pipeline's name (`"pipeline"` unless given).
    pub pipeline: String,
    /// Wall time since the pipeline started running.
    pub elapsed: Duration,
    /// One entry per stage, the source first, in pipeline order.
    pub stages: Vec<StageSnapshot>,
    /// True for the one report made when the run is over.
    pub is_final: bool,
    /// Work that has been inside one stage longer than the debugger's
    /// watchdog threshold, right now (empty without a watchdog).
    pub stalls: Vec<Stall>,
    /// How many items the source gives in all, when that is known before
    /// the end (an exact `size_hint` of a threaded pipeline's lazy source,
    /// plus the items put before the run): progress views show a bar and
    /// an ETA from it.
    pub expected: Option<u64>,
}

/// Work stuck inside one stage: a batch (threaded stages) or a call
/// (iterator stages) that has not come out for `stuck_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The stage's name.
    pub stage: String,
    /// The worker (0 for iterator stages).
    pub worker: usize,
    /// How long it has been inside the stage.
    pub stuck_for: Duration,
}

/// A point-in-time copy of one stage's stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSnapshot {
    /// The stage's name.
    pub name: String,
    /// Worker threads of the stage (1 for iterator pipelines).
    pub workers: usize,
    /// Items that came out of the stage (a batch counts as its length where
    /// the stage says so).
    pub count: u64,
    /// Items that went into the stage (threaded stages; for iterator stages,
    /// the upstream stage's count).
    pub count_in: u64,
    /// Items dropped by a skip policy.
    pub skipped: u64,
    /// Retries made.
    pub retried: u64,
    /// Items that failed for good.
    pub failed: u64,
    /// Items abandoned because the run was stopped early (a failure
    /// elsewhere, or the consumer went away). For threaded stages,
    /// `count_in = count + skipped + failed + discarded` on stages that emit
    /// one item per input.
    pub discarded: u64,
    /// Meta entries that came out of the stage (threaded stages).
    pub metas: u64,
    /// Exclusive busy time: time inside this stage's own code, summed over
    /// its workers, not counting time spent waiting for upstream.
    pub busy: Duration,
    /// Time the workers waited for input (threaded stages).
    pub starved: Duration,
    /// Time the workers waited for space downstream (threaded stages).
    pub blocked: Duration,
    /// User CPU time.
    pub user_cpu: Duration,
    /// System CPU time.
    pub sys_cpu: Duration,
    /// Items waiting in the stage's input queue (threaded stages).
    pub queue_depth: usize,
    /// Net growth of memory attributed to this stage, in bytes.
    pub mem_growth: i64,
    /// Highest net memory growth seen in this stage, in bytes (exact with
    /// the `alloc` feature's allocator; otherwise the sampled growth).
    pub mem_peak: i64,
    /// User-named counters incremented with [`crate::stats::count`].
    pub counters: Vec<(String, u64)>,
    /// Threaded stages: each worker's split of its wall time (empty for
    /// iterator stages and the source).
    pub per_worker: Vec<WorkerSnapshot>,
}

/// One worker's split of its wall time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Processing items.
    pub busy: Duration,
    /// Waiting for input.
    pub starved: Duration,
    /// Waiting for room downstream.
    pub blocked: Duration,
}

impl StageSnapshot {
    /// Items per second of busy time: how fast this stage alone could go.
    pub fn throughput(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    /// The value of a user counter (0 if never incremented).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
    }

    /// Busy time per worker: the stage's wall-clock load.
    pub fn busy_per_worker(&self) -> Duration {
        self.busy / self.workers.max(1) as u32
    }
}

impl Snapshot {
    /// The stage with this name, if any (the first one, if names repeat).
    pub fn stage(&self, name: &str) -> Option<&StageSnapshot> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Busy time summed over all stages.
    pub fn total_busy(&self) -> Duration {
        self.stages.iter().map(|s| s.busy).sum()
    }

    /// The share (0.0 to 1.0) of the total busy time spent in `stage`.
    pub fn share(&self, stage: &StageSnapshot) -> f64 {
        let total = self.total_busy().as_secs_f64();
        if total > 0.0 {
            stage.busy.as_secs_f64() / total
        } else {
            0.0
        }
    }

    /// The stage that limits the pipeline: the one whose busy time per worker
    /// is the highest. `None` before anything ran.
    pub fn bottleneck(&self) -> Option<&StageSnapshot> {
        self.stages
            .iter()
            .filter(|s| !s.busy.is_zero())
            .max_by_key(|s| s.busy_per_worker())
    }
}
