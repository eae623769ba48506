//! A run's outputs as a [`Stream`] (feature `async`): [`OutputStream`],
//! from [`Outputs::into_stream`] or [`Pipeline::stream`]. It never blocks
//! a runtime thread: a **forwarding thread** owns the [`Outputs`] and
//! sends each item into a bounded tokio channel ([`STREAM_BUFFER`] items),
//! which the stream polls. Dropping the stream closes that channel, hands
//! back to the forwarder what it held unread, and tells a forwarder
//! waiting on the last edge to stop; the forwarder then drops the
//! `Outputs`, which stops the run as dropping them anywhere does. Every
//! item the forwarder took and the stream never yielded is handed back to
//! the `Outputs` first ([`Outputs::give_back`]), so it is counted as the
//! last stage's `discarded`, as the rest of a batch an iterator consumer
//! did not read is. (The async put is `input/relay.rs`; a `Stream` as a
//! source is `source_stream.rs`.)

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::error::RunError;
use crate::sync::chan::{bounded, Sender};
use crate::threaded::running::{Outputs, Summary};
use crate::threaded::Pipeline;
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
