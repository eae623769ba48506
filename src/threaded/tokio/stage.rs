//! The async stage's constructors and settings (feature `async`): a step
//! that returns a future, with up to `in_flight` futures running at once
//! on one thread (see `driver.rs` for how it runs).

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc;

use crate::error::{BoxError, ConfigError};
use crate::sync::chan::bounded;
use crate::threaded::policy::Policy;
use crate::threaded::run::{job, Job};
use crate::threaded::stage::{Kind, Orderable, Stage, StagePlan};
use crate::threaded::tokio::driver::Driver;
pub use crate::threaded::tokio::driver::TimedOut;
use crate::threaded::tokio::feeder::Feeder;

/// Futures an async stage keeps in flight unless set with
/// [`Stage::in_flight`].
pub const DEFAULT_IN_FLIGHT: usize = 64;

/// The most futures one async stage may keep in flight (2^20). Each waits
/// in memory with its item; past a million, a stage holds more than a
/// bounded pipeline should.
pub const MAX_IN_FLIGHT: usize = 1 << 20;

/// The longest per-item timeout (one day).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The options only an async stage has (its runtime, its per-item
/// timeout): the `X` of an async [`Stage`], set with
/// [`Stage::on_runtime`] and [`Stage::timeout`].
#[derive(Debug, Clone, Default)]
pub struct AsyncOptions {
    /// The caller's runtime, if the stage runs on it.
    pub(crate) runtime: Option<Handle>,
    /// Per-item timeout (each attempt).
    pub(crate) timeout: Option<Duration>,
}

/// An async stage: a [`Stage`] with [`AsyncOptions`].
pub type AsyncStage<'a, In, Out> = Stage<'a, In, Out, AsyncOptions>;

/// An async stage: up to `in_flight` futures on one thread (one row of
/// worker times, no stage chained onto it), in input order on request,
/// retried item by item.
const KIND: Kind = Kind {
    name: "async stages",
    needs_source_thread: false,
    orderable: Orderable::Always,
    retryable: true,
    one_thread: true,
    count: ("in_flight", MAX_IN_FLIGHT),
};

