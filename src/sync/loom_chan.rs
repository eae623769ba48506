//! A model of the part of crossbeam-channel paipa uses, for loom.
//!
//! Every channel operation (a send, a receive, a disconnection, a `Select`
//! looking for a ready operation) happens under one lock, the hub, and every
//! change of any channel wakes every thread waiting on the hub's condition
//! variable. That makes each operation atomic and makes a lost wake-up
//! impossible *inside the channel*, which is what crossbeam guarantees; what
//! loom then explores is paipa's own use of channels: whether every thread
//! that waits is woken by the event it waits for (a message, a free slot, a
//! disconnection, the cancel signal).
//!
//! Time is not modelled: an operation with a timeout or deadline that is not
//! ready at once times out at once (a timer may fire at any moment, so this
//! is one of the behaviours of the real channel). A zero-capacity channel
//! never accepts a message (paipa never sends on one; it only drops the
//! sender to signal).
//!
//! When several operations of a `Select` are ready, crossbeam picks one at
//! random; the model picks the first or the last ready one, as set by
//! [`prefer_last`], and the tests run every model both ways. The hub also
//! orders operations on unrelated channels, as crossbeam's acquire/release
//! does not have to; paipa's own atomics are loom's and are checked under
//! loom's memory model all the same.
//!
//! The error types are crossbeam's own.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use crossbeam_channel::{
    RecvError, RecvTimeoutError, SelectTimeoutError, SendError, TryRecvError, TrySendError,
};
use loom::sync::{Condvar, Mutex, MutexGuard};

struct Hub {
    lock: Mutex<()>,
    changed: Condvar,
}

loom::lazy_static! {
    static ref HUB: Hub = Hub { lock: Mutex::new(()), changed: Condvar::new() };
}

/// Holding this is holding the hub: every channel operation is atomic.
type HubGuard = MutexGuard<'static, ()>;

fn hub() -> HubGuard {
    HUB.lock.lock().unwrap()
}

fn wait(guard: HubGuard) -> HubGuard {
    HUB.changed.wait(guard).unwrap()
}

fn changed() {
    HUB.changed.notify_all();
}

thread_local! {
    static PREFER_LAST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Which ready operation a `Select` picks on this thread from now on: the
/// last one added (`true`) or the first.
pub(crate) fn prefer_last(last: bool) {
    PREFER_LAST.with(|p| p.set(last));
}

struct State<T> {
    queue: VecDeque<T>,
    cap: usize,
    senders: usize,
    receivers: usize,
}

/// Only ever touched with the hub held, so this lock never contends.
type Chan<T> = Arc<std::sync::Mutex<State<T>>>;

fn state<T>(chan: &Chan<T>) -> std::sync::MutexGuard<'_, State<T>> {
    chan.lock().unwrap()
}

/// A bounded channel of `cap` messages.
pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(std::sync::Mutex::new(State {
        queue: VecDeque::new(),
        cap,
        senders: 1,
        receivers: 1,
    }));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// An unbounded channel.
pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(usize::MAX)
}

/// The sending side.
pub(crate) struct Sender<T> {
    chan: Chan<T>,
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    chan: Chan<T>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        let _hub = hub();
        state(&self.chan).senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        let _hub = hub();
        state(&self.chan).receivers += 1;
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let _hub = hub();
        state(&self.chan).senders -= 1;
        changed();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let _hub = hub();
        state(&self.chan).receivers -= 1;
        changed();
    }
}

impl<T> Sender<T> {
    /// Whether a send would complete now (delivered, or refused as
    /// disconnected).
    fn ready(&self, _hub: &HubGuard) -> bool {
        let s = state(&self.chan);
        s.receivers == 0 || s.queue.len() < s.cap
    }

    fn try_send_held(&self, msg: T, _hub: &HubGuard) -> Result<(), TrySendError<T>> {
        let mut s = state(&self.chan);
        if s.receivers == 0 {
            return Err(TrySendError::Disconnected(msg));
        }
        if s.queue.len() >= s.cap {
            return Err(TrySendError::Full(msg));
        }
        s.queue.push_back(msg);
        drop(s);
        changed();
        Ok(())
    }

    pub(crate) fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        let hub = hub();
        self.try_send_held(msg, &hub)
    }

    /// Waits for space; fails only if every receiver is gone.
    pub(crate) fn send(&self, msg: T) -> Result<(), SendError<T>> {
        let mut hub = hub();
        let mut msg = msg;
        loop {
            msg = match self.try_send_held(msg, &hub) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(m)) => return Err(SendError(m)),
                Err(TrySendError::Full(m)) => m,
            };
            hub = wait(hub);
        }
    }
}

impl<T> Receiver<T> {
    /// Whether a receive would complete now (a message, or the end).
    fn ready(&self, _hub: &HubGuard) -> bool {
        let s = state(&self.chan);
        s.senders == 0 || !s.queue.is_empty()
    }

    fn try_recv_held(&self, _hub: &HubGuard) -> Result<T, TryRecvError> {
        let mut s = state(&self.chan);
        match s.queue.pop_front() {
            Some(m) => {
                drop(s);
                changed();
                Ok(m)
            }
            None if s.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let hub = hub();
        self.try_recv_held(&hub)
    }

    /// Waits for a message; fails once every sender is gone and the channel
    /// is drained.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        let mut hub = hub();
        loop {
            match self.try_recv_held(&hub) {
                Ok(m) => return Ok(m),
                Err(TryRecvError::Disconnected) => return Err(RecvError),
                Err(TryRecvError::Empty) => hub = wait(hub),
            }
        }
    }

