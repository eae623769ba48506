//! # paipa: data pipelines that show where the time goes
//!
//! A pipeline is **a source, an ordered list of named stages, and a sink**.
//! paipa has two kinds, and both report through one stats model
//! ([`Snapshot`]) to one set of reporters ([`Reporter`]):
//!
//! - **Iterator pipelines** ([`iter`]) run every stage on the caller's thread.
//!   The consumer pulls; each stage pulls from the one before. A step is any
//!   function from an iterator to an iterator.
//! - **Threaded pipelines** ([`threaded`]) run each stage on its own pool of
//!   worker threads, joined by bounded channels that carry batches. Each
//!   stage pushes into the next.
//! - **The runtime debugger** ([`Debugger`]) measures each stage of either
//!   kind: items, exclusive (busy) time, throughput, user and system CPU,
//!   your own counters, memory growth, and for threaded stages the time spent
//!   starved (waiting for input) and blocked (waiting for space); it reports
//!   every few seconds and once at the end.
//! - **Glue** (feature `http`): `glue::serve_pipeline` serves a threaded
//!   pipeline's live input over HTTP, with backpressure (503 + Retry-After),
//!   all-or-nothing requests, a bad entry skipped and listed in `/stats`
//!   rather than failing the run for every client, and a graceful, draining
//!   stop on SIGTERM. It and the live page stand on one connection layer
//!   (`src/net/`) that holds what no route may be left to do alone: a
//!   bounded number of connections (an idle one closed to make room), head,
//!   body and idle timeouts, the host names and origins a request may come
//!   with (no DNS rebinding, no posts from other sites), and one JSON shape
//!   for every error, hyper's own included. Entries are decoded straight
//!   into their type under a memory budget, so no body costs more than
//!   about three times the body limit.
//! - **Adapters**: an iterator step runs as a threaded stage
//!   ([`threaded::Stage::iter`]; a boxed one, named, with `Stage::from`), an
//!   iterator pipeline is a threaded source
//!   ([`threaded::Pipeline::source`]), and a threaded pipeline's outputs are
//!   an iterator ([`threaded::Pipeline::outputs`]).
//!
//! ## Quick start
//!
//! ```
//! use paipa::iter::{chunk, flatten, Pipeline};
//!
//! fn remove_odd(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
//!     it.filter(|x| x % 2 == 0)
//! }
//!
//! let total: u64 = Pipeline::new(0..100)
//!     .step(remove_odd)
//!     .step(chunk(8)?)      // Vec batches of 8
//!     .step(flatten)        // and back
//!     .into_iter()
//!     .sum();
//! assert_eq!(total, 2450);
//! # Ok::<(), paipa::ConfigError>(())
//! ```
//!
//! ## Measuring a pipeline
//!
//! Attach a [`Debugger`] and every step added after it becomes a measured
//! stage. Names come from the step functions. The stats are there during the
//! run and after it:
//!
//! ```
//! use paipa::iter::{consume, Pipeline};
//! use paipa::Debugger;
//!
//! fn caster(it: impl Iterator<Item = u32>) -> impl Iterator<Item = String> {
//!     it.map(|x| x.to_string())
//! }
//! fn flip(it: impl Iterator<Item = String>) -> impl Iterator<Item = String> {
//!     it.map(|s| s.chars().rev().collect())
//! }
//!
//! let pipeline = Pipeline::new(10_000..19_999u32)
//!     .debug(Debugger::silent())
//!     .step(caster)
//!     .step(flip);
//! let stats = pipeline.stats();
//! assert_eq!(consume(pipeline), 9_999);
//!
//! let snap = stats.snapshot();
//! let names: Vec<_> = snap.stages.iter().map(|s| s.name.as_str()).collect();
//! assert_eq!(names, ["source", "caster", "flip"]);
//! assert!(snap.stages.iter().all(|s| s.count == 9_999));
//! ```
//!
//! `Debugger::new()` logs the reference's aligned table through `tracing`
//! every 5 s and at the end ([`report::LogReporter`]); any closure taking a
//! `&Snapshot` is a reporter too (see [`report`]).
//!
//! ### How time is attributed
//!
//! A probe sits on the output of every stage. Control moves between stages
//! only through probes, so each crossing reads a fast clock (the TSC) once and
//! charges the time since the previous crossing to the stage that was running.
//! Every nanosecond lands in exactly one stage: the times are exclusive and
//! add up to the run's wall time. CPU time and memory cost ~25x more to read,
//! so they are read at most once a millisecond and split among the stages by
//! their busy time in that window. [`Debugger::sampled`] times one pull in N
//! instead of all, for pipelines where even two clock reads per item and
//! stage matter.
//!
//! ## Step lists built at run time
//!
//! ```
//! use paipa::iter::{boxed, combine, identity, BoxIter, StepList};
//!
//! fn step(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.map(|x| x + 1) }
//! fn remover(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.step_by(2) }
//!
//! let steps: StepList<u32> = vec![
//!     StepList::from(boxed(step)),
//!     vec![boxed(remover), boxed(identity)].into(),
//!     boxed(step).into(),
//! ]
//! .into();
//! assert_eq!(combine(0..1000, steps).into_iter().count(), 500);
//! ```
//!
//! The same list runs as threaded stages, one per step and named after it:
//! [`threaded::Pipeline::then_all`] takes any run-time list of stages that
//! keep the item type (a `StepList`, or stages built from configuration),
//! and `Stage::from(step)` makes one boxed step a stage.
//!
//! ```
//! use paipa::iter::{boxed, BoxIter, StepList};
//! use paipa::threaded::{Pipeline, Stage};
//!
//! fn step(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.map(|x| x + 1) }
//! fn remover(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.step_by(2) }
//!
//! let steps: StepList<u32> = vec![boxed(step), boxed(remover)].into();
//! let summary = Pipeline::new()
//!     .source(0..1000u32)
//!     .then_all(steps)?
//!     .then_all([("double", 2), ("again", 3)].map(|(name, workers)| {
//!         Stage::map(name, |x: u32| x * 2).workers(workers)
//!     }))?
//!     .run()?;
//! assert_eq!(summary.items, 500);
//! let names: Vec<_> = summary.snapshot.stages.iter().map(|s| s.name.as_str()).collect();
//! assert_eq!(names, ["source", "step", "remover", "double", "again", "consumer"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Threaded pipelines
//!
//! Each stage has its own worker count; item types may change from stage to
//! stage; every edge holds at most `capacity` items (2048 unless set),
//! counted one by one however they are handed over, so a fast stage waits
//! for a slow one and memory stays flat.
//!
//! Items cross an edge in batches sized by measured cost, not by a fixed
//! count: every stage measures what an item costs it, and the stage before
//! it cuts batches of about 200 us of work for whichever of the two is
//! slower. Cheap items travel in batches of up to half the capacity (a hop
//! then costs a few nanoseconds per item); a 20 ms call travels alone, so
//! each of 200 workers gets one and no finished item waits behind slow
//! ones. Until a stage has measured anything, items go to it one at a
//! time. Nothing needs tuning for either case.
//!
//! Threads follow the machine, not only the stage list:
//! - a lazy [`source`](threaded::Pipeline::source) is pulled by the first
//!   stage's own workers, one batch at a time, whenever their input is
//!   empty (as rayon's `par_bridge` does), so an item is made, processed
//!   and freed on one thread, with no source thread to hand it over (an
//!   ordered stage, and a `Step` stage, whose idle hook must run while
//!   the source waits, get a source thread instead);
//! - a function stage with as many workers as the stage before it (at
//!   least 2, and together more threads than the machine has cores) is
//!   *chained*: it runs on the threads of the stage before, a batch going
//!   through both by direct call, as Flink chains operators. Each stage
//!   keeps its own row in the stats. [`Stage::unchained`](threaded::Stage::unchained)
//!   opts out.
//!
//! ```
//! use paipa::threaded::{Pipeline, Stage};
//! use std::time::Duration;
//!
//! fn download(id: u64) -> Result<String, std::io::Error> {
//!     Ok(format!("record {id}"))
//! }
//!
//! let summary = Pipeline::new()
//!     .source(0..1_000u64)                                   // pulled lazily
//!     .then(Stage::try_map("download", download).workers(10)
//!         .retry(2, Duration::from_millis(10)))?             // then fail
//!     .then(Stage::map("parse", |s: String| s.len()).workers(2).ordered())?
//!     .then(Stage::iter("batch", |it| paipa::iter::chunk(100).unwrap()(it)))?
//!     .run()?;
//! assert_eq!(summary.items, 10);
//! let parse = summary.snapshot.stage("parse").unwrap();
//! assert_eq!((parse.count_in, parse.count), (1_000, 1_000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Input comes from items put before the run, a lazy source, or live
//! [`threaded::Input`] handles used from other threads. A run is blocking and
//! scoped ([`run`](threaded::Pipeline::run), steps may borrow from the
//! caller), hands its outputs to a closure
//! ([`run_with`](threaded::Pipeline::run_with)), or goes to the background
//! ([`spawn`](threaded::Pipeline::spawn) returns a [`threaded::Running`]
//! handle; [`outputs`](threaded::Pipeline::outputs) an iterator).
//!
//! ## Async stages (feature `async`)
//!
//! A step that waits on IO does not need a thread per request in flight.
//! [`Stage::map_async`](threaded::Stage::map_async) and
//! [`Stage::try_map_async`](threaded::Stage::try_map_async) take a step
//! that returns a future and keep up to
//! [`in_flight`](threaded::Stage::in_flight) of them running at once on one
//! thread with a tokio runtime (paipa's own current-thread one, or the
//! caller's multi-thread runtime with
//! [`on_runtime`](threaded::Stage::on_runtime)), plus one thread that waits
//! on the stage's input. Outputs come in the order the futures finish, or
//! in input order with [`ordered`](threaded::Stage::ordered) (a window of
//! `in_flight` items). Each item's latency is measured: reports show p50
//! and p99 over the last interval, and an async stage at its bound gets the
//! hint to raise `in_flight`. The
//! policies are those of every stage (fail, skip, retry with a backoff on
//! tokio's timer), a panic in a future fails its item naming the stage, a
//! per-item [`timeout`](threaded::Stage::timeout) fails an attempt that
//! takes too long, and a stop drops the futures in flight, counting their
//! items as `discarded`. Sync and async stages mix freely:
//!
//! ```
//! # #[cfg(feature = "async")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use paipa::threaded::{Pipeline, Stage};
//!
//! let summary = Pipeline::new()
//!     .source(0..1_000u64)
//!     .then(Stage::try_map_async("fetch", |id: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(20)).await; // a request
//!         Ok::<_, std::io::Error>(id)
//!     })
//!     .in_flight(200)                          // 200 requests, 2 threads
//!     .timeout(Duration::from_secs(5))
//!     .retry(2, Duration::from_millis(50)))?
//!     .then(Stage::map("parse", |id: u64| id * 2).workers(2))?
//!     .run()?;
//! assert_eq!(summary.items, 1_000);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "async"))]
//! # fn main() {}
//! ```
//!
//! A tokio program bridges to a threaded pipeline without blocking a runtime
//! thread: [`Input::put_async`](threaded::Input::put_async) and
//! [`Input::put_batch_async`](threaded::Input::put_batch_async) wait for
//! room (a put that finds none is made by the handle's relay thread),
//! [`Pipeline::source_stream`](threaded::Pipeline::source_stream) reads a
//! `futures::Stream` as the source (polled on the source thread), and
//! [`Pipeline::stream`](threaded::Pipeline::stream) (or
//! [`Outputs::into_stream`](threaded::Outputs::into_stream)) gives a
//! background run's outputs as a `futures::Stream`, read from the last edge
//! by a forwarding thread. Dropping the stream stops the run as dropping
//! the iterator does (what it did not yield is counted as `discarded`);
//! [`OutputStream::finish`](threaded::OutputStream::finish) waits for the
//! summary:
//!
//! ```
//! # #[cfg(feature = "async")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use paipa::threaded::{Pipeline, Stage};
//!
//! let mut pipeline = Pipeline::new().capacity(2)?;
//! let input = pipeline.input();
//! let mut out = pipeline.then(Stage::map("double", |x: u64| x * 2))?.stream()?;
//! let feed = tokio::spawn(async move {
//!     for x in 0..100u64 {
//!         input.put_async(x).await.expect("the run takes input");
//!     }
//! }); // the input is dropped when the task ends: the run's input ends
//! let mut sum = 0;
//! while let Some(x) = out.next().await {
//!     sum += x;
//! }
//! feed.await?;
//! assert_eq!(sum, 9_900);
//! assert_eq!(out.finish().await?.items, 100);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "async"))]
//! # fn main() {}
//! ```
//!
//! In the stats an async stage counts one worker per future slot: its busy
//! time is summed over the slots, so its load is its mean in-flight count
//! over its bound, and the verdict names it as the limit when it runs at
//! its bound. Its `in_flight` is a live gauge.
//!
//! ## Across machines (feature `redis`)
//!
//! A pipeline split at a Redis stream: one process ends its pipeline with a
//! `remote::StreamSink`, others start theirs with a `remote::StreamSource`
//! reading the stream in a consumer group. The source yields
//! `remote::Tracked` items: an entry is acked only once every item made
//! from it is `done()` (or confirmed by the next stream), so a crash or an
//! aborted run leaves it pending for the other consumers, never lost.
//! Each process's snapshots list its streams in [`Snapshot::edges`]
//! (length, and per group pending entries, lag and consumers), read off
//! the pipeline's threads before each report; the log table shows a line
//! per group after the stages.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use paipa::remote::{EdgeConfig, StreamSource, Tracked};
//! use paipa::threaded::{Pipeline, Stage};
//!
//! let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "orders", "billing").consumer("billing-1");
//! let (source, handle) = StreamSource::<u64>::open(edge)?;
//! let pipeline = Pipeline::new()
//!     .source(source)
//!     .then(Stage::map("price", |t: Tracked<u64>| t.map(|n| n * 3)).workers(4))?;
//! pipeline.run_with(|out| out.for_each(Tracked::done))?; // acked as they are done
//! handle.finish()?; // the last acks sent
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```
//!
//! ## Architecture
//!
//! Both pipeline kinds are a source, an ordered list of named stages and a
//! sink, measured into one stats model (`stats`: a cell per stage, read
//! into [`Snapshot`]s) and shown by one set of reporters (`report`). The
//! iterator pipeline (`iter`) runs every stage on the caller's thread. The
//! threaded core (`threaded`) is built in floors, each file using only
//! files below it (`modgraph.py` finds no import circle):
//!
//! 1. values and rules: `Meta`, the limits, pacing (batch size from
//!    measured cost), the cancel, a source's way of waiting;
//! 2. the edge (`edge.rs`): bounded batches between stages, every send and
//!    receive observing the cancel, the shutdown protocol;
//! 3. the run and the error policy (`run.rs`, `policy.rs`): the first
//!    error, the threads, one policy for every kind;
//! 4. input and source: the live [`threaded::Input`], puts held back before
//!    the run, a lazy source pulled by the first stage's workers;
//! 5. the worker kit (`worker/`): a worker's context, clock, outbox, the
//!    slots of a stage chained onto its threads, and the emitter every
//!    loop sends through;
//! 6. the step contract ([`threaded::Step`]) and the stage
//!    ([`threaded::Stage`], with the capabilities each kind declares);
//! 7. the kinds (`kinds/`: item, map, ordered, iterator, fold, chained,
//!    batch map; `tokio/`: async), one file each;
//! 8. the planner (`plan.rs`: edges, chaining, where the source is
//!    pulled), the builder ([`threaded::Pipeline`]) and the running
//!    pipeline (`running/`: [`threaded::Running`], [`threaded::Outputs`],
//!    [`threaded::Summary`]);
//! 9. the tokio bridges: outputs as a `Stream`, a `Stream` as a source.
//!
//! Above the core: `remote` (stages across machines on Redis Streams),
//! `net` and `glue` (the HTTP connection layer and ingestion server).
//! `docs/ARCHITECTURE.md` follows an item through the floors and shows
//! how a stage kind is added.
//!
//! ## Errors and shutdown
//!
//! A step returns a `Result`; panics are caught and treated as errors. Each
//! stage has a policy ([`threaded::OnError`]): fail (default), skip and
//! count, or retry with backoff and then fail or skip. A failure records the
//! stage, the worker and the error, stops every stage at once, joins every
//! thread, and [`run`](threaded::Pipeline::run) returns it as a
//! [`RunError`]. Every wait of a run observes its cancel, by one rule kept
//! in one place (`threaded/cancel.rs`): a blocking wait selects over the
//! cancel signal, a task on a runtime polls it. A source that waits inside
//! `next()` (a Redis stream, a `Stream`) asks the run between slices of at
//! most 50 ms whether to stop, or to hand on what its puller holds
//! (`threaded/waiting.rs`); a user's own iterator that blocks cannot be
//! asked, and `stop_within` / `abort_within` then name it by their
//! deadline. Nothing is dropped uncounted: on a stage that emits one
//! item per input, `count_in = count + skipped + failed + discarded`.
//!
//! End of input is channel disconnection, not a sentinel: when every sender
//! of a stage's input is gone and the channel is drained, its workers run
//! their finish hooks, flush, and drop their senders, and the next stage sees
//! the end. A consumer that stops reading (or an iterator step that stops
//! pulling) disconnects the edge above it, and the stages upstream stop in
//! turn while those downstream finish what they have.
//!
//! These promises are tested, not just stated: `docs/GUARANTEES.md` names
//! the test behind each. Property tests run random faulted pipelines under
//! a time limit, and loom model-checks the synchronisation itself (cancel
//! wake-ups, end of input, the reorder window) through a model of the
//! channels that stands in for crossbeam's under `--cfg loom`.
//!
//! ## Reporters
//!
//! Every reporter gets the same [`Snapshot`] (a point-in-time copy of every
//! stage) periodically and once at the end:
//!
//! - [`report::LogReporter`]: the aligned table and the end-of-run summary
//!   (wall time, items per second, each stage's share, the bottleneck and a
//!   hint), through `tracing`.
//! - [`report::ChartReporter`]: an SVG of each stage's throughput and queue
//!   depth over time, written at the end.
//! - `report::JsonReporter` (feature `json`): one JSON object per snapshot,
//!   with a documented schema.
//! - `report::MetricsReporter` (feature `metrics`): counters and gauges
//!   through the `metrics` facade, so Prometheus or DogStatsD exporters
//!   serve them.
//! - `report::ProgressReporter` (feature `progress`): live per-stage lines
//!   with count, throughput, queue depth and busy share.
//! - `report::WebReporter` (feature `web`): a live web page of the run,
//!   pushed over server-sent events (stage boxes, queue depths, throughput
//!   sparklines, the busy / starved / blocked split, the bottleneck, the
//!   outcome); the ingestion server mounts it at `/dashboard`.
//! - Any `FnMut(&Snapshot) + Send` closure, or your own [`Reporter`].
//!
//! [`Debugger::watchdog`] adds stall detection: work inside one stage for
//! longer than a threshold is reported while it happens.
//!
//! ## Feature flags
//!
//! | feature | adds |
//! |---|---|
//! | `json` | `report::JsonReporter`, `report::snapshot_json` (serde_json) |
//! | `metrics` | `report::MetricsReporter` (the `metrics` crate) |
//! | `progress` | `report::ProgressReporter`: live per-stage lines on a terminal (indicatif), tables otherwise |
//! | `web` | `report::WebReporter`: a live web page of the run on a local address (axum, tokio; HTML, CSS and JS embedded); with `http`, also at the ingestion server's `/dashboard` |
//! | `http` | `glue::serve`: an HTTP ingestion server (axum, tokio) feeding a pipeline's live input |
//! | `alloc` | `stats::CountingAlloc`: exact memory growth and peak per stage, for programs that install it as their global allocator |
//! | `async` | `threaded::Stage::map_async`: async stages, many futures in flight on one thread (tokio, futures); `Pipeline::stream` and `Input::put_async` for tokio programs |
//! | `redis` | `remote`: stages across machines on Redis Streams (a stream sink and a consumer-group source, acks after the work is done, backpressure, crash recovery, dead letters; the `redis` crate's sync client, serde JSON or postcard) |
//! | `signals` | `stop_on_signals` on both pipeline kinds: Ctrl-C and SIGTERM stop the input, drain and report (signal-hook); see [`signals`] |
//!
//! The core depends only on crossbeam-channel, quanta, libc, thiserror and
//! tracing.
//!
//! ## Bad input
//!
//! Invalid settings are refused where they are written, with an error that
//! names the field and the value ([`ConfigError`]), never a panic deep inside
//! a run:
//!
//! ```
//! let err = paipa::iter::chunk::<std::ops::Range<u8>>(0).err().unwrap();
//! assert_eq!(err.to_string(), "invalid chunk size: 0 (must be at least 1)");
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod debugger;
mod error;
#[cfg(all(feature = "http", not(loom)))]
pub mod glue;
pub mod iter;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(any(feature = "http", feature = "web"), not(loom)))]
mod net;
#[cfg(all(feature = "redis", not(loom)))]
pub mod remote;
pub mod report;
#[cfg(all(feature = "signals", not(loom)))]
pub mod signals;
pub mod stats;
mod sync;
pub mod threaded;

pub use debugger::{Debugger, Stats, DEFAULT_INTERVAL};
pub use error::{BoxError, ConfigError, RunError};
pub use report::Reporter;
pub use stats::{
    EdgeGroup, EdgeSnapshot, Latency, Limit, OpenInputs, Outcome, Snapshot, StageSnapshot, Stall, Verdict,
    WorkerSnapshot,
};
