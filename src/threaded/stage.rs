//! One stage of a threaded pipeline: its step, worker count, error policy,
//! ordering and counting, before it is added with
//! [`Pipeline::then`](super::Pipeline::then).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::chain::{Chained, Link, Links};
use super::channel::{ByteWeigher, EdgeRx, EdgeTx};
use super::iter_worker::{iter_worker, InputIter};
use super::ordered::{ordered_worker, Reorder};
use super::outbox::{Outbox, Weigher};
use super::pacing::{Cost, Pacing};
use super::policy::{AfterRetries, OnError, SkipHook, Skipped};
use super::pull::SharedSource;
use super::run::{panic_message, stage_hook, Job, RunShared};
use super::step::{Output, Step, StepFactory, WorkerInfo};
use super::worker::{item_worker, StageEnd, WorkerCtx};
use crate::error::{BoxError, ConfigError};
use crate::iter::BoxedStep;
use crate::stats::StageCell;
use crate::sync::AtomicUsize;

/// The most worker threads a stage may have. Each worker is an OS thread
/// with its own stack; past this many, a stage would fail to start its
/// threads (or exhaust the machine) rather than go faster.
pub const MAX_WORKERS: usize = 1024;

/// The most retries a stage may make of one item.
pub const MAX_RETRIES: u32 = 100;

/// The longest wait a stage may make before its first retry of an item
/// (one hour; later waits double from it, up to 2^16 times as long).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The step kinds, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Map,
    /// A per-worker fold (see `fold.rs`): chained as a map is.
    Fold,
    Iter,
    Step,
    /// A step that returns a future (feature `async`, see `async_stage.rs`).
    #[cfg(all(feature = "async", not(loom)))]
    Async,
}

type Launcher<'a, In, Out> =
    Box<dyn FnOnce(&StageSettings<In, Out>, LaunchParts<'a, In, Out>) -> StagePlan<'a> + Send + 'a>;

/// What a launcher produces: worker threads, and a hook to run before them.
pub(crate) struct StagePlan<'a> {
    /// The stage's `before_stage` hook, under its panic guard
    /// ([`stage_hook`]).
    pub(crate) before: Option<Box<dyn FnOnce() + Send + 'a>>,
    pub(crate) jobs: Vec<Job<'a>>,
}

/// The run-time parts of a stage launch.
pub(crate) struct LaunchParts<'a, In, Out> {
    pub(crate) rx: EdgeRx<In>,
    /// The lazy source, if this stage's workers pull it (see `pull.rs`).
    pub(crate) source: Option<Arc<SharedSource<'a, In>>>,
    /// Where the stage after this one is chained, if it is: each worker
    /// takes its link when it starts.
    pub(crate) links: Option<Arc<Links<'a, Out>>>,
    pub(crate) tx: EdgeTx<Out>,
    /// How the stage's outboxes cut their batches.
    pub(crate) pacing: Pacing,
    /// What an item costs this stage (its workers measure it).
    pub(crate) cost: Arc<Cost>,
    pub(crate) cell: Arc<StageCell>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) weigh_in: Option<Weigher<In>>,
}

impl<In, Out> LaunchParts<'_, In, Out> {
    /// A worker's outbox on this stage's output edge.
    pub(crate) fn outbox(&self, weigh: Option<Weigher<Out>>) -> Outbox<Out> {
        Outbox::new(
            self.tx.clone(),
            self.pacing.clone(),
            self.cell.clone(),
            self.shared.clone(),
            weigh,
        )
    }
}

/// The settings of a stage.
pub(crate) struct StageSettings<In, Out> {
    pub(crate) name: String,
    pub(crate) workers: usize,
    pub(crate) policy: OnError,
    /// The policy was set on the stage (not left at its default), so the
    /// run's default for the others (`StageDefaults`, which the ingestion
    /// server sets) leaves it as it is.
    pub(crate) policy_set: bool,
    pub(crate) ordered: bool,
    pub(crate) capacity: Option<usize>,
    /// A bound by weight on the output edge: bytes, and the weigher.
    pub(crate) max_bytes: Option<(usize, ByteWeigher<Out>)>,
    pub(crate) weigh: Option<Weigher<Out>>,
    /// The run a panicking weigher fails (set when the stage is added).
    pub(crate) weigh_run: Option<Arc<OnceLock<Arc<RunShared>>>>,
    pub(crate) clone_in: Option<fn(&In) -> In>,
    pub(crate) kind: Kind,
    /// May run chained to the stage before it (see `chain.rs`).
    pub(crate) chain: bool,
    pub(crate) on_skip: Option<SkipHook>,
    /// An async stage's own settings (feature `async`).
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) asynk: super::async_stage::AsyncSettings,
}

