//! A [`futures::Stream`] as a pipeline's source
//! ([`Pipeline::source_stream`]): the stream is polled on the pipeline's
//! source thread (the one a lazy iterator source has), which waits for
//! each item without taking a runtime thread.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use crate::threaded::waiting::{self, Wait};
use crate::threaded::Pipeline;

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
