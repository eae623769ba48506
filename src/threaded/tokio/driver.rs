//! Async stages (feature `async`): a step that returns a future, with up to
//! `in_flight` futures running at once on one thread.
//!
//! # Shape
//!
//! An async stage is two threads, whatever its bound:
//! - its **stage thread** owns a current-thread tokio runtime (or enters
//!   the caller's, [`Stage::on_runtime`]) and drives a `FuturesUnordered`
//!   of at most `in_flight` futures. It asks the feeder for more items
//!   while it holds fewer than `in_flight` not yet started (so a finished
//!   future's slot is refilled at once, without a round trip to the feeder:
//!   at most twice the bound of items are in the stage), and pushes each
//!   result into the stage's outbox, as a worker does. That push may block the thread when the next edge is
//!   full: the futures in flight then wait too (the stage is blocked, as a
//!   worker that cannot send is), and nothing else runs on that thread.
//! - its **feeder thread** waits on the stage's input edge (a blocking
//!   channel, which must not block the thread that polls futures), or, for
//!   the first stage of a pipeline with a lazy source, pulls the source
//!   itself (as a sync first stage's workers do: no source thread; a cancel
//!   then reaches the stage thread once the source's `next` returns), and
//!   hands one batch over per request of the stage thread, through an
//!   unbounded tokio channel that holds at most one batch (plus an end or a
//!   cancel). The stage thread watches the run's cancel itself (see
//!   `cancel.rs`), so a cancel reaches it while every future is pending,
//!   also once the feeder has passed the end of input on and ended.
//!
//! The futures are polled on the stage thread, so they need not be `Send`
//! or `'static`: like every step of a scoped run they may borrow from the
//! caller. An IO fan-out of 200 futures in flight adds 2 threads, not
//! 200.
//!
//! # Shutdown (the rules of `edge.rs`, kept)
//! - End of input: the feeder sees the edge end and says so; the stage
//!   thread finishes what is in flight, flushes and ends, which drops its
//!   outbox's sender.
//! - Cancel (a failure anywhere, an abort): the stage thread drops every
//!   future in flight (dropping a future is how async work is cancelled)
//!   and counts their items as `discarded`, with the items it held and the
//!   batch the feeder was handing over; the feeder drains its edge,
//!   counting what it finds as taken and discarded.
//! - Downstream gone: as a cancel, for this stage; the feeder stops when
//!   the stage thread drops its request channel.
//!
//! # Stats
//! The stage counts as `in_flight` workers (its [`StageSnapshot::workers`](crate::StageSnapshot::workers)),
//! each future slot as a worker: `busy` is the time summed over the slots
//! that held a future (the integral of the in-flight count), `starved` the
//! slot time spent empty for want of input, `blocked` the slot time spent
//! while the thread waited for room downstream. So the stage's utilization
//! (busy over wall time times workers) is its mean in-flight count over its
//! bound: a stage at its bound is the bottleneck the verdict names, and one
//! below it waits. Its single row of [`per_worker`](crate::StageSnapshot::per_worker)
//! is the thread: busy while at least one future is in flight, starved
//! while it waits for input with nothing in flight, blocked while it waits
//! for room downstream. CPU is the stage thread's, which polls every
//! future. [`in_flight`](crate::StageSnapshot::in_flight) is a gauge.

use std::collections::{BTreeMap, VecDeque};

use crate::threaded::reorder::ReorderBuffer;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::error::{BoxError, RunError};
use crate::stats::{clock, duration_to_ticks, thread_cpu_time, ticks_to_duration, StageCell, StageScope};
use crate::sync::chan::Sender;
use crate::threaded::pacing::Cost;
use crate::threaded::policy::Failure;
use crate::threaded::policy::Policy;
use crate::threaded::run::{panic_message, RunShared};
use crate::threaded::tokio::feeder::Feed;
use crate::threaded::worker::{weight, Outbox, Weigher};

