//! Feeding a threaded pipeline: the live input handle, cloneable and usable
//! from any thread while the pipeline runs, and the source thread that
//! drains items put before the run and a lazy iterator.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::chan::{bounded, Receiver, Sender};
use crate::sync::deadline::deadline;

use super::channel::{send, wait_for_signal, Cancel, EdgeTx, Layout, Msg, NoRoom};
use super::meta::Meta;
use super::pacing::{Cost, Pacing};
use super::pull::SharedSource;
use crate::stats::{StageCell, StageScope};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, RwLock};

/// The pipeline no longer takes input: it was stopped, or it failed. The
/// item that could not be put is given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline no longer takes input")]
pub struct Closed<T>(pub T);

impl<T> Closed<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why [`Input::put_timeout`] did not put the item; the item is given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError<T> {
    /// The pipeline stayed full for the whole timeout.
    #[error("the pipeline stayed full")]
    Full(T),
    /// The pipeline no longer takes input.
    #[error("the pipeline no longer takes input")]
    Closed(T),
    /// The batch holds more items than the input's edge (its capacity):
    /// put it in pieces of at most [`Input::batch_size`].
    #[error("the batch is larger than the pipeline's capacity")]
    TooLarge(T),
}

/// Shared by every handle on a pipeline's input.
pub(crate) struct InputShared<T> {
    tx: RwLock<Option<EdgeTx<T>>>,
    /// Set by `close`: the source thread stops pulling its iterator.
    closed: Arc<AtomicBool>,
    handles: AtomicUsize,
    pub(crate) cancel: Arc<Cancel>,
    pub(crate) cell: Arc<StageCell>,
    pub(crate) layout: Layout,
    /// What an item costs the first stage: batches are cut by it.
    pub(crate) next_cost: Arc<Cost>,
    /// Blocking puts made before the run that found no room (see
    /// [`InputShared::hold_back`]).
    backlog: Mutex<Backlog<T>>,
    /// Set once the backlog is gone for good: puts go straight to the edge
    /// without looking at it.
    direct: AtomicBool,
    /// Disconnects when `direct` is set: a put that must not pass the
    /// backlog waits on it (see [`InputShared::hold_back`]).
    drained: (Mutex<Option<Sender<()>>>, Receiver<()>),
}

/// Puts held back before the run, sent first by the source thread.
struct Backlog<T> {
    /// The run has started (the source thread is or will be draining).
    started: bool,
    msgs: Vec<Msg<T>>,
}

impl<T> InputShared<T> {
    pub(crate) fn new(tx: EdgeTx<T>, cancel: Arc<Cancel>, cell: Arc<StageCell>, layout: Layout) -> Arc<Self> {
        Arc::new(InputShared {
            tx: RwLock::new(Some(tx)),
            closed: Arc::new(AtomicBool::new(false)),
            handles: AtomicUsize::new(0),
            cancel,
            cell,
            layout,
            next_cost: Cost::new(),
            backlog: Mutex::new(Backlog {
                started: false,
                msgs: Vec::new(),
            }),
            direct: AtomicBool::new(false),
            drained: {
                let (tx, rx) = bounded(0);
                (Mutex::new(Some(tx)), rx)
            },
        })
    }

    /// Before the run nothing reads the input's edge, so a blocking put that
    /// finds no room would wait for ever on a thread that has yet to start
    /// the run: it joins the backlog instead, which the source thread sends
    /// first when the run starts. Items keep the order they were put in, so
    /// while a backlog exists no put passes it: a blocking put before the
    /// run joins it (the only wait that could not deadlock), any other put
    /// (a timed one, or any put once the run has started) waits until the
    /// source thread has sent the backlog, then waits for room like every
    /// put. So the backlog holds only what blocking puts handed over before
    /// the run, and once the run starts memory is bounded by the capacity.
    ///
    /// `Ok(Some(msg))`: send it as usual; `Ok(None)`: it was sent or held
    /// back; `Err`: refused while waiting (the flag says the deadline
    /// passed).
    #[allow(clippy::type_complexity)]
    fn hold_back(
        &self,
        msg: Msg<T>,
        tx: &EdgeTx<T>,
        deadline: Option<Instant>,
    ) -> Result<Option<Msg<T>>, (Msg<T>, bool)> {
        if self.direct.load(Ordering::SeqCst) {
            return Ok(Some(msg));
        }
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if self.direct.load(Ordering::SeqCst) || (backlog.started && self.cancel.is_cancelled()) {
            // Sent as usual: refused if the run is cancelled.
            return Ok(Some(msg));
        }
        if backlog.started || (deadline.is_some() && !backlog.msgs.is_empty()) {
            drop(backlog);
            return match wait_for_signal(&self.drained.1, &self.cancel, deadline) {
                Ok(()) => Ok(Some(msg)),
                Err(NoRoom::Timeout) => Err((msg, true)),
                Err(NoRoom::Cancelled | NoRoom::Gone) => Err((msg, false)),
            };
        }
        let msg = if !backlog.msgs.is_empty() {
            msg
        } else if deadline.is_some() {
            // A timed put may wait: it reports a full pipeline in time.
            return Ok(Some(msg));
        } else {
            // Before the run, with nothing held back: send if there is room
            // now, under the lock, so that the run cannot start in between.
            let n = items_in(&msg);
            match send_until(tx, msg, &self.cancel, Instant::now()) {
                Ok(()) => {
                    self.counted(n);
                    return Ok(None);
                }
                Err((msg, true)) => msg,
                Err((msg, false)) => return Ok(Some(msg)),
            }
        };
        match (backlog.msgs.last_mut(), msg) {
            (Some(Msg::Items(last)), Msg::Items(mut more)) if last.len() < self.layout.batch => last.append(&mut more),
            (_, msg) => backlog.msgs.push(msg),
        }
        Ok(None)
    }

