//! Exclusive-time attribution for the pull model (iterator pipelines).
//!
//! A probe sits on the output of every stage (the source included). The
//! pipeline runs on one thread at a time, so control moves between stages
//! only through probes: entering probe `k` means stage `k + 1` (its consumer)
//! stops and stage `k` runs; returning from it means the opposite. Each
//! crossing reads the clock once and charges the time since the previous
//! crossing (`last`) to the stage that was running. Every nanosecond between
//! two crossings is charged to exactly one stage, so the shares add up to
//! the wall time of the run.
//!
//! Cell `k` holds stage `k`; one extra cell at the end stands for the
//! consumer (the caller's own code between pulls) and is never reported.
//!
//! CPU time and resident memory cost far more to read than the clock, so a
//! probe reads them only when [`CPU_SAMPLE_EVERY`] has passed, and splits
//! what was used since the previous reading among the stages in proportion
//! to the busy time each had in that window.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::edge::EdgeProbe;
use super::{
    clock, duration_to_ticks, resident_bytes, thread_cpu_time, ticks_to_duration, CounterTarget, Outcome, Snapshot,
    StageCell, StageSnapshot, CPU_SAMPLE_EVERY,
};

/// How the pull-model recorder reads the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// Every item, every stage.
    Exact,
    /// One pull in `n` (counted at the pipeline's output) is timed through
    /// every stage; the times are scaled up by the ratio of pulls.
    Sampled(u32),
}

/// Shared state of one measured iterator pipeline.
#[derive(Debug)]
pub(crate) struct Recorder {
    name: String,
    clock: quanta::Clock,
    /// Stage cells; the last one is the consumer.
    cells: Mutex<Vec<Arc<StageCell>>>,
    /// Raw clock reading at the previous crossing.
    last: AtomicU64,
    /// Index of the stage running now (`usize::MAX` before the first pull).
    current: AtomicUsize,
    /// Whether the current pull is timed (always true in exact mode).
    timing: AtomicBool,
    /// Raw clock reading after which CPU and memory are read again.
    next_sample: AtomicU64,
    sample_every: u64,
    mode: Timing,
    pulls: AtomicU64,
    timed_pulls: AtomicU64,
    /// Pulls left until the next timed one (sampled mode).
    countdown: AtomicU32,
    started: Mutex<Option<Instant>>,
    finished: Mutex<Option<Duration>>,
    sampler: Mutex<Sampler>,
    watchdog: Option<Duration>,
    /// How the run ended, once it did (for the final report).
    outcome: Mutex<Option<Outcome>>,
}

#[derive(Debug, Default)]
struct Sampler {
    thread: Option<ThreadId>,
    user: Duration,
    sys: Duration,
    rss: Option<u64>,
    /// Busy ticks per cell at the previous reading.
    ticks: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    pub(crate) fn new(name: String, source: String, mode: Timing, watchdog: Option<Duration>) -> Self {
        let clock = clock().clone();
        Recorder {
            name,
            last: AtomicU64::new(clock.raw()),
            clock,
            cells: Mutex::new(vec![Arc::new(StageCell::new(source)), Arc::new(StageCell::unnamed())]),
            current: AtomicUsize::new(usize::MAX),
            timing: AtomicBool::new(mode == Timing::Exact),
            next_sample: AtomicU64::new(0),
            sample_every: duration_to_ticks(CPU_SAMPLE_EVERY),
            mode,
            pulls: AtomicU64::new(0),
            timed_pulls: AtomicU64::new(0),
            countdown: AtomicU32::new(0),
            started: Mutex::new(None),
            finished: Mutex::new(None),
            sampler: Mutex::new(Sampler::default()),
            watchdog,
            outcome: Mutex::new(None),
        }
    }

    /// The cells of the stage at `index` and of its consumer.
    pub(crate) fn cells_at(&self, index: usize) -> (Arc<StageCell>, Arc<StageCell>) {
        let cells = lock(&self.cells);
        (cells[index].clone(), cells[index + 1].clone())
    }

