//! The threaded pipeline builder: input, stages, and the ways to run.

use std::fmt;
use std::sync::Arc;

use super::chain::{worth_chaining, Links};
use super::channel::{edge, edge_weighed, Cancel, EdgeRx, Layout, Msg};
use super::handle::{Outputs, Prepared, Running, Summary};
use super::input::{source_job, Closed, Input, InputShared};
use super::meta::Meta;
use super::outbox::Weigher;
use super::pacing::{Cost, Pacing};
use super::policy::{OnError, SkipHook};
use super::pull::SharedSource;
use super::run::{Job, RunShared};
use super::stage::{Kind, LaunchParts, Stage};
use crate::error::{ConfigError, RunError};
use crate::stats::StageCell;
use crate::Debugger;

/// Items waiting on an edge unless set.
pub const DEFAULT_CAPACITY: usize = 2048;

/// The largest capacity an edge can have (2^30 items): an edge this large
/// already holds more than memory can.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Collects the threads and hooks of a run while the stages are laid out.
pub(crate) struct Planner<'a> {
    pub(crate) shared: Arc<RunShared>,
    pub(crate) capacity: usize,
    pub(crate) before: Vec<Box<dyn FnOnce() + Send + 'a>>,
    pub(crate) jobs: Vec<Job<'a>>,
    pub(crate) cells: Vec<(Arc<StageCell>, usize)>,
    pub(crate) defaults: StageDefaults,
}

/// What a run gives every stage that did not choose for itself (the
/// ingestion server sets these; a plain pipeline keeps `Fail` and no hook).
#[derive(Clone, Default)]
pub(crate) struct StageDefaults {
    /// The policy of stages whose policy was not set (`Fail` or `Skip`:
    /// a retry needs the stage's own type to clone its items).
    pub(crate) policy: OnError,
    /// Told of every item any stage skips, after the stage's own hook.
    pub(crate) on_skip: Option<SkipHook>,
}

/// An edge as the next stage sees it: the receiver, how its items are
/// weighed, and the cost its reader measures.
/// The lazy source travels with the first edge until a stage's workers
/// take it to pull themselves (see `pull.rs`); the links of the stage that
/// writes the edge, with its worker count, say where a next stage could be
/// chained to it (see `chain.rs`).
type EdgeEnd<'a, T> = (
    EdgeRx<T>,
    Option<Weigher<T>>,
    Arc<Cost>,
    Option<(Arc<Links<'a, T>>, usize)>,
    Option<Arc<SharedSource<'a, T>>>,
);

type Build<'a, In, Out> = Box<dyn FnOnce(EdgeEnd<'a, In>, &mut Planner<'a>) -> EdgeEnd<'a, Out> + Send + 'a>;

/// A threaded pipeline: stages, each on its own pool of worker threads,
/// joined by bounded channels that carry batches.
///
/// `In` is what goes in, `Out` what the last stage emits; `'a` is what steps
/// may borrow (a blocking [`run`](Pipeline::run) is scoped, so steps may
/// borrow from the caller's stack).
///
/// ```
/// use paipa::threaded::{Pipeline, Stage};
///
/// let words = vec!["pipelines", "in", "rust"]; // borrowed by a step
/// let mut pipeline = Pipeline::new()
///     .then(Stage::map("pick", |i: usize| words[i % 3].len()).workers(2))?
///     .then(Stage::map("square", |n: usize| n * n))?;
/// pipeline.put_all(0..6)?;
/// let (total, summary) = pipeline.run_with(|out| out.sum::<usize>())?;
/// assert_eq!(total, 2 * (81 + 4 + 16));
/// assert_eq!(summary.items, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a pipeline does nothing until it is run"]
pub struct Pipeline<'a, In, Out> {
    name: String,
    capacity: usize,
    debugger: Option<Debugger>,
    cancel: Arc<Cancel>,
    input: Arc<InputShared<In>>,
    own_input: Option<Input<In>>,
    first_rx: EdgeRx<In>,
    handles_taken: bool,
    pending: Vec<Msg<In>>,
    sealed: bool,
    source: Option<Box<dyn Iterator<Item = In> + Send + 'a>>,
    build: Build<'a, In, Out>,
    stages: Vec<String>,
    /// Stop on SIGINT/SIGTERM (see [`Pipeline::stop_on_signals`]).
    signals: bool,
    defaults: StageDefaults,
}

