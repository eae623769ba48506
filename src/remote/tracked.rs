//! Items that remember the stream entries they came from, so that an entry
//! is acked only when everything made from it in this process is finished.
//!
//! # The lineage protocol
//!
//! The source makes one [`Entry`] per stream entry it delivers and hands out
//! a [`Tracked`] item holding a [`Token`]: a counted reference (`Arc`) to the
//! entry. Steps that change the number of items carry the references along:
//! [`Tracked::flat_map`] gives every output a reference to the same entries,
//! [`Tracked::merge`] (chunk, fold) gives its one output references to all
//! the merged entries, [`Tracked::filter`] finishes what it drops. An entry
//! is acked when its last reference is gone, **and** every reference left
//! through [`Tracked::done`] (or [`Token::done`]): the sink consumed the
//! item, or the next stream confirmed it.
//!
//! A reference dropped any other way (a queue discarded in an abort, an item
//! a step forgot) marks its entries *abandoned*: they are not acked and stay
//! pending in the group, to be claimed by a consumer after the edge's idle
//! time. So an aborted run never acks what it did not finish, and a
//! forgotten item shows as a redelivery, never as a loss.
//! [`Tracked::fail`] marks them *failed*: left pending with the error
//! recorded, or sent to the dead-letter stream on their last delivery. A
//! reference dropped inside a step call of a threaded stage that then fails
//! (a [`Stage::try_map`](crate::threaded::Stage::try_map) returning `Err`,
//! a panic) is failed with the step's error, as `fail` would (see
//! `threaded/fate.rs`).
//!
//! Acks are queued (one channel send per entry) and sent in batches: one
//! XACK with every id waiting, in the same round trip as the source's next
//! read, or by the source's acker thread (see `acker.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::acker::AckMsg;

const OK: u8 = 0;
const ABANDONED: u8 = 1;
const FAILED: u8 = 2;

/// What the entries of one source share: the acker's queue, how many
/// delivered entries this process still holds, and how many messages are
/// on their way to the server (queued, or taken and not yet confirmed).
#[derive(Debug)]
pub(crate) struct AckShared {
    pub(crate) tx: Sender<AckMsg>,
    pub(crate) in_flight: Arc<AtomicU64>,
    pub(crate) queued: Arc<AtomicU64>,
}

impl AckShared {
    /// Queues `msg` for the acker, counted in `queued` until it is carried
    /// out (see `acker.rs`); false if the acker is gone.
    pub(crate) fn send(&self, msg: AckMsg) -> bool {
        // Counted before it can be taken, so `queued` never goes below
        // what waits.
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(msg).is_ok() {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::SeqCst);
        false
    }
}

/// One stream entry delivered to this process, alive while any item made
/// from it is.
pub(crate) struct Entry {
    /// The entry's id in the stream it was read from (what XACK takes).
    pub(crate) stream_id: String,
    /// Its origin id, stable across hops.
    pub(crate) origin: Arc<str>,
    /// Deliveries so far, this one included.
    pub(crate) deliveries: u64,
    state: AtomicU8,
    error: Mutex<Option<String>>,
    shared: Arc<AckShared>,
}

impl Entry {
    pub(crate) fn new(stream_id: String, origin: Arc<str>, deliveries: u64, shared: Arc<AckShared>) -> Arc<Self> {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Arc::new(Entry {
            stream_id,
            origin,
            deliveries,
            state: AtomicU8::new(OK),
            error: Mutex::new(None),
            shared,
        })
    }

