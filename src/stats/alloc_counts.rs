//! The counts a counting allocator keeps for a stage (feature `alloc`):
//! a value type below both the stage's cell and the allocator, so that
//! neither needs the other.

use std::sync::atomic::AtomicI64;

/// A stage's allocation counts, which the allocator updates: bytes
/// allocated minus bytes freed while the stage ran, and the highest that
/// difference reached.
#[derive(Debug, Default)]
pub(crate) struct AllocCounts {
    /// Net bytes allocated.
    pub(crate) net: AtomicI64,
    /// Highest `net` seen.
    pub(crate) peak: AtomicI64,
}
