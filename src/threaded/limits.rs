//! Every default and bound of the threaded core, and the check that
//! refuses a count setting outside its bound, naming the stage.

use std::time::Duration;

use crate::error::ConfigError;

/// Items waiting on an edge unless set.
pub const DEFAULT_CAPACITY: usize = 2048;

/// The largest capacity an edge can have (2^30 items): an edge this large
/// already holds more than memory can.
pub const MAX_CAPACITY: usize = 1 << 30;

/// The most worker threads a stage may have. Each worker is an OS thread
/// with its own stack; past this many, a stage would fail to start its
/// threads (or exhaust the machine) rather than go faster.
pub const MAX_WORKERS: usize = 1024;

/// The most retries a stage may make of one item.
pub const MAX_RETRIES: u32 = 100;

/// The longest wait a stage may make before its first retry of an item
/// (one hour; later waits double from it, up to 2^16 times as long).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Refuses a count setting of stage `stage` outside `1..=max`, naming it.
pub(crate) fn check_count(stage: &str, field: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, 0, format!("stage {stage:?} needs at least 1")));
    }
    if value > max {
        return Err(ConfigError::new(
            field,
            value,
            format!("stage {stage:?} takes at most {max}"),
        ));
    }
    Ok(())
}
