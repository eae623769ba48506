//! Memory per stage (feature `alloc`): a counting global allocator that
//! attributes every allocation and free to the stage running on the calling
//! thread at that moment.
//!
//! Opt in from your binary:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: paipa::stats::CountingAlloc = paipa::stats::CountingAlloc::system();
//! # fn main() {}
//! ```
//!
//! A stage's net growth is what it allocated minus what it freed; memory
//! allocated in one stage and freed in another (an item handed downstream)
//! shows as growth in the first and shrinkage in the second. The peak is the
//! highest net growth seen. Without the allocator installed, stages show the
//! process's resident memory growth split by busy time instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::alloc_counts::AllocCounts;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The stage running on this thread (null outside a pipeline). Const
    /// initialised and without a destructor, so the allocator may read it.
    static CURRENT: Cell<*const AllocCounts> = const { Cell::new(std::ptr::null()) };
}

/// Records that a [`CountingAlloc`] allocates: a load first, and a store
/// only the first time, so allocations on every thread do not keep writing
/// (and bouncing) the flag's shared cache line.
#[inline(always)]
fn mark_installed() {
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
}

/// Whether a [`CountingAlloc`] is the global allocator (it has allocated).
pub(crate) fn installed() -> bool {
    INSTALLED.load(Relaxed)
}

/// Makes `cell` the stage charged for this thread's allocations; returns the
/// previous one, to restore.
#[inline(always)]
pub(crate) fn set_current(cell: *const AllocCounts) -> *const AllocCounts {
    CURRENT.with(|c| c.replace(cell))
}

#[inline(always)]
fn account(delta: i64) {
    // `try_with`: during thread teardown the slot may be gone.
    let _ = CURRENT.try_with(|c| {
        let cell = c.get();
        if !cell.is_null() {
            // SAFETY: a cell is made current only while a pipeline that owns
            // it (through an `Arc`) runs on this thread, and is replaced
            // before that pipeline's stage returns control (see `set_current`
            // callers), so the pointer is live here.
            let cell = unsafe { &*cell };
            let now = cell.net.fetch_add(delta, Relaxed) + delta;
            if delta > 0 {
                cell.peak.fetch_max(now, Relaxed);
            }
        }
    });
}

/// A global allocator that counts bytes per pipeline stage, wrapping another
/// allocator (the system one by default). Overhead: one thread-local read
/// per allocation, plus two relaxed atomic operations inside a stage (see
/// docs/BENCHMARKS.md).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc<A = System>(pub A);

impl CountingAlloc<System> {
    /// Counting on top of the system allocator.
    pub const fn system() -> Self {
        CountingAlloc(System)
    }
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator; the
// bookkeeping neither allocates nor touches the returned memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        mark_installed();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as i64);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        mark_installed();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as i64);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) };
        account(-(layout.size() as i64));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as i64 - layout.size() as i64);
        }
        p
    }
}
