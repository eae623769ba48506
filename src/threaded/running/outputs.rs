//! [`Outputs`]: the last stage's outputs as an iterator, on the caller's
//! thread or from a background run.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::consumer::{Consumer, ConsumerClock};
use super::join::{join_on_drop, join_run, RunThread};
use super::summary::{Cells, Summary};
use crate::error::RunError;
#[cfg(all(feature = "async", not(loom)))]
use crate::sync::chan::Receiver;
use crate::sync::chan::Sender;
use crate::threaded::edge::{EdgeRx, Msg};
use crate::threaded::worker::{weight, Weigher};
use crate::Stats;

/// The run behind a background [`Outputs`](crate::threaded::Outputs).
pub(crate) struct Background {
    pub(crate) thread: Option<RunThread>,
    pub(crate) stats: Stats,
    /// Every stage's cell, to name a worker stuck in a step.
    pub(crate) cells: Cells,
}

/// The outputs of the last stage, as an iterator. Dropping it before the end
/// stops the pipeline cleanly (counted as discarded, not as an error): the
/// input is closed, and what was not read (the rest of a batch, batches
/// still on the last edge) is counted as the last stage's `discarded`.
pub struct Outputs<T> {
    pub(crate) rx: Option<EdgeRx<T>>,
    /// Told what was delivered once the outputs reach their end or are
    /// dropped.
    pub(crate) consumer: Arc<Consumer>,
    /// Dropped when reading stops (wakes a background run waiting for it).
    pub(crate) stopped: Option<Sender<()>>,
    /// Weight of the items received (whole batches) so far.
    pub(crate) received: u64,
    pub(crate) weigh: Option<Weigher<T>>,
    pub(crate) current: std::vec::IntoIter<T>,
    pub(crate) ended: bool,
    pub(crate) metas: u64,
    pub(crate) background: Option<Background>,
    /// Measures the consumer in its own row.
    pub(crate) clock: ConsumerClock,
    /// Set by a bridge that reads these outputs on its own thread (see
    /// `tokio/stream.rs`): the books are settled when it lets go (`release`), not
    /// when reading stops, for it may hand items back until then.
    pub(crate) hold: bool,
    /// Reading reached the end of the outputs.
    pub(crate) reached_end: bool,
    /// Weight of the items received and then handed back unread.
    pub(crate) returned: u64,
    /// When set, a wait on the last edge gives up once this is ready.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) stop: Option<Receiver<()>>,
}

/// Why reading stopped.
enum Stop {
    /// The outputs reached their end.
    End,
    /// The reader was told to stop (a bridge's `stop` became ready).
    #[cfg(all(feature = "async", not(loom)))]
    Told,
}

