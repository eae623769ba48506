//! Point-in-time copies of a pipeline's stats, handed to reporters and
//! readable by the program after (or during) a run.

use std::time::Duration;

use super::{EdgeSnapshot, Latency};

/// A point-in-time copy of every stage of one pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// How the run ended, once it has: on the final report (and a threaded
    /// run's [`Summary`](crate::threaded::Summary)), and on an iterator
    /// pipeline's stats read after its end; `None` while it runs.
    pub outcome: Option<Outcome>,
    /// This process's edges to others (feature `redis`: each stream a
    /// `StreamSource` of the pipeline reads or a `StreamSink` adds to),
    /// as last read from the server: refreshed before each periodic
    /// report and at the end of the run, never on the pipeline's threads.
    /// Empty for a pipeline with none.
    pub edges: Vec<EdgeSnapshot>,
    /// A threaded run with live [`Input`](crate::threaded::Input) handles
    /// still open: how many, and how long since the last put. A run fed
    /// through handles ends only once every handle is dropped or finished,
    /// so a handle kept by mistake shows here. `None` once none is open.
    pub inputs: Option<OpenInputs>,
}

/// The live input handles a running pipeline waits on (see
/// [`Snapshot::inputs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenInputs {
    /// Handles open now.
    pub open: u64,
    /// Time since the last put through any handle (or since the run
    /// started, if none was made).
    pub quiet_for: Duration,
}

