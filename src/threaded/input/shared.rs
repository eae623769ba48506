//! What every input handle of a pipeline shares ([`InputShared`]): the
//! input edge's sender, the count of open handles, and the puts held back
//! before the run (a blocking put that found the edge full while nothing
//! reads it yet), sent first by the source thread (`source.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::sync::chan::{bounded, Receiver, Sender};

use crate::stats::StageCell;
use crate::sync::{AtomicBool, AtomicUsize, Mutex, RwLock};
use crate::threaded::edge::{send, send_within, wait_for_signal, Cancel, EdgeTx, Layout, Msg, NoRoom};
use crate::threaded::pacing::{Cost, Pacing};

/// Shared by every handle on a pipeline's input.
pub(crate) struct InputShared<T> {
    pub(crate) tx: RwLock<Option<EdgeTx<T>>>,
    /// Set by `close`: the source thread stops pulling its iterator.
    closed: Arc<AtomicBool>,
    pub(crate) handles: AtomicUsize,
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
            let n = msg.items() as u64;
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
    pub(crate) fn counted(&self, n: u64) {
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
    pub(crate) fn take_backlog(&self) -> Vec<Msg<T>> {
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
    send_within(edge, msg, cancel, Some(deadline)).map_err(|(msg, why)| (msg, why == NoRoom::Timeout))
}
