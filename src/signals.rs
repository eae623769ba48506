//! Ctrl-C and SIGTERM for runs that opt in (feature `signals`).
//!
//! A run that opts in ([`threaded::Pipeline::stop_on_signals`] or
//! [`iter::Pipeline::stop_on_signals`]) listens for `SIGINT` and `SIGTERM`
//! while it runs:
//!
//! 1. the **first** signal stops the input: the source is not read any more
//!    and input handles are refused; what was taken drains through every
//!    stage, the final report is made, and the run returns normally with an
//!    outcome that says it was interrupted
//!    ([`Outcome::Interrupted`](crate::stats::Outcome::Interrupted));
//! 2. the **second** stops at once: a threaded run is aborted (what is in
//!    flight is discarded and counted), a measured iterator pipeline ends at
//!    the consumer's next pull; both still make their final report;
//! 3. one signal more than the run can act on (the third; the second for an
//!    iterator pipeline without a debugger, which cannot be stopped from
//!    outside while your code drains it) has the signal's default effect:
//!    the process ends, as it would without paipa.
//!
//! What waits on your code: after the first signal, the drain runs your
//! steps, and a step that never returns holds it until the second signal.
//! After the second, a threaded run has
//! [`SIGNAL_GRACE`](crate::threaded::SIGNAL_GRACE) (10 s) to end; a step
//! that holds it longer cannot see the abort, and its thread cannot be left
//! behind (a scoped run's steps may borrow from the caller), so a warning
//! names the stage and worker busy the longest and the process ends with
//! the signal's default effect, as a third signal would end it.
//!
//! Signals are watched by one thread for the whole process, started by the
//! first run that opts in. A signal that arrives while no run listens has
//! its default effect, as before the first opt-in. Programs that handle
//! these signals themselves (a tokio `ctrl_c`, say) should not also opt in.
//!
//! [`threaded::Pipeline::stop_on_signals`]: crate::threaded::Pipeline::stop_on_signals
//! [`iter::Pipeline::stop_on_signals`]: crate::iter::Pipeline::stop_on_signals

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGINT, SIGTERM};

/// One listening run: how many signals it got, the last one, and a doorbell
/// for a thread that waits for them.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    count: AtomicU32,
    last: AtomicI32,
    /// How many signals the run can act on; one more ends the process.
    max: AtomicU32,
    /// Rung on every signal; taken out when the listener is dropped.
    bell: Mutex<Option<Sender<()>>>,
}

/// Every run listening now.
static LISTENERS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());
/// The watcher thread, started once (or the reason it could not be).
static WATCHER: OnceLock<Result<(), String>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Signals handed to runs (or given their default effect) so far.
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// How many SIGINT/SIGTERM paipa has acted on in this process so far.
///
/// The operating system merges a signal sent again before the first was
/// handled, so a program (or test) that sends two in a row and wants both
/// seen waits for this count to move between them.
pub fn delivered() -> u64 {
    DELIVERED.load(Ordering::SeqCst)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn listeners() -> std::sync::MutexGuard<'static, Vec<Arc<Slot>>> {
    lock(&LISTENERS)
}

