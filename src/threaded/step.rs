//! The step type with lifecycle hooks, the handle through which a step emits
//! items, and the meta entries that travel beside items.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::outbox::Outbox;
use crate::error::BoxError;

/// An out-of-band entry that travels through every stage beside the items,
/// handled by [`Step::process_meta`] (passed through unchanged by default).
///
/// Read it back with [`Meta::get`], which names the stored type when it is
/// not the one asked for: a literal `123` is an `i32`, not an `i64`.
///
/// ```
/// use paipa::threaded::Meta;
///
/// let meta = Meta::new("checkpoint 7");
/// assert_eq!(meta.get::<&str>(), Ok(&"checkpoint 7"));
///
/// let meta = Meta::new(123);
/// let err = meta.get::<i64>().unwrap_err();
/// assert_eq!(err.to_string(), "the meta entry holds a i32, not a i64");
/// assert_eq!(meta.get::<i32>(), Ok(&123));
/// ```
#[derive(Clone)]
pub struct Meta(Arc<Typed<dyn Any + Send + Sync>>);

/// A meta entry's value and its type's name, behind one pointer: a `Meta`
/// stays two words, so the messages on every edge do not grow.
struct Typed<V: ?Sized> {
    type_name: &'static str,
    value: V,
}

/// [`Meta::get`] asked for another type than the one stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the meta entry holds a {stored}, not a {asked}")]
pub struct MetaTypeError {
    /// The type stored in the entry.
    pub stored: &'static str,
    /// The type asked for.
    pub asked: &'static str,
}

impl Meta {
    /// Wraps any value as a meta entry (its type is kept, for
    /// [`Meta::get`]'s errors).
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Meta(Arc::new(Typed {
            type_name: std::any::type_name::<T>(),
            value,
        }))
    }

    /// The value as a `T`, or an error naming the type stored.
    pub fn get<T: Any>(&self) -> Result<&T, MetaTypeError> {
        self.0.value.downcast_ref().ok_or(MetaTypeError {
            stored: self.0.type_name,
            asked: std::any::type_name::<T>(),
        })
    }

    /// The name of the stored value's type.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name
    }

    /// The value, if it is a `T` (see [`Meta::get`] for an error that says
    /// what it is instead).
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.value.downcast_ref()
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("type", &self.0.type_name)
            .finish_non_exhaustive()
    }
}

/// The shortest wait of an idle worker between two [`Step::on_idle`]
/// calls: a shorter [`Step::idle_timeout`] counts as this.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(1);

/// The wait between two `on_idle` calls for a step's `idle_timeout`.
pub(crate) fn idle_wait(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.max(MIN_IDLE_TIMEOUT))
}

/// Who a worker is: its stage and its index among the stage's workers.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The stage's name.
    pub stage: String,
    /// This worker's index, from 0.
    pub index: usize,
    /// How many workers the stage has.
    pub workers: usize,
}

/// Where a step puts what it produces. Items are batched internally and sent
/// downstream when a batch is full or the worker is about to wait.
pub struct Output<'a, T> {
    pub(crate) outbox: &'a mut Outbox<T>,
}

impl<T> fmt::Debug for Output<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

impl<T> Output<'_, T> {
    /// Sends one item downstream (it may wait for space: backpressure). If
    /// the run is stopping, the item is counted as discarded.
    #[inline]
    pub fn emit(&mut self, item: T) {
        self.outbox.push(item);
    }

    /// Sends a meta entry downstream, after every item emitted before it.
    pub fn emit_meta(&mut self, meta: Meta) {
        self.outbox.meta(meta);
    }

    /// True once the run is stopping: it was cancelled (an error elsewhere,
    /// an abort, a second signal), or nothing downstream reads any more. A
    /// step that waits inside a call (for room on a server, say) should
    /// give up then, so that the stop is not held up by it.
    pub fn is_stopping(&self) -> bool {
        self.outbox.is_gone() || self.outbox.is_cancelled()
    }
}

/// A step with state and lifecycle hooks: one instance per worker, made by a
/// [`StepFactory`].
///
/// ```
/// use paipa::threaded::{Output, Step};
///
/// /// Emits a running total of its worker's items.
/// struct RunningSum(u64);
///
/// impl Step for RunningSum {
///     type In = u64;
///     type Out = u64;
///     fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), paipa::BoxError> {
///         self.0 += item;
///         out.emit(self.0);
///         Ok(())
///     }
/// }
/// ```
pub trait Step: Send {
    /// The items the stage takes.
    type In: Send;
    /// The items the stage emits.
    type Out: Send;

    /// Handles one item, emitting any number of items.
    fn process(&mut self, item: Self::In, out: &mut Output<'_, Self::Out>) -> Result<(), BoxError>;

    /// Handles a meta entry; passes it on unchanged unless overridden.
    fn process_meta(&mut self, meta: Meta, out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        out.emit_meta(meta);
        Ok(())
    }

    /// Called once in the worker's thread before its first item.
    fn on_start(&mut self, _worker: &WorkerInfo) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called when the worker's input is empty, before it waits; and again
    /// every [`Step::idle_timeout`] while the input stays empty.
    fn on_idle(&mut self, _out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        Ok(())
    }

    /// How often `on_idle` is called while the input stays empty (never
    /// again after the first call, if `None`).
    ///
    /// A timeout under [`MIN_IDLE_TIMEOUT`] (1 ms), zero included, counts
    /// as 1 ms: an idle worker waits at least that long between two calls,
    /// so it never spins a core. A timeout too long to land on the clock
    /// (`Duration::MAX`) is `None`: no call after the first.
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }

    /// Called once when the input has ended (not when the run was stopped by
    /// an error); may emit a last partial result.
    fn on_finish(&mut self, _out: &mut Output<'_, Self::Out>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once per worker as it shuts down, however the run ends (after
    /// `on_finish` when the input ended; alone when the run was stopped).
    /// Release per-worker resources here.
    fn on_shutdown(&mut self) {}

    /// How many items this worker has taken and still holds without having
    /// emitted their results (a partial batch it has not sent): read as
    /// the worker ends, before `on_shutdown`, and counted as discarded, so
    /// a step that emits one result per item keeps its stage's books
    /// (`count_in = count + skipped + failed + discarded`) when a run stops
    /// with items in its hands. Zero unless overridden.
    fn held(&self) -> u64 {
        0
    }
}

/// Makes one [`Step`] per worker, and holds what the stage's workers share.
///
/// Any `Fn(&WorkerInfo) -> S` is a factory with no stage hooks; implement
/// the trait to run code once per stage before the first worker starts and
/// after the last one ends.
pub trait StepFactory: Send + Sync {
    /// The step each worker runs.
    type Step: Step;

    /// Makes the step for one worker.
    fn create(&self, worker: &WorkerInfo) -> Self::Step;

    /// Called once, before the stage's first worker starts. A panic in it
    /// fails the run as [`RunError::Panic`](crate::RunError::Panic) of the
    /// stage (worker 0, the message `in its before_stage hook: ...`), and
    /// no worker starts.
    fn before_stage(&self) {}

    /// Called once, after the stage's last worker has ended. A panic in it
    /// fails the run as [`RunError::Panic`](crate::RunError::Panic) of the
    /// stage (worker 0, the message `in its after_stage hook: ...`).
    fn after_stage(&self) {}
}

impl<S: Step, F: Fn(&WorkerInfo) -> S + Send + Sync> StepFactory for F {
    type Step = S;
    fn create(&self, worker: &WorkerInfo) -> S {
        self(worker)
    }
}
