//! One stage of a threaded pipeline: its settings (name, worker count,
//! error policy, ordering, edge bounds, counting) before it is added with
//! [`Pipeline::then`](super::Pipeline::then), the capabilities every kind
//! declares ([`Kind`]), the checks that read them, and the parts a kind's
//! launcher lays its threads out from.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::ConfigError;
use crate::stats::StageCell;
use crate::sync::AtomicUsize;
use crate::threaded::edge::{ByteWeigher, EdgeRx, EdgeTx};
use crate::threaded::limits::{check_count, MAX_BACKOFF, MAX_RETRIES, MAX_WORKERS};
use crate::threaded::pacing::{Cost, Pacing};
use crate::threaded::policy::{AfterRetries, OnError, Policy, SkipHook, Skipped};
use crate::threaded::run::{panic_message, Job, RunShared};
use crate::threaded::source::SharedSource;
use crate::threaded::step::WorkerInfo;
use crate::threaded::worker::{ChainLink, ChainLinks};
use crate::threaded::worker::{Outbox, Weigher};
use crate::threaded::worker::{StageEnd, WorkerCtx};

/// What a stage kind declares about itself. The planner and the checks
/// read these flags; no kind is named outside its own file in `kinds/`
/// (or `tokio/`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// How errors name the kind's stages: "iterator stages".
    pub(crate) name: &'static str,
    /// Its workers cannot pull the lazy source themselves (they must see
    /// a quiet input to run an idle hook): a source thread feeds its
    /// input edge.
    pub(crate) needs_source_thread: bool,
    /// What ordered mode means for it.
    pub(crate) orderable: Orderable,
    /// It can try an item again (its retry policy is accepted).
    pub(crate) retryable: bool,
    /// It runs on one thread whatever its worker count (an async stage:
    /// one row of worker times, no stage chained onto it).
    pub(crate) one_thread: bool,
    /// The name of its worker count setting, and its bound.
    pub(crate) count: (&'static str, usize),
}

/// What [`Stage::ordered`] means for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Orderable {
    /// Output in input order with any number of workers.
    Always,
    /// Only with one worker (which keeps its input's order).
    OneWorker,
    /// Never, for the reason given.
    Never(&'static str),
}

impl Kind {
    /// A kind run by worker threads, with these capabilities.
    pub(crate) const fn threads(name: &'static str, orderable: Orderable, retryable: bool) -> Self {
        Kind {
            name,
            needs_source_thread: false,
            orderable,
            retryable,
            one_thread: false,
            count: ("workers", MAX_WORKERS),
        }
    }
}

/// Lays out a stage's threads, given its settings and its kind's own
/// options (`X`: `()` for most kinds).
type Launcher<'a, In, Out, X> =
    Box<dyn FnOnce(&StageSettings<In, Out>, X, LaunchParts<'a, In, Out>) -> StagePlan<'a> + Send + 'a>;

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
    /// The lazy source, if this stage's workers pull it (see `source.rs`).
    pub(crate) source: Option<Arc<SharedSource<'a, In>>>,
    /// Where the stage after this one is chained, if it is: each worker
    /// takes its link when it starts.
    pub(crate) links: Option<Arc<ChainLinks<'a, Out>>>,
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
    /// May run chained to the stage before it (see `worker/chain.rs`).
    pub(crate) chain: bool,
    pub(crate) on_skip: Option<SkipHook>,
    /// Why the kind's own options were refused, for a stage whose options
    /// were checked when its type was erased ([`Stage::into_plain`]).
    pub(crate) refused: Option<ConfigError>,
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
///
/// `X` holds the options only one kind of stage has: none (`()`) for the
/// kinds on worker threads, [`AsyncOptions`](super::AsyncOptions) for an
/// async stage (feature `async`), whose setters exist only there.
#[must_use = "a stage does nothing until added to a pipeline"]
pub struct Stage<'a, In, Out, X = ()> {
    pub(crate) settings: StageSettings<In, Out>,
    pub(crate) options: X,
    /// Checks the kind's own options when the stage is added.
    pub(crate) check: fn(&X, &str) -> Result<(), ConfigError>,
    pub(crate) launch: Launcher<'a, In, Out, X>,
    /// Launches the stage chained to the one before it, on its threads
    /// (function stages only; see `worker/chain.rs`).
    pub(crate) chain: Option<ChainLauncher<'a, In, Out>>,
}

