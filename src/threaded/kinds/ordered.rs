//! Ordered function stages: several workers, output in input order.
//!
//! Workers take batches one at a time under a lock and number them. Each
//! processes its batch into a private vector, then hands it to the reorder
//! buffer, which sends the batches downstream strictly by number. A worker
//! must hold one of `window` places (a [`Window`]) to take a batch, and the
//! place comes back only when its batch has been sent, so at most `window`
//! batches are ever in flight or waiting: the reorder buffer is bounded and
//! counts toward backpressure. A stage that stops early closes its window,
//! so no worker is left waiting for a place.

use std::sync::Arc;

use crate::sync::chan::{bounded, Receiver, Select, Sender};

use crate::error::BoxError;
use crate::stats::StageScope;
use crate::sync::{Mutex, MutexGuard};
use crate::threaded::edge::{recv, Cancel, EdgeRx, Msg, Recv};
use crate::threaded::reorder::ReorderBuffer;
use crate::threaded::worker::{drain_discarding, WorkerCtx};
use crate::threaded::worker::{Outbox, WorkerClock};

/// Shared by the workers of one ordered stage.
pub(crate) struct Reorder<Out> {
    /// Number of the next batch taken from the input.
    next_in: Mutex<u64>,
    state: Mutex<ReorderState<Out>>,
    window: Window,
}

/// The bound on batches in flight: `size` places. A worker takes a place
/// before it takes a batch from the input, and the place comes back when
/// that batch has been sent downstream in order (or if no batch came).
/// When the stage stops early (its output is gone, or the run is
/// cancelled) batches are dropped with their places, so the window is
/// closed: every worker waiting for a place wakes and stops.
pub(crate) struct Window {
    free_tx: Sender<()>,
    free_rx: Receiver<()>,
    /// Dropped by `close`, which wakes every waiting worker.
    open_tx: Mutex<Option<Sender<()>>>,
    open_rx: Receiver<()>,
    /// Places taken (loom only: the models check the bound with it, and
    /// that no place is given back twice).
    #[cfg(loom)]
    taken: crate::sync::AtomicUsize,
}

impl Window {
    pub(crate) fn new(size: usize) -> Self {
        let size = size.max(1);
        let (free_tx, free_rx) = bounded(size);
        for _ in 0..size {
            let _ = free_tx.try_send(());
        }
        let (open_tx, open_rx) = bounded(0);
        Window {
            free_tx,
            free_rx,
            open_tx: Mutex::new(Some(open_tx)),
            open_rx,
            #[cfg(loom)]
            taken: crate::sync::AtomicUsize::new(0),
        }
    }

