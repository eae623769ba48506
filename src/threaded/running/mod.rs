//! Running pipelines: the prepared run and how it is started ([`Prepared`]),
//! the background handle ([`handle`]), the output iterator ([`outputs`]),
//! the consumer's books ([`consumer`]), joining ([`join`]) and the summary
//! a run returns ([`summary`]).

mod consumer;
mod handle;
mod join;
mod outputs;
mod summary;

pub use handle::Running;
pub use join::DROP_GRACE;
#[cfg(all(feature = "signals", not(loom)))]
pub use join::SIGNAL_GRACE;
pub use outputs::Outputs;
pub use summary::Summary;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::error::RunError;
use crate::report::Schedule;
use crate::stats::heard::{self, Heard};
use crate::stats::{Outcome, Snapshot, StageCell};
use crate::threaded::edge::EdgeRx;
use crate::threaded::run::{execute, Job, RunShared};
use crate::threaded::worker::Weigher;
use crate::{Debugger, Stats};
use consumer::{drain, Consumer, ConsumerClock};
#[cfg(all(feature = "signals", not(loom)))]
use join::watch_signals;
use outputs::Background;
use summary::{edge_probes, final_report, snapshot, Cells, OutcomeSlot};

/// A laid-out run, ready to start.
pub(crate) struct Prepared<'a, Out> {
    pub(crate) name: String,
    pub(crate) debugger: Option<Debugger>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) before: Vec<Box<dyn FnOnce() + Send + 'a>>,
    pub(crate) jobs: Vec<Job<'a>>,
    pub(crate) cells: Vec<(Arc<StageCell>, usize)>,
    pub(crate) rx_out: Option<EdgeRx<Out>>,
    /// How much each output item counts for (the last stage's `count_by`).
    pub(crate) weigh_out: Option<Weigher<Out>>,
    pub(crate) close_input: Arc<dyn Fn() + Send + Sync + 'a>,
    /// Listening for SIGINT/SIGTERM (the run opted in).
    #[cfg(all(feature = "signals", not(loom)))]
    pub(crate) signals: Option<crate::signals::Listener>,
}

impl<'a, Out: Send + 'a> Prepared<'a, Out> {
    /// Adds the consumer's row (the last one) and returns its cell.
    pub(crate) fn consumer_row(&mut self) -> Arc<StageCell> {
        if let Some((cell, _)) = self.cells.last().filter(|_| self.cells.len() > 1) {
            if cell.per_worker.is_empty() {
                return cell.clone();
            }
        }
        let cell = Arc::new(StageCell::new("consumer"));
        self.cells.push((cell.clone(), 1));
        cell
    }

    /// Runs in scoped threads; `consume` gets the last stage's outputs on
    /// this thread.
    pub(crate) fn execute<R>(
        mut self,
        consumer: &Consumer,
        consume: impl FnOnce(EdgeRx<Out>, &Arc<RunShared>) -> R,
    ) -> (R, Result<Summary, RunError>) {
        let started = Instant::now();
        self.consumer_row();
        let cells: Cells = Arc::new(std::mem::take(&mut self.cells));
        let (snap, outcome, schedule) = self.start_reports(started, &cells);
        let rx = self.rx_out.take().expect("outputs are taken once");
        let shared = self.shared.clone();
        let (result, heard) = self.run_threads(&cells, || consume(rx, &shared));
        if let [.., (last, _), (row, _)] = &cells[..] {
            consumer.settle(last, row);
        }
        // Every thread is joined: the books are final. Say how the run
        // ended before the final report, so that it can say so first.
        let books = snap(true);
        let stopped_early = shared.cancel.is_cancelled()
            || consumer.early.load(Ordering::SeqCst)
            || books.stages.iter().any(|s| s.discarded > 0 || s.queue_depth > 0);
        *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(match shared.error_info() {
            Some((stage, error)) => Outcome::Failed { stage, error },
            None => heard::outcome(&heard).unwrap_or(if stopped_early {
                Outcome::StoppedEarly
            } else {
                Outcome::Finished
            }),
        });
        let final_snap = final_report(&cells, schedule, &*snap);
        let summary = match shared.take_error() {
            Some(err) => Err(err),
            None => {
                // The consumer's row is the last; the last stage's is before it.
                let n = final_snap.stages.len();
                let last = &final_snap.stages[n.saturating_sub(2)];
                Ok(Summary {
                    items: final_snap.stages[n - 1].count,
                    metas: last.metas,
                    stopped_early,
                    snapshot: final_snap,
                })
            }
        };
        (result, summary)
    }

    /// Starts the periodic reports, if a debugger asked for them; returns
    /// how a snapshot is made and where the run's outcome goes.
    #[allow(clippy::type_complexity)]
    pub(crate) fn start_reports(
        &mut self,
        started: Instant,
        cells: &Cells,
    ) -> (
        Arc<dyn Fn(bool) -> Snapshot + Send + Sync>,
        OutcomeSlot,
        Option<Schedule>,
    ) {
        if let (Some(d), Some((source, _))) = (&self.debugger, cells.first()) {
            // Edges named on the debugger are shown in the source's row.
            d.edges.iter().for_each(|p| source.edges.add(p.clone()));
        }
        let watchdog = self.debugger.as_ref().and_then(|d| d.watchdog);
        let outcome: OutcomeSlot = Arc::default();
        let snap: Arc<dyn Fn(bool) -> Snapshot + Send + Sync> = {
            let (name, cells, outcome) = (self.name.clone(), cells.clone(), outcome.clone());
            Arc::new(move |is_final| snapshot(&name, started, &cells, watchdog, Some(&outcome), is_final))
        };
        let edges = {
            let cells = cells.clone();
            Arc::new(move || edge_probes(&cells))
        };
        let schedule = self
            .debugger
            .take()
            .map(|d| Schedule::start(d.reporters, d.interval, d.watchdog, snap.clone(), edges));
        (snap, outcome, schedule)
    }

    /// Starts every thread in a scope (and the signal watcher, if the run
    /// listens), runs `consume` on this thread, and joins them all.
    pub(crate) fn run_threads<R>(&mut self, cells: &Cells, consume: impl FnOnce() -> R) -> (R, Heard) {
        let shared = self.shared.clone();
        let (before, jobs) = (std::mem::take(&mut self.before), std::mem::take(&mut self.jobs));
        #[cfg(all(feature = "signals", not(loom)))]
        let signals = self.signals.take();
        #[cfg(all(feature = "signals", not(loom)))]
        let heard: Heard = signals.as_ref().map(crate::signals::Listener::handle);
        #[cfg(not(all(feature = "signals", not(loom))))]
        let heard: Heard = None;
        #[cfg(not(all(feature = "signals", not(loom))))]
        let _ = cells;
        #[cfg(all(feature = "signals", not(loom)))]
        let close_input = self.close_input.clone();
        let result = std::thread::scope(|scope| {
            #[cfg(all(feature = "signals", not(loom)))]
            if let Some(bell) = signals.as_ref().and_then(crate::signals::Listener::doorbell) {
                let (shared, heard, close_input) = (&shared, &heard, &close_input);
                let watcher = std::thread::Builder::new()
                    .name("paipa:interrupt".into())
                    .spawn_scoped(scope, move || {
                        watch_signals(&bell, heard, shared, cells, &**close_input)
                    });
                if let Err(e) = watcher {
                    tracing::warn!(target: "paipa", "cannot watch for signals: {e}");
                }
            }
            let result = execute(scope, before, jobs, &shared, consume);
            #[cfg(all(feature = "signals", not(loom)))]
            drop(signals);
            result
        });
        (result, heard)
    }

    pub(crate) fn run_counting(mut self) -> Result<Summary, RunError> {
        // `drain` reads to the end: everything sent is delivered.
        let (consumer, _stopped) = Consumer::new();
        let (row, weigh) = (self.consumer_row(), self.weigh_out.clone());
        self.execute(&consumer, |rx, _| drain(rx, ConsumerClock::new(row), &weigh))
            .1
    }

    pub(crate) fn run_with<R>(mut self, consume: impl FnOnce(Outputs<Out>) -> R) -> Result<(R, Summary), RunError> {
        let (consumer, stopped) = Consumer::new();
        let (close_input, weigh) = (self.close_input.clone(), self.weigh_out.clone());
        let row = self.consumer_row();
        let (r, summary) = self.execute(&consumer, |rx, shared| {
            let outputs = Outputs::new(rx, None, consumer.clone(), stopped, weigh, ConsumerClock::new(row));
            let r = catch_unwind(AssertUnwindSafe(|| consume(outputs)));
            // Outputs kept past `consume` (returned inside `r`) are not read
            // by this run: stop it, or its last stage would wait forever.
            if !consumer.is_done() {
                shared.cancel.cancel();
            }
            // The consumer is done with this run (it returned or panicked):
            // close the input as `Running`'s drop does, or stages waiting
            // on a live `Input` handle would wait for ever.
            close_input();
            r
        });
        match r {
            // The run is over and reported; the consumer's panic goes on.
            Err(panic) => resume_unwind(panic),
            Ok(r) => summary.map(|s| (r, s)),
        }
    }
}