/// Checks an async stage's own options when it is added.
fn check(options: &AsyncOptions, stage: &str) -> Result<(), ConfigError> {
    if let Some(t) = options.timeout {
        if t.is_zero() || t > MAX_TIMEOUT {
            return Err(ConfigError::new(
                "timeout",
                format!("{t:?}"),
                format!("stage {stage:?} takes from 1 ns to {MAX_TIMEOUT:?}"),
            ));
        }
    }
    if let Some(h) = &options.runtime {
        if h.runtime_flavor() == RuntimeFlavor::CurrentThread {
            return Err(ConfigError::new(
                "runtime",
                "current_thread",
                format!(
                    "stage {stage:?}: a current-thread runtime drives its timers and IO only inside its own \
                     block_on; give the handle of a multi-thread runtime"
                ),
            ));
        }
    }
    Ok(())
}

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out, AsyncOptions> {
    /// An async stage: `f` turns each item into a future, and up to
    /// [`in_flight`](Stage::in_flight) of them run at once (64 unless set)
    /// on one thread that paipa owns, with a current-thread tokio runtime
    /// ([`on_runtime`](Stage::on_runtime) for the caller's). Outputs come
    /// out in the order the futures finish.
    ///
    /// The futures are polled on the stage's own thread: they need be
    /// neither `Send` nor `'static`, and may use tokio's timers and IO.
    /// Blocking inside one (a blocking call, heavy CPU work) holds up every
    /// other future of the stage: put such work in a [`Stage::map`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let summary = Pipeline::new()
    ///     .source(0..100u64)
    ///     .then(Stage::map_async("fetch", |id: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(10)).await; // a request
    ///         id * 2
    ///     })
    ///     .in_flight(50))?
    ///     .then(Stage::map("parse", |x: u64| x + 1))?
    ///     .run()?;
    /// assert_eq!(summary.items, 100);
    /// assert_eq!(summary.snapshot.stage("fetch").unwrap().workers, 50);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_async<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Out> + 'a,
    {
        Self::try_map_async(name, move |x| f(x).map(Ok::<Out, BoxError>))
    }

    /// An async stage whose futures may fail: an error goes to the stage's
    /// policy (fail the run, the default; [`skip_errors`](Stage::skip_errors);
    /// [`retry`](Stage::retry), waiting with tokio's timer, so a stop
    /// cancels the wait). A panic inside a future (or in `f`) counts as a
    /// failure of that item, naming the stage.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let summary = Pipeline::new()
    ///     .source(0..10u32)
    ///     .then(Stage::try_map_async("check", |x: u32| async move {
    ///         if x == 7 { Err("no 7") } else { Ok(x) }
    ///     })
    ///     .skip_errors())?
    ///     .run()?;
    /// assert_eq!(summary.items, 9);
    /// assert_eq!(summary.snapshot.stage("check").unwrap().skipped, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_map_async<F, Fut, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<Out, E>> + 'a,
        E: Into<BoxError>,
    {
        let f = move |x: In| f(x).map(|r| r.map_err(Into::into));
        let mut stage = Self::with_options(
            name,
            KIND,
            AsyncOptions::default(),
            check,
            Box::new(move |s, options: AsyncOptions, p| {
                let mut jobs = Vec::new();
                let outbox = p.outbox(s.weigh.clone());
                let (want_tx, want_rx) = bounded::<()>(1);
                let (feed_tx, feed_rx) = mpsc::unbounded_channel();
                let feeder = Feeder {
                    rx: p.rx,
                    source: p.source.clone(),
                    want: want_rx,
                    to_stage: feed_tx,
                    cell: p.cell.clone(),
                    shared: p.shared.clone(),
                    weigh_in: p.weigh_in.clone(),
                };
                jobs.push(Job {
                    name: format!("paipa:{}:feed", s.name),
                    ..job(&s.name, 0, p.shared.clone(), move || feeder.run())
                });
                let stage = Driver {
                    f,
                    bound: s.workers,
                    ordered: s.ordered,
                    policy: Policy::new(
                        s.policy,
                        s.on_skip.clone(),
                        (s.name.clone(), 0),
                        p.cell.clone(),
                        p.shared.clone(),
                    ),
                    clone_in: s.clone_in,
                    timeout: options.timeout,
                    runtime: options.runtime,
                    weigh_in: p.weigh_in,
                    cell: p.cell,
                    cost: p.cost,
                    shared: p.shared.clone(),
                };
                jobs.push(job(&s.name, 0, p.shared, move || stage.run(outbox, want_tx, feed_rx)));
                StagePlan { before: None, jobs }
            }),
        );
        stage.settings.workers = DEFAULT_IN_FLIGHT;
        stage
    }

    /// Keeps at most `n` futures of this async stage in flight (64 unless
    /// set; 0, or more than [`MAX_IN_FLIGHT`], is refused when the stage is
    /// added, naming the field `in_flight`). The stage counts as `n`
    /// workers in the stats: one per future slot.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.settings.workers = n;
        self
    }

    /// Runs this async stage's futures under the caller's tokio runtime (a
    /// multi-thread one: its threads drive the timers and IO, while the
    /// stage's own thread polls the futures with
    /// [`Handle::block_on`]). A current-thread runtime's handle is refused
    /// when the stage is added. Without it, the stage owns a current-thread
    /// runtime on its thread.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    /// let summary = Pipeline::new()
    ///     .source(0..10u32)
    ///     .then(Stage::map_async("on_mine", |x: u32| async move { x + 1 }).on_runtime(rt.handle().clone()))?
    ///     .run()?;
    /// assert_eq!(summary.items, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_runtime(mut self, handle: Handle) -> Self {
        self.options.runtime = Some(handle);
        self
    }

    /// Fails an attempt of an async stage's item that takes longer than
    /// `limit` with [`TimedOut`], which goes to the stage's policy like any
    /// error (from 1 ns to a day; checked when the stage is added).
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let err = Pipeline::new()
    ///     .source([1u64, 5_000])
    ///     .then(Stage::map_async("slow", |ms: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         ms
    ///     })
    ///     .timeout(Duration::from_millis(100)))?
    ///     .run()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("timed out after 100ms"), "{err}");
    /// assert_eq!(err.stage(), Some("slow"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }
}

/// An async stage as a plain [`Stage`], so that stages of every kind fit
/// one list or one `if`: its options are checked now, and a refusal is
/// reported when it is added.
///
/// ```
/// use paipa::threaded::{Pipeline, Stage};
///
/// let waits = true;
/// let first: Stage<'_, u32, u32> = if waits {
///     Stage::map_async("first", |x: u32| async move { x }).in_flight(4).into()
/// } else {
///     Stage::map("first", |x: u32| x).workers(2)
/// };
/// let summary = Pipeline::new().source(0..10u32).then(first)?.run()?;
/// assert_eq!(summary.items, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<'a, In: Send + 'a, Out: Send + 'a> From<AsyncStage<'a, In, Out>> for Stage<'a, In, Out> {
    fn from(stage: AsyncStage<'a, In, Out>) -> Self {
        stage.into_plain()
    }
}