    fn mark(&self, state: u8, error: Option<&str>) {
        if let (Some(e), Ok(mut slot)) = (error, self.error.lock()) {
            slot.get_or_insert_with(|| e.to_string());
        }
        self.state.fetch_max(state, Ordering::AcqRel);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let msg = match *self.state.get_mut() {
            OK => AckMsg::Ack {
                stream_id: std::mem::take(&mut self.stream_id),
                redelivered: self.deliveries > 1,
            },
            FAILED => AckMsg::Fail {
                stream_id: std::mem::take(&mut self.stream_id),
                origin: self.origin.clone(),
                deliveries: self.deliveries,
                error: self
                    .error
                    .get_mut()
                    .map(|e| e.take())
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "failed".into()),
            },
            _ => AckMsg::Abandoned(std::mem::take(&mut self.stream_id)),
        };
        // Queued before it stops being in flight: a reader that sees
        // neither held nor queued entries knows every ack went out. A
        // closed queue means the acker stopped on an error: the entry stays
        // pending, which is the safe side.
        let _ = self.shared.send(msg);
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
enum Lineage {
    One(Arc<Entry>),
    Many(Arc<[Arc<Entry>]>),
}

impl Lineage {
    fn for_each(&self, mut f: impl FnMut(&Arc<Entry>)) {
        match self {
            Lineage::One(e) => f(e),
            Lineage::Many(es) => es.iter().for_each(f),
        }
    }
}

/// The claim an item has on the stream entries it came from. Finish it
/// with [`done`](Token::done) or [`fail`](Token::fail); dropping it any
/// other way leaves the entries pending (see the module's protocol).
#[must_use = "a token dropped without done() leaves its entries pending, to be delivered again"]
pub struct Token {
    lineage: Option<Lineage>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("entries", &self.entries()).finish()
    }
}

impl Token {
    /// A token tied to no entry: finishing it does nothing. For items that
    /// did not come from a stream.
    pub fn none() -> Self {
        Token { lineage: None }
    }

    pub(crate) fn one(entry: Arc<Entry>) -> Self {
        Token {
            lineage: Some(Lineage::One(entry)),
        }
    }

    /// How many stream entries this token holds.
    pub fn entries(&self) -> usize {
        match &self.lineage {
            None => 0,
            Some(Lineage::One(_)) => 1,
            Some(Lineage::Many(es)) => es.len(),
        }
    }

    /// The most deliveries of any of its entries (0 for a token tied to
    /// none).
    pub fn deliveries(&self) -> u64 {
        let mut most = 0;
        if let Some(l) = &self.lineage {
            l.for_each(|e| most = most.max(e.deliveries));
        }
        most
    }

    /// This item is finished: its entries are acked once no other item
    /// made from them is left.
    pub fn done(mut self) {
        self.lineage = None;
    }

    /// This item failed: its entries are not acked. They stay pending with
    /// `error` recorded, and are delivered again after the edge's idle
    /// time; on their last allowed delivery they go to the dead-letter
    /// stream with `error` instead.
    pub fn fail(mut self, error: impl fmt::Display) {
        if let Some(l) = self.lineage.take() {
            let error = error.to_string();
            l.for_each(|e| e.mark(FAILED, Some(&error)));
        }
    }

    fn share(&self) -> Token {
        Token {
            lineage: self.lineage.clone(),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(l) = self.lineage.take() {
            // Dropped inside a step call (a `try_map` returning `Err`, a
            // panic): the call's error, if it fails, fails the entries as
            // `fail` would; otherwise (and outside any call) they are
            // abandoned.
            crate::threaded::fate::defer(move |error| match error {
                Some(error) => l.for_each(|e| e.mark(FAILED, Some(error))),
                None => l.for_each(|e| e.mark(ABANDONED, None)),
            });
        }
    }
}

/// A value with the stream entries it came from and a stable id.
///
/// The id is the origin entry's id, kept across hops: on the first stream
/// it is the entry's stream id (or the id the producer gave), and a later
/// hop writes it again with the value. [`flat_map`](Tracked::flat_map)
/// outputs add `.<index>`; [`merge`](Tracked::merge) outputs take the first
/// id plus `+<count-1>`. A sink keyed by this id makes its effect happen
/// once even when an entry is delivered twice (see `docs/GUARANTEES.md`).
///
/// ```
/// use paipa::remote::Tracked;
///
/// // Items not from a stream (tests, first hops) are tracked by nothing.
/// let t = Tracked::new("7", 20u32);
/// let doubled = t.map(|x| x * 2);
/// assert_eq!((doubled.id(), *doubled.value()), ("7", 40));
/// let parts = doubled.flat_map(|x| [x, x + 1]);
/// assert_eq!(parts.iter().map(|p| p.id()).collect::<Vec<_>>(), ["7.0", "7.1"]);
/// let merged = Tracked::merge(parts);
/// assert_eq!((merged.id(), merged.value().as_slice()), ("7.0+1", &[40, 41][..]));
/// merged.done();
/// ```
#[must_use = "an item dropped without done() leaves its entries pending, to be delivered again"]
pub struct Tracked<T> {
    value: T,
    id: Arc<str>,
    token: Token,
}

impl<T: fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("id", &self.id)
            .field("value", &self.value)
            .field("entries", &self.token.entries())
            .finish()
    }
}

