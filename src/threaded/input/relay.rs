//! The relay thread of an async put (`Input::put_async`, feature
//! `async`): tries to put at once (no waiting, no thread); when the
//! pipeline is full, hands the item to the handle's relay thread, started
//! on the first put that has to wait, which puts it as `Input::put` does
//! and answers on a oneshot channel. One relay per handle, ended when the
//! handle is dropped: a `spawn_blocking` per put would take a pool thread
//! for every waiting put, and needs a runtime.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::threaded::edge::Msg;
use crate::threaded::input::InputShared;

/// A put that waits for room (until `deadline`, if any), handed to the
/// relay thread. The reply says, on a refusal, whether the deadline passed
/// (true) or the pipeline is gone (false).
struct Request<T> {
    msg: Msg<T>,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<(), (Msg<T>, bool)>>,
}

/// The source row's counter of async puts that landed in the pipeline
/// after their caller had cancelled them (see the relay).
const UNANSWERED: &str = "puts_landed_after_cancel";

/// How long the relay waits for room for one put before it looks at the
/// puts queued behind it, answering those whose deadline has passed.
const RELAY_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

/// The relay thread's loop: puts in turn, the one in front waiting for room
/// in slices; between slices, a put queued behind whose deadline has passed
/// gets its one try at room and its answer, so a timed put is answered by
/// its deadline (within a slice) whatever waits in front of it. Ends when
/// the handle (the only sender) is dropped.
fn relay<T>(shared: &InputShared<T>, rx: &mut mpsc::UnboundedReceiver<Request<T>>) {
    let mut queue = std::collections::VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.blocking_recv() {
                Some(r) => queue.push_back(r),
                None => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            queue.push_back(r);
        }
        let now = Instant::now();
        let mut i = 1;
        while i < queue.len() {
            if queue[i].deadline.is_some_and(|d| d <= now) {
                let Request { msg, reply, .. } = queue.remove(i).expect("in range");
                if !reply.is_closed() {
                    let _ = reply.send(shared.deliver(msg, Some(now)));
                }
            } else {
                i += 1;
            }
        }
        let Request { msg, deadline, reply } = queue.pop_front().expect("not empty");
        if reply.is_closed() {
            // The put was cancelled before it was tried.
            continue;
        }
        // A put that waits for ever, before the run, is held back at once
        // (see `InputShared::hold_back`); else the wait is cut in slices.
        let slice_end = Instant::now() + RELAY_SLICE;
        let until = match deadline {
            None if !shared.started() => None,
            None => Some(slice_end),
            Some(d) => Some(d.min(slice_end)),
        };
        match shared.deliver(msg, until) {
            // Tried again next round, unless the put is cancelled by then
            // (its future dropped: an HTTP request cut off by shutdown):
            // then it never lands.
            Err((msg, true)) if deadline.is_none_or(|d| Instant::now() < d) => {
                queue.push_front(Request { msg, deadline, reply });
            }
            result => {
                let landed = result.is_ok();
                if reply.send(result).is_err() && landed {
                    // Cancelled during the very slice in which it landed:
                    // in the pipeline, but its caller never heard so. The
                    // source's row counts such puts.
                    crate::stats::CounterTarget::add_counter(&*shared.cell, UNANSWERED, 1);
                }
            }
        }
    }
}

/// The relay thread of one input handle (see the module docs).
pub(crate) struct Relay<T> {
    tx: mpsc::UnboundedSender<Request<T>>,
}

impl<T: Send + 'static> Relay<T> {
    /// Starts the relay thread (`None` if it cannot be spawned).
    fn start(shared: std::sync::Arc<InputShared<T>>) -> Option<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request<T>>();
        let spawned = std::thread::Builder::new()
            .name("paipa:put".into())
            .spawn(move || relay(&shared, &mut rx));
        match spawned {
            Ok(_) => Some(Relay { tx }),
            Err(e) => {
                tracing::warn!(target: "paipa", "cannot start the input's relay thread: {e}");
                None
            }
        }
    }
}

/// Delivers at once if there is room, else through the relay thread
/// (waiting until `deadline`, or for ever).
pub(crate) async fn deliver<T: Send + 'static>(
    shared: &Arc<InputShared<T>>,
    relay: &OnceLock<Option<Relay<T>>>,
    msg: Msg<T>,
    deadline: Option<Instant>,
) -> Result<(), (Msg<T>, bool)> {
    let msg = match shared.deliver(msg, Some(Instant::now())) {
        Ok(()) => return Ok(()),
        Err((m, false)) => return Err((m, false)),
        Err((m, true)) => m,
    };
    let relay = relay.get_or_init(|| Relay::start(shared.clone()));
    let (reply, answer) = oneshot::channel();
    let sent = match relay {
        Some(relay) => relay.tx.send(Request { msg, deadline, reply }).map_err(|e| e.0.msg),
        None => Err(msg),
    };
    match sent {
        Ok(()) => match answer.await {
            Ok(result) => result,
            Err(_) => unreachable!("the relay answers every put it takes"),
        },
        // No relay: wait by trying again as the runtime lets this task.
        Err(mut msg) => loop {
            tokio::task::yield_now().await;
            msg = match shared.deliver(msg, Some(Instant::now())) {
                Ok(()) => return Ok(()),
                Err((m, false)) => return Err((m, false)),
                Err((m, true)) if deadline.is_some_and(|d| Instant::now() >= d) => return Err((m, true)),
                Err((m, true)) => m,
            };
        },
    }
}
