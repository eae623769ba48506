//! The sink as a pipeline stage: each worker adds its items to the stream
//! through a sink of its own, and sends a partial batch once its input has
//! gone quiet.
//!
//! # Linger
//!
//! A partial batch is sent when the worker's input is empty and the
//! batch's oldest item has waited the edge's
//! [`linger`](EdgeConfig::linger). The worker's idle hook
//! ([`Step::on_idle`]) looks when the input runs dry and then every
//! `linger` while it stays empty ([`Step::idle_timeout`]), so on a quiet
//! input an item waits from `linger` to twice `linger`; a linger of zero
//! sends the batch as soon as the input is empty (the hook is called once
//! then, and that is enough). A busy input never waits for the linger: it
//! fills batches.
//!
//! # End
//!
//! Each worker flushes when its input ends; the last one to do so
//! finishes the producer ([`StreamSink::finish`]: trim, end marker), so a
//! stage counts as one producer whatever its workers. A run that fails or
//! is stopped finishes nothing: what a worker still holds is dropped
//! unsent and counted as discarded in the stage's row ([`Step::held`]),
//! and the entries upstream it came from stay pending. A worker waiting
//! for room in a full stream gives up when the run stops
//! ([`Output::is_stopping`]), so an abort is never held up by it.
//!
//! # Errors under a skip policy
//!
//! When the server does not take a batch, the item being processed is
//! counted by the stage's policy and the rest of the batch is dropped
//! unsent (never sent later with the next batch), counted as discarded.
//! Their entries upstream stay pending: failed with the server's error
//! when the batch was sent by an item's call (see `threaded/fate.rs`),
//! abandoned when it was sent on a quiet input or before a meta entry.
//!
//! # First stage after a stream source
//!
//! A [`StreamSource`](super::StreamSource) waits in its read until entries
//! come. A sink stage is a `Step` stage, so a source thread reads the
//! source for it (its workers do not pull a lazy source themselves): its
//! input looks quiet while the stream is, and the linger applies.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::sink::StreamSink;
use super::tracked::Tracked;
use crate::error::BoxError;
use crate::threaded::{Meta, Output, Stage, Step, StepFactory, WorkerInfo};

/// Makes one [`SinkStep`] per worker.
struct SinkStage<T> {
    cfg: EdgeConfig,
    /// Workers whose input has ended and whose batch is sent.
    flushed: Arc<AtomicUsize>,
    _t: PhantomData<fn(&T)>,
}

/// One worker of a sink stage.
struct SinkStep<T> {
    cfg: EdgeConfig,
    /// Opened as the worker starts (a failure fails the run).
    sink: Option<StreamSink<T>>,
    /// When the oldest item of the partial batch was queued.
    oldest: Option<Instant>,
    workers: usize,
    flushed: Arc<AtomicUsize>,
    /// Items of batches the server did not take (after an error under a
    /// skip policy), other than the one the error is counted on: dropped
    /// unsent, their entries upstream left pending, counted as discarded
    /// (see `Step::held`).
    lost: u64,
}

impl<T: Serialize + Send + 'static> StepFactory for SinkStage<T> {
    type Step = SinkStep<T>;

    fn create(&self, _worker: &WorkerInfo) -> SinkStep<T> {
        SinkStep {
            cfg: self.cfg.clone(),
            sink: None,
            oldest: None,
            workers: 1,
            flushed: self.flushed.clone(),
            lost: 0,
        }
    }
}

impl<T: Serialize> SinkStep<T> {
    /// Sends the partial batch, and emits one `()` per item it confirmed.
    fn flush(&mut self, out: &mut Output<'_, ()>) -> Result<(), BoxError> {
        let sink = self.sink.as_mut().expect("the sink is opened in on_start");
        let before = sink.added();
        let sent = {
            let stop = || out.is_stopping();
            sink.flush_until(&stop)
        };
        if let Err(e) = sent {
            if matches!(e, RemoteError::Stopped { .. }) {
                // Stopping: the batch stays held (counted as discarded).
                return Ok(());
            }
            // Never sent later behind the policy's back (a skipped batch
            // would go out with the next one and be counted twice).
            self.lost += sink.drop_queued() as u64;
            self.oldest = None;
            return Err(e.into());
        }
        let added = sink.added() - before;
        self.oldest = None;
        emit(out, added);
        Ok(())
    }
}

fn emit(out: &mut Output<'_, ()>, n: u64) {
    for _ in 0..n {
        out.emit(());
    }
}

impl<T: Serialize + Send> Step for SinkStep<T> {
    type In = Tracked<T>;
    type Out = ();

