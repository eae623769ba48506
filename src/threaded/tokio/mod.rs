//! Async stages and the bridges for tokio programs (feature `async`):
//! the async stage's builder ([`stage`]), its stage thread ([`driver`]) and
//! feeder thread ([`feeder`]), a run's outputs as a `Stream` ([`stream`]),
//! and a `Stream` as a pipeline's source ([`source_stream`]).

pub(crate) mod driver;
pub(crate) mod feeder;
pub(crate) mod source_stream;
pub(crate) mod stage;
pub(crate) mod stream;

pub use stage::{AsyncOptions, AsyncStage, TimedOut, DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT};
pub use stream::{OutputStream, STREAM_BUFFER};
