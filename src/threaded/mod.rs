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
//! See `edge.rs` for the shutdown protocol and why it cannot deadlock.
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

#![warn(clippy::too_many_lines)]

mod cancel;
mod edge;
pub(crate) mod fate;
mod input;
mod kinds;
mod limits;
mod meta;
mod pacing;
mod pipeline;
mod plan;
mod policy;
mod reorder;
mod run;
mod running;
mod source;
mod stage;
mod step;
mod timed_chunk;
#[cfg(all(feature = "async", not(loom)))]
mod tokio;
pub(crate) mod waiting;
mod worker;

pub use limits::{DEFAULT_CAPACITY, MAX_BACKOFF, MAX_CAPACITY, MAX_RETRIES, MAX_WORKERS};
pub use pipeline::Pipeline;
#[cfg(feature = "http")]
pub(crate) use plan::StageDefaults;

/// What the loom model checks (src/loom_tests/) need from inside.
#[cfg(all(test, loom))]
pub(crate) mod loom_support {
    pub(crate) use super::kinds::ordered::{ordered_worker, Reorder, Window};
    pub(crate) use super::reorder::ReorderBuffer;
    pub(crate) use crate::threaded::edge::{
        edge as edge_for_test, recv, send, Cancel, EdgeRx, EdgeTx, Layout, Msg, Recv,
    };
    pub(crate) use crate::threaded::input::{Input, InputShared};
    pub(crate) use crate::threaded::pacing::{Cost, Pacing};
    pub(crate) use crate::threaded::policy::{AfterRetries, OnError};
    pub(crate) use crate::threaded::policy::{Failure, Policy};
    pub(crate) use crate::threaded::run::RunShared;
    pub(crate) use crate::threaded::step::WorkerInfo;
    pub(crate) use crate::threaded::worker::{Outbox, StageEnd, WorkerCtx};
}
#[cfg(all(feature = "async", not(loom)))]
pub use self::tokio::{
    AsyncOptions, AsyncStage, OutputStream, TimedOut, DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT, STREAM_BUFFER,
};
pub use input::{Closed, Input, PutError};
pub use kinds::iter::InputIter;
pub use meta::{Meta, MetaTypeError};
pub use policy::{AfterRetries, OnError, Skipped};
#[cfg(all(feature = "signals", not(loom)))]
pub use running::SIGNAL_GRACE;
pub use running::{Outputs, Running, Summary, DROP_GRACE};
pub use stage::Stage;
pub use step::{Output, Step, StepFactory, WorkerInfo, MIN_IDLE_TIMEOUT};
pub use timed_chunk::TimedChunk;