/// How a run ended, as its final report knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every item went through and the consumer read to the end.
    Finished,
    /// The run ended before its input did: the consumer stopped reading, or
    /// the run was aborted (see each stage's `discarded`).
    StoppedEarly,
    /// A stage failed (an error its policy did not absorb, or a panic).
    Failed {
        /// The stage that failed, when one did (`None` for a failure that is
        /// not a stage's, such as a thread that could not start).
        stage: Option<String>,
        /// The error, as the run returns it.
        error: String,
    },
    /// A signal (Ctrl-C's `SIGINT`, or `SIGTERM`) stopped the run, which
    /// had opted in (see [`crate::signals`]): the input was closed and what
    /// was taken drained through, unless a second signal forced it to stop
    /// at once (`forced`; what was in flight is then `discarded`).
    Interrupted {
        /// `"SIGINT"` or `"SIGTERM"`: the last signal received.
        signal: String,
        /// True if a second signal stopped it at once.
        forced: bool,
    },
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
    /// Futures in flight right now (async stages, feature `async`; 0 for
    /// every other row).
    pub in_flight: u64,
    /// The bound on futures in flight of an async stage (its
    /// [`in_flight`](crate::threaded::Stage::in_flight) setting, also its
    /// `workers`); 0 for every other row.
    pub in_flight_limit: u64,
    /// Per-item latency (async stages; empty for other rows), cumulative:
    /// see [`Snapshot::since`] for the latency over an interval.
    pub latency: Latency,
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
    /// Items the stage handled: the larger of what went in and what came
    /// out, so that an n-to-1 stage (a fold, a chunker) is measured on what
    /// it takes in, and a 1-to-n stage (a flatten) on what it gives out.
    pub fn items(&self) -> u64 {
        self.count.max(self.count_in)
    }

    /// Items per second of busy time: how fast this stage alone could go,
    /// counted on [`StageSnapshot::items`] (so a fold that takes 10 000
    /// items and gives out one does not read as 0.1 items/s).
    pub fn throughput(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.items() as f64 / secs
        } else {
            0.0
        }
    }

    /// Share of CPU in the busy time (0.0 to about 1.0): close to 1 for a
    /// compute-bound stage, close to 0 for one that waits (I/O, sleep, a
    /// lock).
    pub fn cpu_ratio(&self) -> f64 {
        let busy = self.busy.as_secs_f64();
        if busy > 0.0 {
            (self.user_cpu + self.sys_cpu).as_secs_f64() / busy
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

    /// The share (0.0 to 1.0) of its wall time that a row (the source, a
    /// stage, the consumer) was busy: busy time over the run's wall time
    /// times its workers.
    pub fn utilization(&self, stage: &StageSnapshot) -> f64 {
        let wall = self.elapsed.as_secs_f64() * stage.workers.max(1) as f64;
        if wall > 0.0 {
            (stage.busy.as_secs_f64() / wall).min(1.0)
        } else {
            0.0
        }
    }

    /// What happened between `earlier` (a snapshot of the same run, taken
    /// before) and this one: counts, times, CPU, counters and latency are
    /// the differences, `elapsed` is the interval, and gauges (queue depth,
    /// in flight, memory) are this snapshot's. Judging a live run on it
    /// ([`Snapshot::verdict`], [`Snapshot::bottleneck`]) names what limits
    /// it now rather than over the whole run, so a moving bottleneck is seen
    /// when it moves. A stage `earlier` does not have is kept whole.
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::{Snapshot, StageSnapshot};
    ///
    /// let at = |secs: u64, parse_ms: u64, store_ms: u64| Snapshot {
    ///     elapsed: Duration::from_secs(secs),
    ///     stages: vec![
    ///         StageSnapshot { name: "parse".into(), workers: 1, busy: Duration::from_millis(parse_ms), ..Default::default() },
    ///         StageSnapshot { name: "store".into(), workers: 1, busy: Duration::from_millis(store_ms), ..Default::default() },
    ///     ],
    ///     ..Snapshot::default()
    /// };
    /// // parse was the slow one for the first 10 s, store for the last 2 s.
    /// let (then, now) = (at(10, 9_000, 1_000), at(12, 9_100, 2_900));
    /// assert_eq!(now.bottleneck().unwrap().name, "parse");
    /// let recent = now.since(&then);
    /// assert_eq!(recent.elapsed, Duration::from_secs(2));
    /// assert_eq!(recent.bottleneck().unwrap().name, "store");
    /// ```
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut delta = self.clone();
        delta.elapsed = self.elapsed.saturating_sub(earlier.elapsed);
        for (i, s) in delta.stages.iter_mut().enumerate() {
            let Some(e) = earlier.stages.get(i).filter(|e| e.name == s.name) else {
                continue;
            };
            s.count = s.count.saturating_sub(e.count);
            s.count_in = s.count_in.saturating_sub(e.count_in);
            s.skipped = s.skipped.saturating_sub(e.skipped);
            s.retried = s.retried.saturating_sub(e.retried);
            s.failed = s.failed.saturating_sub(e.failed);
            s.discarded = s.discarded.saturating_sub(e.discarded);
            s.metas = s.metas.saturating_sub(e.metas);
            s.busy = s.busy.saturating_sub(e.busy);
            s.starved = s.starved.saturating_sub(e.starved);
            s.blocked = s.blocked.saturating_sub(e.blocked);
            s.user_cpu = s.user_cpu.saturating_sub(e.user_cpu);
            s.sys_cpu = s.sys_cpu.saturating_sub(e.sys_cpu);
            s.latency = s.latency.since(&e.latency);
            for (name, value) in &mut s.counters {
                let before = e.counters.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v);
                *value = value.saturating_sub(before);
            }
            for (w, ew) in s.per_worker.iter_mut().zip(&e.per_worker) {
                w.busy = w.busy.saturating_sub(ew.busy);
                w.starved = w.starved.saturating_sub(ew.starved);
                w.blocked = w.blocked.saturating_sub(ew.blocked);
            }
        }
        delta
    }

    /// True for a threaded run's snapshot (its stages have worker rows and
    /// the consumer has a row of its own, the last one).
    pub fn is_threaded(&self) -> bool {
        self.stages.iter().any(|s| !s.per_worker.is_empty())
    }

    /// The consumer's row of a threaded run (the `run_with` closure, the
    /// `outputs()` iterator, or the drain of `run()`): its `busy` is the
    /// time between its reads, its `starved` the time it waited for the
    /// next item. `None` for iterator pipelines.
    pub fn consumer(&self) -> Option<&StageSnapshot> {
        match self.stages.last() {
            Some(last) if self.is_threaded() && self.stages.len() > 1 && last.per_worker.is_empty() => Some(last),
            _ => None,
        }
    }

    /// The row that limits the pipeline: the one busy for the largest share
    /// of its wall time (busy time per worker), the source and, for threaded
    /// runs, the consumer included. `None` before anything ran. See
    /// [`Snapshot::verdict`] for what to do about it.
    pub fn bottleneck(&self) -> Option<&StageSnapshot> {
        self.stages
            .iter()
            .filter(|s| !s.busy.is_zero())
            .max_by_key(|s| s.busy_per_worker())
    }

    /// What limits the run and what would help, judged for this machine
    /// (its cores from [`std::thread::available_parallelism`]).
    pub fn verdict(&self) -> Verdict {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.verdict_for_cores(cores)
    }

    /// [`Snapshot::verdict`] for a machine of `cores` cores.
    ///
    /// Every row is weighed: its busy share of its wall time (the limit is
    /// the busiest), its CPU share of its busy time (CPU-bound, or waiting),
    /// and for the source how long it was blocked (a source blocked most of
    /// the run means the limit is downstream).
    ///
    /// - Iterator pipelines run on one thread: the stage with the most busy
    ///   time is the limit ([`Limit::Source`] or [`Limit::Sequential`]).
    /// - Threaded runs: no row busy half of its time is [`Limit::Waiting`]
    ///   (the run waits for its input); two or more rows within 15% of the
    ///   busiest is [`Limit::Balanced`]; otherwise the busiest row is the
    ///   limit: the source ([`Limit::Source`]), the consumer
    ///   ([`Limit::Consumer`]), a CPU-bound stage whose workers already
    ///   cover the cores ([`Limit::Saturated`]: more workers would not help)
    ///   or a stage that more workers would speed up ([`Limit::AddWorkers`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::{Limit, Snapshot, StageSnapshot, WorkerSnapshot};
    ///
    /// let row = |name: &str, workers: usize, busy_ms: u64, cpu_ms: u64| StageSnapshot {
    ///     name: name.into(),
    ///     workers,
    ///     busy: Duration::from_millis(busy_ms),
    ///     user_cpu: Duration::from_millis(cpu_ms),
    ///     per_worker: vec![WorkerSnapshot::default(); workers],
    ///     ..StageSnapshot::default()
    /// };
    /// let snap = Snapshot {
    ///     elapsed: Duration::from_secs(1),
    ///     stages: vec![
    ///         StageSnapshot { name: "source".into(), workers: 1, ..StageSnapshot::default() },
    ///         row("parse", 2, 1_960, 1_900),
    ///         StageSnapshot { name: "consumer".into(), workers: 1, ..StageSnapshot::default() },
    ///     ],
    ///     ..Snapshot::default()
    /// };
    /// let verdict = snap.verdict_for_cores(2);
    /// assert_eq!(verdict.limit, Limit::Saturated);
    /// assert_eq!(verdict.stage.as_deref(), Some("parse"));
    /// ```
    pub fn verdict_for_cores(&self, cores: usize) -> Verdict {
        let cores = cores.max(1);
        let Some(b) = self.bottleneck() else {
            return Verdict {
                limit: Limit::Unknown,
                stage: None,
                load: 0.0,
                cores,
                others: Vec::new(),
            };
        };
        let index = self.stages.iter().position(|s| std::ptr::eq(s, b)).unwrap_or(0);
        let load = self.utilization(b);
        let verdict = |limit, others| Verdict {
            limit,
            stage: Some(b.name.clone()),
            load,
            cores,
            others,
        };
        if !self.is_threaded() {
            return verdict(if index == 0 { Limit::Source } else { Limit::Sequential }, Vec::new());
        }
        if load < 0.5 {
            return verdict(Limit::Waiting, Vec::new());
        }
        let others: Vec<String> = self
            .stages
            .iter()
            .filter(|s| !std::ptr::eq(*s, b) && self.utilization(s) >= 0.85 * load)
            .map(|s| s.name.clone())
            .collect();
        if !others.is_empty() {
            return verdict(Limit::Balanced, others);
        }
        let consumer = self.consumer().is_some_and(|c| std::ptr::eq(c, b));
        let limit = if index == 0 {
            Limit::Source
        } else if consumer {
            Limit::Consumer
        } else if b.cpu_ratio() >= CPU_BOUND && b.workers >= cores {
            Limit::Saturated
        } else {
            Limit::AddWorkers
        };
        verdict(limit, Vec::new())
    }
}

