//! Laying out a run: the edges, where stages are chained, where the lazy
//! source is pulled, and the cells every stage reports through.

use std::sync::Arc;

use crate::stats::StageCell;
use crate::threaded::edge::{edge_weighed, EdgeRx, Layout};
use crate::threaded::pacing::{Cost, Pacing};
use crate::threaded::policy::{OnError, SkipHook};
use crate::threaded::run::{Job, RunShared};
use crate::threaded::source::SharedSource;
use crate::threaded::stage::{LaunchParts, Stage, StageSettings};
use crate::threaded::worker::{worth_chaining, ChainLinks, Weigher};

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

/// An edge as the next stage sees it.
pub(crate) struct EdgeEnd<'a, T> {
    pub(crate) rx: EdgeRx<T>,
    /// How its items are weighed (`Stage::count_by` of the stage before).
    pub(crate) weigh: Option<Weigher<T>>,
    /// What an item costs its reader (measured by the reader; the writer
    /// sizes its batches by it).
    pub(crate) cost: Arc<Cost>,
    /// Where a next stage could be chained onto the writer's threads, with
    /// the writer's worker count (see `worker/chain.rs`).
    pub(crate) links: Option<(Arc<ChainLinks<'a, T>>, usize)>,
    /// The lazy source, which travels with the first edge until a stage's
    /// workers take it to pull themselves (see `source.rs`).
    pub(crate) source: Option<Arc<SharedSource<'a, T>>>,
}

/// Lays out every stage so far, from the input edge to the last one's
/// output edge.
pub(crate) type Build<'a, In, Out> = Box<dyn FnOnce(EdgeEnd<'a, In>, &mut Planner<'a>) -> EdgeEnd<'a, Out> + Send + 'a>;

impl<'a> Planner<'a> {
    /// Lays out `stage` on the edge `input`: the run's defaults for what
    /// it left unset, its output edge, its cell, and its threads (or its
    /// workers chained onto the stage before); returns its output edge.
    pub(crate) fn place<In: Send + 'a, Out: Send + 'a, X: Send + 'a>(
        &mut self,
        stage: Stage<'a, In, Out, X>,
        mut input: EdgeEnd<'a, In>,
    ) -> EdgeEnd<'a, Out> {
        let Stage {
            mut settings,
            options,
            launch,
            chain,
            ..
        } = stage;
        self.apply_defaults(&mut settings);
        let kind = settings.kind;
        let ordered = settings.ordered && settings.workers > 1;
        if ordered || kind.needs_source_thread {
            // An ordered stage numbers its batches as they come off its
            // input edge, and a kind that needs a quiet input cannot pull:
            // a source thread feeds that edge.
            if let Some(job) = input.source.take().and_then(SharedSource::thread_job) {
                self.jobs.push(job);
            }
        }
        if let Some(run) = &settings.weigh_run {
            let _ = run.set(self.shared.clone());
        }
        let out_layout = Layout::for_capacity(settings.capacity.unwrap_or(self.capacity));
        let (tx, out_rx) = edge_weighed::<Out>(out_layout, settings.max_bytes.take());
        let rows = if kind.one_thread { 1 } else { settings.workers };
        let cell = Arc::new(StageCell::with_workers(settings.name.clone(), rows));
        self.cells.push((cell.clone(), settings.workers));
        let next_cost = Cost::new();
        // A next stage may be chained onto this one's threads unless it
        // hands its output over in order, or runs futures on one thread.
        let links = (!ordered && !kind.one_thread).then(ChainLinks::new);
        let parts = LaunchParts {
            rx: input.rx,
            source: input.source,
            links: links.clone(),
            tx,
            pacing: Pacing::new(Some(input.cost.clone()), next_cost.clone(), out_layout.batch),
            cost: input.cost,
            cell,
            shared: self.shared.clone(),
            weigh_in: input.weigh,
        };
        let weigh = settings.weigh.clone();
        let chain_to = input.links.filter(|(_, workers)| {
            settings.chain && !settings.ordered && *workers == settings.workers && worth_chaining(settings.workers)
        });
        match (chain_to, chain) {
            (Some((links_before, _)), Some(chain)) => links_before.fill(chain(&settings, parts)),
            _ => {
                let plan = launch(&settings, options, parts);
                self.before.extend(plan.before);
                self.jobs.extend(plan.jobs);
            }
        }
        EdgeEnd {
            rx: out_rx,
            weigh,
            cost: next_cost,
            links: links.map(|l| (l, settings.workers)),
            source: None,
        }
    }

    /// What the run gives a stage that did not choose for itself.
    fn apply_defaults<In, Out>(&self, settings: &mut StageSettings<In, Out>) {
        if !settings.policy_set {
            settings.policy = self.defaults.policy;
        }
        if let Some(observer) = self.defaults.on_skip.clone() {
            settings.on_skip = Some(match settings.on_skip.take() {
                None => observer,
                Some(own) => Arc::new(move |skipped| {
                    own(skipped);
                    observer(skipped);
                }),
            });
        }
    }
}
