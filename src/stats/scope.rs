//! The stage a thread works for: while a [`StageScope`] lives, the thread's
//! user counters ([`count`](super::count)) and, with a counting allocator,
//! its allocations go to that stage's cell.

use std::sync::Arc;

use super::cell::{AllocScope, StageCell};
use super::TargetGuard;

/// Charges this thread's counters and allocations to one stage until it is
/// dropped, then restores what was charged before (also on unwind). It
/// holds the stage's `Arc`, so the cell outlives the thread-local pointers
/// to it: this is the one safe way the threaded core enters a stage.
///
/// Fields drop in declaration order: both guards are restored before the
/// `Arc` they point into is released.
pub(crate) struct StageScope {
    _mem: AllocScope,
    _counters: TargetGuard,
    _cell: Arc<StageCell>,
}

impl StageScope {
    /// Enters `cell`'s stage on this thread.
    pub(crate) fn enter(cell: Arc<StageCell>) -> Self {
        // SAFETY: the scope owns an `Arc` of the cell and drops it after
        // both guards (field order), so the cell outlives them.
        let counters = unsafe { TargetGuard::install(&*cell) };
        // SAFETY: as above.
        let mem = unsafe { AllocScope::enter(&cell) };
        StageScope {
            _mem: mem,
            _counters: counters,
            _cell: cell,
        }
    }
}