/// A stage of a threaded pipeline, ready to be added with
/// [`Pipeline::then`](super::Pipeline::then).
///
/// ```
/// use paipa::threaded::{Pipeline, Stage};
/// use std::time::Duration;
///
/// let summary = Pipeline::new()
///     .source(0..1000u64)
///     .then(Stage::map("double", |x: u64| x * 2).workers(4))?
///     .then(Stage::try_map("check", |x: u64| if x == 34 { Err("no 34") } else { Ok(x) })
///         .retry(1, Duration::from_millis(1))
///         .then_skip())?
///     .run()?;
/// assert_eq!(summary.items, 999);
/// assert_eq!(summary.snapshot.stage("check").unwrap().skipped, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a stage does nothing until added to a pipeline"]
pub struct Stage<'a, In, Out> {
    pub(crate) settings: StageSettings<In, Out>,
    pub(crate) launch: Launcher<'a, In, Out>,
    /// Launches the stage chained to the one before it, on its threads
    /// (function stages only; see `chain.rs`).
    pub(crate) chain: Option<ChainLauncher<'a, In, Out>>,
}

/// Makes a chained stage's workers, one per worker of the stage before.
pub(crate) type ChainLauncher<'a, In, Out> =
    Box<dyn FnOnce(&StageSettings<In, Out>, LaunchParts<'a, In, Out>) -> Vec<Link<'a, In>> + Send + 'a>;

impl<In, Out> StageSettings<In, Out> {
    /// True for an async stage (feature `async`).
    pub(crate) fn is_async(&self) -> bool {
        #[cfg(all(feature = "async", not(loom)))]
        {
            self.kind == Kind::Async
        }
        #[cfg(not(all(feature = "async", not(loom))))]
        {
            false
        }
    }
}

impl<In, Out> fmt::Debug for Stage<'_, In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("Stage")
            .field("name", &s.name)
            .field("workers", &s.workers)
            .field("policy", &s.policy)
            .field("ordered", &s.ordered)
            .finish_non_exhaustive()
    }
}

/// The per-worker contexts and outboxes of a stage.
fn workers<'a, In, Out>(
    s: &StageSettings<In, Out>,
    p: LaunchParts<'a, In, Out>,
    after: Arc<dyn Fn() + Send + Sync + 'a>,
) -> Vec<(WorkerCtx<'a, In>, Outbox<Out>)> {
    let remaining = Arc::new(AtomicUsize::new(s.workers));
    (0..s.workers)
        .map(|index| {
            let cx = WorkerCtx {
                info: WorkerInfo {
                    stage: s.name.clone(),
                    index,
                    workers: s.workers,
                },
                rx: p.rx.clone(),
                cell: p.cell.clone(),
                shared: p.shared.clone(),
                policy: s.policy,
                clone_in: s.clone_in,
                weigh_in: p.weigh_in.clone(),
                on_skip: s.on_skip.clone(),
                cost: p.cost.clone(),
                source: p.source.clone(),
                end: StageEnd {
                    remaining: remaining.clone(),
                    after: after.clone(),
                },
            };
            (cx, p.outbox(s.weigh.clone()))
        })
        .collect()
}

/// The plan of a stage whose workers each run a step made by `make`, on
/// threads of their own.
pub(crate) fn item_plan<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
) -> StagePlan<'a>
where
    S: Step + 'a,
    S::In: 'a,
    S::Out: 'a,
{
    let links = p.links.clone();
    let jobs = workers(s, p, Arc::new(|| {}))
        .into_iter()
        .enumerate()
        .map(|(i, (cx, outbox))| {
            let (step, shared, links) = (make(), cx.shared.clone(), links.clone());
            job(&s.name, i, shared, move || item_worker(step, cx, outbox, links))
        })
        .collect();
    StagePlan { before: None, jobs }
}