impl<Out: Send + 'static> Prepared<'static, Out> {
    pub(crate) fn stats(&mut self) -> Stats {
        self.consumer_row();
        let cells: Cells = Arc::new(self.cells.clone());
        let name = self.name.clone();
        let started = Instant::now();
        Stats {
            source: Arc::new(move |is_final| snapshot(&name, started, &cells, None, None, is_final)),
        }
    }

    pub(crate) fn spawn(mut self) -> Result<Running, RunError> {
        let stats = self.stats();
        let cells: Cells = Arc::new(self.cells.clone());
        let shared = self.shared.clone();
        let close_input = self.close_input.clone();
        let thread = std::thread::Builder::new()
            .name("paipa:run".into())
            .spawn(move || self.run_counting())
            .map_err(RunError::Spawn)?;
        Ok(Running {
            thread: Some(thread),
            shared,
            close_input,
            stats,
            cells,
        })
    }

    pub(crate) fn spawn_outputs(mut self) -> Result<Outputs<Out>, RunError> {
        let rx = self.rx_out.take().expect("outputs are taken once");
        let (tx_keep, rx_keep) = crate::threaded::edge::edge::<Out>(crate::threaded::edge::Layout::for_capacity(1));
        drop(tx_keep);
        self.rx_out = Some(rx_keep);
        let stats = self.stats();
        let row = self.consumer_row();
        let cells: Cells = Arc::new(self.cells.clone());
        let (consumer, stopped) = Consumer::new();
        let (close_input, weigh) = (self.close_input.clone(), self.weigh_out.clone());
        let c = consumer.clone();
        let thread = std::thread::Builder::new()
            .name("paipa:run".into())
            .spawn(move || {
                self.execute(&c, |_, _| {
                    // When the consumer stops reading (its end, or dropped),
                    // the input closes as `Running`'s drop closes it, so a
                    // live `Input` handle does not keep the run waiting.
                    c.wait();
                    close_input();
                })
                .1
            })
            .map_err(RunError::Spawn)?;
        Ok(Outputs::new(
            rx,
            Some(Background {
                thread: Some(thread),
                stats,
                cells,
            }),
            consumer,
            stopped,
            weigh,
            ConsumerClock::new(row),
        ))
    }
}
