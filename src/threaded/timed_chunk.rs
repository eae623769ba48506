//! `TimedChunk`: batches of `size`, a partial batch flushed after `timeout`
//! without input, and before a meta entry or the end.

use std::time::{Duration, Instant};

use crate::error::{BoxError, ConfigError};
use crate::iter::steps::{check_chunk_size, CHUNK_RESERVE};
use crate::threaded::meta::Meta;
use crate::threaded::step::{Output, Step, WorkerInfo};

/// A step that groups items into `Vec`s of `size`. A partial batch is sent
/// when no input has arrived for `timeout`, before a meta entry, and at the
/// end of input, so nothing waits forever in a half-full batch.
///
/// ```
/// use std::time::Duration;
/// use paipa::threaded::{Pipeline, Stage, TimedChunk};
///
/// let chunker = TimedChunk::<u32>::new(5, Duration::from_secs(1))?;
/// let mut pipeline = Pipeline::new().then(Stage::step("chunk", move |_: &_| chunker.clone()))?;
/// pipeline.put_all(0..10)?;
/// let (batches, _) = pipeline.run_with(|out| out.collect::<Vec<_>>())?;
/// assert_eq!(batches, vec![(0..5).collect::<Vec<_>>(), (5..10).collect()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TimedChunk<T> {
    size: usize,
    timeout: Duration,
    buf: Vec<T>,
    last_input: Instant,
}

impl<T> Clone for TimedChunk<T> {
    /// A fresh chunker with the same settings (the buffer is not copied).
    fn clone(&self) -> Self {
        TimedChunk {
            size: self.size,
            timeout: self.timeout,
            buf: Vec::with_capacity(self.size.min(CHUNK_RESERVE)),
            last_input: Instant::now(),
        }
    }
}

impl<T> TimedChunk<T> {
    /// Batches of `size` (from 1 to [`MAX_CHUNK`](crate::iter::MAX_CHUNK)), flushed after
    /// `timeout` (more than zero) without input.
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::threaded::TimedChunk;
    /// let err = TimedChunk::<u8>::new(usize::MAX, Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid chunk size: 18446744073709551615 (must be at most 1073741824)");
    /// ```
    pub fn new(size: usize, timeout: Duration) -> Result<Self, ConfigError> {
        check_chunk_size(size)?;
        if timeout.is_zero() {
            return Err(ConfigError::new("chunk timeout", "0s", "must be more than zero"));
        }
        Ok(TimedChunk {
            size,
            timeout,
            buf: Vec::with_capacity(size.min(CHUNK_RESERVE)),
            last_input: Instant::now(),
        })
    }

    fn flush(&mut self, out: &mut Output<'_, Vec<T>>) {
        if !self.buf.is_empty() {
            let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(self.size.min(CHUNK_RESERVE)));
            out.emit(batch);
        }
    }
}

impl<T: Send> Step for TimedChunk<T> {
    type In = T;
    type Out = Vec<T>;

    fn process(&mut self, item: T, out: &mut Output<'_, Vec<T>>) -> Result<(), BoxError> {
        self.last_input = Instant::now();
        self.buf.push(item);
        if self.buf.len() >= self.size {
            self.flush(out);
        }
        Ok(())
    }

    fn process_meta(&mut self, meta: Meta, out: &mut Output<'_, Vec<T>>) -> Result<(), BoxError> {
        self.flush(out);
        out.emit_meta(meta);
        Ok(())
    }

    fn on_start(&mut self, _worker: &WorkerInfo) -> Result<(), BoxError> {
        self.last_input = Instant::now();
        Ok(())
    }

    fn on_idle(&mut self, out: &mut Output<'_, Vec<T>>) -> Result<(), BoxError> {
        if self.last_input.elapsed() >= self.timeout {
            self.flush(out);
        }
        Ok(())
    }

    fn idle_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn on_finish(&mut self, out: &mut Output<'_, Vec<T>>) -> Result<(), BoxError> {
        self.flush(out);
        Ok(())
    }
}