/// Makes a chained stage's workers, one per worker of the stage before.
pub(crate) type ChainLauncher<'a, In, Out> =
    Box<dyn FnOnce(&StageSettings<In, Out>, LaunchParts<'a, In, Out>) -> Vec<ChainLink<'a, In>> + Send + 'a>;

impl<In, Out, X> fmt::Debug for Stage<'_, In, Out, X> {
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
pub(crate) fn contexts<'a, In, Out>(
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
                policy: Policy::new(
                    s.policy,
                    s.on_skip.clone(),
                    (s.name.clone(), index),
                    p.cell.clone(),
                    p.shared.clone(),
                ),
                clone_in: s.clone_in,
                weigh_in: p.weigh_in.clone(),
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

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// A stage of kind `kind` with no options of its own, laid out by
    /// `launch`.
    pub(crate) fn with(
        name: impl Into<String>,
        kind: Kind,
        launch: impl FnOnce(&StageSettings<In, Out>, LaunchParts<'a, In, Out>) -> StagePlan<'a> + Send + 'a,
    ) -> Self {
        Self::with_options(name, kind, (), |_, _| Ok(()), Box::new(move |s, (), p| launch(s, p)))
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
}

impl<'a, In: Send + 'a, Out: Send + 'a, X> Stage<'a, In, Out, X> {
    /// A stage of kind `kind` with options `options` (checked by `check`
    /// when it is added), laid out by `launch`.
    pub(crate) fn with_options(
        name: impl Into<String>,
        kind: Kind,
        options: X,
        check: fn(&X, &str) -> Result<(), ConfigError>,
        launch: Launcher<'a, In, Out, X>,
    ) -> Self {
        Stage {
            options,
            check,
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
                refused: None,
            },
            launch,
            chain: None,
        }
    }

    /// The same stage with its kind's options folded into its launcher,
    /// as a plain `Stage<'a, In, Out>` (for a list of stages of different
    /// kinds); the options are checked now, and a refusal is reported when
    /// the stage is added.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn into_plain(self) -> Stage<'a, In, Out>
    where
        X: Send + 'a,
    {
        let Stage {
            mut settings,
            options,
            check,
            launch,
            chain,
        } = self;
        if let Err(e) = check(&options, &settings.name) {
            settings.refused.get_or_insert(e);
        }
        Stage {
            settings,
            options: (),
            check: |_, _| Ok(()),
            launch: Box::new(move |s, (), p| launch(s, options, p)),
            chain,
        }
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

    /// Keeps the stage's output in input order across its workers, with a
    /// bounded reorder window (function stages, and stages of one worker).
    /// On an async stage (feature `async`) results leave in input order
    /// too: at most `in_flight` items are between the oldest one not yet
    /// handed on and the newest started, so results finished behind a slow
    /// item wait for it, and no new item starts until it ends.
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

    /// Refuses settings out of their bounds, or that the stage's kind
    /// cannot honour, naming the stage.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let kind = s.kind;
        if let Some(refused) = &s.refused {
            return Err(refused.clone());
        }
        check_count(&s.name, kind.count.0, s.workers, kind.count.1)?;
        validate_edge(s)?;
        (self.check)(&self.options, &s.name)?;
        let refuse_order = match kind.orderable {
            Orderable::Always => None,
            Orderable::OneWorker if s.workers > 1 => Some("ordered mode with several workers needs a function stage"),
            Orderable::OneWorker => None,
            Orderable::Never(why) => Some(why),
        };
        if let (true, Some(why)) = (s.ordered, refuse_order) {
            return Err(ConfigError::new("ordered", true, format!("stage {:?}: {why}", s.name)));
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
        if s.policy.retries() > 0 && !s.kind.retryable {
            return Err(ConfigError::new(
                "retry",
                s.policy.retries(),
                format!(
                    "stage {:?}: {} cannot retry an item; use skip or fail",
                    s.name, s.kind.name
                ),
            ));
        }
        Ok(())
    }
}

impl<'a, In: Clone + Send + 'a, Out: Send + 'a, X> Stage<'a, In, Out, X> {
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

/// The output edge's settings every kind of stage shares: capacity, and
/// the bound by weight.
pub(crate) fn validate_edge<In, Out>(s: &StageSettings<In, Out>) -> Result<(), ConfigError> {
    if let Some(c) = s.capacity {
        check_count(&s.name, "capacity", c, crate::threaded::limits::MAX_CAPACITY)?;
    }
    if let Some((limit, _)) = &s.max_bytes {
        check_count(&s.name, "max_bytes", *limit, usize::MAX)?;
    }
    Ok(())
}
