//! The live, shared counters of one stage. Writers are the threads running
//! the stage; readers take snapshots from any thread. Every field is a
//! relaxed atomic: a snapshot is a consistent-enough picture, never a lock on
//! the hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use std::time::Duration;

use super::alloc_counts::AllocCounts;
use super::edge::{EdgeProbe, Edges};
use super::latency::LatencyCells;
use super::{ticks_to_duration, CounterTarget, StageSnapshot, WorkerSnapshot};

/// Live counters of one stage.
#[derive(Debug, Default)]
pub(crate) struct StageCell {
    /// Set at creation, or (for the pull model's pending consumer cell)
    /// when the stage after it is added; renamed by a debugger's settings.
    name: Mutex<Option<String>>,
    /// Items out (weighted where the stage says so).
    pub(crate) count: AtomicU64,
    /// Items in (threaded stages).
    pub(crate) count_in: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Items abandoned because the run was stopped (threaded stages).
    pub(crate) discarded: AtomicU64,
    /// Meta entries out (threaded stages).
    pub(crate) metas: AtomicU64,
    /// Exclusive busy time, in raw clock ticks.
    pub(crate) busy_ticks: AtomicU64,
    /// Time spent waiting for input, in raw ticks (threaded stages).
    pub(crate) starved_ticks: AtomicU64,
    /// Time spent waiting for output space, in raw ticks (threaded stages).
    pub(crate) blocked_ticks: AtomicU64,
    pub(crate) user_cpu_ns: AtomicU64,
    pub(crate) sys_cpu_ns: AtomicU64,
    pub(crate) mem_growth: AtomicI64,
    /// Bytes allocated minus bytes freed while this stage ran, and their
    /// peak (feature `alloc`, with `CountingAlloc` installed).
    pub(crate) alloc: AllocCounts,
    pub(crate) counters: Mutex<Vec<(&'static str, u64)>>,
    /// Per worker: raw clock reading when its current batch entered the
    /// stage, 0 while it waits. Read by the watchdog.
    pub(crate) busy_since: Vec<AtomicU64>,
    /// Per worker: busy, starved and blocked raw ticks.
    pub(crate) per_worker: Vec<[AtomicU64; 3]>,
    /// A source's known length plus one (0: not known).
    expected: AtomicU64,
    /// Futures in flight right now (async stages): a gauge.
    pub(crate) in_flight: AtomicU64,
    /// The bound on futures in flight (async stages; 0 for others).
    pub(crate) in_flight_limit: AtomicU64,
    /// Per-item latency (async stages), made on first use.
    latency: OnceLock<LatencyCells>,
    /// Edges registered by code running in this stage (feature `redis`).
    pub(crate) edges: Edges,
    /// A threaded run's source row: live `Input` handles now open.
    pub(crate) open_inputs: AtomicU64,
    /// A threaded run's source row: raw clock reading of the last put
    /// through an `Input` handle (0: none yet).
    pub(crate) last_put: AtomicU64,
}

/// Whether memory is counted by the allocator (feature `alloc`, installed).
fn alloc_counted() -> bool {
    #[cfg(feature = "alloc")]
    {
        super::alloc::installed()
    }
    #[cfg(not(feature = "alloc"))]
    {
        false
    }
}

/// Charges this thread's allocations to `cell` while alive (feature
/// `alloc`); restores the previous stage when dropped.
pub(crate) struct AllocScope {
    #[cfg(feature = "alloc")]
    previous: *const AllocCounts,
}

impl AllocScope {
    /// # Safety
    /// `cell` must outlive the scope.
    #[inline(always)]
    pub(crate) unsafe fn enter(_cell: &StageCell) -> Self {
        AllocScope {
            #[cfg(feature = "alloc")]
            previous: super::alloc::set_current(&_cell.alloc),
        }
    }
}

impl Drop for AllocScope {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(feature = "alloc")]
        super::alloc::set_current(self.previous);
    }
}

