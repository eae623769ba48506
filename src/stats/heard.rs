//! The signals a run heard, as the rest of the crate sees them: with the
//! `signals` feature a shared count (see [`crate::signals`]); without it a
//! type with no value, so every check compiles to nothing.

use super::Outcome;

/// The signals a run heard (`None`: it does not listen).
#[cfg(all(feature = "signals", not(loom)))]
pub(crate) type Heard = Option<crate::signals::SignalCount>;

/// The signals a run heard: never any without the `signals` feature.
#[cfg(not(all(feature = "signals", not(loom))))]
pub(crate) type Heard = Option<std::convert::Infallible>;

/// How many signals the run heard.
#[inline]
pub(crate) fn count(heard: &Heard) -> u32 {
    #[cfg(all(feature = "signals", not(loom)))]
    return heard.as_ref().map_or(0, |h| h.count());
    #[cfg(not(all(feature = "signals", not(loom))))]
    match heard {
        None => 0,
        Some(never) => match *never {},
    }
}

/// `Outcome::Interrupted` if the run heard a signal.
pub(crate) fn outcome(heard: &Heard) -> Option<Outcome> {
    #[cfg(all(feature = "signals", not(loom)))]
    return heard.as_ref().and_then(|h| h.outcome());
    #[cfg(not(all(feature = "signals", not(loom))))]
    match heard {
        None => None,
        Some(never) => match *never {},
    }
}

/// Lets the run act on `n` signals before one more ends the process.
pub(crate) fn allow(heard: &Heard, n: u32) {
    #[cfg(all(feature = "signals", not(loom)))]
    if let Some(h) = heard {
        h.allow(n);
    }
    #[cfg(not(all(feature = "signals", not(loom))))]
    let _ = (heard, n);
}