    fn on_start(&mut self, worker: &WorkerInfo) -> Result<(), BoxError> {
        let mut sink = StreamSink::open(self.cfg.clone())?;
        // The stage's snapshots show the stream from the start.
        sink.register();
        self.sink = Some(sink);
        self.workers = worker.workers;
        Ok(())
    }

    fn process(&mut self, item: Tracked<T>, out: &mut Output<'_, ()>) -> Result<(), BoxError> {
        let sink = self.sink.as_mut().expect("the sink is opened in on_start");
        let (queued_before, before) = (sink.queued(), sink.added());
        let starts_batch = queued_before == 0;
        let sent = {
            let stop = || out.is_stopping();
            sink.send_until(item, &stop)
        };
        if let Err(e) = sent {
            if matches!(e, RemoteError::Stopped { .. }) {
                // The run is stopping: not a failure. What is queued stays
                // held, and is counted as discarded as the worker ends.
                return Ok(());
            }
            if sink.queued() > queued_before {
                // The batch this item completed was not taken: the item is
                // counted by the stage's policy (failed or skipped), the
                // rest of the batch is dropped unsent. (An item that could
                // not be encoded was never queued: the batch stays.)
                self.lost += sink.drop_queued() as u64 - 1;
                self.oldest = None;
            }
            return Err(e.into());
        }
        let (added, queued) = (sink.added() - before, sink.queued());
        if queued == 0 {
            // The batch was full and is sent.
            self.oldest = None;
        } else if starts_batch {
            self.oldest = Some(Instant::now());
        }
        emit(out, added);
        Ok(())
    }

    fn on_idle(&mut self, out: &mut Output<'_, ()>) -> Result<(), BoxError> {
        match self.oldest {
            Some(since) if since.elapsed() >= self.cfg.linger => self.flush(out),
            _ => Ok(()),
        }
    }

    fn process_meta(&mut self, meta: Meta, out: &mut Output<'_, ()>) -> Result<(), BoxError> {
        // After every item before it: the partial batch goes first.
        self.flush(out)?;
        out.emit_meta(meta);
        Ok(())
    }

    fn held(&self) -> u64 {
        self.sink.as_ref().map_or(0, |s| s.queued() as u64) + self.lost
    }

    fn idle_timeout(&self) -> Option<Duration> {
        // Zero: the call as the input runs dry sends the batch.
        (!self.cfg.linger.is_zero()).then_some(self.cfg.linger)
    }

    fn on_finish(&mut self, out: &mut Output<'_, ()>) -> Result<(), BoxError> {
        self.flush(out)?;
        if out.is_stopping() {
            // A stop came while the batch waited for room: the producer
            // does not end (the run did not finish).
            return Ok(());
        }
        if self.flushed.fetch_add(1, Ordering::SeqCst) + 1 == self.workers {
            // Every worker's entries are in the stream: the producer ends.
            if let Some(sink) = self.sink.take() {
                let stop = || out.is_stopping();
                match sink.finish_until(&stop) {
                    Ok(_) | Err(RemoteError::Stopped { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

impl<T: Serialize + Send + 'static> StreamSink<T> {
    /// A pipeline stage that adds every item to the edge's stream, each
    /// worker through a sink of its own, in batches of the edge's `batch`:
    /// a batch is sent when full, when the input has been quiet for the
    /// edge's [`linger`](EdgeConfig::linger) (20 ms unless set), and when
    /// the input ends. It emits one `()` per item once its XADD is
    /// confirmed (so the run's item count is what the stream got), and
    /// finishes each item's token then (its entries upstream are acked).
    ///
    /// When the input ends, the stage finishes the producer (trim, end
    /// marker: see [`StreamSink::finish`]) once, whatever its workers: it
    /// counts as one of the edge's [`producers`](EdgeConfig::producers).
    /// Items that did not come from a stream are made with
    /// [`Tracked::new`] (their id is their origin id downstream).
    ///
    /// The pipeline's snapshots show the stream (length, and per group
    /// pending, lag and consumers) in [`Snapshot::edges`](crate::Snapshot::edges).
    ///
    /// ```no_run
    /// use paipa::remote::{EdgeConfig, StreamSink, Tracked};
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "squares", "summers");
    /// let summary = Pipeline::new()
    ///     .source(0..1000u64)
    ///     .then(Stage::map("square", |n: u64| Tracked::new(n.to_string(), n * n)))?
    ///     .then(StreamSink::stage("send", edge))?
    ///     .run()?;
    /// assert_eq!(summary.items, 1000); // every one confirmed by the server
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stage<'a>(name: impl Into<String>, cfg: EdgeConfig) -> Stage<'a, Tracked<T>, ()> {
        Stage::step(
            name,
            SinkStage {
                cfg,
                flushed: Arc::default(),
                _t: PhantomData,
            },
        )
    }
}
