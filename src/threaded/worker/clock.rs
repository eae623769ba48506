//! A worker's clock: its wall time split into busy, starved and blocked,
//! and its CPU time sampled, published to its stage's cell.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::stats::{clock, duration_to_ticks, thread_cpu_time, StageCell};

/// How often a worker reads its thread's CPU time.
const CPU_EVERY: Duration = Duration::from_millis(50);

/// Splits a worker's wall time into busy, starved and blocked, and samples
/// its CPU time; publishes to the stage's cell at every `mark`.
pub(crate) struct WorkerClock {
    cell: Arc<StageCell>,
    index: usize,
    last: u64,
    /// Raw ticks spent waiting for input since the last mark.
    pub(crate) starved: u64,
    /// Raw ticks since the last mark that belong to another stage (a
    /// chained one, run on this thread): neither busy, starved nor blocked
    /// here.
    pub(crate) excluded: u64,
    /// User and system CPU since the last sample that belong to another
    /// stage (a chained one, run on this thread).
    pub(crate) excluded_cpu: (Duration, Duration),
    cpu: (Duration, Duration),
    cpu_next: u64,
    cpu_every: u64,
    /// A chained stage's clock: its CPU is read around each of its own
    /// calls (the thread also runs the stage before it).
    own_calls_only: bool,
}

impl WorkerClock {
    pub(crate) fn start(cell: Arc<StageCell>, index: usize) -> Self {
        let now = clock().raw();
        let cpu_every = duration_to_ticks(CPU_EVERY);
        WorkerClock {
            cell,
            index,
            last: now,
            starved: 0,
            excluded: 0,
            excluded_cpu: (Duration::ZERO, Duration::ZERO),
            own_calls_only: false,
            cpu: thread_cpu_time(),
            cpu_next: now + cpu_every,
            cpu_every,
        }
    }

    /// Publishes the time since the previous mark: what was not spent
    /// starved or blocked was busy.
    pub(crate) fn mark(&mut self, blocked: &mut u64) -> u64 {
        let now = clock().raw();
        let elapsed = now
            .saturating_sub(self.last)
            .saturating_sub(std::mem::take(&mut self.excluded));
        let waiting = self.starved + *blocked;
        let busy = elapsed.saturating_sub(waiting);
        self.cell.busy_ticks.fetch_add(busy, Relaxed);
        self.cell.starved_ticks.fetch_add(self.starved, Relaxed);
        self.cell.blocked_ticks.fetch_add(*blocked, Relaxed);
        if let Some([b, s, k]) = self.cell.per_worker.get(self.index) {
            b.fetch_add(busy, Relaxed);
            s.fetch_add(self.starved, Relaxed);
            k.fetch_add(*blocked, Relaxed);
        }
        self.starved = 0;
        *blocked = 0;
        self.last = now;
        if self.own_calls_only {
            // Read at every mark: each mark ends one of this stage's calls.
            self.sample_cpu();
        } else if now >= self.cpu_next {
            self.cpu_next = now + self.cpu_every;
            self.sample_cpu();
        }
        busy
    }

    fn sample_cpu(&mut self) {
        let (u, s) = thread_cpu_time();
        let (xu, xs) = std::mem::take(&mut self.excluded_cpu);
        self.cell.user_cpu_ns.fetch_add(
            u.saturating_sub(self.cpu.0).saturating_sub(xu).as_nanos() as u64,
            Relaxed,
        );
        self.cell.sys_cpu_ns.fetch_add(
            s.saturating_sub(self.cpu.1).saturating_sub(xs).as_nanos() as u64,
            Relaxed,
        );
        self.cpu = (u, s);
    }

    /// Makes this a chained stage's clock (see `resume`).
    pub(crate) fn own_calls_only(&mut self) {
        self.own_calls_only = true;
    }

    /// Starts the next interval now, attributing nothing: a chained stage
    /// counts only the time inside its own calls.
    pub(crate) fn resume(&mut self) {
        self.last = clock().raw();
        self.starved = 0;
        self.excluded = 0;
        if self.own_calls_only {
            self.cpu = thread_cpu_time();
            self.excluded_cpu = (Duration::ZERO, Duration::ZERO);
        }
    }

    /// The last mark and CPU reading of a worker that is ending.
    pub(crate) fn last_mark(mut self, blocked: &mut u64) {
        self.mark(blocked);
        self.sample_cpu();
    }
}
