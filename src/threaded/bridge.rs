//! Bridges for tokio programs (feature `async`): a run's outputs as a
//! [`Stream`], an async put on a live [`Input`], and a [`Stream`] as a
//! pipeline's source ([`Pipeline::source_stream`]).
//!
//! Neither blocks a runtime thread. Both wait on the pipeline's blocking
//! channels from a small thread of their own, and talk to the async side
//! through tokio channels:
//! - [`OutputStream`]: a **forwarding thread** owns the [`Outputs`] and
//!   sends each item into a bounded tokio channel ([`STREAM_BUFFER`]
//!   items), which the stream polls. Dropping the stream closes that
//!   channel, hands back to the forwarder what it held unread, and tells a
//!   forwarder waiting on the last edge to stop; the forwarder then drops
//!   the `Outputs`, which stops the run as dropping them anywhere does.
//!   Every item the forwarder took and the stream never yielded is handed
//!   back to the `Outputs` first ([`Outputs::give_back`]), so it is counted
//!   as the last stage's `discarded`, as the rest of a batch an iterator
//!   consumer did not read is.
//! - [`Input::put_async`]: tries to put at once (no waiting, no thread);
//!   when the pipeline is full, hands the item to the handle's **relay
//!   thread**, started on the first put that has to wait, which puts it as
//!   [`Input::put`] does and answers on a oneshot channel. One relay per
//!   handle, ended when the handle is dropped: a `spawn_blocking` per put
//!   would take a pool thread for every waiting put, and needs a runtime.
//! - [`Pipeline::source_stream`]: the stream is polled on the pipeline's
//!   **source thread** (the one a lazy iterator source has), which waits
//!   for each item without taking a runtime thread; see the method for the
//!   runtime its timers and IO run on.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use super::channel::Msg;
use super::handle::{Outputs, Summary};
use super::input::{single, Closed, Input, InputShared, PutError};
use super::waiting::{self, Wait};
use super::Pipeline;
use crate::error::RunError;
use crate::sync::chan::{bounded, Sender};
use crate::Stats;

/// Items an [`OutputStream`] holds ready between its forwarding thread and
/// the task that polls it.
pub const STREAM_BUFFER: usize = 32;

/// The outputs of a background run as a [`futures::Stream`], from
/// [`Outputs::into_stream`] or [`Pipeline::stream`]: polling it never
/// blocks a runtime thread.
///
/// Dropping it before the end stops the run as dropping [`Outputs`] does
/// (cleanly: the input is closed, and what was not read is counted as the
/// last stage's `discarded`), but without waiting for the run to end;
/// [`OutputStream::finish`] waits and returns the summary.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), paipa::RunError> {
/// use futures::StreamExt;
/// use paipa::threaded::{Pipeline, Stage};
///
/// let mut out = Pipeline::new()
///     .source(1..=100u64)
///     .then(Stage::map("double", |x: u64| x * 2))?
///     .stream()?;
/// let mut total = 0;
/// while let Some(x) = out.next().await {
///     total += x;
/// }
/// assert_eq!(total, 10_100);
/// let summary = out.finish().await?;
/// assert_eq!(summary.items, 100);
/// # Ok(())
/// # }
/// ```
pub struct OutputStream<T> {
    rx: mpsc::Receiver<T>,
    /// Hands the items the stream held unread back to the forwarder.
    back: Option<std::sync::mpsc::Sender<T>>,
    /// Dropped to tell a forwarder waiting on the last edge to stop.
    stop: Option<Sender<()>>,
    /// The run's result, once the forwarder has let go of the outputs.
    done: Option<oneshot::Receiver<Result<Summary, RunError>>>,
    stats: Option<Stats>,
}

impl<T> fmt::Debug for OutputStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputStream")
            .field("stopped", &self.stop.is_none())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Outputs<T> {
    /// These outputs as a [`futures::Stream`] for a tokio program (feature
    /// `async`): a forwarding thread reads the last edge and the stream
    /// polls a bounded channel that it fills, so no runtime thread waits
    /// on the pipeline. Only for a background run ([`Pipeline::outputs`]):
    /// the summary of a scoped one comes from `run_with`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), paipa::RunError> {
    /// use futures::StreamExt;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let outputs = Pipeline::new()
    ///     .source(0..10u32)
    ///     .then(Stage::map("square", |x: u32| x * x))?
    ///     .outputs()?;
    /// let mut squares: Vec<u32> = outputs.into_stream()?.collect().await;
    /// squares.sort_unstable();
    /// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_stream(mut self) -> Result<OutputStream<T>, RunError> {
        let stats = self.stats();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = bounded(0);
        let (done_tx, done_rx) = oneshot::channel();
        self.hold(stop_rx);
        std::thread::Builder::new()
            .name("paipa:stream".into())
            .spawn(move || forward(self, tx, back_rx, done_tx))
            .map_err(RunError::Spawn)?;
        Ok(OutputStream {
            rx,
            back: Some(back_tx),
            stop: Some(stop_tx),
            done: Some(done_rx),
            stats,
        })
    }
}

