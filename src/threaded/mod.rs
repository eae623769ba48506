//! Threaded pipelines: each stage runs on its own pool of worker threads,
//! joined to the next by a bounded channel that carries batches.
//!
//! - Build with [`Pipeline::new`] and [`Pipeline::then`], one [`Stage`] at a
//!   time: [`Stage::map`] (a function of one item), [`Stage::iter`] (an
//!   iterator step, which may keep state; iterator-pipeline steps plug in
//!   unchanged; a boxed one with `Stage::from`) or [`Stage::step`] (a
//!   [`Step`] type with lifecycle hooks). [`Pipeline::then_all`] adds a
//!   run-time list of stages.
//! - Feed it with [`Pipeline::put_all`] before the run, a lazy
//!   [`Pipeline::source`], or live [`Input`] handles from other threads.
//! - Run it with [`Pipeline::run`] (blocking, scoped: steps may borrow),
//!   [`Pipeline::run_with`] (outputs as an iterator on this thread),
//!   [`Pipeline::spawn`] (background, with a [`Running`] handle) or
//!   [`Pipeline::outputs`] (background, outputs as an iterator).
//!
//! See `channel.rs` for the shutdown protocol and why it cannot deadlock.
//!
//! # What waits on your code for ever
//!
//! A run ends when every step has returned: a cancel (an error, an abort,
//! a second signal) reaches a step only between items, or when the step
//! asks [`Output::is_stopping`]. So a step that never returns (blocked on
//! I/O with no timeout, retried for ever) holds every call that joins the
//! run: [`Pipeline::run`] and [`Pipeline::run_with`], [`Running::stop`],
//! [`Running::wait`] and [`Running::abort`], [`Outputs::finish`], and the
//! drain after a first signal. These wait at most a bound instead:
//! [`Running::stop_within`] and [`Running::abort_within`] (their deadline:
//! the run is then left running, detached), dropping a [`Running`] or a
//! background [`Outputs`] ([`DROP_GRACE`], 10 s: detached, with a warning
//! naming the stage), and a run aborted by a second signal (`SIGNAL_GRACE`,
//! 10 s: the process ends, with a warning naming the stage; see
//! [`crate::signals`]). A duration too long to land on the clock
//! (`Duration::MAX`) given to a call that waits means "for ever": that
//! call then waits as its untimed form does.

#[cfg(all(feature = "async", not(loom)))]
mod async_stage;
#[cfg(all(feature = "async", not(loom)))]
mod bridge;
mod builder;
mod cancel;
mod chain;
mod channel;
mod chunk;
pub(crate) mod fate;
mod fold;
mod handle;
mod input;
mod iter_worker;
mod meta;
mod ordered;
mod outbox;
mod pacing;
mod policy;
mod pull;
mod run;
mod stage;
mod step;
pub(crate) mod waiting;
mod worker;

#[cfg(feature = "http")]
pub(crate) use builder::StageDefaults;
pub use builder::{Pipeline, DEFAULT_CAPACITY, MAX_CAPACITY};

/// What the loom model checks (src/loom_tests/) need from inside.
#[cfg(all(test, loom))]
pub(crate) mod loom_support {
    pub(crate) use super::channel::{edge as edge_for_test, recv, send, Cancel, EdgeRx, EdgeTx, Layout, Msg, Recv};
    pub(crate) use super::input::{Input, InputShared};
    pub(crate) use super::ordered::{ordered_worker, Reorder, ReorderBuffer, Window};
    pub(crate) use super::outbox::Outbox;
    pub(crate) use super::pacing::{Cost, Pacing};
    pub(crate) use super::policy::{AfterRetries, OnError};
    pub(crate) use super::run::RunShared;
    pub(crate) use super::step::WorkerInfo;
    pub(crate) use super::worker::{Failure, StageEnd, WorkerCtx};
}
#[cfg(all(feature = "async", not(loom)))]
pub use async_stage::{TimedOut, DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT};
#[cfg(all(feature = "async", not(loom)))]
pub use bridge::{OutputStream, STREAM_BUFFER};
pub use chunk::TimedChunk;
#[cfg(all(feature = "signals", not(loom)))]
pub use handle::SIGNAL_GRACE;
pub use handle::{Outputs, Running, Summary, DROP_GRACE};
pub use input::{Closed, Input, PutError};
pub use iter_worker::InputIter;
pub use meta::{Meta, MetaTypeError};
pub use policy::{AfterRetries, OnError, Skipped};
pub use stage::{Stage, MAX_BACKOFF, MAX_RETRIES, MAX_WORKERS};
pub use step::{Output, Step, StepFactory, WorkerInfo, MIN_IDLE_TIMEOUT};
