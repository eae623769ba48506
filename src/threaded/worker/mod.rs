//! The kit every worker loop is built from: its context and the stage's
//! error policy applied to a batch ([`context`]), its clock ([`clock`]),
//! its outbox ([`outbox`]), and the slots through which a stage chained
//! onto its threads is fed ([`chain`]).

pub(crate) mod chain;
mod clock;
mod context;
mod outbox;

pub(crate) use chain::{feed, link_for, worth_chaining, Downstream, Link, Links};
pub(crate) use clock::WorkerClock;
pub(crate) use context::{drain_discarding, StageEnd, WorkerCtx};
pub(crate) use outbox::{weight, Outbox, Weigher};