/// The forwarding thread: sends every item the outputs give into the
/// stream's channel until the stream goes away or the outputs end, takes
/// back what the stream did not yield, and lets go of the outputs (which
/// settles the books and, for a stream dropped early, stops the run).
fn forward<T>(
    mut outputs: Outputs<T>,
    tx: mpsc::Sender<T>,
    back: std::sync::mpsc::Receiver<T>,
    done: oneshot::Sender<Result<Summary, RunError>>,
) {
    while let Some(item) = outputs.next() {
        if let Err(mpsc::error::SendError(item)) = tx.blocking_send(item) {
            outputs.give_back(&item);
            break;
        }
    }
    drop(tx);
    // Ends when the stream is dropped or finished, having handed back what
    // it held.
    for item in back {
        outputs.give_back(&item);
    }
    let _ = done.send(outputs.finish());
}

impl<T> OutputStream<T> {
    /// Live stats of the run.
    pub fn stats(&self) -> Option<Stats> {
        self.stats.clone()
    }

    /// Stops reading: the channel is closed, what it held unread goes back
    /// to the forwarder, and a forwarder waiting on the last edge stops.
    fn stop_reading(&mut self) {
        let Some(back) = self.back.take() else {
            return;
        };
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            let _ = back.send(item);
        }
        drop(back);
        self.stop.take();
    }

    /// Stops reading (if not at the end), waits for the run to end, without
    /// blocking the runtime, and returns its result, as [`Outputs::finish`]
    /// does. Stopped early, the last stage counts what the stream did not
    /// yield as `discarded`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), paipa::RunError> {
    /// use futures::StreamExt;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// // An endless source: the stream stopping is what ends the run.
    /// let mut out = Pipeline::new()
    ///     .source(0u64..)
    ///     .then(Stage::map("same", |x: u64| x))?
    ///     .stream()?;
    /// let first: Vec<u64> = out.by_ref().take(10).collect().await;
    /// assert_eq!(first.len(), 10);
    /// let summary = out.finish().await?;
    /// assert!(summary.stopped_early);
    /// assert_eq!(summary.items, 10);
    /// let last = &summary.snapshot.stages[1];
    /// assert_eq!(last.count_in, last.count + last.discarded);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn finish(mut self) -> Result<Summary, RunError> {
        self.stop_reading();
        let done = self.done.take().expect("finished once");
        done.await.unwrap_or_else(|_| {
            Err(RunError::Panic {
                stage: "pipeline".into(),
                worker: 0,
                message: "the stream's forwarding thread panicked".into(),
            })
        })
    }
}

impl<T> Stream for OutputStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for OutputStream<T> {
    fn drop(&mut self) {
        self.stop_reading();
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<'static, In, Out> {
    /// Runs in the background and returns the outputs as a
    /// [`futures::Stream`] (feature `async`): [`Pipeline::outputs`] then
    /// [`Outputs::into_stream`]. See [`OutputStream`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), paipa::RunError> {
    /// use futures::StreamExt;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let words = Pipeline::new()
    ///     .source(["a", "bb", "ccc"].into_iter())
    ///     .then(Stage::map("len", |w: &str| w.len()))?
    ///     .stream()?;
    /// let total: usize = words.fold(0, |n, len| async move { n + len }).await;
    /// assert_eq!(total, 6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(self) -> Result<OutputStream<Out>, RunError> {
        self.outputs()?.into_stream()
    }
}

