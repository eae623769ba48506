//! The run-wide stop signal, and the one rule every wait of a run keeps:
//! it observes the cancel.
//!
//! - A blocking wait selects over its channel and [`Cancel::rx`], which
//!   disconnects on cancel (see `edge.rs`).
//! - A sleep is [`Cancel::sleep`].
//! - A task polled on a runtime (an async stage's driver) polls
//!   [`Cancel::poll_cancelled`], which wakes it on cancel: it does not
//!   depend on another thread passing the cancel on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::sync::chan::{bounded, Receiver, Sender};
use crate::sync::{AtomicBool, Mutex};

/// The run-wide stop signal.
#[derive(Debug)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
    rx: Receiver<()>,
    /// Tasks to wake on cancel (one per async stage that waits). A plain
    /// lock, outside the loom models: no modelled thread polls a task.
    wakers: std::sync::Mutex<Vec<Waker>>,
}

impl Cancel {
    pub(crate) fn new() -> Arc<Self> {
        let (tx, rx) = bounded(0);
        Arc::new(Cancel {
            flag: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            rx,
            wakers: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Raises the flag and wakes every blocked operation and every task
    /// waiting in [`Cancel::poll_cancelled`] (idempotent).
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    /// The signal's receiving end: it disconnects on cancel.
    pub(crate) fn rx(&self) -> &Receiver<()> {
        &self.rx
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Ready once the run is cancelled; until then the task is woken by the
    /// cancel. The waker is registered before the flag is read again, under
    /// the lock `cancel` takes, so a cancel in between is never missed.
    #[cfg_attr(not(all(feature = "async", not(loom))), allow(dead_code))]
    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if self.flag.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Sleeps for `d` unless cancelled first; returns false if cancelled.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        !matches!(
            self.rx.recv_timeout(d),
            Err(crate::sync::chan::RecvTimeoutError::Disconnected)
        )
    }
}
