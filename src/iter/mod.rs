//! Iterator (co-routine) pipelines: a source and steps, each a function from
//! an iterator to an iterator, run on the caller's thread as the consumer
//! pulls.
//!
//! - [`Pipeline`] is the typed builder: no boxing, no wrapper, the same code
//!   as a hand-written chain.
//! - [`Pipeline::debug`] attaches the runtime debugger and returns a
//!   [`DebugPipeline`], whose steps are measured one by one.
//! - [`combine`] and [`StepList`] take a list of boxed steps built at run
//!   time; [`Recipe`] keeps steps to apply to many sources.
//! - [`chunk`], [`flatten`], [`identity`], [`consume`], [`consume_n`] are the
//!   reference's helpers.

mod boxed;
mod debug;
mod name;
mod pipeline;
mod probe;
mod recipe;
pub(crate) mod steps;

pub use boxed::{boxed, BoxIter, BoxedStep, StepList};
pub use debug::{DebugPipeline, Debugged};
pub use pipeline::{combine, Pipeline};
pub use probe::{One, Probe, Weigh};
pub use recipe::Recipe;
pub use steps::{chunk, consume, consume_n, flatten, identity, Chunks, MAX_CHUNK};
