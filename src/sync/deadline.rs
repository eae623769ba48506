//! Deadlines from durations a caller gives: the one place where paipa adds
//! a duration it did not choose to an instant.
//!
//! Invariant: a duration too long to land on the clock (`Duration::MAX`,
//! or anything whose sum with now overflows `Instant`) is a deadline that
//! never comes, `None`. So no arithmetic on a caller's duration panics,
//! and a wait given one waits as its untimed form does: `put_timeout` as
//! `put`, `stop_within` as `stop`, a debugger's `interval` never comes
//! round (only the final report is made). `Instant + Duration` panics on
//! overflow (std's and tokio's alike); every sum of an instant and a
//! caller's duration in paipa goes through [`deadline`] or [`after`].
//!
//! Durations paipa itself picks (constants) are added directly. Waits
//! handed straight to crossbeam (`recv_timeout`, `select_timeout`) or
//! tokio (`sleep`, `timeout`) need nothing from here: those check the sum
//! themselves and wait for ever when it overflows.

use std::time::{Duration, Instant};

/// The instant `wait` from now; `None` (never) when it is past the
/// clock's range.
pub(crate) fn deadline(wait: Duration) -> Option<Instant> {
    after(Instant::now(), wait)
}

/// `from + wait`; `None` (never) when it is past the clock's range.
pub(crate) fn after(from: Instant, wait: Duration) -> Option<Instant> {
    from.checked_add(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_past_the_clock_is_a_deadline_that_never_comes() {
        assert_eq!(deadline(Duration::MAX), None);
        assert_eq!(deadline(Duration::from_secs(u64::MAX)), None);
        let now = Instant::now();
        assert_eq!(after(now, Duration::ZERO), Some(now));
        assert_eq!(after(now, Duration::from_secs(1)), Some(now + Duration::from_secs(1)));
    }
}