    /// Names the pending consumer cell as a new stage and adds a new
    /// consumer cell after it; returns the new stage's index.
    pub(crate) fn push_stage(&self, name: String) -> usize {
        let mut cells = lock(&self.cells);
        let index = cells.len() - 1;
        cells[index].set_name(name);
        cells.push(Arc::new(StageCell::unnamed()));
        index
    }

    /// Called by the pipeline's output at the start of every pull.
    #[inline]
    pub(crate) fn begin_pull(&self) {
        let pulls = self.pulls.load(Relaxed);
        self.pulls.store(pulls + 1, Relaxed);
        if pulls == 0 {
            *lock(&self.started) = Some(Instant::now());
            self.last.store(self.clock.raw(), Relaxed);
        }
        if let Timing::Sampled(every) = self.mode {
            // A countdown rather than `pulls % every`: a division per pull
            // would cost more than the untimed probes themselves.
            let left = self.countdown.load(Relaxed);
            let timed = left == 0;
            self.countdown.store(if timed { every - 1 } else { left - 1 }, Relaxed);
            self.timing.store(timed, Relaxed);
            if timed {
                self.timed_pulls.store(self.timed_pulls.load(Relaxed) + 1, Relaxed);
                self.last.store(self.clock.raw(), Relaxed);
            }
        }
    }

    /// Whether the current pull is timed.
    #[inline(always)]
    pub(crate) fn timed(&self) -> bool {
        self.timing.load(Relaxed)
    }

    /// Stage `index` is entered from its consumer.
    #[inline(always)]
    pub(crate) fn enter(&self, index: usize, consumer: &StageCell, timed: bool) {
        self.current.store(index, Relaxed);
        if timed {
            let now = self.clock.raw();
            let spent = now.saturating_sub(self.last.load(Relaxed));
            StageCell::bump(&consumer.busy_ticks, spent);
            self.last.store(now, Relaxed);
        }
    }

    /// Stage `index` returns control to its consumer.
    #[inline(always)]
    pub(crate) fn leave(&self, index: usize, own: &StageCell, timed: bool) {
        self.current.store(index + 1, Relaxed);
        if timed {
            let now = self.clock.raw();
            let spent = now.saturating_sub(self.last.load(Relaxed));
            StageCell::bump(&own.busy_ticks, spent);
            self.last.store(now, Relaxed);
            if now >= self.next_sample.load(Relaxed) {
                self.next_sample.store(now + self.sample_every, Relaxed);
                self.sample();
                // The reading itself is charged to no stage.
                self.last.store(self.clock.raw(), Relaxed);
            }
        }
    }

    /// Reads CPU time and memory, and splits what was used since the
    /// previous reading among the stages by their busy time in the window.
    pub(crate) fn sample(&self) {
        let cells = lock(&self.cells).clone();
        let mut s = lock(&self.sampler);
        let (user, sys) = thread_cpu_time();
        let rss = resident_bytes();
        let ticks: Vec<u64> = cells.iter().map(|c| c.busy_ticks.load(Relaxed)).collect();
        let me = std::thread::current().id();
        if s.thread == Some(me) {
            let deltas: Vec<u64> = ticks
                .iter()
                .enumerate()
                .map(|(i, t)| t.saturating_sub(s.ticks.get(i).copied().unwrap_or(0)))
                .collect();
            let total: u64 = deltas.iter().sum();
            let du = user.saturating_sub(s.user).as_nanos() as f64;
            let ds = sys.saturating_sub(s.sys).as_nanos() as f64;
            let dm = match (rss, s.rss) {
                (Some(now), Some(before)) => now as f64 - before as f64,
                _ => 0.0,
            };
            let current = self.current.load(Relaxed).min(cells.len() - 1);
            for (i, cell) in cells.iter().enumerate() {
                let share = if total > 0 {
                    deltas[i] as f64 / total as f64
                } else if i == current {
                    1.0
                } else {
                    0.0
                };
                if share > 0.0 {
                    cell.user_cpu_ns.fetch_add((du * share) as u64, Relaxed);
                    cell.sys_cpu_ns.fetch_add((ds * share) as u64, Relaxed);
                    cell.mem_growth.fetch_add((dm * share) as i64, Relaxed);
                }
            }
        }
        *s = Sampler {
            thread: Some(me),
            user,
            sys,
            rss,
            ticks,
        };
    }

