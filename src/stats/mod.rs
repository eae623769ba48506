//! What is measured, shared by both pipeline kinds: one [`StageSnapshot`] per
//! stage inside a [`Snapshot`] of the whole pipeline at a point in time.
//!
//! Steps may count things of their own (database queries, bytes sent) with
//! [`count`]; the count is attributed to the stage running on the calling
//! thread at that moment and shows up in [`StageSnapshot::counters`].
//!
//! Edges to other processes (feature `redis`: the streams a
//! `StreamSource` reads and a `StreamSink` adds to) show up in
//! [`Snapshot::edges`], registered the same way by the source or sink on
//! the thread that uses it.

#[cfg(feature = "alloc")]
pub(crate) mod alloc;
mod alloc_counts;
mod cell;
mod clock;
pub(crate) mod edge;
pub(crate) mod heard;
mod latency;
pub(crate) mod recorder;
mod scope;
mod snapshot;

#[cfg(feature = "alloc")]
pub use alloc::CountingAlloc;
pub(crate) use cell::{AllocScope, StageCell};
pub(crate) use clock::{clock, duration_to_ticks, ticks_to_duration};
pub use clock::{peak_resident_bytes, resident_bytes, thread_cpu_time, CPU_SAMPLE_EVERY};
pub use edge::{EdgeGroup, EdgeSnapshot};
pub use latency::Latency;
pub(crate) use scope::StageScope;
pub(crate) use snapshot::CPU_BOUND;
pub use snapshot::{Limit, OpenInputs, Outcome, Snapshot, StageSnapshot, Stall, Verdict, WorkerSnapshot};

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

/// Something that can take a user counter increment: the stage (or the
/// recorder that knows which stage) running on this thread.
pub(crate) trait CounterTarget {
    fn add_counter(&self, name: &'static str, n: u64);

    /// Registers an edge probe with the stage running now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn add_edge(&self, probe: Arc<dyn edge::EdgeProbe>);
}

#[cfg(not(loom))]
thread_local! {
    static TARGET: Cell<Option<NonNull<dyn CounterTarget>>> = const { Cell::new(None) };
}

// Under loom the model's threads share OS threads, so the slot must be
// loom's per-model-thread one.
#[cfg(loom)]
loom::thread_local! {
    static TARGET: Cell<Option<NonNull<dyn CounterTarget>>> = Cell::new(None);
}

/// Adds `n` to the counter `name` of the stage running on this thread.
///
/// Call it from inside a step, for anything worth counting per stage: the
/// reference's "q" (database queries per step). Outside a measured pipeline
/// it does nothing. Reports show the total and the count per item
/// (`name/e`).
///
/// ```
/// use paipa::iter::Pipeline;
/// use paipa::Debugger;
///
/// fn lookup(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
///     it.inspect(|_| paipa::stats::count("q", 2))
/// }
/// let pipeline = Pipeline::new(0..10u32).debug(Debugger::new()).step(lookup);
/// let stats = pipeline.stats();
/// assert_eq!(paipa::iter::consume(pipeline), 10);
/// let snap = stats.snapshot();
/// assert_eq!(snap.stage("lookup").unwrap().counter("q"), 20);
/// ```
pub fn count(name: &'static str, n: u64) {
    TARGET.with(|t| {
        if let Some(ptr) = t.get() {
            // SAFETY: a target is installed only by `TargetGuard`, which
            // removes it (restoring the previous one) before the target can be
            // dropped, also when unwinding.
            unsafe { ptr.as_ref() }.add_counter(name, n);
        }
    });
}

/// Registers `probe` with the stage running on this thread (the way
/// [`count`] finds it), so that its edge shows in the pipeline's
/// snapshots; false outside a measured pipeline (nothing is registered).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn watch_edge(probe: Arc<dyn edge::EdgeProbe>) -> bool {
    TARGET.with(|t| match t.get() {
        Some(ptr) => {
            // SAFETY: as in `count`.
            unsafe { ptr.as_ref() }.add_edge(probe);
            true
        }
        None => false,
    })
}

/// Installs a counter target on this thread for as long as it lives, and
/// restores the previous one when dropped (also on unwind).
pub(crate) struct TargetGuard {
    previous: Option<NonNull<dyn CounterTarget>>,
}

impl TargetGuard {
    /// # Safety
    /// `target` must outlive the guard.
    pub(crate) unsafe fn install(target: &dyn CounterTarget) -> Self {
        // SAFETY: the caller promises that the target outlives the guard; the
        // lifetime is erased only for storage in the thread-local.
        let ptr: NonNull<dyn CounterTarget> = unsafe {
            std::mem::transmute::<NonNull<dyn CounterTarget + '_>, NonNull<dyn CounterTarget>>(NonNull::from(target))
        };
        let previous = TARGET.with(|t| t.replace(Some(ptr)));
        TargetGuard { previous }
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        TARGET.with(|t| t.set(self.previous));
    }
}