/// An async stage's item did not finish within the stage's
/// `timeout`: the error its policy sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// What the stage thread needs.
pub(crate) struct Driver<F, In> {
    pub(crate) f: F,
    pub(crate) bound: usize,
    /// Results leave in input order (see [`Stage::ordered`]).
    pub(crate) ordered: bool,
    pub(crate) policy: Policy,
    pub(crate) clone_in: Option<fn(&In) -> In>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) runtime: Option<Handle>,
    pub(crate) weigh_in: Option<Weigher<In>>,
    pub(crate) cell: Arc<StageCell>,
    pub(crate) cost: Arc<Cost>,
    pub(crate) shared: Arc<RunShared>,
}

/// A finished future: its number, its item's weight, and its result.
struct Done<Out> {
    seq: u64,
    weight: u64,
    result: Result<Out, Failure>,
}

/// What woke the stage thread.
enum Event<In, Out> {
    Done(Done<Out>),
    Feed(Option<Feed<In>>),
    /// The run was cancelled: seen here, not through the feeder, which
    /// ends once it has passed the end of input on.
    Cancelled,
}

/// How often the stage thread reads its CPU time.
const CPU_EVERY: Duration = Duration::from_millis(50);

/// How often the stage publishes what an item costs it.
const COST_EVERY: Duration = Duration::from_millis(1);

/// Splits the stage's time by what its slots and its thread were doing;
/// marked at every change of the in-flight count (see the module doc).
struct Books {
    cell: Arc<StageCell>,
    bound: u64,
    level: u64,
    last: u64,
    cpu: (Duration, Duration),
    cpu_next: u64,
    cpu_every: u64,
    cost: Arc<Cost>,
    cost_since: u64,
    cost_items: usize,
    cost_every: u64,
    /// Start (raw ticks) of each future in flight, by number: the oldest
    /// is what the watchdog sees.
    started: BTreeMap<u64, u64>,
}

impl Books {
    fn new(cell: Arc<StageCell>, bound: usize, cost: Arc<Cost>) -> Self {
        let now = clock().raw();
        cell.in_flight_limit.store(bound as u64, Relaxed);
        Books {
            cell,
            bound: bound as u64,
            level: 0,
            last: now,
            cpu: thread_cpu_time(),
            cpu_next: now + duration_to_ticks(CPU_EVERY),
            cpu_every: duration_to_ticks(CPU_EVERY),
            cost,
            cost_since: now,
            cost_items: 0,
            cost_every: duration_to_ticks(COST_EVERY),
            started: BTreeMap::new(),
        }
    }

    /// Attributes the time since the last mark at the current level;
    /// `blocked` raw ticks of it were spent waiting for room downstream.
    fn mark(&mut self, blocked: &mut u64) -> u64 {
        let now = clock().raw();
        let dt = now.saturating_sub(self.last);
        self.last = now;
        let blocked = std::mem::take(blocked).min(dt);
        let free = dt - blocked;
        let c = &self.cell;
        if let Some([b, s, k]) = c.per_worker.first() {
            StageCell::bump(if self.level > 0 { b } else { s }, free);
            StageCell::bump(k, blocked);
        }
        StageCell::bump(&c.busy_ticks, self.level.saturating_mul(free));
        StageCell::bump(&c.starved_ticks, (self.bound - self.level).saturating_mul(free));
        StageCell::bump(&c.blocked_ticks, self.bound.saturating_mul(blocked));
        if now >= self.cpu_next {
            self.cpu_next = now + self.cpu_every;
            self.sample_cpu();
        }
        now
    }

    fn sample_cpu(&mut self) {
        let (u, s) = thread_cpu_time();
        let c = &self.cell;
        StageCell::bump(&c.user_cpu_ns, u.saturating_sub(self.cpu.0).as_nanos() as u64);
        StageCell::bump(&c.sys_cpu_ns, s.saturating_sub(self.cpu.1).as_nanos() as u64);
        self.cpu = (u, s);
    }