/// The workers of such a stage chained to the stage before (see
/// `chain.rs`).
pub(crate) fn chained_links<'a, S>(
    s: &StageSettings<S::In, S::Out>,
    p: LaunchParts<'a, S::In, S::Out>,
    make: impl Fn() -> S,
) -> Vec<Link<'a, S::In>>
where
    S: Step + 'a,
    S::In: 'a,
    S::Out: 'a,
{
    let links = p.links.clone();
    workers(s, p, Arc::new(|| {}))
        .into_iter()
        .map(|(cx, outbox)| Box::new(Chained::new(make(), cx, outbox, links.clone())) as Link<'a, S::In>)
        .collect()
}

/// A worker thread. Whatever it runs outside the guards around user calls
/// (`StepFactory::create`, say) cannot kill it silently: a panic fails the
/// run, naming the stage and worker, which cancels every other thread.
pub(crate) fn job<'a>(name: &str, index: usize, shared: Arc<RunShared>, run: impl FnOnce() + Send + 'a) -> Job<'a> {
    let stage = name.to_string();
    Job {
        name: format!("paipa:{name}:{index}"),
        run: Box::new(move || {
            if let Err(p) = catch_unwind(AssertUnwindSafe(run)) {
                shared.fail(crate::error::RunError::Panic {
                    stage,
                    worker: index,
                    message: panic_message(&*p),
                });
            }
        }),
    }
}

/// A function step as a [`Step`].
struct MapStep<F, In, Out> {
    f: Arc<F>,
    _types: std::marker::PhantomData<fn(In) -> Out>,
}

