//! The consumer end of an edge: reads a stream in a consumer group and
//! yields [`Tracked`] items to the local pipeline.
//!
//! # Reading, claiming, ending
//!
//! Each call that finds its buffer empty does, in order:
//!
//! 1. **Stop**: once [`SourceHandle::stop`] was called (a SIGTERM handler,
//!    say), the buffer is handed out and the input ends; nothing more is
//!    read. What the pipeline holds then is finished and acked as usual;
//!    what it cannot finish stays pending for the other consumers.
//! 2. **Claim**: every quarter of `claim_idle`, XPENDING lists the entries
//!    pending for longer than `claim_idle`, and XCLAIM takes those this
//!    consumer does not hold (see `held.rs`): a dead consumer's, and its
//!    own that were failed or dropped unfinished; never one still waiting
//!    in its own pipeline. A live consumer's held entries never look idle
//!    that long to the others: its acker refreshes them (see `acker.rs`,
//!    `refresh`). Their delivery counts come from XPENDING; one
//!    delivered more than `max_deliveries` times goes to the dead-letter
//!    stream instead of the pipeline.
//! 3. **Read**: XREADGROUP `>` with `COUNT batch` and `BLOCK block`.
//! 4. **End**: once `producers` producers have finished (the set
//!    `<stream>:end` of their names, read *before* a read found nothing
//!    new, so no entry can still come; a producer's end marker entry, added
//!    after it joined the set, makes the consumer that reads it look at
//!    once), the consumer adds itself to the set
//!    `<stream>:draining` (it will read nothing new) and its input ends
//!    when nothing of its own is pending beyond what it holds (entries it
//!    failed wait for their redelivery), every other consumer with
//!    pending entries is draining too, and nothing it delivered can still
//!    fail while it could be delivered again (see *Holding on* below). A consumer that is not draining
//!    (it died, or was stopped) leaves its entries to be claimed, so the
//!    others keep claiming until none are left. Two draining consumers
//!    never wait for each other (each may hold a partial chunk that only
//!    its own end of input flushes). A consumer that dies *after* the
//!    others ended leaves its entries pending for the next run (never
//!    lost).
//!
//!    What the consumer still holds when its input ends (its input may end
//!    with items in its pipeline) can fail after the end, when no delivery
//!    to it can come any more: such an entry stays pending with its error
//!    recorded. Once the source and all its items are gone, the consumer
//!    leaves `<stream>:draining`, so a consumer still running claims that
//!    entry, and otherwise the next run to read the stream does (counting
//!    the delivery: `max_deliveries` holds across runs).
//!
//! # Holding on
//!
//! Once nothing new can come, the input does not end while entries this
//! consumer delivered are still held (see `held.rs`: not yet acked,
//! failed or dropped as far as the server knows): each may still fail,
//! and a failure after the end could only be redelivered by another
//! consumer or the next run. Meanwhile the source waits in short naps
//! (within the run's slices, see `threaded/waiting.rs`: a stop ends the
//! input, a puller that holds items gets them handed on), and takes back
//! at once, with XCLAIM and a min-idle of 0, its own entries that failed
//! or were dropped: they are pending and no longer held, so this is never
//! a self-claim of an entry still in its pipeline, and the claim counts
//! the delivery as any other. So within one run, a poison entry is
//! delivered `max_deliveries` times and dead-lettered with the step's
//! error.
//!
//! Some entries cannot be finished before the end of input: a partial
//! chunk, a fold, anything that waits for the end. Their set of held
//! entries stands still; once it has not changed for a second, the input
//! ends with them held, and one that fails after that is left to the next
//! run or another consumer as above (never lost, the delivery counted).
//! The bound does not grow with `claim_idle` (which may be an hour): it is
//! what every run of such a pipeline pays at its end. A pipeline of maps
//! and filters changes the set every time an entry is finished, each
//! within a step call of its delivery (a puller hands on what it holds
//! after 1 ms), so only a step call slower than a second, or a stall of
//! the whole process that long (far beyond what a loaded machine does to a
//! runnable thread), ends its input early.
//!
//! An entry that does not decode goes to the dead-letter stream with the
//! decoder's error. A server error past the reconnect deadline, or a
//! failure of the acker thread (see `acker.rs`), ends the input at once:
//! what was read and not handed out stays pending (its acks might never
//! be sent); [`SourceHandle::finish`] returns the error.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;
use serde::de::DeserializeOwned;