    fn started(&mut self, seq: u64, now: u64) {
        self.level += 1;
        self.started.insert(seq, now);
        self.publish_level();
    }

    fn finished(&mut self, seq: u64, now: u64) {
        self.level -= 1;
        if let Some(start) = self.started.remove(&seq) {
            self.cell.latency().record(ticks_to_duration(now.saturating_sub(start)));
        }
        self.publish_level();
        self.cost_items += 1;
        let spent = now.saturating_sub(self.cost_since);
        if spent >= self.cost_every {
            // Wall time per item finished: what the stage before sizes its
            // batches by (see `pacing.rs`).
            self.cost.observe(spent, self.cost_items);
            self.cost_since = now;
            self.cost_items = 0;
        }
    }

    fn publish_level(&self) {
        self.cell.in_flight.store(self.level, Relaxed);
        let oldest = self.started.values().next().copied().unwrap_or(0);
        self.cell.mark_busy(0, oldest);
    }

    /// Everything in flight is gone (dropped or finished).
    fn clear(&mut self, blocked: &mut u64) {
        self.mark(blocked);
        self.level = 0;
        self.started.clear();
        self.publish_level();
    }

    fn last_mark(mut self, blocked: &mut u64) {
        self.mark(blocked);
        self.sample_cpu();
    }
}

