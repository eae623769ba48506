//! The hops between stages: channels of batches bounded by a shared item
//! budget, and the cancel signal that wakes every blocked sender and receiver.
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
//!   A send checks the cancel flag as it starts and while it waits for
//!   room in the edge's budget (between its yields, and after every
//!   wake-up: the wait selects over the edge's doorbell and the signal);
//!   once its room is reserved the message goes in at once (the channel
//!   under the budget is unbounded). So a send that starts after the
//!   cancel, or is woken by it, gives its message back. One that checked the flag
//!   just before the cancel may still land after the receiving stage made
//!   its final drain: it is left on the edge, counted as the edge's
//!   `queue_depth` in the final report.
//! - Capacity is bounded on every edge, so memory is bounded; since nothing
//!   ever waits on anything but a channel operation that also watches the
//!   signal, a cancelled run always ends, and every thread is joined before
//!   `run` returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::chan::{bounded, unbounded, Receiver, Select, Sender, TryRecvError, TrySendError};

use crate::stats::clock;
use crate::sync::AtomicUsize;
pub(crate) use crate::threaded::cancel::Cancel;
use crate::threaded::meta::Meta;

/// What travels on an edge.
pub(crate) enum Msg<T> {
    Items(Vec<T>),
    Meta(Meta),
}

/// How an edge of `capacity` items is laid out: at most `capacity` items
/// wait on it (counted by its [`Budget`], however they are batched), in
/// batches of at most `batch` items each.
///
/// The batches wait in an unbounded channel: the budget is the bound. A
/// bounded (array) channel would allocate and touch a slot for every batch
/// that could wait, up front: 32 KiB per edge at the default capacity,
/// paid by every edge of every pipeline before its first item, and mostly
/// unused (two batches of half the capacity is the usual most). The
/// unbounded channel allocates its blocks of 31 messages as they fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) capacity: usize,
    pub(crate) batch: usize,
}

/// Times a blocked sender or receiver yields its time slice before it
/// sleeps on the channel (once under loom, which explores both paths
/// either way).
const YIELDS: usize = if cfg!(loom) { 1 } else { 8 };

/// How soon a sender held back by another's claim on an edge's room looks
/// again (see [`Budget`]).
const CLAIM_POLL: Duration = Duration::from_millis(5);

/// How long a batch waits for room before it claims it: a hop between
/// stages that keep up never waits this long, so only a batch that could
/// starve pays for a claim.
const CLAIM_AFTER: Duration = Duration::from_millis(10);

/// Largest batch handed over in one hop.
const MAX_BATCH: usize = 4096;

impl Layout {
    /// Up to `capacity` single items, or two batches of half the capacity
    /// (double buffering: one is filled while the other is taken), up to
    /// `MAX_BATCH` items each.
    pub(crate) fn for_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Layout {
            capacity,
            batch: (capacity / 2).clamp(1, MAX_BATCH),
        }
    }
}

/// The bound on items waiting on an edge, shared by both ends: a sender
/// reserves room for a batch before it sends it, a receiver gives the room
/// back as it takes the batch and rings the edge's doorbell (a channel of
/// one token), which wakes one waiting sender. The token outlives a ring
/// that finds nobody waiting, so a wake-up is never lost whatever the
/// interleaving (a sender may wake once for nothing, and checks again). A
/// batch larger than the whole bound is let through alone (when nothing
/// else waits), so no batch waits for ever.
///
/// A batch of several items that has waited `CLAIM_AFTER` *claims* its
/// room: while the claim stands, other senders reserve only what leaves the claimed room
/// free, so steady single puts cannot keep the edge too full for it for
/// ever. One claim at a time; the others wait their turn as before.
#[derive(Debug)]
struct Budget {
    queued: AtomicUsize,
    capacity: usize,
    /// Room claimed by a waiting batch (0: none). Outside the loom models:
    /// a claim needs a wait of `CLAIM_AFTER`, which no model makes.
    claimed: std::sync::atomic::AtomicUsize,
}