    /// Waits for a free place; false if the window is closed or the run is
    /// cancelled first.
    pub(crate) fn enter(&self, cancel: &Cancel) -> bool {
        let mut sel = Select::new();
        let place = sel.recv(&self.free_rx);
        let closed = sel.recv(&self.open_rx);
        sel.recv(cancel.rx());
        let op = sel.select();
        let index = op.index();
        if index == place {
            let entered = op.recv(&self.free_rx).is_ok();
            #[cfg(loom)]
            if entered {
                self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            entered
        } else {
            let _ = op.recv(if index == closed { &self.open_rx } else { cancel.rx() });
            false
        }
    }

    /// Gives a place back.
    pub(crate) fn leave(&self) {
        #[cfg(loom)]
        {
            let before = self.taken.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            assert!(before > 0, "a place was given back twice");
        }
        let _ = self.free_tx.try_send(());
    }

    /// Wakes every worker waiting for a place, and keeps new ones out.
    pub(crate) fn close(&self) {
        self.open_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Places taken.
    #[cfg(loom)]
    pub(crate) fn in_flight(&self) -> usize {
        self.taken.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct ReorderState<Out> {
    buffer: ReorderBuffer<Vec<Msg<Out>>>,
    outbox: Outbox<Out>,
}

impl<Out> Reorder<Out> {
    pub(crate) fn new(outbox: Outbox<Out>, window: usize) -> Arc<Self> {
        Arc::new(Reorder {
            next_in: Mutex::new(0),
            state: Mutex::new(ReorderState {
                buffer: ReorderBuffer::new(),
                outbox,
            }),
            window: Window::new(window),
        })
    }

    /// The window bounding this stage's batches in flight.
    #[cfg(loom)]
    pub(crate) fn window(&self) -> &Window {
        &self.window
    }

    /// Batches processed but waiting for an earlier one.
    #[cfg(loom)]
    pub(crate) fn waiting(&self) -> usize {
        self.state().buffer.waiting()
    }

    /// Takes a place in the window, then the next batch from the input with
    /// its number. `None` if the run was cancelled, or the window closed,
    /// while waiting for a place.
    /// Whatever is not a batch (the end, a cancel) gives the place back.
    pub(crate) fn take<In>(&self, rx: &EdgeRx<In>, cancel: &Cancel, starved: &mut u64) -> Option<(u64, Recv<In>)> {
        if !self.window.enter(cancel) {
            return None;
        }
        let mut next_in = self.next_in.lock().unwrap_or_else(|e| e.into_inner());
        let got = match rx.try_recv() {
            Ok(m) => Recv::Msg(m),
            Err(_) => {
                // Send what is in order before waiting: the input may stay
                // quiet for a long time.
                self.state().outbox.flush();
                recv(rx, cancel, None, starved)
            }
        };
        let seq = *next_in;
        if matches!(got, Recv::Msg(_)) {
            *next_in += 1;
        } else {
            self.window.leave();
        }
        Some((seq, got))
    }

    fn state(&self) -> MutexGuard<'_, ReorderState<Out>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands over batch `seq` and sends every batch that is now next.
    fn submit(&self, seq: u64, msgs: Vec<Msg<Out>>) {
        let mut st = self.state();
        for msgs in st.buffer.insert(seq, msgs) {
            for m in msgs {
                match m {
                    Msg::Items(items) => items.into_iter().for_each(|x| st.outbox.push(x)),
                    Msg::Meta(meta) => st.outbox.meta(meta),
                }
            }
            self.window.leave();
        }
        // What is in order is ready: send it now rather than wait for a full
        // batch (the input may stay quiet for a long time).
        st.outbox.flush();
    }
}

/// The loop of one worker of an ordered function stage.
pub(crate) fn ordered_worker<In, Out, F>(f: Arc<F>, reorder: Arc<Reorder<Out>>, cx: WorkerCtx<'_, In>)
where
    F: Fn(In) -> Result<Out, BoxError>,
{
    let cell = cx.cell.clone();
    let _scope = StageScope::enter(cell.clone());
    // Dropped inside the scope (see `item_worker`).
    let (f, reorder, cx) = (f, reorder, cx);
    let mut clock = WorkerClock::start(cell.clone(), cx.info.index);
    let mut blocked = 0u64;
    loop {
        let Some((seq, got)) = reorder.take(&cx.rx, &cx.shared.cancel, &mut clock.starved) else {
            break;
        };
        match got {
            Recv::Msg(Msg::Items(mut batch)) => {
                cx.take(&batch);
                let n = batch.len();
                let mut out = Vec::with_capacity(batch.len());
                cx.cell.mark_busy(cx.info.index, crate::stats::clock().raw());
                let ok = cx.process_batch(&mut batch, |item| {
                    out.push(f(item)?);
                    Ok(())
                });
                cx.cell.mark_busy(cx.info.index, 0);
                if !ok || cx.shared.cancel.is_cancelled() {
                    cx.discard_n(out.len() as u64);
                    break;
                }
                reorder.submit(seq, vec![Msg::Items(out)]);
                let busy = clock.mark(&mut blocked);
                cx.cost.observe(busy, n);
                if reorder.state().outbox.is_gone() {
                    break;
                }
            }
            Recv::Msg(Msg::Meta(meta)) => reorder.submit(seq, vec![Msg::Meta(meta)]),
            Recv::End | Recv::Cancelled | Recv::Idle => break,
        }
    }
    {
        let mut st = reorder.state();
        let stopped = cx.shared.cancel.is_cancelled() || st.outbox.is_gone();
        if stopped {
            // Batches waiting below are dropped with their places: nobody
            // may wait for a place any more.
            reorder.window.close();
            st.outbox.discard_pending();
            // Batches that can no longer be sent in order.
            let waiting: u64 = st.buffer.take_waiting().iter().flatten().map(Msg::count).sum();
            cx.discard_n(waiting);
        } else {
            st.outbox.flush();
        }
        blocked += std::mem::take(&mut st.outbox.blocked);
    }
    if cx.shared.cancel.is_cancelled() || reorder.state().outbox.is_gone() {
        drain_discarding(&cx);
    }
    clock.last_mark(&mut blocked);
}
