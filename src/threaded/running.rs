//! Running pipelines: the prepared run, the background handle, the output
//! iterator, and the summary a run returns.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::chan::{bounded, Receiver, Sender};

use crate::error::RunError;
use crate::report::Schedule;
use crate::stats::edge::{self, EdgeProbe};
use crate::stats::heard::{self, Heard};
use crate::stats::{clock, ticks_to_duration, OpenInputs, Outcome, Snapshot, StageCell, Stall};
use crate::sync::deadline::deadline;
use crate::threaded::edge::{EdgeRx, Msg};
use crate::threaded::run::{execute, Job, RunShared};
use crate::threaded::worker::{weight, Weigher};
use crate::{Debugger, Stats};

/// What a finished run reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Items that came out of the last stage and reached the consumer (what
    /// an [`Outputs`] dropped unread is counted as the last stage's
    /// `discarded` instead).
    pub items: u64,
    /// Meta entries that came out of the last stage.
    pub metas: u64,
    /// True if the consumer stopped reading before the end, or the run was
    /// aborted: some items were discarded (see each stage's `discarded`).
    pub stopped_early: bool,
    /// The final stats of every stage.
    pub snapshot: Snapshot,
}

impl Summary {
    /// How the run ended (the final report's first line says the same).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.snapshot.outcome.as_ref()
    }

    /// The signal that interrupted the run (`"SIGINT"` or `"SIGTERM"`), if
    /// one did: the run opted in with `stop_on_signals` (feature `signals`).
    pub fn interrupted(&self) -> Option<&str> {
        match self.outcome()? {
            Outcome::Interrupted { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

type Cells = Arc<Vec<(Arc<StageCell>, usize)>>;

/// How the run ended, filled in just before its final report.
type OutcomeSlot = Arc<std::sync::Mutex<Option<Outcome>>>;

/// A point-in-time snapshot of a threaded run.
fn snapshot(
    name: &str,
    started: Instant,
    cells: &Cells,
    watchdog: Option<Duration>,
    outcome: Option<&OutcomeSlot>,
    is_final: bool,
) -> Snapshot {
    let mut stages: Vec<_> = cells.iter().map(|(cell, workers)| cell.snapshot(*workers)).collect();
    for k in 1..stages.len() {
        let upstream = stages[k - 1].count;
        stages[k].queue_depth = upstream.saturating_sub(stages[k].count_in) as usize;
    }
    let mut stalls = Vec::new();
    if let Some(limit) = watchdog.filter(|_| !is_final) {
        let now = clock().raw();
        for (cell, _) in cells.iter() {
            for (worker, since) in cell.busy_since.iter().enumerate() {
                let since = since.load(std::sync::atomic::Ordering::Relaxed);
                if since == 0 {
                    continue;
                }
                let stuck_for = ticks_to_duration(now.saturating_sub(since));
                if stuck_for >= limit {
                    stalls.push(Stall {
                        stage: cell.name(),
                        worker,
                        stuck_for,
                    });
                }
            }
        }
    }
    Snapshot {
        pipeline: name.to_string(),
        elapsed: started.elapsed(),
        stages,
        is_final,
        stalls,
        expected: cells.first().and_then(|(cell, _)| cell.expected()),
        outcome: outcome
            .filter(|_| is_final)
            .and_then(|o| o.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        edges: cells.iter().flat_map(|(cell, _)| cell.edges.read()).collect(),
        inputs: cells.first().and_then(|(cell, _)| {
            let open = cell.open_inputs.load(std::sync::atomic::Ordering::Relaxed);
            let last = cell.last_put.load(std::sync::atomic::Ordering::Relaxed);
            (open > 0).then(|| OpenInputs {
                open,
                quiet_for: if last == 0 {
                    started.elapsed()
                } else {
                    ticks_to_duration(clock().raw().saturating_sub(last))
                },
            })
        }),
    }
}

/// The edge probes registered with any stage of the run.
fn edge_probes(cells: &Cells) -> Vec<Arc<dyn EdgeProbe>> {
    cells.iter().flat_map(|(cell, _)| cell.edges.probes()).collect()
}

/// Measures the consumer (the `run_with` closure, the `outputs()` iterator,
/// or the drain of `run()`) in its own row, the last of the snapshot: the
/// time it waits for the next batch is its starved time, the time between
/// two waits its busy time (two clock readings a batch, none an item).
struct ConsumerClock {
    cell: Arc<StageCell>,
    /// Raw clock reading when the consumer last got a batch (or started).
    mark: u64,
    /// Weight of the last batch received.
    last: u64,
}

impl ConsumerClock {
    fn new(cell: Arc<StageCell>) -> Self {
        ConsumerClock {
            cell,
            mark: clock().raw(),
            last: 0,
        }
    }

    /// Waits for the next message on the last edge, counting the time
    /// since the previous one as busy and the wait as starved.
    fn recv<T>(&mut self, rx: &EdgeRx<T>, weigh: &Option<Weigher<T>>) -> Result<Msg<T>, ()> {
        self.timed(weigh, || rx.recv_blocking().map_err(|_| ()))
    }

    /// Measures `wait` (a receive on the last edge) as [`ConsumerClock::recv`]
    /// does, and counts the batch it gets.
    fn timed<T, E>(
        &mut self,
        weigh: &Option<Weigher<T>>,
        wait: impl FnOnce() -> Result<Msg<T>, E>,
    ) -> Result<Msg<T>, E> {
        let asked = clock().raw();
        let msg = wait();
        let got = clock().raw();
        self.cell
            .busy_ticks
            .fetch_add(asked.saturating_sub(self.mark), Ordering::Relaxed);
        self.cell
            .starved_ticks
            .fetch_add(got.saturating_sub(asked), Ordering::Relaxed);
        self.mark = got;
        if let Ok(Msg::Items(b)) = &msg {
            let w = weight(b, weigh);
            self.last = w;
            self.cell.count_in.fetch_add(w, Ordering::Relaxed);
            self.cell.count.fetch_add(w, Ordering::Relaxed);
        }
        msg
    }

    /// The consumer stopped reading without waiting again: the time since
    /// its last batch was its own.
    fn stop(&mut self) {
        let now = clock().raw();
        self.cell
            .busy_ticks
            .fetch_add(now.saturating_sub(self.mark), Ordering::Relaxed);
        self.mark = now;
    }
}

/// The run's last report: the edges' last readings (a stream source's
/// last acks go out first), the final report of every reporter, and the
/// snapshot the summary carries.
fn final_report(cells: &Cells, schedule: Option<Schedule>, snap: &dyn Fn(bool) -> Snapshot) -> Snapshot {
    let probes = edge_probes(cells);
    edge::refresh(&probes, edge::FINAL_WAIT, true);
    if let Some(mut s) = schedule {
        s.finish();
    }
    // No reports are made any more: the edges' reading threads end.
    edge::close(&probes);
    snap(true)
}

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

/// What the consumer of a run's outputs took: filled in by [`Outputs`] when
/// it stops reading (its end, or dropped), read once every thread of the run
/// has been joined (see [`Consumer::settle`]).
pub(crate) struct Consumer {
    /// Weight of the items the consumer was handed.
    delivered: AtomicU64,
    /// Set once the consumer stopped reading.
    done: AtomicBool,
    /// Set if it stopped before the end of the outputs.
    early: AtomicBool,
    /// Disconnects when the consumer stops reading.
    stopped: Receiver<()>,
}

impl Consumer {
    /// A consumer, and the sender whose drop says it stopped reading.
    fn new() -> (Arc<Self>, Sender<()>) {
        let (tx, rx) = bounded(0);
        let c = Consumer {
            delivered: AtomicU64::new(0),
            done: AtomicBool::new(false),
            early: AtomicBool::new(false),
            stopped: rx,
        };
        (Arc::new(c), tx)
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until the consumer stops reading.
    fn wait(&self) {
        let _ = self.stopped.recv();
    }

    /// Once every thread is joined (the last stage's `count` is final):
    /// what went out of the last stage but never reached the consumer (a
    /// batch partly read, batches left on the last edge, a send that landed
    /// as the consumer left) moves from the last stage's `count` to its
    /// `discarded`. So `count` is what the consumer got, and the books
    /// `count_in = count + skipped + failed + discarded` still balance.
    /// The consumer's own row then counts what it got, in and out.
    fn settle(&self, last: &StageCell, row: &StageCell) {
        if !self.is_done() {
            return;
        }
        let sent = last.count.load(Ordering::SeqCst);
        let delivered = self.delivered.load(Ordering::SeqCst);
        let lost = sent.saturating_sub(delivered);
        last.count.fetch_sub(lost, Ordering::SeqCst);
        last.discarded.fetch_add(lost, Ordering::SeqCst);
        row.count.store(delivered, Ordering::SeqCst);
        row.count_in.store(delivered, Ordering::SeqCst);
    }
}

impl<'a, Out: Send + 'a> Prepared<'a, Out> {
    /// Adds the consumer's row (the last one) and returns its cell.
    fn consumer_row(&mut self) -> Arc<StageCell> {
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
    fn execute<R>(
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
    fn start_reports(
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
    fn run_threads<R>(&mut self, cells: &Cells, consume: impl FnOnce() -> R) -> (R, Heard) {
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

/// Reads (and drops) everything that comes out, measured as the consumer.
fn drain<T>(rx: EdgeRx<T>, mut clock: ConsumerClock, weigh: &Option<Weigher<T>>) {
    while let Ok(msg) = clock.recv(&rx, weigh) {
        drop(msg);
    }
}

impl<Out: Send + 'static> Prepared<'static, Out> {
    fn stats(&mut self) -> Stats {
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

type RunThread = JoinHandle<Result<Summary, RunError>>;

/// How long dropping a [`Running`] (or a background [`Outputs`]) waits for
/// its run to end. A run still going then, held by a step that does not
/// return, is left running, detached, and a warning (target `paipa`)
/// names the stage and worker busy the longest, as
/// [`Running::stop_within`] reports it: a drop never waits for ever on
/// user code.
pub const DROP_GRACE: Duration = Duration::from_secs(10);

/// How long a run that opted into signals
/// ([`Pipeline::stop_on_signals`](super::Pipeline::stop_on_signals)) has
/// to end once the second signal aborted it. A run still going then, held
/// by a step that does not return, cannot be detached (a scoped run's
/// steps may borrow from its caller): a warning (target `paipa`) names the
/// stage and worker busy the longest, and the process ends with the
/// signal's default effect, as a third signal would end it.
#[cfg(all(feature = "signals", not(loom)))]
pub const SIGNAL_GRACE: Duration = Duration::from_secs(10);

/// Acts on each signal a listening run hears (the first closes the input,
/// the second also cancels the run) until the run ends and its listener
/// is dropped. Once the second signal aborted the run, it has
/// [`SIGNAL_GRACE`] to end; a step that holds it longer ends the process
/// (see `signals::give_up`), naming the worker busy the longest.
#[cfg(all(feature = "signals", not(loom)))]
fn watch_signals(
    bell: &crossbeam_channel::Receiver<()>,
    heard: &Heard,
    shared: &RunShared,
    cells: &Cells,
    close_input: &(dyn Fn() + Send + Sync),
) {
    use crossbeam_channel::RecvTimeoutError;
    let mut grace_ends = None;
    loop {
        let rang = match grace_ends {
            None => bell.recv().is_ok(),
            Some(end) => match bell.recv_deadline(end) {
                Ok(()) => true,
                Err(RecvTimeoutError::Disconnected) => false,
                Err(RecvTimeoutError::Timeout) => {
                    let held = longest_busy(cells).map_or_else(
                        || "no step is running".to_string(),
                        |(stage, worker, busy)| format!("stage {stage:?} (worker {worker}) has been busy for {busy:?}"),
                    );
                    crate::signals::give_up(
                        heard.as_ref(),
                        &format!("the run did not end within {SIGNAL_GRACE:?} of the signal that aborted it: {held}"),
                    )
                }
            },
        };
        if !rang {
            return;
        }
        if heard::count(heard) >= 2 {
            shared.cancel.cancel();
            grace_ends.get_or_insert_with(|| Instant::now() + SIGNAL_GRACE);
        }
        close_input();
    }
}

/// Joins the run thread, a panic of its own as the run's error.
fn join_run(thread: RunThread) -> Result<Summary, RunError> {
    thread.join().unwrap_or_else(|p| {
        Err(RunError::Panic {
            stage: "pipeline".into(),
            worker: 0,
            message: crate::threaded::run::panic_message(&*p),
        })
    })
}

/// Joins the run thread if it ends within `limit`; else leaves it running,
/// detached (taken out of `thread`), and names the longest-busy worker. A
/// limit too long to be a deadline on the clock waits for ever, as
/// [`join_run`] does.
fn join_run_within(thread: &mut Option<RunThread>, cells: &Cells, limit: Duration) -> Result<Summary, RunError> {
    let Some(end) = deadline(limit) else {
        return join_run(thread.take().expect("joined once"));
    };
    let mut pause = Duration::from_micros(100);
    while thread.as_ref().is_some_and(|t| !t.is_finished()) {
        let now = Instant::now();
        if now >= end {
            thread.take(); // detached
            return Err(stuck(cells, limit));
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    join_run(thread.take().expect("joined once"))
}

/// The worker that has been on its current batch the longest: its stage,
/// its index and how long.
fn longest_busy(cells: &Cells) -> Option<(String, usize, Duration)> {
    let now = clock().raw();
    cells
        .iter()
        .flat_map(|(cell, _)| {
            cell.busy_since.iter().enumerate().filter_map(move |(worker, since)| {
                let since = since.load(Ordering::Relaxed);
                (since != 0).then(|| (since, cell.name(), worker))
            })
        })
        .min_by_key(|(since, _, _)| *since)
        .map(|(since, stage, worker)| (stage, worker, ticks_to_duration(now.saturating_sub(since))))
}

/// The error of a run that did not end within `waited`, naming the worker
/// busy the longest.
fn stuck(cells: &Cells, waited: Duration) -> RunError {
    let (stage, worker, busy_for) = longest_busy(cells).unwrap_or(("pipeline".into(), 0, Duration::ZERO));
    RunError::Stuck {
        stage,
        worker,
        busy_for,
        waited,
    }
}

/// What a dropped handle does with its run: joins it within
/// [`DROP_GRACE`], else leaves it detached with a warning.
fn join_on_drop(thread: &mut Option<RunThread>, cells: &Cells) {
    match join_run_within(thread, cells, DROP_GRACE) {
        Ok(_) => {}
        Err(e @ RunError::Stuck { .. }) => tracing::warn!(target: "paipa", "pipeline dropped: {e}"),
        Err(e) => tracing::error!(target: "paipa", "pipeline stopped on drop with an error: {e}"),
    }
}

/// A pipeline running in the background.
///
/// Dropping it stops the run the way [`Running::stop`] does (input closed,
/// everything drained and joined), but waits at most [`DROP_GRACE`]: a run
/// held longer by a step that does not return is left running, detached,
/// with a warning naming the stage. [`Running::detach`] lets the process
/// exit without waiting instead, losing what is in flight.
///
/// **Which calls wait on your code for ever**: [`Running::stop`],
/// [`Running::wait`] and [`Running::abort`] join every thread of the run,
/// so a step that never returns (blocked on I/O with no timeout, or
/// retried for ever) keeps them waiting for ever; a cancel reaches a step
/// only between items, or through [`Output::is_stopping`](super::Output::is_stopping).
/// [`Running::stop_within`] and [`Running::abort_within`] give up at their
/// deadline, and a drop after [`DROP_GRACE`].
pub struct Running {
    thread: Option<RunThread>,
    shared: Arc<RunShared>,
    close_input: Arc<dyn Fn() + Send + Sync>,
    stats: Stats,
    /// Every stage's cell, to name a worker stuck in a step.
    cells: Cells,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("alive", &self.alive())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// True while the run goes on and nothing has failed.
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && !self.shared.has_error()
            && !self.shared.cancel.is_cancelled()
    }

    /// Live stats of the run.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Closes the input (every [`Input`](super::Input) handle is refused
    /// from now on), lets everything put so far drain through, joins every
    /// thread, and returns the result.
    ///
    /// Waits for ever on a step that never returns: use
    /// [`Running::stop_within`] to bound the wait.
    pub fn stop(mut self) -> Result<Summary, RunError> {
        (self.close_input)();
        self.join()
    }

    /// Waits for the run to end by itself (its input ended).
    ///
    /// Waits for ever on an input that never ends or a step that never
    /// returns.
    pub fn wait(mut self) -> Result<Summary, RunError> {
        self.join()
    }

    /// Stops at once: in-flight items are discarded (and counted), every
    /// thread is joined. Returns the summary, or the run's error if one
    /// happened first.
    ///
    /// Waits for ever on a step that never returns (the cancel reaches a
    /// step only between items): use [`Running::abort_within`] to bound
    /// the wait.
    pub fn abort(mut self) -> Result<Summary, RunError> {
        self.shared.cancel.cancel();
        (self.close_input)();
        self.join()
    }

    /// [`Running::stop`], but gives up after `deadline`: if the run has
    /// not ended by then (a step that never returns, or retries for ever),
    /// returns [`RunError::Stuck`] naming the stage and worker that has been
    /// on its batch the longest. The run's threads are then **detached**:
    /// they go on in the background (the input stays closed), and end by
    /// themselves once the stuck step returns; nothing joins them, and the
    /// process may exit while they run. A deadline too long to land on the
    /// clock (`Duration::MAX`) never comes: this is then [`Running::stop`].
    pub fn stop_within(mut self, deadline: Duration) -> Result<Summary, RunError> {
        (self.close_input)();
        join_run_within(&mut self.thread, &self.cells, deadline)
    }

    /// [`Running::abort`], but gives up after `deadline` as
    /// [`Running::stop_within`] does (a step that never returns cannot see
    /// the cancel): [`RunError::Stuck`], the threads detached. A deadline
    /// too long to land on the clock (`Duration::MAX`) never comes: this
    /// is then [`Running::abort`].
    pub fn abort_within(mut self, deadline: Duration) -> Result<Summary, RunError> {
        self.shared.cancel.cancel();
        (self.close_input)();
        join_run_within(&mut self.thread, &self.cells, deadline)
    }

    /// Lets the run go on unjoined: the process may exit without waiting
    /// for it, losing whatever is in flight at that moment.
    pub fn detach(mut self) {
        self.thread.take();
    }

    fn join(&mut self) -> Result<Summary, RunError> {
        join_run(self.thread.take().expect("joined once"))
    }
}

impl Drop for Running {
    /// Stops the run as [`Running::stop_within`] with [`DROP_GRACE`] does,
    /// and logs what it could not join.
    fn drop(&mut self) {
        if self.thread.is_some() {
            (self.close_input)();
            join_on_drop(&mut self.thread, &self.cells);
        }
    }
}

/// The run behind a background [`Outputs`].
struct Background {
    thread: Option<RunThread>,
    stats: Stats,
    /// Every stage's cell, to name a worker stuck in a step.
    cells: Cells,
}

/// The outputs of the last stage, as an iterator. Dropping it before the end
/// stops the pipeline cleanly (counted as discarded, not as an error): the
/// input is closed, and what was not read (the rest of a batch, batches
/// still on the last edge) is counted as the last stage's `discarded`.
pub struct Outputs<T> {
    rx: Option<EdgeRx<T>>,
    /// Told what was delivered once the outputs reach their end or are
    /// dropped.
    consumer: Arc<Consumer>,
    /// Dropped when reading stops (wakes a background run waiting for it).
    stopped: Option<Sender<()>>,
    /// Weight of the items received (whole batches) so far.
    received: u64,
    weigh: Option<Weigher<T>>,
    current: std::vec::IntoIter<T>,
    ended: bool,
    metas: u64,
    background: Option<Background>,
    /// Measures the consumer in its own row.
    clock: ConsumerClock,
    /// Set by a bridge that reads these outputs on its own thread (see
    /// `tokio/stream.rs`): the books are settled when it lets go (`release`), not
    /// when reading stops, for it may hand items back until then.
    hold: bool,
    /// Reading reached the end of the outputs.
    reached_end: bool,
    /// Weight of the items received and then handed back unread.
    returned: u64,
    /// When set, a wait on the last edge gives up once this is ready.
    #[cfg(all(feature = "async", not(loom)))]
    stop: Option<Receiver<()>>,
}

/// Why reading stopped.
enum Stop {
    /// The outputs reached their end.
    End,
    /// The reader was told to stop (a bridge's `stop` became ready).
    #[cfg(all(feature = "async", not(loom)))]
    Told,
}

impl<T> fmt::Debug for Outputs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outputs")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T> Outputs<T> {
    fn new(
        rx: EdgeRx<T>,
        background: Option<Background>,
        consumer: Arc<Consumer>,
        stopped: Sender<()>,
        weigh: Option<Weigher<T>>,
        clock: ConsumerClock,
    ) -> Self {
        Outputs {
            rx: Some(rx),
            consumer,
            stopped: Some(stopped),
            received: 0,
            weigh,
            current: Vec::new().into_iter(),
            ended: false,
            metas: 0,
            background,
            clock,
            hold: false,
            reached_end: false,
            returned: 0,
            #[cfg(all(feature = "async", not(loom)))]
            stop: None,
        }
    }

    /// For a bridge that reads on its own thread: the books wait for
    /// [`Outputs::release`], items may be handed back with
    /// [`Outputs::give_back`], and a wait on the last edge gives up once
    /// `stop` is ready.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn hold(&mut self, stop: Receiver<()>) {
        self.hold = true;
        self.stop = Some(stop);
    }

    /// An item taken from these outputs never reached the consumer: it is
    /// counted as the last stage's `discarded`, as the rest of a partly
    /// read batch is.
    #[cfg(all(feature = "async", not(loom)))]
    pub(crate) fn give_back(&mut self, item: &T) {
        self.returned += weight(std::slice::from_ref(item), &self.weigh);
    }

    /// Waits for the next message on the last edge.
    fn wait(&mut self) -> Result<Msg<T>, Stop> {
        let Some(rx) = self.rx.as_ref() else {
            return Err(Stop::End);
        };
        #[cfg(all(feature = "async", not(loom)))]
        if let Some(stop) = self.stop.as_ref() {
            return self.clock.timed(&self.weigh, || match rx.recv_blocking_or_stop(stop) {
                Some(Ok(msg)) => Ok(msg),
                Some(Err(_)) => Err(Stop::End),
                None => Err(Stop::Told),
            });
        }
        self.clock.recv(rx, &self.weigh).map_err(|()| Stop::End)
    }

    /// Meta entries seen so far (they are counted, not yielded).
    pub fn metas(&self) -> u64 {
        self.metas
    }

    /// Live stats of a background run (`None` for a scoped run, whose
    /// summary comes from `run_with`).
    pub fn stats(&self) -> Option<Stats> {
        self.background.as_ref().map(|b| b.stats.clone())
    }

    /// Stops reading (if not at the end), joins a background run and
    /// returns its result.
    ///
    /// Waits for ever on a step that never returns (dropping the outputs
    /// instead waits at most [`DROP_GRACE`]).
    pub fn finish(mut self) -> Result<Summary, RunError> {
        self.release();
        match self.background.take() {
            Some(mut b) => join_run(b.thread.take().expect("joined once")),
            None => Err(RunError::Config(crate::error::ConfigError::new(
                "outputs",
                "scoped",
                "a scoped run returns its summary from run_with",
            ))),
        }
    }

    /// Drops the receiving end: the last stage finds its output gone and
    /// stops, and so on upstream (stages do not discard what is already
    /// through). Tells the run what was delivered: the rest of a partly
    /// read batch, and whatever is still on the last edge, are counted as
    /// the last stage's discards when the run ends. The run then closes its
    /// input (see `run_with` and `spawn_outputs`).
    fn stop_reading(&mut self, at_end: bool) {
        self.ended = true;
        self.reached_end |= at_end;
        self.rx = None;
        if !self.hold {
            self.release();
        }
    }

    /// Settles the books once reading stopped for good (see
    /// [`Outputs::stop_reading`]).
    fn release(&mut self) {
        self.ended = true;
        if let Some(stopped) = self.stopped.take() {
            if !self.reached_end {
                self.clock.stop();
            }
            self.consumer
                .early
                .store(!self.reached_end || self.returned > 0, Ordering::SeqCst);
            let unread = weight(self.current.as_slice(), &self.weigh) + self.returned;
            self.consumer
                .delivered
                .store(self.received.saturating_sub(unread), Ordering::SeqCst);
            self.consumer.done.store(true, Ordering::SeqCst);
            drop(stopped);
        }
        self.current = Vec::new().into_iter();
        self.rx = None;
    }
}

impl<T> Iterator for Outputs<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.current.next() {
                return Some(x);
            }
            if self.ended {
                return None;
            }
            match self.wait() {
                Ok(Msg::Items(b)) => {
                    self.received += self.clock.last;
                    self.current = b.into_iter();
                }
                Ok(Msg::Meta(_)) => self.metas += 1,
                Err(Stop::End) => self.stop_reading(true),
                #[cfg(all(feature = "async", not(loom)))]
                Err(Stop::Told) => self.stop_reading(false),
            }
        }
    }
}

impl<T> Drop for Outputs<T> {
    /// Stops reading; a background run is joined within [`DROP_GRACE`],
    /// as a dropped [`Running`] is.
    fn drop(&mut self) {
        self.release();
        if let Some(mut b) = self.background.take() {
            join_on_drop(&mut b.thread, &b.cells);
        }
    }
}