    /// Not ready at once means timed out (time is not modelled).
    pub(crate) fn recv_timeout(&self, _timeout: Duration) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(m) => Ok(m),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
        }
    }
}

/// Receives until the end.
pub(crate) struct IntoIter<T>(Receiver<T>);

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter(self)
    }
}

/// One operation a `Select` waits on.
trait Ready {
    fn ready(&self, hub: &HubGuard) -> bool;
}

struct SendOp<'a, T>(&'a Sender<T>);
struct RecvOp<'a, T>(&'a Receiver<T>);

impl<T> Ready for SendOp<'_, T> {
    fn ready(&self, hub: &HubGuard) -> bool {
        self.0.ready(hub)
    }
}

impl<T> Ready for RecvOp<'_, T> {
    fn ready(&self, hub: &HubGuard) -> bool {
        self.0.ready(hub)
    }
}

/// Waits until one of several operations can complete.
pub(crate) struct Select<'a> {
    ops: Vec<Box<dyn Ready + 'a>>,
}

/// The operation a `Select` chose; the hub stays held until it completes,
/// so nobody can take the message or the slot first.
pub(crate) struct SelectedOperation {
    index: usize,
    hub: HubGuard,
    /// As in crossbeam, a selected operation must be completed.
    completed: bool,
}

impl Drop for SelectedOperation {
    fn drop(&mut self) {
        if !self.completed && !std::thread::panicking() {
            panic!("dropped a SelectedOperation without completing it");
        }
    }
}

impl<'a> Select<'a> {
    pub(crate) fn new() -> Self {
        Select { ops: Vec::new() }
    }

    pub(crate) fn send<T>(&mut self, tx: &'a Sender<T>) -> usize {
        self.ops.push(Box::new(SendOp(tx)));
        self.ops.len() - 1
    }

    pub(crate) fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.ops.push(Box::new(RecvOp(rx)));
        self.ops.len() - 1
    }

    fn ready_index(&self, hub: &HubGuard) -> Option<usize> {
        if PREFER_LAST.with(|p| p.get()) {
            self.ops.iter().rposition(|op| op.ready(hub))
        } else {
            self.ops.iter().position(|op| op.ready(hub))
        }
    }

    /// Waits until an operation is ready.
    pub(crate) fn select(&mut self) -> SelectedOperation {
        let mut hub = hub();
        loop {
            if let Some(index) = self.ready_index(&hub) {
                return SelectedOperation {
                    index,
                    hub,
                    completed: false,
                };
            }
            hub = wait(hub);
        }
    }

    /// Waits until an operation is ready, without completing it (crossbeam's
    /// `Select::ready`; the caller then tries it, and may find it taken).
    pub(crate) fn ready(&mut self) -> usize {
        let mut hub = hub();
        loop {
            if let Some(index) = self.ready_index(&hub) {
                return index;
            }
            hub = wait(hub);
        }
    }

    /// As `ready`, but not ready at once means timed out (time is not
    /// modelled).
    pub(crate) fn ready_deadline(&mut self, _deadline: Instant) -> Result<usize, SelectTimeoutError> {
        let hub = hub();
        self.ready_index(&hub).ok_or(SelectTimeoutError)
    }

    /// Not ready at once means timed out (time is not modelled).
    pub(crate) fn select_timeout(&mut self, _timeout: Duration) -> Result<SelectedOperation, SelectTimeoutError> {
        let hub = hub();
        match self.ready_index(&hub) {
            Some(index) => Ok(SelectedOperation {
                index,
                hub,
                completed: false,
            }),
            None => Err(SelectTimeoutError),
        }
    }

    /// As `select_timeout` (time is not modelled: not ready at once means
    /// timed out). The waits with a deadline in
    /// `src/threaded/edge.rs` (for room, for a signal, for a batch) go
    /// through it.
    #[allow(dead_code)]
    pub(crate) fn select_deadline(&mut self, _deadline: Instant) -> Result<SelectedOperation, SelectTimeoutError> {
        self.select_timeout(Duration::ZERO)
    }
}

impl SelectedOperation {
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Completes a ready send. (Unused since paipa's sends wait with
    /// `ready`: kept with the rest of crossbeam's API.)
    #[allow(dead_code)]
    pub(crate) fn send<T>(mut self, tx: &Sender<T>, msg: T) -> Result<(), SendError<T>> {
        self.completed = true;
        match tx.try_send_held(msg, &self.hub) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(m)) => Err(SendError(m)),
            Err(TrySendError::Full(_)) => unreachable!("a selected send has room"),
        }
    }

    /// Completes a ready receive.
    pub(crate) fn recv<T>(mut self, rx: &Receiver<T>) -> Result<T, RecvError> {
        self.completed = true;
        match rx.try_recv_held(&self.hub) {
            Ok(m) => Ok(m),
            Err(TryRecvError::Disconnected) => Err(RecvError),
            Err(TryRecvError::Empty) => unreachable!("a selected receive has a message or the end"),
        }
    }
}