impl<In, Out> fmt::Debug for Pipeline<'_, In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Send + 'a> Default for Pipeline<'a, T, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, T: Send + 'a> Pipeline<'a, T, T> {
    /// An empty pipeline: what goes in comes out, until stages are added.
    pub fn new() -> Self {
        let cancel = Cancel::new();
        // One busy slot: a source stuck inside `next()` is named by a stuck
        // run and the watchdog (see `pull.rs`).
        let mut cell = StageCell::new("source");
        cell.busy_since = vec![std::sync::atomic::AtomicU64::new(0)];
        let cell = Arc::new(cell);
        let layout = Layout::for_capacity(DEFAULT_CAPACITY);
        let (tx, rx) = edge(layout);
        let input = InputShared::new(tx, cancel.clone(), cell, layout);
        Pipeline {
            name: "pipeline".into(),
            capacity: DEFAULT_CAPACITY,
            debugger: None,
            cancel,
            own_input: Some(Input::new(input.clone())),
            input,
            first_rx: rx,
            handles_taken: false,
            pending: Vec::new(),
            sealed: false,
            source: None,
            build: Box::new(|edge, _| edge),
            stages: Vec::new(),
            signals: false,
            defaults: StageDefaults::default(),
        }
    }
}

impl<'a, In: Send + 'a, Out: Send + 'a> Pipeline<'a, In, Out> {
    /// Names the pipeline in reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Holds at most `capacity` items waiting on each edge (64 unless set;
    /// from 1 to [`MAX_CAPACITY`]). Set it before taking input handles: the
    /// input edge is laid out then.
    pub fn capacity(mut self, capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new("capacity", 0, "must be at least 1"));
        }
        if capacity > MAX_CAPACITY {
            return Err(ConfigError::new(
                "capacity",
                capacity,
                format!("must be at most {MAX_CAPACITY}"),
            ));
        }
        self.capacity = capacity;
        if !self.handles_taken {
            let layout = Layout::for_capacity(capacity);
            let (tx, rx) = edge(layout);
            let cell = self.input.cell.clone();
            self.own_input = None;
            self.input = InputShared::new(tx, self.cancel.clone(), cell, layout);
            self.own_input = Some(Input::new(self.input.clone()));
            self.first_rx = rx;
        }
        Ok(self)
    }

    /// Reports through `debugger`'s reporters while running and at the end.
    pub fn debug(mut self, debugger: Debugger) -> Self {
        self.name = debugger.name.clone();
        self.input.cell.set_name(debugger.source.clone());
        self.debugger = Some(debugger);
        self
    }

    /// Reads the input lazily from `source` (any `Iterator + Send`, an
    /// iterator pipeline included), pulled only as the pipeline drains.
    pub fn source<S>(mut self, source: S) -> Self
    where
        S: IntoIterator<Item = In>,
        S::IntoIter: Send + 'a,
    {
        self.source = Some(Box::new(source.into_iter()));
        self
    }

    /// Puts one item before the run (kept in memory until the run starts).
    pub fn put(&mut self, item: In) -> Result<(), Closed<In>> {
        if self.sealed {
            return Err(Closed(item));
        }
        match self.pending.last_mut() {
            Some(Msg::Items(batch)) => batch.push(item),
            _ => self.pending.push(Msg::Items(vec![item])),
        }
        Ok(())
    }

    /// Puts every item before the run. Returns how many; after
    /// [`Pipeline::finish`] it is refused as [`Pipeline::put`] is, and the
    /// items are given back untouched.
    ///
    /// ```
    /// use paipa::threaded::Pipeline;
    /// let mut p = Pipeline::<u8, u8>::new();
    /// assert_eq!(p.put_all(0..3), Ok(3));
    /// p.finish();
    /// let refused = p.put_all(3..5).unwrap_err();
    /// assert_eq!(refused.to_string(), "the pipeline no longer takes input");
    /// assert_eq!(refused.into_inner(), 3..5);
    /// ```
    pub fn put_all<I: IntoIterator<Item = In>>(&mut self, items: I) -> Result<usize, Closed<I>> {
        if self.sealed {
            return Err(Closed(items));
        }
        let before = self.pending_items();
        let mut items = items.into_iter().peekable();
        if items.peek().is_some() {
            match self.pending.last_mut() {
                Some(Msg::Items(batch)) => batch.extend(items),
                _ => self.pending.push(Msg::Items(items.collect())),
            }
        }
        Ok(self.pending_items() - before)
    }

    fn pending_items(&self) -> usize {
        self.pending
            .iter()
            .map(|m| match m {
                Msg::Items(b) => b.len(),
                Msg::Meta(_) => 0,
            })
            .sum()
    }

    /// Puts a meta entry before the run, after the items put so far.
    pub fn put_meta(&mut self, meta: Meta) -> Result<(), Closed<Meta>> {
        if self.sealed {
            return Err(Closed(meta));
        }
        self.pending.push(Msg::Meta(meta));
        Ok(())
    }

    /// Says nothing more will be put before the run; later puts are refused.
    pub fn finish(&mut self) {
        self.sealed = true;
    }

    /// A live input handle, cloneable and usable from other threads while
    /// the pipeline runs. The run's input ends when every handle is dropped
    /// (and any source and items put are drained): a run with a handle that
    /// is never dropped runs until it is stopped.
    ///
    /// A handle may be filled before the run, on the thread that will start
    /// it: nothing reads the input then, so a [`Input::put`] that finds the
    /// input's edge full does not wait (it would wait for ever) but is held
    /// in memory and sent first when the run starts, in the order put;
    /// timed puts ([`Input::put_timeout`]) still report a full pipeline.
    pub fn input(&mut self) -> Input<In> {
        self.handles_taken = true;
        Input::new(self.input.clone())
    }

    /// Adds a stage. Refuses a stage with zero workers, zero capacity, or
    /// settings its step kind cannot honour.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    /// let err = Pipeline::<u8, u8>::new().then(Stage::map("x", |x: u8| x).workers(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid workers: 0 (stage \"x\" needs at least 1)");
    /// ```
    pub fn then<Next: Send + 'a>(mut self, stage: Stage<'a, Out, Next>) -> Result<Pipeline<'a, In, Next>, ConfigError> {
        stage.validate()?;
        self.stages.push(stage.settings.name.clone());
        let prev = self.build;
        let build: Build<'a, In, Next> = Box::new(move |input, planner| {
            let (mid, weigh_mid, cost, before, mut source) = prev(input, planner);
            let mut settings = stage.settings;
            if !settings.policy_set {
                settings.policy = planner.defaults.policy;
            }
            if let Some(observer) = planner.defaults.on_skip.clone() {
                settings.on_skip = Some(match settings.on_skip.take() {
                    None => observer,
                    Some(own) => Arc::new(move |skipped| {
                        own(skipped);
                        observer(skipped);
                    }),
                });
            }
            if (settings.ordered && settings.workers > 1) || settings.kind == Kind::Step {
                // An ordered stage numbers its batches as they come off its
                // input edge, and a `Step` stage's idle hook must run while
                // its input is quiet (a worker waiting inside the source's
                // `next()` never sees a quiet input: a timed chunk would
                // not flush, a sink stage would hold its partial batch): a
                // source thread feeds that edge.
                if let Some(job) = source.take().and_then(SharedSource::thread_job) {
                    planner.jobs.push(job);
                }
            }
            if let Some(run) = &settings.weigh_run {
                let _ = run.set(planner.shared.clone());
            }
            let out_layout = Layout::for_capacity(settings.capacity.unwrap_or(planner.capacity));
            let (tx, out_rx) = edge_weighed::<Next>(out_layout, settings.max_bytes.take());
            // An async stage runs on one thread (one row of worker times)
            // and counts as `in_flight` workers (see `async_stage.rs`).
            let rows = if settings.is_async() { 1 } else { settings.workers };
            let cell = Arc::new(StageCell::with_workers(settings.name.clone(), rows));
            planner.cells.push((cell.clone(), settings.workers));
            let next_cost = Cost::new();
            // Where a next stage may be chained to this one: unordered
            // stages only (an ordered one hands its output over in order),
            // and not async ones (their thread runs futures, not links).
            let ordered = settings.ordered && settings.workers > 1;
            let chainable = !ordered && !settings.is_async();
            let links = chainable.then(Links::new);
            let parts = LaunchParts {
                rx: mid,
                source,
                links: links.clone(),
                tx,
                pacing: Pacing::new(Some(cost.clone()), next_cost.clone(), out_layout.batch),
                cost,
                cell,
                shared: planner.shared.clone(),
                weigh_in: weigh_mid,
            };
            let weigh_out = settings.weigh.clone();
            let chain_to = before.filter(|(_, workers)| {
                settings.chain
                    && !settings.ordered
                    && *workers == settings.workers
                    && worth_chaining(settings.workers)
                    && stage.chain.is_some()
            });
            match (chain_to, stage.chain) {
                (Some((links_before, _)), Some(chain)) => links_before.fill(chain(&settings, parts)),
                _ => {
                    let plan = (stage.launch)(&settings, parts);
                    planner.before.extend(plan.before);
                    planner.jobs.extend(plan.jobs);
                }
            }
            let links = links.map(|l| (l, settings.workers));
            (out_rx, weigh_out, next_cost, links, None)
        });
        Ok(Pipeline {
            name: self.name,
            capacity: self.capacity,
            debugger: self.debugger,
            cancel: self.cancel,
            input: self.input,
            own_input: self.own_input,
            first_rx: self.first_rx,
            handles_taken: self.handles_taken,
            pending: self.pending,
            sealed: self.sealed,
            source: self.source,
            build,
            stages: self.stages,
            signals: self.signals,
            defaults: self.defaults,
        })
    }

    /// Adds a run-time list of stages, in order: the threaded counterpart of
    /// [`combine`](crate::iter::combine), for stages that keep the item
    /// type. The list may be built from configuration (names, worker
    /// counts), hold [`BoxedStep`](crate::iter::BoxedStep)s or a whole
    /// [`StepList`](crate::iter::StepList) (nesting flattened in order), and
    /// may be empty: then the pipeline is unchanged. Each stage is checked
    /// as [`then`](Pipeline::then) checks it; the first refused one ends the
    /// list with an error naming it.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let config = [("add", 2), ("double", 1), ("add", 3)];
    /// let stages = config.iter().map(|&(name, workers)| {
    ///     let f = if name == "add" { |x: u64| x + 1 } else { |x: u64| x * 2 };
    ///     Stage::map(name, f).workers(workers)
    /// });
    /// let summary = Pipeline::new().source(0..10u64).then_all(stages)?.run()?;
    /// assert_eq!(summary.items, 10);
    ///
    /// let err = Pipeline::<u64, u64>::new()
    ///     .then_all([Stage::map("ok", |x: u64| x), Stage::map("bad", |x: u64| x).workers(0)])
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "invalid workers: 0 (stage \"bad\" needs at least 1)");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn then_all<I>(self, stages: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: Into<Stage<'a, Out, Out>>,
    {
        stages
            .into_iter()
            .try_fold(self, |pipeline, stage| pipeline.then(stage.into()))
    }

    /// Sets what every stage that did not choose for itself gets when the
    /// run is laid out (see [`StageDefaults`]).
    #[cfg(feature = "http")]
    pub(crate) fn stage_defaults(mut self, defaults: StageDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// Opts into Ctrl-C and SIGTERM for this run, whichever way it is run
    /// (`run`, `run_with`, `spawn`, `outputs`): the first signal closes the
    /// input and lets what was taken drain through (the final report is
    /// made, and the run returns `Ok` with
    /// [`Summary::interrupted`](super::Summary::interrupted) set); a second
    /// aborts it at once, counting what was in flight as discarded; a third
    /// ends the process. See [`crate::signals`] (feature `signals`).
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    /// let summary = Pipeline::new()
    ///     .then(Stage::map("double", |x: u64| x * 2))?
    ///     .source(0..1000u64)
    ///     .stop_on_signals()
    ///     .run()?;
    /// assert_eq!(summary.interrupted(), None); // no signal came
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(all(feature = "signals", not(loom)))]
    pub fn stop_on_signals(mut self) -> Self {
        self.signals = true;
        self
    }

    /// Lays out every thread of the run.
    pub(crate) fn prepare(mut self) -> Result<Prepared<'a, Out>, RunError> {
        if self.pending.is_empty() && self.source.is_none() && !self.handles_taken {
            return Err(RunError::NoInput);
        }
        #[cfg(all(feature = "signals", not(loom)))]
        let signals = if self.signals {
            Some(crate::signals::Listener::new(2, true).map_err(RunError::Signals)?)
        } else {
            None
        };
        #[cfg(not(all(feature = "signals", not(loom))))]
        let _ = self.signals;
        let shared = RunShared::new(self.cancel.clone());
        let mut planner = Planner {
            shared: shared.clone(),
            capacity: self.capacity,
            before: Vec::new(),
            jobs: Vec::new(),
            cells: vec![(self.input.cell.clone(), 1)],
            defaults: self.defaults.clone(),
        };
        // What the source will give in all, when known: for progress bars.
        let lazy = match &self.source {
            None => Some(0),
            Some(s) => match s.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo as u64),
                _ => None,
            },
        };
        let expected = lazy
            .filter(|_| !self.handles_taken)
            .map(|n| n + self.pending_items() as u64);
        self.input.cell.set_expected(expected);
        let source = match (self.source.take(), self.input.sender()) {
            (Some(iter), Some(tx)) => Some(Arc::new(SharedSource::new(
                iter,
                tx,
                self.input.clone(),
                shared.clone(),
            ))),
            _ => None,
        };
        let pending = std::mem::take(&mut self.pending);
        // Items put before the run go first, through a source thread, which
        // then pulls the lazy source too; without them, the first stage's
        // workers pull it themselves.
        let (pulled, threaded) = if pending.is_empty() {
            (source, None)
        } else {
            (None, source)
        };
        let first = (self.first_rx, None, self.input.next_cost.clone(), None, pulled);
        let (rx_out, weigh_out, last_cost, _, unpulled) = (self.build)(first, &mut planner);
        // The caller's consumer measures nothing: the last stage cuts its
        // batches by its own cost alone.
        last_cost.no_reader();
        if let Some(job) = unpulled.and_then(SharedSource::thread_job) {
            // No stage: the source feeds the consumer directly.
            planner.jobs.push(job);
        }
        // Puts held back before the run (the input was full) are sent
        // first, by the source thread.
        let held_back = self.input.start();
        if !pending.is_empty() || held_back {
            if let Some(tx) = self.input.sender() {
                let input = self.input.clone();
                planner.jobs.push(Job {
                    name: "paipa:source".into(),
                    run: Box::new(move || source_job(pending, threaded, tx, input)),
                });
            }
        }
        // The builder's own handle goes: from now on, the input ends when
        // the source is drained and every handle the caller took is dropped.
        drop(self.own_input.take());
        let input = self.input.clone();
        Ok(Prepared {
            name: self.name,
            debugger: self.debugger,
            shared,
            before: planner.before,
            jobs: planner.jobs,
            cells: planner.cells,
            rx_out: Some(rx_out),
            weigh_out,
            close_input: Arc::new(move || input.stop()),
            #[cfg(all(feature = "signals", not(loom)))]
            signals,
        })
    }

    /// Runs to completion on this thread's scope (steps may borrow from the
    /// caller), and returns what came out of the last stage, counted.
    pub fn run(self) -> Result<Summary, RunError> {
        self.prepare()?.run_counting()
    }

    /// Runs, handing the last stage's outputs to `consume` as an iterator on
    /// this thread. Dropping the iterator early stops the pipeline cleanly.
    /// When `consume` returns (or panics) the input is closed, as
    /// [`Running`]'s drop closes it: live [`Input`] handles are refused from
    /// then on, and the run ends. `Summary::items` counts the items `consume`
    /// got; what it left unread is the last stage's `discarded`.
    pub fn run_with<R>(self, consume: impl FnOnce(Outputs<Out>) -> R) -> Result<(R, Summary), RunError> {
        self.prepare()?.run_with(consume)
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<'static, In, Out> {
    /// Runs in the background; the handle tells whether the run is alive,
    /// stops it (finish the input, drain, join), and stops it when dropped.
    pub fn spawn(self) -> Result<Running, RunError> {
        self.prepare()?.spawn()
    }

    /// Runs in the background and returns the outputs as an iterator that
    /// the caller consumes (feed it to an iterator pipeline, for one).
    /// Dropping it early stops the pipeline cleanly. Once the outputs reach
    /// their end, are finished or dropped, the input is closed as
    /// [`Running`]'s drop closes it, so live [`Input`] handles do not keep
    /// the run going.
    pub fn outputs(self) -> Result<Outputs<Out>, RunError> {
        self.prepare()?.spawn_outputs()
    }
}
