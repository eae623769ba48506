//! Feeding a threaded pipeline: the live [`Input`] handle ([`handle`]),
//! the state every handle shares with the run and the puts held back
//! before it ([`shared`]), and the relay thread of an async put
//! ([`relay`], feature `async`).

mod handle;
#[cfg(all(feature = "async", not(loom)))]
mod relay;
mod shared;

pub use handle::{Closed, Input, PutError};
pub(crate) use shared::InputShared;