impl<F, In: Send, Out: Send> Step for MapStep<F, In, Out>
where
    F: Fn(In) -> Result<Out, BoxError> + Send + Sync,
{
    type In = In;
    type Out = Out;

    #[inline]
    fn process(&mut self, item: In, out: &mut Output<'_, Out>) -> Result<(), BoxError> {
        out.emit((self.f)(item)?);
        Ok(())
    }
}

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    pub(crate) fn with(name: impl Into<String>, kind: Kind, launch: Launcher<'a, In, Out>) -> Self {
        Stage {
            settings: StageSettings {
                name: name.into(),
                workers: 1,
                policy: OnError::Fail,
                policy_set: false,
                ordered: false,
                capacity: None,
                max_bytes: None,
                weigh: None,
                weigh_run: None,
                clone_in: None,
                kind,
                chain: true,
                on_skip: None,
                #[cfg(all(feature = "async", not(loom)))]
                asynk: Default::default(),
            },
            launch,
            chain: None,
        }
    }

    /// A stage that applies a function to each item.
    pub fn map<F>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Out + Send + Sync + 'a,
    {
        Self::try_map(name, move |x| Ok::<Out, BoxError>(f(x)))
    }

    /// A stage that applies a fallible function to each item; errors go to
    /// the stage's policy.
    pub fn try_map<F, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Result<Out, E> + Send + Sync + 'a,
        E: Into<BoxError>,
    {
        let f = Arc::new(move |x: In| f(x).map_err(Into::into));
        let chained = f.clone();
        let mut stage = Self::with(
            name,
            Kind::Map,
            Box::new(move |s, p| {
                if s.ordered && s.workers > 1 {
                    let reorder = Reorder::new(
                        Outbox::new(
                            p.tx.clone(),
                            p.pacing.clone(),
                            p.cell.clone(),
                            p.shared.clone(),
                            s.weigh.clone(),
                        ),
                        2 * s.workers,
                    );
                    let jobs = workers(s, p, Arc::new(|| {}))
                        .into_iter()
                        .enumerate()
                        .map(|(i, (cx, _))| {
                            let (f, reorder, shared) = (f.clone(), reorder.clone(), cx.shared.clone());
                            job(&s.name, i, shared, move || ordered_worker(f, reorder, cx))
                        })
                        .collect();
                    return StagePlan { before: None, jobs };
                }
                item_plan(s, p, || MapStep {
                    f: f.clone(),
                    _types: std::marker::PhantomData,
                })
            }),
        );
        stage.chain = Some(Box::new(move |s, p| {
            chained_links(s, p, || MapStep {
                f: chained.clone(),
                _types: std::marker::PhantomData,
            })
        }));
        stage
    }

    /// A stage whose workers each run an iterator step over the stage's
    /// input: any function from an iterator to an iterator, which may keep
    /// state (a running count, a batch). Iterator-pipeline steps plug in
    /// unchanged.
    pub fn iter<F, J>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(InputIter<'a, In>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = Out>,
    {
        Self::try_iter(name, move |it| f(it).into_iter().map(Ok::<Out, BoxError>))
    }

    /// An iterator stage whose items are results; an error goes to the
    /// stage's policy (fail, or skip that entry).
    pub fn try_iter<F, J, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(InputIter<'a, In>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = Result<Out, E>>,
        E: Into<BoxError>,
    {
        let f = Arc::new(f);
        Self::with(
            name,
            Kind::Iter,
            Box::new(move |s, p| {
                let links = p.links.clone();
                let jobs = workers(s, p, Arc::new(|| {}))
                    .into_iter()
                    .enumerate()
                    .map(|(i, (cx, outbox))| {
                        let (f, shared, links) = (f.clone(), cx.shared.clone(), links.clone());
                        job(&s.name, i, shared, move || {
                            iter_worker(
                                move |input| f(input).into_iter().map(|r| r.map_err(Into::into)),
                                cx,
                                outbox,
                                links,
                            )
                        })
                    })
                    .collect();
                StagePlan { before: None, jobs }
            }),
        )
    }

    /// A stage of [`Step`] types, one per worker, made by `make` (called
    /// once per worker): `Stage::step_with("d", || Download)`. The short
    /// form for a step that needs nothing from its [`WorkerInfo`]; a bare
    /// closure given to [`Stage::step`] must name its argument's type
    /// (`|_: &WorkerInfo| Download`), or Rust cannot tell that it takes a
    /// borrow of any lifetime.
    pub fn step_with<F, S>(name: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> S + Send + Sync + 'a,
        S: Step<In = In, Out = Out>,
    {
        Self::step(name, move |_: &WorkerInfo| make())
    }

    /// A stage of [`Step`] types, one per worker, made by `factory`, with
    /// every lifecycle hook.
    pub fn step<Fac>(name: impl Into<String>, factory: Fac) -> Self
    where
        Fac: StepFactory + 'a,
        Fac::Step: Step<In = In, Out = Out>,
    {
        let factory = Arc::new(factory);
        Self::with(
            name,
            Kind::Step,
            Box::new(move |s, p| {
                let after = {
                    let (factory, shared, stage) = (factory.clone(), p.shared.clone(), s.name.clone());
                    Arc::new(move || stage_hook(&shared, &stage, "after_stage", || factory.after_stage()))
                };
                let shared = p.shared.clone();
                let links = p.links.clone();
                let jobs = workers(s, p, after)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (cx, outbox))| {
                        let (factory, shared, links) = (factory.clone(), cx.shared.clone(), links.clone());
                        job(&s.name, i, shared, move || {
                            // A panic here fails the run (see `job`).
                            let step = factory.create(&cx.info);
                            item_worker(step, cx, outbox, links)
                        })
                    })
                    .collect();
                let before = {
                    let (factory, stage) = (factory.clone(), s.name.clone());
                    Box::new(move || stage_hook(&shared, &stage, "before_stage", || factory.before_stage()))
                        as Box<dyn FnOnce() + Send + 'a>
                };
                StagePlan {
                    before: Some(before),
                    jobs,
                }
            }),
        )
    }

    /// Calls `hook` with every item the stage's skip policy drops (its
    /// stage, worker and error), on the worker that skipped it, so that
    /// skipped items are visible, not only counted. A panicking hook fails
    /// the run, naming the stage.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use paipa::threaded::{Pipeline, Skipped, Stage};
    ///
    /// let seen: Arc<Mutex<Vec<Skipped>>> = Arc::default();
    /// let sink = seen.clone();
    /// let summary = Pipeline::new()
    ///     .source(0..10u32)
    ///     .then(Stage::try_map("check", |x: u32| if x == 7 { Err("no 7") } else { Ok(x) })
    ///         .skip_errors()
    ///         .on_skip(move |s| sink.lock().unwrap().push(s.clone())))?
    ///     .run()?;
    /// assert_eq!(summary.items, 9);
    /// let seen = seen.lock().unwrap();
    /// assert_eq!((seen[0].stage.as_str(), seen[0].error.as_str()), ("check", "no 7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_skip(mut self, hook: impl Fn(&Skipped) + Send + Sync + 'static) -> Self {
        self.settings.on_skip = Some(Arc::new(hook));
        self
    }

    /// Runs the stage on `n` worker threads (1 unless set; 0, or more than
    /// [`MAX_WORKERS`], is refused when the stage is added).
    pub fn workers(mut self, n: usize) -> Self {
        self.settings.workers = n;
        self
    }

    /// Runs this stage on threads of its own, never chained to the stage
    /// before it. By default a function stage with as many workers as the
    /// stage before (at least 2, and more threads together than the machine
    /// has cores) runs on that stage's threads, a batch going through both
    /// by direct call; its own stats are kept either way.
    pub fn unchained(mut self) -> Self {
        self.settings.chain = false;
        self
    }

    /// Keeps the stage's output in input order across its workers, with a
    /// bounded reorder window (function stages only). On an async stage
    /// (feature `async`) results leave in input order too: at most
    /// [`in_flight`](Stage::in_flight) items are between the oldest one not
    /// yet handed on and the newest started, so results finished behind a
    /// slow item wait for it, and no new item starts until it ends.
    pub fn ordered(mut self) -> Self {
        self.settings.ordered = true;
        self
    }

    /// Skips (and counts) items whose step fails, instead of failing the run.
    pub fn skip_errors(mut self) -> Self {
        self.settings.policy = OnError::Skip;
        self.settings.policy_set = true;
        self
    }

    /// Holds at most `capacity` items waiting on this stage's output edge
    /// (the pipeline's capacity unless set; from 1 to [`MAX_CAPACITY`](super::MAX_CAPACITY)).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.settings.capacity = Some(capacity);
        self
    }

    /// Bounds this stage's output edge by weight too: at most `limit` bytes
    /// of its outputs (as `weigh` measures them) wait for the next stage,
    /// besides the item capacity. For large items, so that 4 MiB items
    /// cannot pile up to the item capacity; batches are cut at half the
    /// bound, and an item heavier than the bound still travels, alone.
    /// `weigh` runs twice per item (when it is sent and when it is taken)
    /// and should be cheap (`len()`); if it panics, the item counts as the
    /// whole bound. Zero is refused.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    /// let mut p = Pipeline::new()
    ///     .then(Stage::map("read", |n: usize| vec![0u8; n]).max_bytes(1 << 20, Vec::len))?
    ///     .then(Stage::map("size", |v: Vec<u8>| v.len()))?;
    /// p.put_all(vec![4096; 100])?;
    /// let (total, _) = p.run_with(|out| out.sum::<usize>())?;
    /// assert_eq!(total, 409_600);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_bytes(mut self, limit: usize, weigh: impl Fn(&Out) -> usize + Send + Sync + 'static) -> Self {
        self.settings.max_bytes = Some((limit, Arc::new(weigh)));
        self
    }

    /// Says how much each output item counts for (a batch as its length).
    ///
    /// The weigher runs under a panic guard wherever it is called (a
    /// worker's outbox, the next stage taking a batch, the reorder window,
    /// the consumer): a panic fails the run with this stage's name, as a
    /// panic in its step does, and the item counts for 1, so no thread dies
    /// holding items and the books still balance.
    pub fn count_by<W>(mut self, weigh: W) -> Self
    where
        W: Fn(&Out) -> u64 + Send + Sync + 'static,
    {
        let run: Arc<OnceLock<Arc<RunShared>>> = Arc::default();
        let (slot, stage) = (run.clone(), self.settings.name.clone());
        self.settings.weigh = Some(Arc::new(move |x: &Out| {
            match catch_unwind(AssertUnwindSafe(|| weigh(x))) {
                Ok(n) => n,
                Err(p) => {
                    if let Some(shared) = slot.get() {
                        shared.fail(crate::error::RunError::Panic {
                            stage: stage.clone(),
                            worker: 0,
                            message: format!("count_by: {}", panic_message(&*p)),
                        });
                    }
                    1
                }
            }
        }));
        self.settings.weigh_run = Some(run);
        self
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        #[cfg(all(feature = "async", not(loom)))]
        if s.kind == Kind::Async {
            super::async_stage::validate(s)?;
            return self.validate_policy();
        }
        check_count(&s.name, "workers", s.workers, MAX_WORKERS)?;
        validate_edge(s)?;
        if s.ordered && s.kind == Kind::Fold {
            return Err(ConfigError::new(
                "ordered",
                true,
                format!(
                    "stage {:?}: a fold stage gives one result per worker, which have no input order",
                    s.name
                ),
            ));
        }
        if s.ordered && s.kind != Kind::Map && s.workers > 1 {
            return Err(ConfigError::new(
                "ordered",
                true,
                format!(
                    "stage {:?}: ordered mode with several workers needs a function stage",
                    s.name
                ),
            ));
        }
        self.validate_policy()
    }

    /// The checks every kind of stage shares: its error policy's bounds.
    fn validate_policy(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if let OnError::Retry { times, backoff, .. } = s.policy {
            if times > MAX_RETRIES {
                return Err(ConfigError::new(
                    "retry",
                    times,
                    format!("stage {:?} retries an item at most {MAX_RETRIES} times", s.name),
                ));
            }
            if backoff > MAX_BACKOFF {
                return Err(ConfigError::new(
                    "retry backoff",
                    format!("{backoff:?}"),
                    format!("stage {:?} waits at most {MAX_BACKOFF:?} before a first retry", s.name),
                ));
            }
        }
        if s.policy.retries() > 0 && s.kind == Kind::Iter {
            return Err(ConfigError::new(
                "retry",
                s.policy.retries(),
                format!(
                    "stage {:?}: iterator stages cannot retry an item; use skip or fail",
                    s.name
                ),
            ));
        }
        Ok(())
    }
}

