//! The hops between stages: bounded channels of batches, and the cancel
//! signal that wakes every blocked sender and receiver.
//!
//! Shutdown protocol (why it cannot deadlock):
//! - **End of input** is disconnection. Each worker owns a clone of its
//!   output `Sender`; when its input is disconnected and drained it runs its
//!   finish hook, flushes, and drops the clone. When the last worker of a
//!   stage does so, the next stage's input is disconnected in turn. No
//!   sentinel values, no polling.
//! - **Downstream gone** (the consumer dropped its outputs, or an iterator
//!   step stopped pulling): a send finds the edge disconnected, the sending
//!   stage stops taking input and drops its receiver, and so on up to the
//!   source. Stages downstream of the stop finish normally.
//! - **Cancel** (a failure, or an abort) drops the only
//!   `Sender` of a zero-capacity signal channel. Every blocking operation is a
//!   `Select` over its data channel *and* that signal, so every thread blocked
//!   anywhere wakes at once, discards what it holds (counted), and returns.
//!   A send checks the cancel flag before every attempt (also between its
//!   yields, and after every wake-up: it waits with `Select::ready` and
//!   never lets `Select` pick the send, which it would do at random when
//!   room and the cancel are both ready), so a send that starts, or wakes,
//!   after the cancel gives its message back. One that checked the flag
//!   just before the cancel may still land after the receiving stage made
//!   its final drain: it is left on the edge, counted as the edge's
//!   `queue_depth` in the final report.
//! - Capacity is bounded on every edge, so memory is bounded; since nothing
//!   ever waits on anything but a channel operation that also watches the
//!   signal, a cancelled run always ends, and every thread is joined before
//!   `run` returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::chan::{bounded, Receiver, Select, Sender, TryRecvError, TrySendError};

use super::step::Meta;
use crate::stats::clock;
use crate::sync::{AtomicBool, Mutex};

/// What travels on an edge.
pub(crate) enum Msg<T> {
    Items(Vec<T>),
    Meta(Meta),
}

/// The run-wide stop signal.
#[derive(Debug)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
    rx: Receiver<()>,
}

impl Cancel {
    pub(crate) fn new() -> Arc<Self> {
        let (tx, rx) = bounded(0);
        Arc::new(Cancel {
            flag: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            rx,
        })
    }

    /// Raises the flag and wakes every blocked operation (idempotent).
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The signal's receiving end: it disconnects on cancel.
    pub(crate) fn rx(&self) -> &Receiver<()> {
        &self.rx
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Sleeps for `d` unless cancelled first; returns false if cancelled.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        !matches!(
            self.rx.recv_timeout(d),
            Err(crate::sync::chan::RecvTimeoutError::Disconnected)
        )
    }
}

/// How an edge of `capacity` items is laid out: `slots` batches of at most
/// `batch` items each (so at most `capacity` items wait on the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) slots: usize,
    pub(crate) batch: usize,
}

/// Times a blocked sender or receiver yields its time slice before it
/// sleeps on the channel (once under loom, which explores both paths
/// either way).
const YIELDS: usize = if cfg!(loom) { 1 } else { 8 };

/// Largest batch handed over in one hop.
const MAX_BATCH: usize = 4096;

impl Layout {
    /// Two slots (double buffering: one batch is filled while the other is
    /// taken), each of half the capacity, up to `MAX_BATCH` items.
    pub(crate) fn for_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let slots = if capacity == 1 {
            1
        } else {
            capacity.div_ceil(MAX_BATCH).max(2)
        };
        Layout {
            slots,
            batch: capacity / slots,
        }
    }
}

/// Makes a bounded edge.
pub(crate) fn edge<T>(layout: Layout) -> (Sender<Msg<T>>, Receiver<Msg<T>>) {
    bounded(layout.slots)
}