    /// The backlog is gone for good: puts go straight to the edge, and those
    /// waiting for the backlog go on.
    fn go_direct(&self) {
        self.direct.store(true, Ordering::SeqCst);
        self.drained.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Counts a message sent on the edge.
    fn counted(&self, n: u64) {
        self.cell
            .last_put
            .store(crate::stats::clock().raw().max(1), Ordering::Relaxed);
        if n == 0 {
            self.cell.metas.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cell.count.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The run starts: returns whether puts were held back (then the
    /// source thread must send them).
    pub(crate) fn start(&self) -> bool {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        backlog.started = true;
        if backlog.msgs.is_empty() {
            self.go_direct();
        }
        !backlog.msgs.is_empty()
    }

    /// Whether the run has started.
    #[cfg_attr(not(all(feature = "async", not(loom))), allow(dead_code))]
    pub(crate) fn started(&self) -> bool {
        self.direct.load(Ordering::SeqCst) || self.backlog.lock().unwrap_or_else(|e| e.into_inner()).started
    }

    /// The puts held back so far, for the source thread to send; once there
    /// are none left, later puts go straight to the edge.
    fn take_backlog(&self) -> Vec<Msg<T>> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let msgs = std::mem::take(&mut backlog.msgs);
        if msgs.is_empty() {
            self.go_direct();
        }
        msgs
    }

    /// How batches put into this input are cut.
    pub(crate) fn pacing(&self) -> Pacing {
        Pacing::new(None, self.next_cost.clone(), self.layout.batch)
    }

    /// A sender for the source thread (None if input is closed already).
    pub(crate) fn sender(&self) -> Option<EdgeTx<T>> {
        self.tx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the input: no handle can put any more, and once the source
    /// thread is done the first stage sees the end.
    pub(crate) fn close(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Closes the input and stops the source thread from pulling more of
    /// its iterator (what it pulled already is delivered).
    pub(crate) fn stop(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.close();
    }

    /// The flag `stop` raises (for a source that waits: see `waiting.rs`).
    pub(crate) fn closed_flag(&self) -> &Arc<AtomicBool> {
        &self.closed
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn deliver(&self, msg: Msg<T>, deadline: Option<Instant>) -> Result<(), (Msg<T>, bool)> {
        // Clone the sender out of the lock: a put that waits for space must
        // not hold up `close`.
        let Some(tx) = self.sender() else {
            return Err((msg, false));
        };
        let tx = &tx;
        let Some(msg) = self.hold_back(msg, tx, deadline)? else {
            return Ok(());
        };
        let n = match &msg {
            Msg::Items(b) => b.len() as u64,
            Msg::Meta(_) => 0,
        };
        let result = match deadline {
            None => {
                let mut blocked = 0;
                let r = send(tx, msg, &self.cancel, &mut blocked);
                self.cell.blocked_ticks.fetch_add(blocked, Ordering::Relaxed);
                r.map_err(|m| (m, false))
            }
            Some(deadline) => send_until(tx, msg, &self.cancel, deadline),
        };
        if result.is_ok() {
            self.counted(n);
        }
        result
    }
}

/// Sends before `deadline`, unless cancelled. The flag says whether the
/// deadline passed (true) or the pipeline is gone (false).
fn send_until<T>(edge: &EdgeTx<T>, msg: Msg<T>, cancel: &Cancel, deadline: Instant) -> Result<(), (Msg<T>, bool)> {
    if cancel.is_cancelled() {
        return Err((msg, false));
    }
    let n = msg.room();
    let w = match edge.reserve_msg(&msg, cancel, Some(deadline)) {
        Ok(w) => w,
        Err(NoRoom::Timeout) => return Err((msg, true)),
        Err(NoRoom::Cancelled | NoRoom::Gone) => return Err((msg, false)),
    };
    edge.put_reserved(msg, w).map_err(|msg| {
        edge.unreserve_msg(n, w);
        (msg, false)
    })
}

/// A live handle on a pipeline's input: cloneable, usable from any thread
/// while the pipeline runs. The input ends when every handle is dropped or
/// finished (and any source is drained).
///
/// `put` waits while the pipeline is full (backpressure); `put_timeout`
/// gives up after a time.
pub struct Input<T> {
    pub(crate) shared: Arc<InputShared<T>>,
    /// This handle's relay thread for [`Input::put_async`], once started
    /// (`None` inside if it could not be).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) relay: std::sync::OnceLock<Option<super::bridge::Relay<T>>>,
}

impl<T> fmt::Debug for Input<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input").finish_non_exhaustive()
    }
}

impl<T> Input<T> {
    pub(crate) fn new(shared: Arc<InputShared<T>>) -> Self {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        shared.cell.open_inputs.fetch_add(1, Ordering::Relaxed);
        Input {
            shared,
            #[cfg(all(feature = "async", not(loom)))]
            relay: std::sync::OnceLock::new(),
        }
    }

    /// Puts one item, waiting while the pipeline is full.
    pub fn put(&self, item: T) -> Result<(), Closed<T>> {
        self.shared
            .deliver(Msg::Items(vec![item]), None)
            .map_err(|(m, _)| Closed(single(m)))
    }

    /// Puts one item, waiting at most `timeout` for space. A timeout too
    /// long to be a deadline on the clock (`Duration::MAX`) waits for ever,
    /// as [`Input::put`] does.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        match self.shared.deliver(Msg::Items(vec![item]), deadline(timeout)) {
            Ok(()) => Ok(()),
            Err((m, true)) => Err(PutError::Full(single(m))),
            Err((m, false)) => Err(PutError::Closed(single(m))),
        }
    }

    /// Puts a batch of items as one hand-over, waiting at most `timeout`
    /// for room: the batch counts as its length against the capacity, so
    /// it waits until that many items fit. All or nothing: on an error
    /// every item is given back. A batch larger than the capacity could
    /// never fit and is refused at once ([`PutError::TooLarge`]); pieces of
    /// [`Input::batch_size`] items leave room for another piece to wait.
    /// A timeout too long to be a deadline on the clock (`Duration::MAX`)
    /// waits for ever, as [`Input::put`] does.
    pub fn put_batch_timeout(&self, items: Vec<T>, timeout: Duration) -> Result<(), PutError<Vec<T>>> {
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > self.shared.layout.capacity {
            return Err(PutError::TooLarge(items));
        }
        match self.shared.deliver(Msg::Items(items), deadline(timeout)) {
            Ok(()) => Ok(()),
            Err((Msg::Items(v), true)) => Err(PutError::Full(v)),
            Err((Msg::Items(v), false)) => Err(PutError::Closed(v)),
            Err((Msg::Meta(_), _)) => unreachable!("items were sent"),
        }
    }

    /// The largest batch one hand-over should carry on this input's edge
    /// (half its capacity).
    pub fn batch_size(&self) -> usize {
        self.shared.layout.batch
    }

    /// Puts every item (in batches), waiting while the pipeline is full.
    /// Returns how many were put. If the pipeline stops taking input, the
    /// batch that could not be put is given back and the rest of `items` is
    /// left unread.
    pub fn put_all<I: IntoIterator<Item = T>>(&self, items: I) -> Result<usize, Closed<Vec<T>>> {
        let pacing = self.shared.pacing();
        let mut it = items.into_iter();
        let mut put = 0;
        loop {
            let chunk: Vec<T> = it.by_ref().take(pacing.limit()).collect();
            if chunk.is_empty() {
                return Ok(put);
            }
            let n = chunk.len();
            match self.shared.deliver(Msg::Items(chunk), None) {
                Ok(()) => put += n,
                Err((Msg::Items(back), _)) => return Err(Closed(back)),
                Err((Msg::Meta(_), _)) => unreachable!("items were sent"),
            }
        }
    }

    /// Puts a meta entry, after every item put before it through this handle.
    pub fn put_meta(&self, meta: Meta) -> Result<(), Closed<Meta>> {
        self.shared.deliver(Msg::Meta(meta), None).map_err(|(m, _)| match m {
            Msg::Meta(meta) => Closed(meta),
            Msg::Items(_) => unreachable!("a meta entry was sent"),
        })
    }

    /// Whether the pipeline still takes input.
    pub fn is_open(&self) -> bool {
        !self.shared.cancel.is_cancelled() && self.shared.tx.read().map(|t| t.is_some()).unwrap_or(false)
    }

    /// Says this handle will put nothing more (the same as dropping it).
    pub fn finish(self) {}
}

pub(crate) fn single<T>(m: Msg<T>) -> T {
    match m {
        Msg::Items(mut v) => v.pop().expect("one item"),
        Msg::Meta(_) => unreachable!("an item was sent"),
    }
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        Input::new(self.shared.clone())
    }
}

impl<T> Drop for Input<T> {
    fn drop(&mut self) {
        self.shared.cell.open_inputs.fetch_sub(1, Ordering::Relaxed);
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.close();
        }
    }
}

