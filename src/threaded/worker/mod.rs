//! The kit every worker loop is built from: its context and the stage's
//! error policy applied to a batch ([`context`]), its clock ([`clock`]),
//! its outbox ([`outbox`]), the slots through which a stage chained onto
//! its threads is fed ([`chain`]), and the [`Emitter`] that bundles the
//! way out of every loop.

pub(crate) mod chain;
mod clock;
mod context;
mod emitter;
mod outbox;

pub(crate) use chain::{link_for, run_chained, worth_chaining, ChainLink, ChainLinks, Downstream};
pub(crate) use clock::WorkerClock;
pub(crate) use context::{drain_discarding, StageEnd, WorkerCtx};
pub(crate) use emitter::Emitter;
pub(crate) use outbox::{weight, Outbox, Weigher};