impl<'a, In: Send + 'a, Out: Send + 'a> Pipeline<'a, In, Out> {
    /// Reads the input from a [`futures::Stream`] (feature `async`), as
    /// [`source`](Pipeline::source) does from an iterator: pulled only as
    /// the pipeline drains, on the source thread, so a stream that waits
    /// takes no runtime thread. A stream whose `size_hint` is exact gives
    /// progress views their total.
    ///
    /// Timers and IO inside the stream run on the tokio runtime current
    /// where this is called, if any: a multi-thread runtime drives them on
    /// its own threads; a current-thread one while its `block_on` runs (as
    /// in a `#[tokio::main(flavor = "current_thread")]` program awaiting the
    /// outputs). Called outside a runtime, the source thread runs the
    /// stream on a current-thread runtime of its own. When the run stops
    /// early the stream is dropped, inside the same runtime, and read no
    /// further.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), paipa::RunError> {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// // A stream that waits on tokio's timer between items.
    /// let ticks = futures::stream::iter(1..=5u64).then(|x| async move {
    ///     tokio::time::sleep(Duration::from_millis(1)).await;
    ///     x
    /// });
    /// let out = Pipeline::new()
    ///     .source_stream(ticks)
    ///     .then(Stage::map("double", |x: u64| x * 2))?
    ///     .stream()?;
    /// let mut doubled: Vec<u64> = out.collect().await;
    /// doubled.sort_unstable();
    /// assert_eq!(doubled, [2, 4, 6, 8, 10]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn source_stream<S>(self, stream: S) -> Self
    where
        S: Stream<Item = In> + Send + 'a,
    {
        self.source(StreamSource {
            stream: Some(Box::pin(stream)),
            on: match tokio::runtime::Handle::try_current() {
                Ok(handle) => On::Caller(handle),
                Err(_) => On::Own(None),
            },
        })
    }
}

/// How a wait for a stream's next item ended.
enum Waited<T> {
    Done(T),
    Stop,
    Yield,
}

/// Polls `fut` on this thread (parked between wake-ups), in slices that
/// end to look at the run (see `waiting.rs`). The runtime whose context is
/// entered drives the future's IO and timers on its own threads.
fn block_on_slices<F: std::future::Future>(fut: F) -> Waited<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(x) = fut.as_mut().poll(&mut cx) {
            return Waited::Done(x);
        }
        match waiting::wait() {
            Wait::Stop => return Waited::Stop,
            Wait::Yield => return Waited::Yield,
            Wait::For(d) => std::thread::park_timeout(d),
            Wait::Forever => std::thread::park(),
        }
    }
}

/// Where a [`StreamSource`] polls its stream.
enum On {
    /// Inside the caller's runtime context, waiting with a parked thread.
    Caller(tokio::runtime::Handle),
    /// On a current-thread runtime of the source thread's own (made on the
    /// first pull).
    Own(Option<tokio::runtime::Runtime>),
}

/// A stream read as a blocking iterator by the source thread.
struct StreamSource<S> {
    stream: Option<Pin<Box<S>>>,
    on: On,
}

impl<S: Stream> Iterator for StreamSource<S> {
    type Item = S::Item;

    fn next(&mut self) -> Option<S::Item> {
        use futures::StreamExt;
        let stream = self.stream.as_mut()?;
        // Waits in slices, looking at the run between them (see
        // `waiting.rs`): a stop ends the input, a linger that passed while
        // the puller holds items hands them on.
        let next = match &mut self.on {
            On::Caller(handle) => {
                let _inside = handle.enter();
                match block_on_slices(stream.next()) {
                    Waited::Done(x) => x,
                    Waited::Stop => None,
                    Waited::Yield => {
                        waiting::yield_now();
                        return None;
                    }
                }
            }
            On::Own(rt) => {
                if rt.is_none() {
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(made) => *rt = Some(made),
                        Err(e) => panic!("cannot start a runtime for the source stream: {e}"),
                    }
                }
                let rt = rt.as_ref()?;
                let waited = rt.block_on(async {
                    let mut next = stream.next();
                    loop {
                        let slice = match waiting::wait() {
                            Wait::Stop => return Waited::Stop,
                            Wait::Yield => return Waited::Yield,
                            Wait::For(d) => d,
                            Wait::Forever => return Waited::Done((&mut next).await),
                        };
                        if let Ok(x) = tokio::time::timeout(slice, &mut next).await {
                            return Waited::Done(x);
                        }
                    }
                });
                match waited {
                    Waited::Done(x) => x,
                    Waited::Stop => None,
                    Waited::Yield => {
                        waiting::yield_now();
                        return None;
                    }
                }
            }
        };
        if next.is_none() {
            self.stream = None;
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.as_ref().map_or((0, Some(0)), |s| s.size_hint())
    }
}

impl<S> Drop for StreamSource<S> {
    fn drop(&mut self) {
        // Drop the stream inside its runtime: its timers and IO
        // deregister there.
        match &self.on {
            On::Caller(handle) => {
                let _inside = handle.enter();
                self.stream = None;
            }
            On::Own(Some(rt)) => {
                let _inside = rt.enter();
                self.stream = None;
            }
            On::Own(None) => {}
        }
    }
}

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
pub(crate) const UNANSWERED: &str = "puts_landed_after_cancel";

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