impl<T> fmt::Debug for Outputs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outputs")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T> Outputs<T> {
    pub(crate) fn new(
        rx: EdgeRx<T>,
        background: Option<Background>,
        consumer: Arc<Consumer>,
        stopped: Sender<()>,
        weigh: Option<Weigher<T>>,
        clock: ConsumerClock,
    ) -> Self {
        Outputs {
            rx: Some(rx),
            consumer,
            stopped: Some(stopped),
            received: 0,
            weigh,
            current: Vec::new().into_iter(),
            ended: false,
            metas: 0,
            background,
            clock,
            hold: false,
            reached_end: false,
            returned: 0,
            #[cfg(all(feature = "async", not(loom)))]
            stop: None,
        }
    }

    /// For a bridge that reads on its own thread: the books wait for
    /// [`Outputs::release`], items may be handed back with
    /// [`Outputs::give_back`], and a wait on the last edge gives up once
    /// `stop` is ready.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn hold(&mut self, stop: Receiver<()>) {
        self.hold = true;
        self.stop = Some(stop);
    }

    /// An item taken from these outputs never reached the consumer: it is
    /// counted as the last stage's `discarded`, as the rest of a partly
    /// read batch is.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn give_back(&mut self, item: &T) {
        self.returned += weight(std::slice::from_ref(item), &self.weigh);
    }

    /// Waits for the next message on the last edge.
    fn wait(&mut self) -> Result<Msg<T>, Stop> {
        let Some(rx) = self.rx.as_ref() else {
            return Err(Stop::End);
        };
        #[cfg(all(feature = "async", not(loom)))]
        if let Some(stop) = self.stop.as_ref() {
            return self.clock.timed(&self.weigh, || match rx.recv_blocking_or_stop(stop) {
                Some(Ok(msg)) => Ok(msg),
                Some(Err(_)) => Err(Stop::End),
                None => Err(Stop::Told),
            });
        }
        self.clock.recv(rx, &self.weigh).map_err(|()| Stop::End)
    }

    /// Meta entries seen so far (they are counted, not yielded).
    pub fn metas(&self) -> u64 {
        self.metas
    }

    /// Live stats of a background run (`None` for a scoped run, whose
    /// summary comes from `run_with`).
    pub fn stats(&self) -> Option<Stats> {
        self.background.as_ref().map(|b| b.stats.clone())
    }

    /// Stops reading (if not at the end), joins a background run and
    /// returns its result.
    ///
    /// Waits for ever on a step that never returns (dropping the outputs
    /// instead waits at most [`DROP_GRACE`](crate::threaded::DROP_GRACE)).
    pub fn finish(mut self) -> Result<Summary, RunError> {
        self.release();
        match self.background.take() {
            Some(mut b) => join_run(b.thread.take().expect("joined once")),
            None => Err(RunError::Config(crate::error::ConfigError::new(
                "outputs",
                "scoped",
                "a scoped run returns its summary from run_with",
            ))),
        }
    }

    /// Drops the receiving end: the last stage finds its output gone and
    /// stops, and so on upstream (stages do not discard what is already
    /// through). Tells the run what was delivered: the rest of a partly
    /// read batch, and whatever is still on the last edge, are counted as
    /// the last stage's discards when the run ends. The run then closes its
    /// input (see `run_with` and `spawn_outputs`).
    pub(crate) fn stop_reading(&mut self, at_end: bool) {
        self.ended = true;
        self.reached_end |= at_end;
        self.rx = None;
        if !self.hold {
            self.release();
        }
    }

    /// Settles the books once reading stopped for good (see
    /// [`Outputs::stop_reading`]).
    pub(crate) fn release(&mut self) {
        self.ended = true;
        if let Some(stopped) = self.stopped.take() {
            if !self.reached_end {
                self.clock.stop();
            }
            self.consumer
                .early
                .store(!self.reached_end || self.returned > 0, Ordering::SeqCst);
            let unread = weight(self.current.as_slice(), &self.weigh) + self.returned;
            self.consumer
                .delivered
                .store(self.received.saturating_sub(unread), Ordering::SeqCst);
            self.consumer.done.store(true, Ordering::SeqCst);
            drop(stopped);
        }
        self.current = Vec::new().into_iter();
        self.rx = None;
    }
}

impl<T> Iterator for Outputs<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.current.next() {
                return Some(x);
            }
            if self.ended {
                return None;
            }
            match self.wait() {
                Ok(Msg::Items(b)) => {
                    self.received += self.clock.last;
                    self.current = b.into_iter();
                }
                Ok(Msg::Meta(_)) => self.metas += 1,
                Err(Stop::End) => self.stop_reading(true),
                #[cfg(all(feature = "async", not(loom)))]
                Err(Stop::Told) => self.stop_reading(false),
            }
        }
    }
}

impl<T> Drop for Outputs<T> {
    /// Stops reading; a background run is joined within [`DROP_GRACE`](crate::threaded::DROP_GRACE),
    /// as a dropped [`Running`](crate::threaded::Running) is.
    fn drop(&mut self) {
        self.release();
        if let Some(mut b) = self.background.take() {
            join_on_drop(&mut b.thread, &b.cells);
        }
    }
}