fn start_watcher() -> Result<(), std::io::Error> {
    let started = WATCHER.get_or_init(|| {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("paipa:signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    deliver(signal);
                }
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    started.clone().map_err(std::io::Error::other)
}

/// Hands `signal` to every listening run, or gives it its default effect
/// when no run listens or one has had more than it can act on.
fn deliver(signal: i32) {
    let slots = listeners().clone();
    let mut default = slots.is_empty();
    for slot in &slots {
        slot.last.store(signal, Ordering::SeqCst);
        let n = slot.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n > slot.max.load(Ordering::SeqCst) {
            default = true;
        }
        if let Some(bell) = lock(&slot.bell).as_ref() {
            let _ = bell.try_send(());
        }
    }
    DELIVERED.fetch_add(1, Ordering::SeqCst);
    if default {
        tracing::warn!(target: "paipa", "{}: no run can act on it any more; the process ends", name(signal));
        // Ends the process (SIGINT and SIGTERM terminate by default).
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}

/// Ends the process for a threaded run that has not ended within its
/// grace after the signal that aborted it (a step that does not return
/// holds it, and a scoped run's threads cannot be left behind): `why` is
/// logged as a warning, then the last signal the run heard has its
/// default effect, as one signal more would have.
pub(crate) fn give_up(heard: Option<&SignalCount>, why: &str) -> ! {
    let signal = heard.map_or(SIGTERM, |h| h.0.last.load(Ordering::SeqCst));
    tracing::warn!(target: "paipa", "{}: {why}; the process ends", name(signal));
    // Ends the process (SIGINT and SIGTERM terminate by default); should
    // the default handler not be restorable, the exit status says the same.
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal)
}

/// The name of a signal paipa listens for.
pub(crate) fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// A run's registration: signals reach it until it is dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    slot: Arc<Slot>,
    rx: Option<Receiver<()>>,
}

impl Listener {
    /// Listens for SIGINT and SIGTERM; one signal past `max` ends the
    /// process. With `wake`, [`Listener::doorbell`] rings on every signal.
    pub(crate) fn new(max: u32, wake: bool) -> Result<Self, std::io::Error> {
        start_watcher()?;
        let (bell, rx) = if wake {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let slot = Arc::new(Slot {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            count: AtomicU32::new(0),
            last: AtomicI32::new(0),
            max: AtomicU32::new(max),
            bell: Mutex::new(bell),
        });
        listeners().push(slot.clone());
        Ok(Listener { slot, rx })
    }

    /// The shared counter, for a reader that outlives a borrow.
    pub(crate) fn handle(&self) -> SignalCount {
        SignalCount(self.slot.clone())
    }

    /// Rings once per signal (a listener made with `wake`); disconnects
    /// when the listener is dropped.
    pub(crate) fn doorbell(&self) -> Option<Receiver<()>> {
        self.rx.clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        listeners().retain(|s| s.id != self.slot.id);
        lock(&self.slot.bell).take();
    }
}

/// A read-only view of a listener's signals (kept after it is dropped).
#[derive(Debug, Clone)]
pub(crate) struct SignalCount(Arc<Slot>);

impl SignalCount {
    #[inline]
    pub(crate) fn count(&self) -> u32 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Lets the run act on `n` signals before one more ends the process.
    pub(crate) fn allow(&self, n: u32) {
        self.0.max.store(n, Ordering::SeqCst);
    }

    /// The outcome for a run that got signals: `None` if it got none.
    pub(crate) fn outcome(&self) -> Option<crate::stats::Outcome> {
        let n = self.0.count.load(Ordering::SeqCst);
        (n > 0).then(|| crate::stats::Outcome::Interrupted {
            signal: name(self.0.last.load(Ordering::SeqCst)).to_string(),
            forced: n > 1,
        })
    }
}

/// The source of an iterator pipeline that stops on SIGINT/SIGTERM (see
/// [`iter::Pipeline::stop_on_signals`](crate::iter::Pipeline::stop_on_signals)):
/// after the first signal it ends, so the steps drain what they took and
/// the consumer sees the end of the pipeline. It stops listening when
/// dropped.
#[derive(Debug)]
pub struct Interruptible<I> {
    iter: I,
    listener: Listener,
    done: bool,
}

impl<I> Interruptible<I> {
    pub(crate) fn new(iter: I, listener: Listener) -> Self {
        Interruptible {
            iter,
            listener,
            done: false,
        }
    }

    /// What the pipeline heard.
    pub(crate) fn heard(&self) -> SignalCount {
        self.listener.handle()
    }
}

impl<I: Iterator> Iterator for Interruptible<I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        if self.done {
            return None;
        }
        if self.listener.slot.count.load(Ordering::Relaxed) > 0 {
            self.done = true;
            return None;
        }
        self.iter.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (0, self.iter.size_hint().1)
        }
    }
}

/// Sends `signal` to this process (tests and examples).
#[cfg(test)]
pub(crate) fn raise(signal: i32) {
    signal_hook::low_level::raise(signal).expect("raise");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_counts_signals_and_unregisters_when_dropped() {
        let first = Listener::new(2, true).unwrap();
        let bell = first.doorbell().unwrap();
        raise(SIGTERM);
        bell.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
        let seen = first.handle();
        assert_eq!(seen.count(), 1);
        assert_eq!(
            seen.outcome(),
            Some(crate::stats::Outcome::Interrupted {
                signal: "SIGTERM".into(),
                forced: false
            })
        );
        drop(first);
        assert!(listeners().iter().all(|s| s.id != seen.0.id));
        assert!(
            bell.recv_timeout(std::time::Duration::from_secs(20)).is_err(),
            "disconnected"
        );
    }
}