impl<T> Tracked<T> {
    /// `value` with id `id`, tied to no stream entry.
    pub fn new(id: impl Into<Arc<str>>, value: T) -> Self {
        Tracked {
            value,
            id: id.into(),
            token: Token::none(),
        }
    }

    pub(crate) fn from_entry(entry: Arc<Entry>, value: T) -> Self {
        Tracked {
            value,
            id: entry.origin.clone(),
            token: Token::one(entry),
        }
    }

    /// The stable id (see the type's docs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, to change in place.
    pub fn value_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// How many times the entry behind this item has been delivered, this
    /// time included (the most of its entries, for a merged item).
    pub fn deliveries(&self) -> u64 {
        self.token.deliveries()
    }

    /// The value, id and token apart (finish the token yourself).
    pub fn into_parts(self) -> (T, Arc<str>, Token) {
        (self.value, self.id, self.token)
    }

    /// The same entries and id, a new value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Tracked<U> {
        let Tracked { value, id, token } = self;
        Tracked {
            value: f(value),
            id,
            token,
        }
    }

    /// The same entries and id, a new value or an error (the token goes
    /// back with the error, so the caller decides: `fail` it, or `done`).
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Tracked<U>, (E, Token)> {
        let Tracked { value, id, token } = self;
        match f(value) {
            Ok(value) => Ok(Tracked { value, id, token }),
            Err(e) => Err((e, token)),
        }
    }

    /// One item per output of `f`, each holding the same entries (finished
    /// when all are); an empty output finishes the entries at once. Output
    /// `i` has id `<id>.<i>`.
    pub fn flat_map<U, I: IntoIterator<Item = U>>(self, f: impl FnOnce(T) -> I) -> Vec<Tracked<U>> {
        let Tracked { value, id, token } = self;
        let out: Vec<Tracked<U>> = f(value)
            .into_iter()
            .enumerate()
            .map(|(i, value)| Tracked {
                value,
                id: format!("{id}.{i}").into(),
                token: token.share(),
            })
            .collect();
        token.done();
        out
    }

    /// The item if `keep` holds; otherwise it is finished here (a filtered
    /// item is done, not lost).
    pub fn filter(self, keep: impl FnOnce(&T) -> bool) -> Option<Self> {
        if keep(&self.value) {
            Some(self)
        } else {
            self.done();
            None
        }
    }

    /// Several items as one (a chunk, a fold): the output holds all their
    /// entries, and its id is the first id plus `+<count-1>`.
    pub fn merge(items: impl IntoIterator<Item = Tracked<T>>) -> Tracked<Vec<T>> {
        let mut values = Vec::new();
        // The items' tokens stay whole until the output's exists: if
        // `items` panics midway, the values taken so far are lost, and
        // these tokens, dropped by the unwinding, leave their entries
        // pending (never acked for work that was not done).
        let mut tokens: Vec<Token> = Vec::new();
        let mut first: Option<Arc<str>> = None;
        for item in items {
            first.get_or_insert_with(|| item.id.clone());
            values.push(item.value);
            tokens.push(item.token);
        }
        let id: Arc<str> = match (&first, values.len()) {
            (Some(f), n) if n > 1 => format!("{f}+{}", n - 1).into(),
            (Some(f), _) => f.clone(),
            (None, _) => "".into(),
        };
        let mut entries: Vec<Arc<Entry>> = Vec::with_capacity(tokens.len());
        for token in &tokens {
            if let Some(l) = &token.lineage {
                l.for_each(|e| entries.push(e.clone()));
            }
        }
        let lineage = match entries.len() {
            0 => None,
            1 => entries.pop().map(Lineage::One),
            _ => Some(Lineage::Many(entries.into())),
        };
        let merged = Token { lineage };
        // The output holds every entry now: the parts are finished.
        tokens.into_iter().for_each(Token::done);
        Tracked {
            value: values,
            id,
            token: merged,
        }
    }

    /// Finished: consumed by the local sink, or confirmed by the next
    /// stream. Its entries are acked once no other item made from them is
    /// left.
    pub fn done(self) {
        self.token.done();
    }

    /// Failed with `error` (see [`Token::fail`]).
    pub fn fail(self, error: impl fmt::Display) {
        self.token.fail(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};

    fn source() -> (Arc<AckShared>, Receiver<AckMsg>) {
        let (tx, rx) = unbounded();
        (
            Arc::new(AckShared {
                tx,
                in_flight: Default::default(),
                queued: Default::default(),
            }),
            rx,
        )
    }

    fn item(shared: &Arc<AckShared>, id: &str, value: u32) -> Tracked<u32> {
        Tracked::from_entry(Entry::new(id.into(), id.into(), 1, shared.clone()), value)
    }

    fn acked(rx: &Receiver<AckMsg>) -> Vec<String> {
        rx.try_iter()
            .filter_map(|m| match m {
                AckMsg::Ack { stream_id, .. } => Some(stream_id),
                AckMsg::Fail { stream_id, .. } => Some(format!("fail {stream_id}")),
                AckMsg::Dead { stream_id, .. } => Some(format!("dead {stream_id}")),
                // Sends nothing to the server.
                AckMsg::Abandoned(_) => None,
            })
            .collect()
    }

    #[test]
    fn an_entry_is_acked_only_when_every_part_is_done() {
        let (shared, rx) = source();
        let mut parts = item(&shared, "1-0", 3).flat_map(|n| 0..n);
        assert_eq!(parts.len(), 3);
        parts.pop().unwrap().done();
        parts.pop().unwrap().done();
        assert!(acked(&rx).is_empty());
        parts.pop().unwrap().done();
        assert_eq!(acked(&rx), ["1-0"]);
        assert_eq!(shared.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_part_leaves_the_entry_pending_even_if_the_others_are_done() {
        let (shared, rx) = source();
        let mut parts = item(&shared, "1-0", 2).flat_map(|n| 0..n);
        drop(parts.pop());
        parts.pop().unwrap().done();
        assert!(acked(&rx).is_empty());
        assert_eq!(shared.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn merged_entries_are_acked_together_and_filtered_ones_at_once() {
        let (shared, rx) = source();
        let items = (0..4).map(|i| item(&shared, &format!("{i}-0"), i));
        let kept: Vec<_> = items.filter_map(|t| t.filter(|v| v % 2 == 0)).collect();
        assert_eq!(acked(&rx), ["1-0", "3-0"]);
        let chunk = Tracked::merge(kept);
        assert_eq!(chunk.value(), &[0, 2]);
        let flat = chunk.flat_map(|v| v);
        assert!(acked(&rx).is_empty());
        flat.into_iter().for_each(Tracked::done);
        let mut ids = acked(&rx);
        ids.sort();
        assert_eq!(ids, ["0-0", "2-0"]);
    }

    #[test]
    fn a_failure_wins_over_done_parts() {
        let (shared, rx) = source();
        let mut parts = item(&shared, "5-0", 2).flat_map(|n| 0..n);
        parts.pop().unwrap().fail("bad part");
        parts.pop().unwrap().done();
        match rx.try_recv().unwrap() {
            AckMsg::Fail { stream_id, error, .. } => {
                assert_eq!((stream_id.as_str(), error.as_str()), ("5-0", "bad part"))
            }
            _ => panic!("expected a failure"),
        }
    }

    #[test]
    fn a_merge_that_panics_midway_acks_none_of_the_entries_it_took() {
        let (shared, rx) = source();
        let items = (0..3).map(|i| {
            if i == 2 {
                panic!("injected");
            }
            item(&shared, &format!("{i}-0"), i)
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Tracked::merge(items)));
        assert!(r.is_err());
        // The two merged values are lost with the unwinding: their entries
        // stay pending, nothing is acked.
        assert_eq!(acked(&rx), Vec::<String>::new());
        assert_eq!(shared.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_panicking_step_leaves_its_entry_pending() {
        let (shared, rx) = source();
        let t = item(&shared, "9-0", 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.map(|_| -> u32 { panic!("injected") })
        }));
        assert!(r.is_err());
        assert!(acked(&rx).is_empty());
    }
}