impl Budget {
    fn new(capacity: usize) -> Self {
        Budget {
            queued: AtomicUsize::new(0),
            capacity,
            claimed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Reserves room for `n`; `claimant` says the caller holds the claim.
    fn try_reserve(&self, n: usize, claimant: bool) -> bool {
        let claimed = if claimant {
            0
        } else {
            self.claimed.load(Ordering::SeqCst)
        };
        let mut queued = self.queued.load(Ordering::SeqCst);
        loop {
            if claimed > 0 && queued + n + claimed > self.capacity {
                return false;
            }
            if queued > 0 && queued + n > self.capacity {
                return false;
            }
            match self
                .queued
                .compare_exchange_weak(queued, queued + n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }
}

/// How many bytes an item takes, for a bound by weight (see
/// `Stage::max_bytes`).
pub(crate) type ByteWeigher<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// A bound on the bytes waiting on an edge, besides its item capacity.
pub(crate) struct ByteBound<T> {
    budget: Budget,
    weigh: ByteWeigher<T>,
}

impl<T> ByteBound<T> {
    /// The bytes of a batch (a meta entry weighs nothing). A weigher that
    /// panics makes each item weigh the whole bound, so the batch travels
    /// alone and nothing is lost (the panic is logged).
    fn weight(&self, msg: &Msg<T>) -> usize {
        let Msg::Items(items) = msg else { return 0 };
        let sum = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            items.iter().fold(0usize, |acc, x| acc.saturating_add((self.weigh)(x)))
        }));
        sum.unwrap_or_else(|_| {
            tracing::error!(target: "paipa", "a max_bytes weigher panicked: its batch counts as the whole bound");
            self.budget.capacity.saturating_mul(items.len())
        })
    }

    /// The bytes of one item (see `weight`).
    pub(crate) fn item(&self, item: &T) -> usize {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.weigh)(item))).unwrap_or(self.budget.capacity)
    }

    /// The bound.
    pub(crate) fn limit(&self) -> usize {
        self.budget.capacity
    }
}

/// Why a sender could not reserve room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// The run was cancelled.
    Cancelled,
    /// Every receiver is gone.
    Gone,
    /// The deadline passed.
    Timeout,
}

/// A message on the channel under an edge, with the bytes it reserved in
/// the edge's bound by weight: the weigher runs once per message, so what
/// the receiver gives back is exactly what the sender took, whatever the
/// weigher would say a second time.
pub(crate) struct Carried<T> {
    msg: Msg<T>,
    bytes: usize,
}

/// The sending end of an edge.
pub(crate) struct EdgeTx<T> {
    tx: Sender<Carried<T>>,
    budget: Arc<Budget>,
    bytes: Option<Arc<ByteBound<T>>>,
    /// Rung by receivers when room comes back; disconnects when every
    /// receiver is gone.
    room: Receiver<()>,
}

/// The receiving end of an edge.
pub(crate) struct EdgeRx<T> {
    rx: Receiver<Carried<T>>,
    budget: Arc<Budget>,
    bytes: Option<Arc<ByteBound<T>>>,
    room: Sender<()>,
}