impl<F, Fut, In, Out> Driver<F, In>
where
    F: Fn(In) -> Fut,
    Fut: Future<Output = Result<Out, BoxError>>,
{
    /// The stage thread.
    pub(crate) fn run(self, outbox: Outbox<Out>, want: Sender<()>, feed: mpsc::UnboundedReceiver<Feed<In>>) {
        let cell = self.cell.clone();
        // The futures are polled on this thread, so their counters and
        // allocations are this stage's.
        let _scope = StageScope::enter(cell.clone());
        let (mut outbox, want, mut feed) = (outbox, want, feed);
        // Unconstrained: this one task is the scheduler of all the stage's
        // futures, and it gives the thread back whenever none is ready. With
        // tokio's cooperative budget (128 operations per task poll), every
        // future past the 128th in one poll would be told to yield, and
        // woken, and polled again: thousands in flight would spin on it.
        let run = tokio::task::unconstrained(self.drive(&mut outbox, &want, &mut feed));
        match &self.runtime {
            Some(handle) => handle.block_on(run),
            // Its own runtime, for this stage's futures alone: IO and
            // timers, and a quarter of tokio's default IO events per tick
            // (3 KiB of event buffer instead of 12; more events wait for
            // the next tick).
            None => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_io_events_per_tick(256)
                .build()
            {
                Ok(rt) => rt.block_on(run),
                Err(e) => {
                    drop(run);
                    self.shared.fail(RunError::Spawn(e));
                }
            },
        }
        if self.shared.cancel.is_cancelled() || outbox.is_gone() {
            outbox.discard_pending();
        } else {
            outbox.flush();
        }
        // The feeder stops waiting for requests; a batch it hands over now
        // finds the channel closed and counts itself as discarded.
        drop(want);
        feed.close();
        while let Ok(msg) = feed.try_recv() {
            if let Feed::Items(b) = msg {
                self.discard(&b);
            }
        }
    }

    fn discard(&self, items: &[In]) {
        self.cell.discarded.fetch_add(weight(items, &self.weigh_in), Relaxed);
    }

    /// One attempt at an item: a panic in `f` or in its future, and the
    /// timeout, are failures of this attempt.
    async fn attempt(&self, item: In) -> Result<Out, Failure> {
        // Made in one expression, so the step's future has one place in
        // this state machine, not two.
        let guarded = match catch_unwind(AssertUnwindSafe(|| AssertUnwindSafe((self.f)(item)).catch_unwind())) {
            Ok(guarded) => guarded,
            Err(p) => return Err(Failure::Panic(panic_message(&*p))),
        };
        // The timer of a timeout (and of a backoff, below) is boxed: only
        // stages that set one pay for it, and every future in flight stays
        // the size of the step's own future plus a little (100,000 in
        // flight are 100,000 of them).
        let out = match self.timeout {
            None => guarded.await,
            Some(limit) => match Box::pin(tokio::time::timeout(limit, guarded)).await {
                Ok(out) => out,
                Err(_) => return Err(Failure::Error(Box::new(TimedOut(limit)))),
            },
        };
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Error(e)),
            Err(p) => Err(Failure::Panic(panic_message(&*p))),
        }
    }

    /// An item under the stage's retry policy; what is left of a failure
    /// goes to the stage thread (skip or fail).
    async fn item(&self, seq: u64, weight: u64, item: In) -> Done<Out> {
        let run = async {
            let (mut item, mut retry) = (item, 0);
            loop {
                let spare = self.policy.spare(&item, retry, self.clone_in.as_ref())?;
                let failure = match self.attempt(item).await {
                    Ok(v) => return Ok(v),
                    Err(f) => f,
                };
                let Some(again) = spare else {
                    return Err(failure);
                };
                retry += 1;
                Box::pin(tokio::time::sleep(self.policy.retrying(retry))).await;
                item = again;
            }
        };
        // Whatever panics outside the item's own code (a timer on a
        // runtime without one) fails this item too.
        let result = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(r) => r,
            Err(p) => Err(Failure::Panic(panic_message(&*p))),
        };
        Done { seq, weight, result }
    }

    /// Hands on one finished item's result by the stage's policy; false
    /// when the run must stop (a failure, or a skip hook that says stop).
    fn settle(&self, outbox: &mut Outbox<Out>, weight: u64, result: Result<Out, Failure>) -> bool {
        match result {
            Ok(v) => {
                outbox.push(v);
                true
            }
            Err(f) => self.policy.give_up(weight, f),
        }
    }

    /// The stage's loop, on the runtime.
    async fn drive(&self, outbox: &mut Outbox<Out>, want: &Sender<()>, feed: &mut mpsc::UnboundedReceiver<Feed<In>>) {
        let cancel = &self.shared.cancel;
        let mut books = Books::new(self.cell.clone(), self.bound, self.cost.clone());
        let mut in_flight = FuturesUnordered::new();
        let mut st = Flight::new();
        while st.ok {
            // Start what the bound allows (ordered: what the window allows,
            // `bound` items from the oldest not handed on).
            while self.has_room(in_flight.len(), &st) {
                let Some(item) = st.held.pop_front() else { break };
                let w = self.weigh_in.as_ref().map_or(1, |f| f(&item));
                let now = books.mark(&mut outbox.blocked);
                books.started(st.seq, now);
                st.flying += w;
                in_flight.push(self.item(st.seq, w, item));
                st.seq += 1;
            }
            if st.input_open && !st.asked && st.held.len() < self.bound {
                // Ahead of need: the next items are here when a slot frees.
                // Taken by the feeder at once; it ends only after the
                // channel it reads is closed by this thread.
                st.asked = want.try_send(()).is_ok();
            }
            if !st.input_open && st.held.is_empty() && in_flight.is_empty() {
                break;
            }
            let input_open = st.input_open;
            let mut next = std::future::poll_fn(|cx| {
                if cancel.poll_cancelled(cx).is_ready() {
                    return Poll::Ready(Event::Cancelled);
                }
                if let Poll::Ready(Some(done)) = in_flight.poll_next_unpin(cx) {
                    return Poll::Ready(Event::Done(done));
                }
                if input_open {
                    if let Poll::Ready(f) = feed.poll_recv(cx) {
                        return Poll::Ready(Event::Feed(f));
                    }
                }
                Poll::Pending
            });
            let event = match (&mut next).now_or_never() {
                Some(event) => event,
                None => {
                    // Nothing ready: send what is ready, then wait.
                    outbox.flush();
                    if outbox.is_gone() {
                        break;
                    }
                    books.mark(&mut outbox.blocked);
                    next.await
                }
            };
            self.handle(event, &mut st, outbox, &mut books);
            st.ok = st.ok && !outbox.is_gone() && !cancel.is_cancelled();
        }
        let stopped_early = !in_flight.is_empty();
        // Stopped early: the futures in flight are dropped here (dropping a
        // future is how async work is cancelled).
        drop(in_flight);
        self.discard_rest(st, stopped_early, outbox, &mut books);
        books.last_mark(&mut outbox.blocked);
    }

    /// Room to start another item: under the bound, and in ordered mode
    /// within `bound` items of the oldest not handed on.
    fn has_room(&self, in_flight: usize, st: &Flight<In, Out>) -> bool {
        in_flight < self.bound && (!self.ordered || st.seq - st.ready.next_out() < self.bound as u64)
    }

    /// What one event changes: a finished item is handed on (in order, if
    /// asked), a batch from the feeder waits to start, the end of input or
    /// a cancel is noted.
    fn handle(&self, event: Event<In, Out>, st: &mut Flight<In, Out>, outbox: &mut Outbox<Out>, books: &mut Books) {
        match event {
            Event::Done(Done { seq, weight, result }) => {
                let now = books.mark(&mut outbox.blocked);
                books.finished(seq, now);
                st.flying -= weight;
                if !self.ordered {
                    st.ok = self.settle(outbox, weight, result);
                    return;
                }
                for (weight, result) in st.ready.insert(seq, (weight, result)) {
                    if st.ok {
                        st.ok = self.settle(outbox, weight, result);
                    } else {
                        st.unsent += weight;
                    }
                }
            }
            Event::Feed(Some(Feed::Items(batch))) => {
                st.asked = false;
                st.held.extend(batch);
            }
            Event::Feed(Some(Feed::Meta(meta))) => outbox.meta(meta),
            Event::Feed(Some(Feed::End) | None) => st.input_open = false,
            Event::Feed(Some(Feed::Cancelled)) | Event::Cancelled => st.ok = false,
        }
    }

    /// After a stop: the items of the futures dropped in flight, the ones
    /// not started and the results held for order are discarded.
    fn discard_rest(&self, st: Flight<In, Out>, stopped_early: bool, outbox: &mut Outbox<Out>, books: &mut Books) {
        let mut ready = st.ready;
        let waiting: u64 = st.unsent + ready.take_waiting().iter().map(|(w, _)| w).sum::<u64>();
        if !st.held.is_empty() || stopped_early || waiting > 0 {
            let held: Vec<In> = st.held.into();
            self.cell
                .discarded
                .fetch_add(st.flying + waiting + weight(&held, &self.weigh_in), Relaxed);
            books.clear(&mut outbox.blocked);
        }
    }
}

/// The stage thread's state between events (besides the futures in
/// flight).
struct Flight<In, Out> {
    /// Weight of the items in flight.
    flying: u64,
    /// Items taken but not started.
    held: VecDeque<In>,
    /// Ordered mode: finished results waiting for an earlier one.
    ready: ReorderBuffer<(u64, Result<Out, Failure>)>,
    /// Weight of results released in order after the stage stopped.
    unsent: u64,
    /// A batch was asked of the feeder and has not come.
    asked: bool,
    input_open: bool,
    /// The number of the next item started.
    seq: u64,
    ok: bool,
}

impl<In, Out> Flight<In, Out> {
    fn new() -> Self {
        Flight {
            flying: 0,
            held: VecDeque::new(),
            ready: ReorderBuffer::new(),
            unsent: 0,
            asked: false,
            input_open: true,
            seq: 0,
            ok: true,
        }
    }
}