/// How long a source batch may wait for more items before it is sent.
pub(crate) const SOURCE_LINGER: Duration = Duration::from_millis(1);

/// [`SOURCE_LINGER`] in raw clock ticks.
pub(crate) fn source_linger_ticks() -> u64 {
    crate::stats::duration_to_ticks(SOURCE_LINGER)
}

/// Items in a message (0 for a meta entry).
fn items_in<T>(msg: &Msg<T>) -> u64 {
    msg.items() as u64
}

/// The source thread: sends the items put before the run, then pulls the
/// lazy source only as fast as the first stage takes batches. What it holds
/// when a send fails (the run stopped, or the first stage stopped taking
/// input) is counted as the source's `discarded`: the piece that failed,
/// every item put before the run and not yet sent, the batch pulled from the
/// lazy source. A panic in the lazy source's `next()` fails the run (stage
/// "source"), and the items pulled before it are discarded.
pub(crate) fn source_job<T>(
    pending: Vec<Msg<T>>,
    source: Option<Arc<SharedSource<'_, T>>>,
    tx: EdgeTx<T>,
    input: Arc<InputShared<T>>,
) {
    let pacing = input.pacing();
    let (cancel, cell) = (input.cancel.clone(), input.cell.clone());
    // The lazy source's own counters and edges (a stream source's) and
    // its allocations go to the source's row.
    let _scope = StageScope::enter(cell.clone());
    // Dropped inside the scope, charged to the source.
    let (source, tx, input) = (source, tx, input);
    let mut blocked = 0u64;
    // Puts held back before the run go first (they follow what the same
    // handles put on the edge before it), as long as more keep coming.
    'backlog: loop {
        let mut msgs = input.take_backlog().into_iter();
        if msgs.len() == 0 {
            break;
        }
        while let Some(msg) = msgs.next() {
            let n = items_in(&msg);
            if let Err(msg) = send(&tx, msg, &cancel, &mut blocked) {
                // The run stopped: what is left is discarded (the pending
                // items below fail to send and are counted there).
                let mut unsent = items_in(&msg) + msgs.map(|m| items_in(&m)).sum::<u64>();
                loop {
                    let more = input.take_backlog();
                    if more.is_empty() {
                        break;
                    }
                    unsent += more.iter().map(items_in).sum::<u64>();
                }
                cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                break 'backlog;
            }
            input.counted(n);
        }
    }
    // Items put before the run are cut from the front as they are sent, each
    // piece as large as the first stage's pacing allows at that moment:
    // linear in the items, however small the first pieces are.
    let mut pending = pending.into_iter();
    while let Some(msg) = pending.next() {
        let mut items = match msg {
            Msg::Items(items) => items.into_iter(),
            meta => {
                if let Err(meta) = send(&tx, meta, &cancel, &mut blocked) {
                    let unsent = items_in(&meta) + pending.by_ref().map(|m| items_in(&m)).sum::<u64>();
                    cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                    cell.blocked_ticks.fetch_add(blocked, Ordering::Relaxed);
                    return;
                }
                cell.metas.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        while items.len() > 0 {
            let piece: Vec<T> = items.by_ref().take(pacing.limit()).collect();
            let n = piece.len() as u64;
            if let Err(piece) = send(&tx, Msg::Items(piece), &cancel, &mut blocked) {
                let unsent =
                    items_in(&piece) + items.len() as u64 + pending.by_ref().map(|m| items_in(&m)).sum::<u64>();
                cell.discarded.fetch_add(unsent, Ordering::Relaxed);
                cell.blocked_ticks.fetch_add(blocked, Ordering::Relaxed);
                return;
            }
            cell.count.fetch_add(n, Ordering::Relaxed);
        }
    }
    // A lazy source nobody pulls: this thread pulls it and sends what it
    // gets, as fast as the first stage takes it.
    if let Some(src) = source {
        while let Some((buf, _)) = src.pull(pacing.limit()) {
            if let Err(m) = send(&tx, Msg::Items(buf), &cancel, &mut blocked) {
                // Pulled and counted, never delivered.
                let n = items_in(&m);
                cell.count.fetch_sub(n, Ordering::Relaxed);
                cell.discarded.fetch_add(n, Ordering::Relaxed);
                break;
            }
        }
    }
    cell.blocked_ticks.fetch_add(blocked, Ordering::Relaxed);
}