/// A boxed iterator step as a threaded stage of the step's name: the same
/// [`BoxedStep`] runs in an iterator pipeline or, on each worker over the
/// items that reach it, in a threaded one (as [`Stage::iter`] runs a step).
///
/// ```
/// use paipa::iter::{boxed, BoxIter};
/// use paipa::threaded::{Pipeline, Stage};
///
/// fn evens(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.filter(|x| x % 2 == 0) }
/// let summary = Pipeline::new()
///     .source(0..100u32)
///     .then(Stage::from(boxed(evens)).workers(2))?
///     .run()?;
/// assert_eq!(summary.items, 50);
/// assert_eq!(summary.snapshot.stage("evens").unwrap().count_in, 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<'a, T: Send + 'a> From<BoxedStep<'a, T>> for Stage<'a, T, T> {
    fn from(step: BoxedStep<'a, T>) -> Self {
        let name = step.name().to_owned();
        Stage::iter(name, move |input: InputIter<'a, T>| step.apply(Box::new(input)))
    }
}

impl<'a, In: Clone + Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// Retries a failed item up to `times` more times, waiting `backoff`
    /// before the first retry and twice as long before each next one; then
    /// fails the run (see [`Stage::then_skip`]).
    pub fn retry(self, times: u32, backoff: Duration) -> Self {
        self.on_error(OnError::Retry {
            times,
            backoff,
            then: AfterRetries::Fail,
        })
    }

    /// After the retries are used up, skips (and counts) the item instead of
    /// failing the run.
    pub fn then_skip(mut self) -> Self {
        if let OnError::Retry { then, .. } = &mut self.settings.policy {
            *then = AfterRetries::Skip;
        } else {
            self.settings.policy = OnError::Skip;
        }
        self.settings.policy_set = true;
        self
    }

    /// Sets the error policy.
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.settings.policy = policy;
        self.settings.policy_set = true;
        self.settings.clone_in = Some(<In as Clone>::clone);
        self
    }
}

/// Refuses a count setting of stage `stage` outside `1..=max`, naming it.
pub(crate) fn check_count(stage: &str, field: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, 0, format!("stage {stage:?} needs at least 1")));
    }
    if value > max {
        return Err(ConfigError::new(
            field,
            value,
            format!("stage {stage:?} takes at most {max}"),
        ));
    }
    Ok(())
}

/// The output edge's settings every kind of stage shares: capacity, and
/// the bound by weight.
pub(crate) fn validate_edge<In, Out>(s: &StageSettings<In, Out>) -> Result<(), ConfigError> {
    if let Some(c) = s.capacity {
        check_count(&s.name, "capacity", c, super::builder::MAX_CAPACITY)?;
    }
    if let Some((limit, _)) = &s.max_bytes {
        check_count(&s.name, "max_bytes", *limit, usize::MAX)?;
    }
    Ok(())
}