/// Sends `msg`, waiting for space unless the run is cancelled; time spent
/// waiting is added to `blocked` (raw ticks). Gives the message back if it
/// could not be delivered (cancelled, or nobody receives any more).
pub(crate) fn send<T>(tx: &Sender<Msg<T>>, msg: Msg<T>, cancel: &Cancel, blocked: &mut u64) -> Result<(), Msg<T>> {
    // Cancel first: a send that starts after a cancel puts nothing on the
    // edge, so what a stopping stage drains is all there is (see the module
    // doc for the one race left, and how it is counted).
    if cancel.is_cancelled() {
        return Err(msg);
    }
    let t0 = clock().raw();
    let mut msg = msg;
    // Yield a few times before sleeping: on a busy machine the receiver is
    // often runnable and frees a slot within a time slice, which is far
    // cheaper than a sleep and a wake-up.
    for _ in 0..YIELDS {
        msg = match tx.try_send(msg) {
            Ok(()) => {
                *blocked += clock().raw().saturating_sub(t0);
                return Ok(());
            }
            Err(TrySendError::Disconnected(m)) => return Err(m),
            Err(TrySendError::Full(m)) => m,
        };
        crate::sync::yield_now();
        // A cancel that came while this sender yielded wins.
        if cancel.is_cancelled() {
            *blocked += clock().raw().saturating_sub(t0);
            return Err(msg);
        }
    }
    // Wait until there is room or the run is cancelled, without letting
    // `Select` send: when both are ready it picks at random, and a message
    // sent after the cancel would land behind the receiver's final drain.
    // So the cancel is checked after every wake-up, before each attempt.
    let result = loop {
        let mut sel = Select::new();
        sel.send(tx);
        sel.recv(&cancel.rx);
        sel.ready();
        if cancel.is_cancelled() {
            break Err(msg);
        }
        msg = match tx.try_send(msg) {
            Ok(()) => break Ok(()),
            Err(TrySendError::Disconnected(m)) => break Err(m),
            Err(TrySendError::Full(m)) => m,
        };
    };
    *blocked += clock().raw().saturating_sub(t0);
    result
}

/// What a receive gave.
pub(crate) enum Recv<T> {
    Msg(Msg<T>),
    /// Every sender is gone and the channel is drained.
    End,
    Cancelled,
    /// Nothing arrived within the timeout.
    Idle,
}

/// Takes a message if one is ready.
pub(crate) fn try_recv<T>(rx: &Receiver<Msg<T>>) -> Option<Recv<T>> {
    match rx.try_recv() {
        Ok(m) => Some(Recv::Msg(m)),
        Err(TryRecvError::Disconnected) => Some(Recv::End),
        Err(TryRecvError::Empty) => None,
    }
}

/// Waits for a message (up to `timeout`, if given) unless the run is
/// cancelled; time spent waiting is added to `starved` (raw ticks).
pub(crate) fn recv<T>(rx: &Receiver<Msg<T>>, cancel: &Cancel, timeout: Option<Duration>, starved: &mut u64) -> Recv<T> {
    if cancel.is_cancelled() {
        return Recv::Cancelled;
    }
    let t0 = clock().raw();
    if timeout.is_none() {
        for _ in 0..YIELDS {
            crate::sync::yield_now();
            match rx.try_recv() {
                Ok(m) => {
                    *starved += clock().raw().saturating_sub(t0);
                    return Recv::Msg(m);
                }
                Err(TryRecvError::Disconnected) => return Recv::End,
                Err(TryRecvError::Empty) if cancel.is_cancelled() => return Recv::Cancelled,
                Err(TryRecvError::Empty) => {}
            }
        }
    }
    let mut sel = Select::new();
    let data = sel.recv(rx);
    sel.recv(&cancel.rx);
    let op = match timeout {
        Some(t) => sel.select_timeout(t).ok(),
        None => Some(sel.select()),
    };
    let got = match op {
        None => Recv::Idle,
        Some(op) if op.index() == data => match op.recv(rx) {
            Ok(m) => Recv::Msg(m),
            Err(_) => Recv::End,
        },
        Some(op) => {
            let _ = op.recv(&cancel.rx);
            Recv::Cancelled
        }
    };
    *starved += clock().raw().saturating_sub(t0);
    got
}

#[cfg(test)]
mod tests {
    use super::Layout;

    #[test]
    fn layouts_bound_the_items_waiting_on_an_edge() {
        assert_eq!(Layout::for_capacity(1), Layout { slots: 1, batch: 1 });
        assert_eq!(Layout::for_capacity(2), Layout { slots: 2, batch: 1 });
        assert_eq!(Layout::for_capacity(64), Layout { slots: 2, batch: 32 });
        assert_eq!(Layout::for_capacity(1000), Layout { slots: 2, batch: 500 });
        assert_eq!(Layout::for_capacity(10_000), Layout { slots: 3, batch: 3333 });
        for c in 1..2000 {
            let l = Layout::for_capacity(c);
            assert!(l.slots * l.batch <= c && l.batch >= 1, "capacity {c}: {l:?}");
        }
    }
}
