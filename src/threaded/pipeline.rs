//! The threaded pipeline builder: input, stages, and the ways to run.

use std::fmt;
use std::sync::Arc;

use crate::error::{ConfigError, RunError};
use crate::stats::StageCell;
use crate::threaded::edge::{edge, Cancel, EdgeRx, Layout, Msg};
use crate::threaded::input::{Closed, Input, InputShared};
use crate::threaded::limits::{DEFAULT_CAPACITY, MAX_CAPACITY};
use crate::threaded::meta::Meta;
use crate::threaded::plan::{Build, EdgeEnd, Planner, StageDefaults};
use crate::threaded::run::{Job, RunShared};
use crate::threaded::running::{Outputs, Prepared, Running, Summary};
use crate::threaded::source::source_job;
use crate::threaded::source::SharedSource;
use crate::threaded::stage::Stage;
use crate::Debugger;

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
    head: Head<'a, In>,
    build: Build<'a, In, Out>,
}

/// Everything of a pipeline but its stages' layout: what adding a stage
/// hands on unchanged.
struct Head<'a, In> {
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
    stages: Vec<String>,
    /// Stop on SIGINT/SIGTERM (see [`Pipeline::stop_on_signals`]).
    signals: bool,
    defaults: StageDefaults,
}

impl<'a, In: Send + 'a> Head<'a, In> {
    /// The input as the run takes it: the items put before the run, and
    /// the lazy source, either pulled by the first stage's workers (the
    /// second) or, when items were put before the run, sent after them by
    /// a source thread (the third). Tells progress views the total when it
    /// is known.
    #[allow(clippy::type_complexity)]
    fn take_input(
        &mut self,
        shared: &Arc<RunShared>,
    ) -> (
        Vec<Msg<In>>,
        Option<Arc<SharedSource<'a, In>>>,
        Option<Arc<SharedSource<'a, In>>>,
    ) {
        let lazy = match &self.source {
            None => Some(0),
            Some(s) => match s.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo as u64),
                _ => None,
            },
        };
        let put: usize = self.pending.iter().map(Msg::items).sum();
        let expected = lazy.filter(|_| !self.handles_taken).map(|n| n + put as u64);
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
        if pending.is_empty() {
            (pending, source, None)
        } else {
            (pending, None, source)
        }
    }
}

impl<In, Out> fmt::Debug for Pipeline<'_, In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.head.name)
            .field("capacity", &self.head.capacity)
            .field("stages", &self.head.stages)
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
        // run and the watchdog (see `source.rs`).
        let mut cell = StageCell::new("source");
        cell.busy_since = vec![std::sync::atomic::AtomicU64::new(0)];
        let cell = Arc::new(cell);
        let layout = Layout::for_capacity(DEFAULT_CAPACITY);
        let (tx, rx) = edge(layout);
        let input = InputShared::new(tx, cancel.clone(), cell, layout);
        Pipeline {
            head: Head {
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
                stages: Vec::new(),
                signals: false,
                defaults: StageDefaults::default(),
            },
            build: Box::new(|edge, _| edge),
        }
    }
}

