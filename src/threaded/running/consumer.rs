//! The consumer of a run's outputs: its clock (its own row in the
//! stats) and what it took, settled once every thread is joined.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::stats::{clock, StageCell};
use crate::sync::chan::{bounded, Receiver, Sender};
use crate::threaded::edge::{EdgeRx, Msg};
use crate::threaded::worker::{weight, Weigher};

/// Measures the consumer (the `run_with` closure, the `outputs()` iterator,
/// or the drain of `run()`) in its own row, the last of the snapshot: the
/// time it waits for the next batch is its starved time, the time between
/// two waits its busy time (two clock readings a batch, none an item).
pub(crate) struct ConsumerClock {
    cell: Arc<StageCell>,
    /// Raw clock reading when the consumer last got a batch (or started).
    mark: u64,
    /// Weight of the last batch received.
    pub(crate) last: u64,
}

impl ConsumerClock {
    pub(crate) fn new(cell: Arc<StageCell>) -> Self {
        ConsumerClock {
            cell,
            mark: clock().raw(),
            last: 0,
        }
    }

    /// Waits for the next message on the last edge, counting the time
    /// since the previous one as busy and the wait as starved.
    pub(crate) fn recv<T>(&mut self, rx: &EdgeRx<T>, weigh: &Option<Weigher<T>>) -> Result<Msg<T>, ()> {
        self.timed(weigh, || rx.recv_blocking().map_err(|_| ()))
    }

    /// Measures `wait` (a receive on the last edge) as [`ConsumerClock::recv`]
    /// does, and counts the batch it gets.
    pub(crate) fn timed<T, E>(
        &mut self,
        weigh: &Option<Weigher<T>>,
        wait: impl FnOnce() -> Result<Msg<T>, E>,
    ) -> Result<Msg<T>, E> {
        let asked = clock().raw();
        let msg = wait();
        let got = clock().raw();
        self.cell
            .busy_ticks
            .fetch_add(asked.saturating_sub(self.mark), Ordering::Relaxed);
        self.cell
            .starved_ticks
            .fetch_add(got.saturating_sub(asked), Ordering::Relaxed);
        self.mark = got;
        if let Ok(Msg::Items(b)) = &msg {
            let w = weight(b, weigh);
            self.last = w;
            self.cell.count_in.fetch_add(w, Ordering::Relaxed);
            self.cell.count.fetch_add(w, Ordering::Relaxed);
        }
        msg
    }

    /// The consumer stopped reading without waiting again: the time since
    /// its last batch was its own.
    pub(crate) fn stop(&mut self) {
        let now = clock().raw();
        self.cell
            .busy_ticks
            .fetch_add(now.saturating_sub(self.mark), Ordering::Relaxed);
        self.mark = now;
    }
}

/// What the consumer of a run's outputs took: filled in by [`Outputs`](crate::threaded::Outputs) when
/// it stops reading (its end, or dropped), read once every thread of the run
/// has been joined (see [`Consumer::settle`]).
pub(crate) struct Consumer {
    /// Weight of the items the consumer was handed.
    pub(crate) delivered: AtomicU64,
    /// Set once the consumer stopped reading.
    pub(crate) done: AtomicBool,
    /// Set if it stopped before the end of the outputs.
    pub(crate) early: AtomicBool,
    /// Disconnects when the consumer stops reading.
    stopped: Receiver<()>,
}

impl Consumer {
    /// A consumer, and the sender whose drop says it stopped reading.
    pub(crate) fn new() -> (Arc<Self>, Sender<()>) {
        let (tx, rx) = bounded(0);
        let c = Consumer {
            delivered: AtomicU64::new(0),
            done: AtomicBool::new(false),
            early: AtomicBool::new(false),
            stopped: rx,
        };
        (Arc::new(c), tx)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until the consumer stops reading.
    pub(crate) fn wait(&self) {
        let _ = self.stopped.recv();
    }

    /// Once every thread is joined (the last stage's `count` is final):
    /// what went out of the last stage but never reached the consumer (a
    /// batch partly read, batches left on the last edge, a send that landed
    /// as the consumer left) moves from the last stage's `count` to its
    /// `discarded`. So `count` is what the consumer got, and the books
    /// `count_in = count + skipped + failed + discarded` still balance.
    /// The consumer's own row then counts what it got, in and out.
    pub(crate) fn settle(&self, last: &StageCell, row: &StageCell) {
        if !self.is_done() {
            return;
        }
        let sent = last.count.load(Ordering::SeqCst);
        let delivered = self.delivered.load(Ordering::SeqCst);
        let lost = sent.saturating_sub(delivered);
        last.count.fetch_sub(lost, Ordering::SeqCst);
        last.discarded.fetch_add(lost, Ordering::SeqCst);
        row.count.store(delivered, Ordering::SeqCst);
        row.count_in.store(delivered, Ordering::SeqCst);
    }
}

/// Reads (and drops) everything that comes out, measured as the consumer.
pub(crate) fn drain<T>(rx: EdgeRx<T>, mut clock: ConsumerClock, weigh: &Option<Weigher<T>>) {
    while let Ok(msg) = clock.recv(&rx, weigh) {
        drop(msg);
    }
}
