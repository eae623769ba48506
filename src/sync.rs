//! The synchronisation primitives paipa's own protocols are built on, from
//! `loom` under `--cfg loom` (so the model checker can explore every
//! interleaving of the code that uses them) and from `std` otherwise.
//!
//! Channels (crossbeam) are not swapped: loom cannot model them, so the
//! loom tests (`src/loom_tests.rs`) cover the state around them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock};
