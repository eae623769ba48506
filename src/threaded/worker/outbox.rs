//! A worker's output side: batching, counting, backpressure, and the
//! hand-over of batches to a stage chained on the same thread.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::stats::StageCell;
use crate::threaded::edge::{send, ByteBound, EdgeTx, Msg};
use crate::threaded::meta::Meta;
use crate::threaded::pacing::Pacing;
use crate::threaded::run::RunShared;

/// How much an item counts for on an edge (a batch can count as its length).
pub(crate) type Weigher<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// The weight of a batch.
pub(crate) fn weight<T>(batch: &[T], weigh: &Option<Weigher<T>>) -> u64 {
    match weigh {
        None => batch.len() as u64,
        Some(w) => batch.iter().map(|x| w(x)).sum(),
    }
}

/// Batches a worker's output and sends it downstream.
pub(crate) struct Outbox<T> {
    tx: EdgeTx<T>,
    buf: Vec<T>,
    /// Sends when the buffer holds this many items (see `pacing.rs`).
    limit: usize,
    pacing: Pacing,
    cell: Arc<StageCell>,
    shared: Arc<RunShared>,
    weigh: Option<Weigher<T>>,
    /// Raw ticks spent waiting for space since the clock last looked.
    pub(crate) blocked: u64,
    /// Downstream is gone (cancelled, or the consumer stopped).
    gone: bool,
    /// Where batches wait for a chained stage on this thread, instead of
    /// going on the edge (see `worker/chain.rs`).
    local: Option<VecDeque<Msg<T>>>,
    /// The edge's bound by weight, if any: a batch is sent once it weighs
    /// half of it, so batches never pile up past the bound.
    bytes: Option<Arc<ByteBound<T>>>,
    /// Bytes in `buf` (with a bound by weight).
    buf_bytes: usize,
    /// Emptied batch buffers handed back by a chained stage, for the next
    /// batches (see [`Outbox::recycle`]).
    spare: Vec<Vec<T>>,
}

impl<T> Outbox<T> {
    pub(crate) fn new(
        tx: EdgeTx<T>,
        pacing: Pacing,
        cell: Arc<StageCell>,
        shared: Arc<RunShared>,
        weigh: Option<Weigher<T>>,
    ) -> Self {
        let limit = pacing.limit();
        let bytes = tx.byte_bound().cloned();
        Outbox {
            bytes,
            buf_bytes: 0,
            tx,
            buf: Vec::with_capacity(limit),
            limit,
            pacing,
            cell,
            shared,
            weigh,
            blocked: 0,
            gone: false,
            local: None,
            spare: Vec::new(),
        }
    }