impl<'a, In: Send + 'a, Out: Send + 'a> Pipeline<'a, In, Out> {
    /// Names the pipeline in reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.head.name = name.into();
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
        self.head.capacity = capacity;
        if !self.head.handles_taken {
            let layout = Layout::for_capacity(capacity);
            let (tx, rx) = edge(layout);
            let cell = self.head.input.cell.clone();
            self.head.own_input = None;
            self.head.input = InputShared::new(tx, self.head.cancel.clone(), cell, layout);
            self.head.own_input = Some(Input::new(self.head.input.clone()));
            self.head.first_rx = rx;
        }
        Ok(self)
    }

    /// Reports through `debugger`'s reporters while running and at the end.
    pub fn debug(mut self, debugger: Debugger) -> Self {
        self.head.name = debugger.name.clone();
        self.head.input.cell.set_name(debugger.source.clone());
        self.head.debugger = Some(debugger);
        self
    }

    /// Reads the input lazily from `source` (any `Iterator + Send`, an
    /// iterator pipeline included), pulled only as the pipeline drains.
    pub fn source<S>(mut self, source: S) -> Self
    where
        S: IntoIterator<Item = In>,
        S::IntoIter: Send + 'a,
    {
        self.head.source = Some(Box::new(source.into_iter()));
        self
    }

    /// Puts one item before the run (kept in memory until the run starts).
    pub fn put(&mut self, item: In) -> Result<(), Closed<In>> {
        if self.head.sealed {
            return Err(Closed(item));
        }
        match self.head.pending.last_mut() {
            Some(Msg::Items(batch)) => batch.push(item),
            _ => self.head.pending.push(Msg::Items(vec![item])),
        }
        Ok(())
    }

    /// Puts every item before the run. Returns how many; after
    /// [`Pipeline::close_input`] it is refused as [`Pipeline::put`] is, and the
    /// items are given back untouched.
    ///
    /// ```
    /// use paipa::threaded::Pipeline;
    /// let mut p = Pipeline::<u8, u8>::new();
    /// assert_eq!(p.put_all(0..3), Ok(3));
    /// p.close_input();
    /// let refused = p.put_all(3..5).unwrap_err();
    /// assert_eq!(refused.to_string(), "the pipeline no longer takes input");
    /// assert_eq!(refused.into_inner(), 3..5);
    /// ```
    pub fn put_all<I: IntoIterator<Item = In>>(&mut self, items: I) -> Result<usize, Closed<I>> {
        if self.head.sealed {
            return Err(Closed(items));
        }
        let before = self.pending_items();
        let mut items = items.into_iter().peekable();
        if items.peek().is_some() {
            match self.head.pending.last_mut() {
                Some(Msg::Items(batch)) => batch.extend(items),
                _ => self.head.pending.push(Msg::Items(items.collect())),
            }
        }
        Ok(self.pending_items() - before)
    }

    fn pending_items(&self) -> usize {
        self.head.pending.iter().map(Msg::items).sum()
    }

    /// Puts a meta entry before the run, after the items put so far.
    pub fn put_meta(&mut self, meta: Meta) -> Result<(), Closed<Meta>> {
        if self.head.sealed {
            return Err(Closed(meta));
        }
        self.head.pending.push(Msg::Meta(meta));
        Ok(())
    }

    /// Says nothing more will be put before the run; later puts are
    /// refused. Live [`Input`] handles are not affected: the run's input
    /// ends when they are dropped.
    pub fn close_input(&mut self) {
        self.head.sealed = true;
    }

    /// The former name of [`Pipeline::close_input`].
    #[deprecated(since = "0.1.0", note = "renamed `close_input`: `finish` named nine things")]
    pub fn finish(&mut self) {
        self.close_input();
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
        self.head.handles_taken = true;
        Input::new(self.head.input.clone())
    }

    /// Adds a stage. Refuses a stage with zero workers, zero capacity, or
    /// settings its step kind cannot honour.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    /// let err = Pipeline::<u8, u8>::new().then(Stage::map("x", |x: u8| x).workers(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid workers: 0 (stage \"x\" needs at least 1)");
    /// ```
    pub fn then<Next: Send + 'a, X: Send + 'a>(
        mut self,
        stage: Stage<'a, Out, Next, X>,
    ) -> Result<Pipeline<'a, In, Next>, ConfigError> {
        stage.validate()?;
        self.head.stages.push(stage.settings.name.clone());
        let prev = self.build;
        Ok(Pipeline {
            head: self.head,
            build: Box::new(move |input, planner| {
                let mid = prev(input, planner);
                planner.place(stage, mid)
            }),
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
        self.head.defaults = defaults;
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
        self.head.signals = true;
        self
    }

    /// Lays out every thread of the run.
    pub(crate) fn prepare(mut self) -> Result<Prepared<'a, Out>, RunError> {
        if self.head.pending.is_empty() && self.head.source.is_none() && !self.head.handles_taken {
            return Err(RunError::NoInput);
        }
        #[cfg(all(feature = "signals", not(loom)))]
        let signals = if self.head.signals {
            Some(crate::signals::Listener::new(2, true).map_err(RunError::Signals)?)
        } else {
            None
        };
        #[cfg(not(all(feature = "signals", not(loom))))]
        let _ = self.head.signals;
        let shared = RunShared::new(self.head.cancel.clone());
        let mut planner = Planner {
            shared: shared.clone(),
            capacity: self.head.capacity,
            before: Vec::new(),
            jobs: Vec::new(),
            cells: vec![(self.head.input.cell.clone(), 1)],
            defaults: self.head.defaults.clone(),
        };
        let (pending, pulled, threaded) = self.head.take_input(&shared);
        let first = EdgeEnd {
            rx: self.head.first_rx,
            weigh: None,
            cost: self.head.input.next_cost.clone(),
            links: None,
            source: pulled,
        };
        let last = (self.build)(first, &mut planner);
        // The caller's consumer measures nothing: the last stage cuts its
        // batches by its own cost alone.
        last.cost.no_reader();
        let (rx_out, weigh_out) = (last.rx, last.weigh);
        if let Some(job) = last.source.and_then(SharedSource::thread_job) {
            // No stage: the source feeds the consumer directly.
            planner.jobs.push(job);
        }
        // Puts held back before the run (the input was full) are sent
        // first, by the source thread.
        let held_back = self.head.input.start();
        if !pending.is_empty() || held_back {
            if let Some(tx) = self.head.input.sender() {
                let input = self.head.input.clone();
                planner.jobs.push(Job {
                    name: "paipa:source".into(),
                    run: Box::new(move || source_job(pending, threaded, tx, input)),
                });
            }
        }
        // The builder's own handle goes: from now on, the input ends when
        // the source is drained and every handle the caller took is dropped.
        drop(self.head.own_input.take());
        let input = self.head.input.clone();
        Ok(Prepared {
            name: self.head.name,
            debugger: self.head.debugger,
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