impl<T> Clone for EdgeTx<T> {
    fn clone(&self) -> Self {
        EdgeTx {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            bytes: self.bytes.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> Clone for EdgeRx<T> {
    fn clone(&self) -> Self {
        EdgeRx {
            rx: self.rx.clone(),
            budget: self.budget.clone(),
            bytes: self.bytes.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> Msg<T> {
    /// Items it carries (none for a meta entry).
    pub(crate) fn items(&self) -> usize {
        match self {
            Msg::Items(b) => b.len(),
            Msg::Meta(_) => 0,
        }
    }

    /// Items it carries, as a count.
    pub(crate) fn count(&self) -> u64 {
        self.items() as u64
    }

    /// The room it takes in an edge's budget: its items, and at least one
    /// (a meta entry, or an empty batch, takes one item's room), so that
    /// the budget bounds the messages waiting as well as the items: the
    /// channel under it is unbounded.
    pub(crate) fn room(&self) -> usize {
        self.items().max(1)
    }
}

impl<T> EdgeTx<T> {
    /// Reserves room for `n` items, waiting while the edge is full, unless
    /// the run is cancelled, every receiver is gone, or `deadline` passes.
    pub(crate) fn reserve(&self, n: usize, cancel: &Cancel, deadline: Option<Instant>) -> Result<(), NoRoom> {
        if n == 0 {
            return Ok(());
        }
        self.wait_for_room(&self.budget, n, cancel, deadline)
    }

    /// Reserves room for `msg`: its items, then its bytes if the edge is
    /// bounded by weight. Returns the bytes reserved.
    pub(crate) fn reserve_msg(
        &self,
        msg: &Msg<T>,
        cancel: &Cancel,
        deadline: Option<Instant>,
    ) -> Result<usize, NoRoom> {
        let n = msg.room();
        self.reserve(n, cancel, deadline)?;
        let Some(bytes) = &self.bytes else { return Ok(0) };
        let w = bytes.weight(msg);
        if w == 0 {
            return Ok(0);
        }
        match self.wait_for_room(&bytes.budget, w, cancel, deadline) {
            Ok(()) => Ok(w),
            Err(e) => {
                self.unreserve(n);
                Err(e)
            }
        }
    }

    /// Gives back the room reserved for a message that was not sent.
    pub(crate) fn unreserve_msg(&self, n: usize, w: usize) {
        self.unreserve(n);
        if let (Some(bytes), true) = (&self.bytes, w > 0) {
            bytes.budget.queued.fetch_sub(w, Ordering::SeqCst);
        }
    }

    /// The edge's bound by weight, if it has one.
    pub(crate) fn byte_bound(&self) -> Option<&Arc<ByteBound<T>>> {
        self.bytes.as_ref()
    }

    /// Waits until `n` fits in `budget`, unless the run is cancelled, every
    /// receiver is gone, or `deadline` passes. A batch of several items
    /// that has waited a while claims its room (see [`Budget`]) until it is
    /// done waiting.
    fn wait_for_room(
        &self,
        budget: &Budget,
        n: usize,
        cancel: &Cancel,
        deadline: Option<Instant>,
    ) -> Result<(), NoRoom> {
        if budget.try_reserve(n, false) {
            return Ok(());
        }
        let mut claimant = false;
        let result = self.wait_claiming(budget, n, cancel, deadline, &mut claimant);
        if claimant {
            // Senders held back by the claim look again within
            // `CLAIM_POLL` (the doorbell is the receivers' to ring).
            budget.claimed.store(0, Ordering::SeqCst);
        }
        result
    }

    fn wait_claiming(
        &self,
        budget: &Budget,
        n: usize,
        cancel: &Cancel,
        deadline: Option<Instant>,
        claimant: &mut bool,
    ) -> Result<(), NoRoom> {
        let since = Instant::now();
        let try_reserve = |claimant: &mut bool| {
            if !*claimant && n > 1 && since.elapsed() >= CLAIM_AFTER {
                *claimant = budget
                    .claimed
                    .compare_exchange(0, n.min(budget.capacity), Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
            }
            budget.try_reserve(n, *claimant)
        };
        // A receiver that is running gives room back within
        // a time slice, far cheaper than a sleep and a wake-up.
        for _ in 0..YIELDS {
            crate::sync::yield_now();
            if cancel.is_cancelled() {
                return Err(NoRoom::Cancelled);
            }
            if try_reserve(claimant) {
                return Ok(());
            }
        }
        loop {
            if try_reserve(claimant) {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(NoRoom::Cancelled);
            }
            let mut sel = Select::new();
            let room = sel.recv(&self.room);
            sel.recv(cancel.rx());
            // While a claim stands, the doorbell's one token may wake a
            // sender the claim holds back instead of the claimant, and a
            // claim given up rings nothing: every waiter looks again soon.
            let poll = (budget.claimed.load(Ordering::SeqCst) > 0).then(|| Instant::now() + CLAIM_POLL);
            let wake = match (deadline, poll) {
                (Some(d), Some(p)) => Some(d.min(p)),
                (d, p) => d.or(p),
            };
            let op = match wake {
                None => sel.select(),
                Some(w) => match sel.select_deadline(w) {
                    Ok(op) => op,
                    Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => return Err(NoRoom::Timeout),
                    Err(_) => continue,
                },
            };
            if op.index() == room {
                if op.recv(&self.room).is_err() {
                    return Err(NoRoom::Gone);
                }
            } else {
                let _ = op.recv(cancel.rx());
                return Err(NoRoom::Cancelled);
            }
        }
    }

    /// Gives back room reserved for a batch that was not sent.
    pub(crate) fn unreserve(&self, n: usize) {
        if n > 0 {
            self.budget.queued.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Sends a message whose room (`bytes` of it by weight) is reserved.
    /// The channel under the budget is unbounded, so it goes in at once (or
    /// finds every receiver gone, and the message comes back).
    pub(crate) fn put_reserved(&self, msg: Msg<T>, bytes: usize) -> Result<(), Msg<T>> {
        self.tx
            .try_send(Carried { msg, bytes })
            .map_err(|e| TrySendError::into_inner(e).msg)
    }
}

impl<T> EdgeRx<T> {
    /// Gives back the room a message took, waking a waiting sender.
    fn release(&self, c: Carried<T>) -> Msg<T> {
        self.budget.queued.fetch_sub(c.msg.room(), Ordering::SeqCst);
        if let (Some(bytes), true) = (&self.bytes, c.bytes > 0) {
            bytes.budget.queued.fetch_sub(c.bytes, Ordering::SeqCst);
        }
        let _ = self.room.try_send(());
        c.msg
    }

    /// Takes a message if one is ready.
    pub(crate) fn try_recv(&self) -> Result<Msg<T>, TryRecvError> {
        let c = self.rx.try_recv()?;
        Ok(self.release(c))
    }

    /// Waits for a message; an error once every sender is gone and the
    /// edge is drained.
    pub(crate) fn recv_blocking(&self) -> Result<Msg<T>, crate::sync::chan::RecvError> {
        let c = self.rx.recv()?;
        Ok(self.release(c))
    }

    /// As [`EdgeRx::recv_blocking`], but gives up when `stop` becomes
    /// ready (its sender sends or goes away): `None` then. A stream of a
    /// run's outputs waits so on its forwarding thread, `stop` being held
    /// by the stream (see `tokio/stream.rs`).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn recv_blocking_or_stop<S>(
        &self,
        stop: &Receiver<S>,
    ) -> Option<Result<Msg<T>, crate::sync::chan::RecvError>> {
        let mut sel = Select::new();
        let data = sel.recv(&self.rx);
        sel.recv(stop);
        let op = sel.select();
        if op.index() == data {
            Some(op.recv(&self.rx).map(|c| self.release(c)))
        } else {
            let _ = op.recv(stop);
            None
        }
    }

    /// Items waiting on the edge.
    #[allow(dead_code)]
    pub(crate) fn queued(&self) -> usize {
        self.budget.queued.load(Ordering::Relaxed)
    }
}

/// Makes a bounded edge.
pub(crate) fn edge<T>(layout: Layout) -> (EdgeTx<T>, EdgeRx<T>) {
    edge_weighed(layout, None)
}

/// Makes an edge bounded by its layout and, if given, by weight: at most
/// `limit` bytes wait on it, except that a batch always fits an empty edge.
pub(crate) fn edge_weighed<T>(layout: Layout, bytes: Option<(usize, ByteWeigher<T>)>) -> (EdgeTx<T>, EdgeRx<T>) {
    let bytes = bytes.map(|(limit, weigh)| {
        Arc::new(ByteBound {
            budget: Budget::new(limit),
            weigh,
        })
    });
    let (tx, rx) = unbounded();
    let (room_tx, room_rx) = bounded(1);
    let budget = Arc::new(Budget::new(layout.capacity));
    (
        EdgeTx {
            tx,
            budget: budget.clone(),
            bytes: bytes.clone(),
            room: room_rx,
        },
        EdgeRx {
            rx,
            budget,
            bytes,
            room: room_tx,
        },
    )
}

/// Waits until `signal` disconnects (or sends), unless the run is
/// cancelled or `deadline` passes.
pub(crate) fn wait_for_signal(signal: &Receiver<()>, cancel: &Cancel, deadline: Option<Instant>) -> Result<(), NoRoom> {
    if cancel.is_cancelled() {
        return Err(NoRoom::Cancelled);
    }
    let mut sel = Select::new();
    let on_signal = sel.recv(signal);
    sel.recv(cancel.rx());
    let op = match deadline {
        None => sel.select(),
        Some(d) => sel.select_deadline(d).map_err(|_| NoRoom::Timeout)?,
    };
    if op.index() == on_signal {
        let _ = op.recv(signal);
        Ok(())
    } else {
        let _ = op.recv(cancel.rx());
        Err(NoRoom::Cancelled)
    }
}

/// Sends `msg`, waiting for room until `deadline` (for ever if `None`)
/// unless the run is cancelled; gives the message back, with why, if it
/// could not be delivered. Cancel first: a send that starts after a cancel
/// puts nothing on the edge, so what a stopping stage drains is all there
/// is (see the module doc for the one race left, and how it is counted).
pub(crate) fn send_within<T>(
    edge: &EdgeTx<T>,
    msg: Msg<T>,
    cancel: &Cancel,
    deadline: Option<Instant>,
) -> Result<(), (Msg<T>, NoRoom)> {
    if cancel.is_cancelled() {
        return Err((msg, NoRoom::Cancelled));
    }
    let n = msg.room();
    let w = match edge.reserve_msg(&msg, cancel, deadline) {
        Ok(w) => w,
        Err(why) => return Err((msg, why)),
    };
    edge.put_reserved(msg, w).map_err(|msg| {
        edge.unreserve_msg(n, w);
        (msg, NoRoom::Gone)
    })
}

/// Sends `msg`, waiting for room unless the run is cancelled; time spent
/// waiting is added to `blocked` (raw ticks). Gives the message back if it
/// could not be delivered (cancelled, or nobody receives any more).
pub(crate) fn send<T>(edge: &EdgeTx<T>, msg: Msg<T>, cancel: &Cancel, blocked: &mut u64) -> Result<(), Msg<T>> {
    let t0 = clock().raw();
    let result = send_within(edge, msg, cancel, None).map_err(|(msg, _)| msg);
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
pub(crate) fn try_recv<T>(rx: &EdgeRx<T>) -> Option<Recv<T>> {
    match rx.try_recv() {
        Ok(m) => Some(Recv::Msg(m)),
        Err(TryRecvError::Disconnected) => Some(Recv::End),
        Err(TryRecvError::Empty) => None,
    }
}

/// Waits for a message (up to `timeout`, if given: one too long to land on
/// the clock waits for ever) unless the run is cancelled; time spent
/// waiting is added to `starved` (raw ticks).
pub(crate) fn recv<T>(edge: &EdgeRx<T>, cancel: &Cancel, timeout: Option<Duration>, starved: &mut u64) -> Recv<T> {
    if cancel.is_cancelled() {
        return Recv::Cancelled;
    }
    let t0 = clock().raw();
    if timeout.is_none() {
        for _ in 0..YIELDS {
            crate::sync::yield_now();
            match edge.try_recv() {
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
    let rx = &edge.rx;
    let mut sel = Select::new();
    let data = sel.recv(rx);
    sel.recv(cancel.rx());
    let op = match timeout.map(crate::sync::deadline::deadline) {
        Some(Some(at)) => sel.select_deadline(at).ok(),
        Some(None) | None => Some(sel.select()),
    };
    let got = match op {
        None => Recv::Idle,
        Some(op) if op.index() == data => match op.recv(rx) {
            Ok(c) => Recv::Msg(edge.release(c)),
            Err(_) => Recv::End,
        },
        Some(op) => {
            let _ = op.recv(cancel.rx());
            Recv::Cancelled
        }
    };
    *starved += clock().raw().saturating_sub(t0);
    got
}

/// Waits for a message on `edge` unless the run is cancelled or `stop`
/// becomes ready (its sender sends or goes away): `None` then. An async
/// stage's feeder waits so, `stop` being the stage's request channel, so
/// that it never outlives its stage (see `tokio/driver.rs`).
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn recv_or_stop<T, S>(edge: &EdgeRx<T>, cancel: &Cancel, stop: &Receiver<S>) -> Option<Recv<T>> {
    if cancel.is_cancelled() {
        return Some(Recv::Cancelled);
    }
    if let Some(got) = try_recv(edge) {
        return Some(got);
    }
    let rx = &edge.rx;
    let mut sel = Select::new();
    let data = sel.recv(rx);
    let cancelled = sel.recv(cancel.rx());
    sel.recv(stop);
    let op = sel.select();
    match op.index() {
        i if i == data => Some(match op.recv(rx) {
            Ok(c) => Recv::Msg(edge.release(c)),
            Err(_) => Recv::End,
        }),
        i if i == cancelled => {
            let _ = op.recv(cancel.rx());
            Some(Recv::Cancelled)
        }
        _ => {
            let _ = op.recv(stop);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;

    #[test]
    fn layouts_bound_the_items_waiting_on_an_edge() {
        let l = |capacity, batch| Layout { capacity, batch };
        assert_eq!(Layout::for_capacity(1), l(1, 1));
        assert_eq!(Layout::for_capacity(2), l(2, 1));
        assert_eq!(Layout::for_capacity(64), l(64, 32));
        assert_eq!(Layout::for_capacity(2048), l(2048, 1024));
        assert_eq!(Layout::for_capacity(100_000), l(100_000, 4096));
        for c in 1..5000 {
            let l = Layout::for_capacity(c);
            assert!(2 * l.batch <= c.max(2) && l.batch >= 1, "capacity {c}: {l:?}");
        }
    }
}