use super::acker::{self, AckMsg};
use super::config::EdgeConfig;
use super::error::RemoteError;
use super::handle::SourceHandle;
use super::held::Held;
use super::info_probe::InfoProbe;
use super::link::{ensure_group, int, text, Link};
use super::sink::END_FIELD;
use super::stats::Counters;
use super::tracked::{AckShared, Entry, Tracked};
use crate::sync::deadline::deadline;
use crate::threaded::waiting::{self, Wait};

/// Reads a stream in a consumer group; an iterator of [`Tracked`] items,
/// to use as a pipeline's source.
///
/// ```no_run
/// use paipa::remote::{EdgeConfig, StreamSource, Tracked};
/// use paipa::threaded::{Pipeline, Stage};
///
/// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "numbers", "squarers");
/// let (source, handle) = StreamSource::<u64>::open(edge)?;
/// let pipeline = Pipeline::new()
///     .source(source)
///     .then(Stage::map("square", |t: Tracked<u64>| t.map(|n| n * n)))?;
/// let (sum, _) = pipeline.run_with(|out| {
///     out.map(|t| { let v = *t.value(); t.done(); v }).sum::<u64>()
/// })?;
/// let stats = handle.finish()?; // every finished entry acked
/// println!("{sum} from {} entries", stats.acked);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamSource<T> {
    cfg: EdgeConfig,
    link: Link,
    /// `None` once the input ended: then the acker's queue closes as soon
    /// as the last item is gone, even while this iterator is kept.
    shared: Option<Arc<AckShared>>,
    /// The acker's queue, read here too: acks ride with the next read.
    acks: crossbeam_channel::Receiver<AckMsg>,
    /// Messages queued for the acker and not yet carried out (shared with
    /// the entries, the acker and the edge's probe).
    queued: Arc<AtomicU64>,
    /// The edge's probe, registered with the pipeline on the first call.
    probe: Option<Arc<InfoProbe>>,
    /// True until the input ends: the acker thread only polls meanwhile.
    reading: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// What this consumer holds: never claimed back (see `held.rs`).
    held: Arc<Held>,
    stop: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    error: Arc<Mutex<Option<RemoteError>>>,
    buffer: VecDeque<Tracked<T>>,
    /// When to look for idle entries next (`None`: never; `claim_idle`
    /// is at most a year, so it always lands on the clock).
    next_claim: Option<Instant>,
    /// Where the next scan of idle entries starts: `-`, or `(` and the
    /// last id seen.
    claim_cursor: String,
    end_seen: bool,
    /// The last read found nothing new.
    idle: bool,
    /// A producer's end marker came since the end was last looked at.
    marker_seen: bool,
    /// The held set's change count when this consumer's own pending
    /// entries were last looked over for failed ones (see `take_back`).
    own_scanned: Option<u64>,
    /// The held set's change count, and since when it has not changed,
    /// while the input could end but for what is held.
    standing: Option<(u64, Instant)>,
    ended: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for StreamSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("stream", &self.cfg.stream)
            .field("group", &self.cfg.group)
            .field("consumer", &self.cfg.consumer)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> StreamSource<T> {
    /// Connects (two connections: one to read, one for the acker), creates
    /// the group at the stream's start if it does not exist, and starts the
    /// acker thread.
    pub fn open(cfg: EdgeConfig) -> Result<(Self, SourceHandle), RemoteError> {
        let counters = Arc::new(Counters::default());
        let read_timeout = cfg.block + Duration::from_secs(10);
        let mut link = Link::open(&cfg.url, cfg.reconnect_deadline, read_timeout, counters.clone())?;
        ensure_group(&mut link, &cfg.stream, &cfg.group)?;
        let ack_link = Link::open(&cfg.url, cfg.reconnect_deadline, read_timeout, counters.clone())?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let reading = Arc::new(AtomicBool::new(true));
        let held = Arc::new(Held::default());
        let shared = Arc::new(AckShared {
            tx,
            in_flight: Default::default(),
            queued: Default::default(),
        });
        let broken = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let acker = {
            let (acker_cfg, counters, rx, reading) = (cfg.clone(), counters.clone(), rx.clone(), reading.clone());
            let (queued, held) = (shared.queued.clone(), held.clone());
            let fault = acker::Fault {
                stream: cfg.stream.clone(),
                broken: broken.clone(),
                error: error.clone(),
            };
            std::thread::Builder::new()
                .name(format!("paipa-acker-{}", cfg.stream))
                .spawn(move || acker::run(ack_link, acker_cfg, rx, counters, reading, queued, held, fault))
                .map_err(|e| RemoteError::Acker {
                    stream: cfg.stream.clone(),
                    what: format!("could not start: {e}"),
                })?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let handle = SourceHandle {
            cfg: cfg.clone(),
            stream: cfg.stream.clone(),
            stop: stop.clone(),
            counters: counters.clone(),
            in_flight: shared.in_flight.clone(),
            error: error.clone(),
            acker: Some(acker),
        };
        // The handle holds no sender: the acker's queue closes when the
        // source and its entries are gone.
        let probe = InfoProbe::source(&cfg, shared.queued.clone());
        let source = StreamSource {
            cfg,
            link,
            queued: shared.queued.clone(),
            probe: Some(Arc::new(probe)),
            shared: Some(shared),
            acks: rx,
            reading,
            counters,
            held,
            stop,
            broken,
            error,
            buffer: VecDeque::new(),
            next_claim: Some(Instant::now()),
            claim_cursor: "-".into(),
            end_seen: false,
            idle: true,
            marker_seen: false,
            own_scanned: None,
            standing: None,
            ended: false,
            _t: PhantomData,
        };
        Ok((source, handle))
    }

    /// One round of claiming, reading and looking for the end; a wait in it
    /// lasts at most `cap` (the run's bound, see `threaded/waiting.rs`).
    fn step(&mut self, cap: Option<Duration>) -> Result<bool, RemoteError> {
        let block = cap.map_or(self.cfg.block, |cap| self.cfg.block.min(cap));
        if self.next_claim.is_some_and(|at| Instant::now() >= at) {
            // Claim batch after batch while full ones come, up to ten.
            let mut rounds = 0;
            while self.claim()? && rounds < 10 {
                rounds += 1;
            }
            self.next_claim = deadline(self.cfg.claim_idle / 4);
            if !self.buffer.is_empty() {
                return Ok(false);
            }
        }
        // The end counter is read only after a read found nothing new (it
        // must be read before the read that ends the input).
        let look = self.idle || std::mem::take(&mut self.marker_seen);
        let end_before = self.end_seen || (look && self.end_reached()?);
        // Once every producer is done, nothing new can come: the read that
        // confirms it need not wait.
        self.read((!end_before).then_some(block))?;
        self.idle = self.buffer.is_empty();
        if !self.buffer.is_empty() || !end_before {
            return Ok(false);
        }
        // Nothing new can come: what this consumer failed comes back to it
        // at once (see *Holding on*).
        if self.take_back()? {
            return Ok(false);
        }
        let held = self.held.state().0;
        if self.settled()? && self.let_go() {
            return Ok(true);
        }
        // Its own entries still held: look again soon (a failure is seen
        // within a nap). Others' entries pending: wait a little before
        // claiming.
        let nap = if held > 0 { HOLDING_NAP } else { self.cfg.claim_idle / 4 };
        std::thread::sleep(block.min(nap).max(Duration::from_millis(1)));
        Ok(false)
    }

    /// Whether the input may end with what this consumer holds: nothing,
    /// or a set that has not changed for [`STANDING`] (entries parked
    /// until the end of input; see *Holding on*).
    fn let_go(&mut self) -> bool {
        let (held, changes) = self.held.state();
        if held == 0 {
            return true;
        }
        match self.standing {
            Some((seen, since)) if seen == changes => since.elapsed() >= STANDING,
            _ => {
                self.standing = Some((changes, Instant::now()));
                false
            }
        }
    }

    /// Once nothing new can come: takes back this consumer's own pending
    /// entries that it no longer holds (failed, or dropped unfinished),
    /// without waiting for them to be idle. True if any came back.
    ///
    /// An entry leaves the held set only once the server has its outcome
    /// (see `held.rs`), so one pending and not held is not in this
    /// consumer's pipeline: taking it is no self-claim. One acked between
    /// the listing and the claim is no longer pending, and XCLAIM skips
    /// it. The list is read again only after the held set changed (a
    /// failure releases the entry), the change count taken before it.
    fn take_back(&mut self) -> Result<bool, RemoteError> {
        let changes = self.held.state().1;
        if self.own_scanned == Some(changes) {
            return Ok(false);
        }
        let cfg = &self.cfg;
        let reply: Value = self.link.call("XPENDING", |c| {
            redis::cmd("XPENDING")
                .arg(&cfg.stream)
                .arg(&cfg.group)
                .arg("-")
                .arg("+")
                .arg(claim_count(cfg.batch))
                .arg(&cfg.consumer)
                .query(c)
        })?;
        let rows = self.pending_rows(&reply)?;
        self.own_scanned = Some(changes);
        let rows = self.held.not_held(rows, |(id, _)| id);
        Ok(self.take(rows, 0)? > 0)
    }

    /// `(id, deliveries)` of each row of an extended XPENDING reply.
    fn pending_rows(&self, reply: &Value) -> Result<Vec<(String, u64)>, RemoteError> {
        let Value::Array(rows) = reply else {
            return Err(self.link.bad_reply("XPENDING", reply));
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Value::Array(f) = row else {
                return Err(self.link.bad_reply("XPENDING", reply));
            };
            let (Some(id), Some(n)) = (f.first().and_then(text), f.get(3).and_then(int)) else {
                return Err(self.link.bad_reply("XPENDING", reply));
            };
            out.push((id, n as u64));
        }
        Ok(out)
    }

    /// Nothing new will come: says so (this consumer is draining), and
    /// tells whether the input may end: nothing of its own is pending
    /// beyond what it holds, and every other consumer with pending entries
    /// is draining too (it finishes them itself); a consumer that is not
    /// (it died, or stopped) leaves its entries to be claimed.
    fn settled(&mut self) -> Result<bool, RemoteError> {
        let (stream, group, me) = (&self.cfg.stream, &self.cfg.group, &self.cfg.consumer);
        let draining_key = self.cfg.draining_key();
        let (pending, draining): (Value, Vec<String>) = self.link.call("XPENDING", |c| {
            redis::pipe()
                .cmd("SADD")
                .arg(&draining_key)
                .arg(me)
                .ignore()
                .cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .cmd("SMEMBERS")
                .arg(&draining_key)
                .query(c)
        })?;
        let Value::Array(parts) = &pending else {
            return Err(self.link.bad_reply("XPENDING", &pending));
        };
        let held = self.in_flight();
        let mut settled = true;
        if let Some(Value::Array(consumers)) = parts.get(3) {
            for row in consumers {
                let Value::Array(f) = row else { continue };
                let (Some(name), Some(n)) = (f.first().and_then(text), f.get(1).and_then(int)) else {
                    continue;
                };
                if name == *me {
                    settled &= n as u64 <= held;
                } else if n > 0 && !draining.contains(&name) {
                    settled = false;
                }
            }
        }
        Ok(settled)
    }

    fn end_reached(&mut self) -> Result<bool, RemoteError> {
        let key = self.cfg.end_key();
        let n: u64 = self.link.call("SCARD", |c| redis::cmd("SCARD").arg(&key).query(c))?;
        self.end_seen = n >= self.cfg.producers;
        Ok(self.end_seen)
    }

    /// One XREADGROUP for new entries, waiting up to `block` (not at all
    /// without), with the acks waiting in the queue in the same round trip.
    fn read(&mut self, block: Option<Duration>) -> Result<(), RemoteError> {
        let mut round = acker::Round::default();
        let queued = self.queued.clone();
        let mut taken = acker::Taken::new(&queued);
        while round.len() < acker::ACK_BATCH {
            match self.acks.try_recv() {
                Ok(msg) => {
                    taken.one();
                    acker::handle(&mut self.link, &self.cfg, &self.counters, &self.held, msg, &mut round)?;
                }
                Err(_) => break,
            }
        }
        let cfg = &self.cfg;
        let mut replies: Vec<Value> = self.link.call("XREADGROUP", |c| {
            let mut p = redis::pipe();
            round.commands(&mut p, cfg);
            p.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&cfg.group)
                .arg(&cfg.consumer)
                .arg("COUNT")
                .arg(cfg.batch);
            if let Some(block) = block {
                // BLOCK 0 waits for ever: a wait under a millisecond is one.
                p.arg("BLOCK").arg((block.as_millis() as u64).max(1));
            }
            p.arg("STREAMS").arg(&cfg.stream).arg(">");
            p.query(c)
        })?;
        round.confirmed(&self.counters, &self.held);
        drop(taken);
        let reply = replies.pop().unwrap_or(Value::Nil);
        let entries = match &reply {
            Value::Nil => return Ok(()),
            Value::Array(streams) => streams.first().and_then(|s| match s {
                Value::Array(parts) => parts.get(1),
                _ => None,
            }),
            Value::Map(streams) => streams.first().map(|(_, v)| v),
            _ => None,
        };
        let Some(Value::Array(entries)) = entries else {
            return Err(self.link.bad_reply("XREADGROUP", &reply));
        };
        let mut n = 0;
        for e in entries {
            n += u64::from(self.admit(e, 1)?);
        }
        self.counters.add(&self.counters.read, n);
        Ok(())
    }

    /// Claims the entries pending for longer than `claim_idle` that this
    /// consumer does not hold: a dead (or stopped) consumer's, and its own
    /// that were failed or dropped unfinished. True if the scan found a
    /// full page of idle entries (more may wait; it goes on from its
    /// cursor next time).
    ///
    /// Never a self-claim: XAUTOCLAIM would take this consumer's own idle
    /// entries too, those still waiting in its pipeline's queues among
    /// them, and count a delivery for each: each would be processed twice,
    /// and dead-lettered once over `max_deliveries` though it succeeded.
    /// So the idle entries are listed first (XPENDING with IDLE: delivery
    /// counts, nothing changed), the held ones left out, and the rest
    /// claimed by id with XCLAIM, whose own idle check leaves an entry
    /// another consumer took in between. XCLAIM counts one more delivery.
    fn claim(&mut self) -> Result<bool, RemoteError> {
        let cfg = &self.cfg;
        let count = claim_count(cfg.batch);
        let idle = cfg.claim_idle.as_millis() as u64;
        let cursor = &self.claim_cursor;
        let reply: Value = self.link.call("XPENDING", |c| {
            redis::cmd("XPENDING")
                .arg(&cfg.stream)
                .arg(&cfg.group)
                .arg("IDLE")
                .arg(idle)
                .arg(cursor)
                .arg("+")
                .arg(count)
                .query(c)
        })?;
        let idle_rows = self.pending_rows(&reply)?;
        let full = idle_rows.len() >= count;
        self.claim_cursor = match idle_rows.last() {
            Some((id, _)) if full => format!("({id}"),
            _ => "-".into(),
        };
        let rows = self.held.not_held(idle_rows, |(id, _)| id);
        self.take(rows, idle)?;
        Ok(full)
    }

    /// Claims the listed `(id, deliveries)` entries for this consumer with
    /// XCLAIM (those idle for at least `min_idle` ms), which counts one
    /// more delivery each; returns how many came (items or dead letters).
    fn take(&mut self, rows: Vec<(String, u64)>, min_idle: u64) -> Result<u64, RemoteError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let cfg = &self.cfg;
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        let reply: Value = self.link.call("XCLAIM", |c| {
            redis::cmd("XCLAIM")
                .arg(&cfg.stream)
                .arg(&cfg.group)
                .arg(&cfg.consumer)
                .arg(min_idle)
                .arg(&ids)
                .query(c)
        })?;
        let Value::Array(entries) = &reply else {
            return Err(self.link.bad_reply("XCLAIM", &reply));
        };
        let deliveries: std::collections::HashMap<&str, u64> =
            rows.iter().map(|(id, n)| (id.as_str(), n + 1)).collect();
        let mut n = 0;
        // An entry deleted from the stream (trimmed) comes back as nil, or
        // not at all.
        for e in entries.iter().filter(|e| !matches!(e, Value::Nil)) {
            let id = match e {
                Value::Array(p) => p.first().and_then(text),
                _ => None,
            };
            let count = id.as_deref().and_then(|id| deliveries.get(id)).copied().unwrap_or(1);
            n += u64::from(self.admit(e, count)?);
        }
        self.counters.add(&self.counters.claimed, n);
        self.counters.add(&self.counters.read, n);
        if n > 0 {
            tracing::info!(stream = %self.cfg.stream, consumer = %self.cfg.consumer, claimed = n, "claimed pending entries");
        }
        Ok(n)
    }

    /// Turns one entry of a reply into an item (or a dead letter); false
    /// for a producer's end marker, acked here and counted nowhere.
    fn admit(&mut self, entry: &Value, deliveries: u64) -> Result<bool, RemoteError> {
        let Value::Array(parts) = entry else {
            return Err(self.link.bad_reply("XREADGROUP", entry));
        };
        let Some(stream_id) = parts.first().and_then(text) else {
            return Err(self.link.bad_reply("XREADGROUP", entry));
        };
        let mut origin: Option<Arc<str>> = None;
        let mut data: Option<&[u8]> = None;
        let mut marker = false;
        if let Some(Value::Array(fields)) = parts.get(1) {
            for kv in fields.chunks_exact(2) {
                match (&kv[0], &kv[1]) {
                    (Value::BulkString(k), v) if k == b"id" => origin = text(v).map(Into::into),
                    (Value::BulkString(k), Value::BulkString(b)) if k == b"data" => data = Some(b),
                    (Value::BulkString(k), _) if k == END_FIELD.as_bytes() => marker = true,
                    _ => {}
                }
            }
        }
        if marker && data.is_none() {
            // A producer finished (it joined `<stream>:end` first): look at
            // the end now instead of after a read that waits in vain.
            let (stream, group) = (&self.cfg.stream, &self.cfg.group);
            self.link.call("XACK", |c| {
                redis::cmd("XACK")
                    .arg(stream)
                    .arg(group)
                    .arg(&stream_id)
                    .query::<i64>(c)
            })?;
            self.marker_seen = true;
            return Ok(false);
        }
        // Held from now until the server knows what became of it.
        self.held.hold(&stream_id);
        let origin = origin.unwrap_or_else(|| stream_id.as_str().into());
        let dead = |error: String, data: Option<&[u8]>| AckMsg::Dead {
            stream_id: stream_id.clone(),
            origin: origin.clone(),
            deliveries,
            error,
            data: data.map(<[u8]>::to_vec),
        };
        if deliveries > u64::from(self.cfg.max_deliveries) {
            let error = self.last_error(&stream_id)?.unwrap_or_else(|| {
                format!(
                    "delivered {deliveries} times without being finished (max_deliveries {})",
                    self.cfg.max_deliveries
                )
            });
            self.send(dead(error, data));
            return Ok(true);
        }
        let Some(bytes) = data else {
            self.send(dead("entry has no data field".into(), None));
            return Ok(true);
        };
        match self.cfg.codec.decode::<T>(bytes) {
            Ok(value) => {
                let entry = Entry::new(stream_id, origin, deliveries, self.ack_shared().clone());
                self.buffer.push_back(Tracked::from_entry(entry, value));
            }
            Err(e) => {
                self.send(dead(format!("cannot decode: {e}"), Some(bytes)));
            }
        }
        Ok(true)
    }

    fn ack_shared(&self) -> &Arc<AckShared> {
        self.shared
            .as_ref()
            .expect("entries are admitted only before the input ends")
    }

    fn in_flight(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.in_flight.load(Ordering::Relaxed))
    }

    fn send(&self, msg: AckMsg) {
        // The queue is open while the source holds its sender; whoever
        // reads it (the source's next read, the acker) carries it out. If
        // nobody does (the acker failed, see `acker.rs`), the entry stays
        // pending.
        let _ = self.ack_shared().send(msg);
    }

    fn last_error(&mut self, stream_id: &str) -> Result<Option<String>, RemoteError> {
        let key = self.cfg.errors_key();
        self.link
            .call("HGET", |c| redis::cmd("HGET").arg(&key).arg(stream_id).query(c))
    }
}