/// The relay thread of one [`Input`] handle (see the module docs).
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

impl<T: Send + 'static> Input<T> {
    /// Puts one item, waiting while the pipeline is full without blocking
    /// the runtime thread (feature `async`): a put that finds room is made
    /// at once; one that must wait is handed to this handle's relay thread
    /// (started on the first such put, ended when the handle is dropped).
    /// Refused with [`Closed`] once the pipeline no longer takes input.
    ///
    /// Cancelling (dropping the future) before the relay tries the put
    /// drops the item unput; once it is trying, the item is put when room
    /// comes. Dropping the handle ends the input as for [`Input::put`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), paipa::RunError> {
    /// use futures::StreamExt;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let mut pipeline = Pipeline::new().capacity(2)?;
    /// let input = pipeline.input();
    /// let out = pipeline.then(Stage::map("inc", |x: u64| x + 1))?.stream()?;
    /// // The puts wait on room that only the stream, polled on the same
    /// // runtime thread, makes.
    /// let feed = async move {
    ///     for x in 0..100 {
    ///         input.put_async(x).await.expect("open");
    ///     }
    /// };
    /// let (_, sum) = tokio::join!(feed, out.fold(0, |sum, x| async move { sum + x }));
    /// assert_eq!(sum, (1..=100).sum::<u64>());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_async(&self, item: T) -> Result<(), Closed<T>> {
        self.deliver_async(Msg::Items(vec![item]), None)
            .await
            .map_err(|(m, _)| Closed(single(m)))
    }

    /// [`Input::put_batch_timeout`] without blocking a runtime thread
    /// (feature `async`): one all-or-nothing hand-over of `items`, waiting
    /// at most `timeout` for room. A batch that fits at once is put at once;
    /// one that must wait is handed to this handle's relay thread, which
    /// takes the waiting puts of all tasks in turn; a put whose deadline
    /// passes while others are in front of it gets one try at room and is
    /// answered then (within 10 ms of its deadline); a timeout too long
    /// to be a deadline on the clock (`Duration::MAX`) waits for ever, as
    /// [`Input::put_async`] does. The ingestion server puts each request's
    /// entries this way.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use paipa::threaded::{Pipeline, PutError, Stage};
    ///
    /// let mut pipeline = Pipeline::new().capacity(8)?;
    /// let input = pipeline.input();
    /// let running = pipeline.then(Stage::map("id", |x: u32| x))?.spawn()?;
    /// input.put_batch_async(vec![1, 2, 3], Duration::from_secs(1)).await?;
    /// // More than the capacity could never fit: refused at once, given back.
    /// match input.put_batch_async((0..9).collect(), Duration::from_secs(1)).await {
    ///     Err(PutError::TooLarge(back)) => assert_eq!(back.len(), 9),
    ///     other => panic!("{other:?}"),
    /// }
    /// drop(input);
    /// assert_eq!(running.wait()?.items, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_batch_async(&self, items: Vec<T>, timeout: std::time::Duration) -> Result<(), PutError<Vec<T>>> {
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > self.shared.layout.capacity {
            return Err(PutError::TooLarge(items));
        }
        match self
            .deliver_async(Msg::Items(items), crate::sync::deadline::deadline(timeout))
            .await
        {
            Ok(()) => Ok(()),
            Err((Msg::Items(v), true)) => Err(PutError::Full(v)),
            Err((Msg::Items(v), false)) => Err(PutError::Closed(v)),
            Err((Msg::Meta(_), _)) => unreachable!("items were sent"),
        }
    }

    /// Delivers at once if there is room, else through the relay thread
    /// (waiting until `deadline`, or for ever).
    async fn deliver_async(&self, msg: Msg<T>, deadline: Option<Instant>) -> Result<(), (Msg<T>, bool)> {
        let msg = match self.shared.deliver(msg, Some(Instant::now())) {
            Ok(()) => return Ok(()),
            Err((m, false)) => return Err((m, false)),
            Err((m, true)) => m,
        };
        let relay = self.relay.get_or_init(|| Relay::start(self.shared.clone()));
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
                msg = match self.shared.deliver(msg, Some(Instant::now())) {
                    Ok(()) => return Ok(()),
                    Err((m, false)) => return Err((m, false)),
                    Err((m, true)) if deadline.is_some_and(|d| Instant::now() >= d) => return Err((m, true)),
                    Err((m, true)) => m,
                };
            },
        }
    }
}