/// A stage whose CPU time is at least this share of its busy time is
/// CPU-bound (a waiting stage reads close to 0; a compute-bound one close to
/// 1, less when other processes take the cores).
pub(crate) const CPU_BOUND: f64 = 0.3;

/// What limits a run, as [`Snapshot::verdict`] judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Nothing has run yet.
    Unknown,
    /// The source (a lazy source's `next()`) is the busiest: feed it faster.
    Source,
    /// An iterator pipeline's stage takes the largest share of the one
    /// thread's time: make it faster, or run it as a threaded stage.
    Sequential,
    /// A threaded stage is busy nearly all of its wall time, and more
    /// workers would help: it waits (I/O, sleep, a lock), or it is CPU-bound
    /// with fewer workers than the machine has cores.
    AddWorkers,
    /// A CPU-bound stage whose workers already cover the machine's cores:
    /// the machine is saturated, more workers would not help.
    Saturated,
    /// The consumer (the code reading the outputs) is the busiest.
    Consumer,
    /// Several rows are about equally busy: no single bottleneck.
    Balanced,
    /// No row was busy half of its wall time: the run waits for its input.
    Waiting,
}

/// The verdict on a run: what limits it, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What limits the run.
    pub limit: Limit,
    /// The limiting row (for [`Limit::Balanced`] and [`Limit::Waiting`],
    /// the busiest one); `None` when nothing ran.
    pub stage: Option<String>,
    /// The share of its wall time the limiting row was busy (0.0 to 1.0).
    pub load: f64,
    /// The cores the verdict was judged for.
    pub cores: usize,
    /// For [`Limit::Balanced`], the other rows as busy as `stage`.
    pub others: Vec<String>,
}