impl<T> Drop for StreamSource<T> {
    fn drop(&mut self) {
        // Dropped before its input ended (a pipeline stopped early): the
        // acker thread stops polling and waits for the last acks.
        self.reading.store(false, Ordering::Release);
    }
}

/// How long a source whose input could end but for the entries it holds
/// sleeps between two looks: a failure is taken back within it.
const HOLDING_NAP: Duration = Duration::from_millis(5);

/// How long the held set must stand still before the input ends with
/// entries held (see *Holding on* for why a second).
const STANDING: Duration = Duration::from_secs(1);

/// Idle entries one claim round looks at: a read batch, and at least 100 so that a
/// dead consumer's entries come back in few round trips.
fn claim_count(batch: usize) -> usize {
    batch.max(100)
}

impl<T: DeserializeOwned> Iterator for StreamSource<T> {
    type Item = Tracked<T>;

    fn next(&mut self) -> Option<Tracked<T>> {
        loop {
            // Broken (its own error, or its acker's): the acks of what it
            // would hand out may never be sent, and an entry processed
            // without its ack is processed again elsewhere. What it has
            // read stays pending instead (dropped unfinished: abandoned).
            if self.broken.load(Ordering::Acquire) {
                self.buffer.clear();
            }
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            if let Some(probe) = self.probe.take() {
                // The first call, on a thread of the pipeline that pulls
                // this source: its snapshots show the stream from now on.
                crate::stats::watch_edge(probe);
            }
            // The run that pulls this source: a stop ends the input, a
            // puller that holds items past its linger gets them handed on.
            let cap = match waiting::wait() {
                Wait::Stop => {
                    self.stop.store(true, Ordering::Release);
                    None
                }
                Wait::Yield => {
                    waiting::yield_now();
                    return None;
                }
                Wait::For(d) => Some(d),
                Wait::Forever => None,
            };
            if self.ended || self.stop.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire) {
                self.ended = true;
                self.shared = None;
                self.reading.store(false, Ordering::Release);
                return None;
            }
            match self.step(cap) {
                Ok(false) => {}
                Ok(true) => {
                    self.ended = true;
                    tracing::debug!(stream = %self.cfg.stream, consumer = %self.cfg.consumer, "input ended");
                }
                Err(e) => {
                    tracing::error!(stream = %self.cfg.stream, error = %e, "stream source failed");
                    self.broken.store(true, Ordering::Release);
                    if let Ok(mut slot) = self.error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            }
        }
    }
}