    /// Keeps an emptied batch buffer for a later batch. A batch buffer of
    /// cheap items is large (a thousand items), and with glibc's allocator
    /// every allocation of 1 KiB or more first merges all free small
    /// chunks (`malloc_consolidate`), which takes the fast path away from
    /// the step's own small allocations: on the log job that made the
    /// workers spend a quarter of their time in the allocator. Reusing the
    /// buffers of a chain keeps large allocations out of the steady state.
    pub(crate) fn recycle(&mut self, mut buf: Vec<T>) {
        if buf.capacity() > 0 && self.spare.len() < 2 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// An empty buffer for the next batch: a recycled one if there is one.
    fn fresh_buf(&mut self) -> Vec<T> {
        match self.spare.pop() {
            Some(mut buf) => {
                buf.reserve(self.limit);
                buf
            }
            None => Vec::with_capacity(self.limit),
        }
    }

    /// Keeps batches on this thread for a chained stage instead of
    /// sending them on the edge.
    pub(crate) fn keep_locally(&mut self) {
        self.local = Some(VecDeque::new());
    }

    /// True if batches wait for the chained stage.
    pub(crate) fn has_local(&self) -> bool {
        self.local.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// The next batch kept for the chained stage.
    pub(crate) fn take_local(&mut self) -> Option<Msg<T>> {
        self.local.as_mut()?.pop_front()
    }

    /// The chained stage stopped: this stage stops taking input.
    pub(crate) fn stop(&mut self) {
        self.gone = true;
    }

    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        if let Some(bound) = &self.bytes {
            self.buf_bytes = self.buf_bytes.saturating_add(bound.item(&item));
            if self.buf_bytes >= bound.limit().div_ceil(2) {
                self.buf.push(item);
                self.flush();
                return;
            }
        }
        self.buf.push(item);
        if self.buf.len() >= self.limit {
            self.flush();
        }
    }

    /// Whether results wait in the buffer, unsent.
    pub(crate) fn holds(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Sends what is ready (nothing, if nothing is).
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let n = weight(&self.buf, &self.weigh);
        self.buf_bytes = 0;
        self.limit = self.pacing.limit();
        let fresh = self.fresh_buf();
        let batch = std::mem::replace(&mut self.buf, fresh);
        self.deliver(Msg::Items(batch), n);
    }

    /// Takes the latest costs into account (once per batch taken): a
    /// stage that turns out slow stops holding finished items at once.
    pub(crate) fn repace(&mut self) {
        self.limit = self.pacing.limit();
        if self.buf.len() >= self.limit {
            self.flush();
        }
    }

    /// Sends a meta entry after everything emitted before it.
    pub(crate) fn meta(&mut self, meta: Meta) {
        self.flush();
        self.deliver(Msg::Meta(meta), 0);
    }

    fn deliver(&mut self, msg: Msg<T>, n: u64) {
        let is_meta = matches!(msg, Msg::Meta(_));
        if let Some(local) = self.local.as_mut() {
            // Handed to the chained stage, which counts it in (and out as
            // discarded if it has stopped).
            local.push_back(msg);
            if is_meta {
                self.cell.metas.fetch_add(1, Relaxed);
            } else {
                self.cell.count.fetch_add(n, Relaxed);
            }
            return;
        }
        if !self.gone {
            match send(&self.tx, msg, &self.shared.cancel, &mut self.blocked) {
                Ok(()) => {
                    if is_meta {
                        self.cell.metas.fetch_add(1, Relaxed);
                    } else {
                        self.cell.count.fetch_add(n, Relaxed);
                    }
                    return;
                }
                Err(_) => {
                    // Cancelled, or nobody downstream receives any more: this
                    // stage stops taking input, which stops its upstream in
                    // turn (see edge.rs).
                    self.gone = true;
                }
            }
        }
        self.cell.discarded.fetch_add(n, Relaxed);
    }

    /// True once downstream is gone: the worker should stop taking input.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone
    }

    /// True once the run is cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Counts what is still buffered as discarded (the run was stopped).
    pub(crate) fn discard_pending(&mut self) {
        let n = weight(&self.buf, &self.weigh);
        self.buf.clear();
        self.buf_bytes = 0;
        self.cell.discarded.fetch_add(n, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::threaded::edge::{edge, Cancel, Layout};

    fn local_outbox(batch: usize) -> Outbox<u64> {
        let (tx, _rx) = edge(Layout::for_capacity(2 * batch));
        let shared = RunShared::new(Cancel::new());
        let cell = Arc::new(StageCell::new("s"));
        let mut outbox = Outbox::new(tx, Pacing::fixed(batch), cell, shared, None);
        outbox.keep_locally();
        outbox
    }

    fn take_items(outbox: &mut Outbox<u64>) -> Vec<u64> {
        match outbox.take_local() {
            Some(Msg::Items(items)) => items,
            _ => panic!("no batch kept locally"),
        }
    }

    #[test]
    fn a_recycled_buffer_carries_the_next_batch() {
        let mut outbox = local_outbox(4);
        (0..4).for_each(|i| outbox.push(i));
        let first = take_items(&mut outbox);
        assert_eq!(first, [0, 1, 2, 3]);
        let ptr = first.as_ptr();
        outbox.recycle(first);
        (4..8).for_each(|i| outbox.push(i));
        let second = take_items(&mut outbox);
        assert_eq!(second, [4, 5, 6, 7]);
        outbox.recycle(second);
        (8..12).for_each(|i| outbox.push(i));
        let third = take_items(&mut outbox);
        assert_eq!(third, [8, 9, 10, 11]);
        // Two buffers take turns: the first batch's allocation carries the
        // third.
        assert_eq!(third.as_ptr(), ptr, "the first batch's allocation is in use again");
    }

    #[test]
    fn at_most_two_buffers_are_kept_and_empty_ones_are_not() {
        let mut outbox = local_outbox(4);
        outbox.recycle(Vec::new());
        assert!(outbox.spare.is_empty(), "a buffer with no allocation is not kept");
        for _ in 0..5 {
            outbox.recycle(vec![1, 2, 3]);
        }
        assert_eq!(outbox.spare.len(), 2);
        assert!(outbox.spare.iter().all(Vec::is_empty), "kept buffers hold no items");
    }
}
