//! The live input handle: cloneable, usable from any thread while the
//! pipeline runs, and the errors of a put.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[cfg(all(feature = "async", not(loom)))]
use super::relay::{self, Relay};
use crate::sync::deadline::deadline;
use crate::threaded::edge::Msg;
use crate::threaded::input::InputShared;
use crate::threaded::meta::Meta;

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
    pub(crate) relay: std::sync::OnceLock<Option<Relay<T>>>,
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

#[cfg(all(feature = "async", not(loom)))]
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
        relay::deliver(&self.shared, &self.relay, Msg::Items(vec![item]), None)
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
        match relay::deliver(&self.shared, &self.relay, Msg::Items(items), deadline(timeout)).await {
            Ok(()) => Ok(()),
            Err((Msg::Items(v), true)) => Err(PutError::Full(v)),
            Err((Msg::Items(v), false)) => Err(PutError::Closed(v)),
            Err((Msg::Meta(_), _)) => unreachable!("items were sent"),
        }
    }
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