impl StageCell {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        let cell = StageCell::default();
        cell.set_name(name);
        cell
    }

    /// A cell for a stage of `workers` workers.
    pub(crate) fn with_workers(name: impl Into<String>, workers: usize) -> Self {
        let mut cell = StageCell::new(name);
        cell.busy_since = (0..workers).map(|_| AtomicU64::new(0)).collect();
        cell.per_worker = (0..workers).map(|_| Default::default()).collect();
        cell
    }

    /// Worker `worker` starts (`now` > 0) or ends (`now` = 0) a batch.
    #[inline]
    pub(crate) fn mark_busy(&self, worker: usize, now: u64) {
        if let Some(slot) = self.busy_since.get(worker) {
            slot.store(now, Relaxed);
        }
    }

    /// Says how many items the source will give, when that is known.
    pub(crate) fn set_expected(&self, items: Option<u64>) {
        self.expected.store(items.map_or(0, |n| n.saturating_add(1)), Relaxed);
    }

    /// How many items the source will give, if known.
    pub(crate) fn expected(&self) -> Option<u64> {
        self.expected.load(Relaxed).checked_sub(1)
    }

    /// A cell whose name is set later with [`StageCell::set_name`].
    pub(crate) fn unnamed() -> Self {
        StageCell::default()
    }

    /// Names (or renames) the cell.
    pub(crate) fn set_name(&self, name: impl Into<String>) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.into());
    }

    pub(crate) fn name(&self) -> String {
        let name = self.name.lock().unwrap_or_else(|e| e.into_inner());
        name.clone().unwrap_or_else(|| "consumer".to_string())
    }

    /// Adds to a relaxed counter that only one thread writes: a plain load
    /// and store, cheaper than a locked read-modify-write.
    #[inline(always)]
    pub(crate) fn bump(field: &AtomicU64, n: u64) {
        field.store(field.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// A snapshot of the counters as they are now; `busy`, `starved` and
    /// `blocked` are converted from raw ticks as stored.
    pub(crate) fn snapshot(&self, workers: usize) -> StageSnapshot {
        StageSnapshot {
            name: self.name(),
            workers,
            count: self.count.load(Relaxed),
            count_in: self.count_in.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            retried: self.retried.load(Relaxed),
            failed: self.failed.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            metas: self.metas.load(Relaxed),
            busy: ticks_to_duration(self.busy_ticks.load(Relaxed)),
            starved: ticks_to_duration(self.starved_ticks.load(Relaxed)),
            blocked: ticks_to_duration(self.blocked_ticks.load(Relaxed)),
            user_cpu: Duration::from_nanos(self.user_cpu_ns.load(Relaxed)),
            sys_cpu: Duration::from_nanos(self.sys_cpu_ns.load(Relaxed)),
            queue_depth: 0,
            in_flight: self.in_flight.load(Relaxed),
            in_flight_limit: self.in_flight_limit.load(Relaxed),
            latency: self.latency.get().map(LatencyCells::read).unwrap_or_default(),
            mem_growth: if alloc_counted() {
                self.alloc.net.load(Relaxed)
            } else {
                self.mem_growth.load(Relaxed)
            },
            mem_peak: if alloc_counted() {
                self.alloc.peak.load(Relaxed)
            } else {
                self.mem_growth.load(Relaxed).max(0)
            },
            counters: self.counters(),
            per_worker: self
                .per_worker
                .iter()
                .map(|[b, s, k]| WorkerSnapshot {
                    busy: ticks_to_duration(b.load(Relaxed)),
                    starved: ticks_to_duration(s.load(Relaxed)),
                    blocked: ticks_to_duration(k.load(Relaxed)),
                })
                .collect(),
        }
    }

    /// The stage's latency histogram (made on first use: only async
    /// stages record one).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn latency(&self) -> &LatencyCells {
        self.latency.get_or_init(LatencyCells::default)
    }

    pub(crate) fn counters(&self) -> Vec<(String, u64)> {
        let guard = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        guard.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

impl CounterTarget for StageCell {
    fn add_counter(&self, name: &'static str, n: u64) {
        let mut guard = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        match guard.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v += n,
            None => guard.push((name, n)),
        }
    }

    fn add_edge(&self, probe: std::sync::Arc<dyn EdgeProbe>) {
        self.edges.add(probe);
    }
}