    /// The names of the stages so far (the pending consumer cell left out).
    pub(crate) fn stage_names(&self) -> Vec<String> {
        let cells = lock(&self.cells);
        cells[..cells.len() - 1].iter().map(|c| c.name()).collect()
    }

    /// Says how the run ended, for the final report.
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
    }

    /// The name of the stage running now, if a pull is in progress.
    pub(crate) fn current_stage(&self) -> Option<String> {
        let current = self.current.load(Relaxed);
        lock(&self.cells).get(current).map(|c| c.name())
    }

    /// Marks the run as over (idempotent): later snapshots keep its wall time.
    pub(crate) fn finish(&self) {
        if self.timing.load(Relaxed) || self.mode == Timing::Exact {
            self.sample();
        }
        let mut finished = lock(&self.finished);
        if finished.is_none() {
            let started = *lock(&self.started);
            *finished = Some(started.map_or(Duration::ZERO, |s| s.elapsed()));
        }
        self.current.store(usize::MAX, Relaxed);
    }

    /// A copy of every stage's stats now.
    pub(crate) fn snapshot(&self, is_final: bool) -> Snapshot {
        let cells = lock(&self.cells).clone();
        let finished = *lock(&self.finished);
        let elapsed = finished.unwrap_or_else(|| lock(&self.started).map_or(Duration::ZERO, |s| s.elapsed()));
        let scale = match self.mode {
            Timing::Exact => 1.0,
            Timing::Sampled(_) => {
                let timed = self.timed_pulls.load(Relaxed);
                if timed == 0 {
                    0.0
                } else {
                    self.pulls.load(Relaxed) as f64 / timed as f64
                }
            }
        };
        // The stage running right now has been busy since the last crossing.
        let current = self.current.load(Relaxed);
        let in_flight = if finished.is_none() && self.timing.load(Relaxed) {
            self.clock.raw().saturating_sub(self.last.load(Relaxed))
        } else {
            0
        };
        let stages = cells[..cells.len() - 1]
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let mut ticks = cell.busy_ticks.load(Relaxed);
                if i == current {
                    ticks += in_flight;
                }
                let count_in = if i == 0 { 0 } else { cells[i - 1].count.load(Relaxed) };
                StageSnapshot {
                    count_in,
                    busy: ticks_to_duration(ticks).mul_f64(scale),
                    ..cell.snapshot(1)
                }
            })
            .collect();
        let stalls = match self.watchdog {
            Some(limit) if in_flight > 0 && current < cells.len() - 1 => {
                let stuck_for = ticks_to_duration(in_flight);
                if stuck_for >= limit {
                    vec![super::Stall {
                        stage: cells[current].name(),
                        worker: 0,
                        stuck_for,
                    }]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        Snapshot {
            pipeline: self.name.clone(),
            elapsed,
            stages,
            is_final,
            stalls,
            expected: None,
            outcome: lock(&self.outcome).clone(),
            edges: cells.iter().flat_map(|c| c.edges.read()).collect(),
            inputs: None,
        }
    }

    /// The edge probes registered with any stage.
    pub(crate) fn edge_probes(&self) -> Vec<Arc<dyn EdgeProbe>> {
        lock(&self.cells).iter().flat_map(|c| c.edges.probes()).collect()
    }
}

impl CounterTarget for Recorder {
    fn add_counter(&self, name: &'static str, n: u64) {
        let current = self.current.load(Relaxed);
        let cell = lock(&self.cells).get(current).cloned();
        if let Some(cell) = cell {
            cell.add_counter(name, n);
        }
    }

    /// To the stage running now, or the source before the first pull.
    fn add_edge(&self, probe: Arc<dyn EdgeProbe>) {
        let current = self.current.load(Relaxed);
        let cells = lock(&self.cells);
        if let Some(cell) = cells.get(current).or(cells.first()) {
            cell.edges.add(probe);
        }
    }
}
