//! The synchronisation primitives paipa's own protocols are built on, from
//! `loom` under `--cfg loom` (so the model checker can explore every
//! interleaving of the code that uses them) and from `std` otherwise.
//!
//! Channels are crossbeam's in every normal build. Under `--cfg loom`,
//! [`chan`] is a small model of the part of crossbeam's API paipa uses
//! (bounded channels, `Select`), built on loom's mutex and condition
//! variable, so that the wake-ups paipa relies on (cancel, end of input,
//! downstream gone, the reorder window's tokens) are inside the model too.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

/// Bounded channels and `Select`: crossbeam's.
#[cfg(not(loom))]
pub(crate) mod chan {
    pub(crate) use crossbeam_channel::{
        bounded, unbounded, Receiver, RecvError, RecvTimeoutError, Select, Sender, TryRecvError, TrySendError,
    };
}

/// Bounded channels and `Select`: a loom model of crossbeam's.
#[cfg(loom)]
#[path = "loom_chan.rs"]
pub(crate) mod chan;

pub(crate) mod deadline;
