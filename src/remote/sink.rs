//! The producer end of an edge: adds items to a stream in pipelined
//! batches, waits while the stream is full, trims only what every group has
//! acked.
//!
//! # Backpressure without loss
//!
//! Every batch is one round trip: the XADDs and an XLEN in one pipeline.
//! Before a batch, if the last known length is `max_len` or more, the sink
//! trims and looks again, waiting (1 ms doubling to 50 ms) until the
//! stream is below `max_len`: so the stream holds at most
//! `max_len + batch - 1` entries, and a slow consumer slows the producer
//! instead of losing entries. The sink never trims by length (`MAXLEN`
//! would drop unread entries): it trims with `XTRIM MINID` below the
//! oldest entry any group still needs: the smallest id in each group's
//! pending-entries list, or, when that list is empty, the entry after the
//! group's last delivered one. A stream with no group is never trimmed.
//!
//! # Ids
//!
//! Every entry has two fields: `data` (the value, serialized) and, when the
//! item has one, `id`: its origin id ([`Tracked::id`]), kept across hops.
//! An entry added with [`StreamSink::add`] has no `id` field; its origin id
//! is its own stream id. A batch resent after a connection error may be
//! added twice: the copies have the same origin id (for `add`, give ids
//! with [`StreamSink::add_with_id`] to keep that true on the first hop).
//! [`StreamSink::finish`] adds one entry more, the producer's end marker
//! (field `end`, no `data`), which consumers ack and count nowhere.
//!
//! # Acks upstream
//!
//! A [`Tracked`] item sent here is finished (its entries upstream acked)
//! once the XADDs of its batch are confirmed. Until its batch is full, or
//! [`StreamSink::flush`] or [`StreamSink::finish`] is called, it waits
//! here. As a pipeline stage ([`StreamSink::stage`]) the sink sends a
//! partial batch by itself once its input has gone quiet for the edge's
//! [`linger`](EdgeConfig::linger) (see `sink_stage.rs`); used by hand, on
//! a stream that goes quiet, flush now and then, or the entries upstream
//! stay pending past `claim_idle` and another consumer claims them.
//!
//! # In the snapshot
//!
//! On its first flush (a sink stage: as it starts), the sink registers its
//! stream with the stage running on that thread: the pipeline's
//! [`Snapshot::edges`](crate::Snapshot::edges) then show the stream's
//! length and groups (see `info_probe.rs`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use serde::Serialize;

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::info::trim_point;
use super::info_probe::InfoProbe;
use super::link::{ensure_group, int, Link};
use super::stats::{Counters, EdgeStats};
use super::tracked::{Token, Tracked};

/// The field of a producer's end marker entry (it has no `data`).
pub(crate) const END_FIELD: &str = "end";

/// Adds items to a stream, in pipelined batches, within a length bound.
///
/// ```no_run
/// use paipa::remote::{EdgeConfig, StreamSink};
///
/// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "numbers", "squarers").max_len(10_000)?;
/// let mut sink = StreamSink::<u64>::open(edge)?;
/// for n in 0..1_000_000u64 {
///     sink.add_with_id(n.to_string(), &n)?; // waits while the stream is full
/// }
/// let stats = sink.finish()?; // flushes, then tells consumers this producer is done
/// assert_eq!(stats.added, 1_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamSink<T> {
    cfg: EdgeConfig,
    /// This producer's name in `<stream>:end`: unique per sink.
    name: String,
    link: Link,
    counters: Arc<Counters>,
    pipe: redis::Pipeline,
    queued: usize,
    tokens: Vec<Token>,
    buf: Vec<u8>,
    known_len: u64,
    /// The edge's probe, registered with the pipeline on the first flush.
    probe: Option<Arc<InfoProbe>>,
    _t: PhantomData<fn(&T)>,
}

impl<T> std::fmt::Debug for StreamSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("stream", &self.cfg.stream)
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize> StreamSink<T> {
    /// Connects, and creates the edge's group at the stream's start if it
    /// does not exist (so that entries added before any consumer joined are
    /// read, and the trim point knows the group).
    pub fn open(cfg: EdgeConfig) -> Result<Self, RemoteError> {
        let counters = Arc::new(Counters::default());
        let mut link = Link::open(
            &cfg.url,
            cfg.reconnect_deadline,
            Duration::from_secs(30),
            counters.clone(),
        )?;
        ensure_group(&mut link, &cfg.stream, &cfg.group)?;
        let known_len = xlen(&mut link, &cfg.stream)?;
        static SINKS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{}-{nanos}-{}", cfg.consumer, SINKS.fetch_add(1, Ordering::Relaxed));
        Ok(StreamSink {
            name,
            link,
            counters,
            pipe: redis::pipe(),
            queued: 0,
            tokens: Vec::with_capacity(cfg.batch),
            buf: Vec::new(),
            known_len,
            probe: Some(Arc::new(InfoProbe::sink(&cfg))),
            cfg,
            _t: PhantomData,
        })
    }

    /// Adds a tracked item with its id; its token is finished (its entries
    /// upstream acked) once the XADD is confirmed.
    pub fn send(&mut self, item: Tracked<T>) -> Result<(), RemoteError> {
        self.send_until(item, &|| false)
    }

    /// As [`send`](Self::send); a wait for room gives up once `stop` says
    /// so ([`RemoteError::Stopped`]).
    pub(super) fn send_until(&mut self, item: Tracked<T>, stop: &dyn Fn() -> bool) -> Result<(), RemoteError> {
        let (value, id, token) = item.into_parts();
        self.queue(Some(&id), &value)?;
        self.tokens.push(token);
        self.flush_if_full(stop)
    }

    /// Adds a value with no origin id (its stream id becomes its id).
    pub fn add(&mut self, value: &T) -> Result<(), RemoteError> {
        self.queue(None, value)?;
        self.flush_if_full(&|| false)
    }

    /// Adds a value with the id `id` (a key that stays the same if the
    /// producer runs again, for sinks downstream to deduplicate on).
    pub fn add_with_id(&mut self, id: impl AsRef<str>, value: &T) -> Result<(), RemoteError> {
        self.queue(Some(id.as_ref()), value)?;
        self.flush_if_full(&|| false)
    }

    fn queue(&mut self, id: Option<&str>, value: &T) -> Result<(), RemoteError> {
        self.cfg
            .codec
            .encode(value, &mut self.buf)
            .map_err(|message| RemoteError::Encode {
                stream: self.cfg.stream.clone(),
                message,
            })?;
        let cmd = self.pipe.cmd("XADD").arg(&self.cfg.stream).arg("*");
        if let Some(id) = id {
            cmd.arg("id").arg(id);
        }
        // Only the XLEN at the end of the batch is read back.
        cmd.arg("data").arg(&self.buf[..]).ignore();
        self.queued += 1;
        Ok(())
    }

    fn flush_if_full(&mut self, stop: &dyn Fn() -> bool) -> Result<(), RemoteError> {
        if self.queued >= self.cfg.batch {
            self.flush_until(stop)?;
        }
        Ok(())
    }

    /// Sends what is queued (one round trip), waiting first while the stream
    /// is at its bound.
    pub fn flush(&mut self) -> Result<(), RemoteError> {
        self.flush_until(&|| false)
    }

    /// As [`flush`](Self::flush); a wait for room gives up once `stop` says
    /// so ([`RemoteError::Stopped`]).
    pub(super) fn flush_until(&mut self, stop: &dyn Fn() -> bool) -> Result<(), RemoteError> {
        if self.queued == 0 {
            return Ok(());
        }
        self.register();
        self.wait_for_room(stop)?;
        // The length rides with the batch (after a failed flush, a second
        // XLEN does: the last reply is the length).
        self.pipe.cmd("XLEN").arg(&self.cfg.stream);
        let pipe = &self.pipe;
        let replies: Vec<Value> = self.link.call("XADD", |c| pipe.query(c))?;
        self.known_len = replies.last().and_then(int).unwrap_or(0) as u64;
        self.pipe.clear();
        self.counters.add(&self.counters.added, self.queued as u64);
        self.counters.add(&self.counters.batches, 1);
        self.queued = 0;
        self.tokens.drain(..).for_each(Token::done);
        Ok(())
    }

    fn wait_for_room(&mut self, stop: &dyn Fn() -> bool) -> Result<(), RemoteError> {
        if self.known_len < self.cfg.max_len as u64 {
            return Ok(());
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if stop() {
                return Err(RemoteError::Stopped {
                    stream: self.cfg.stream.clone(),
                });
            }
            self.trim()?;
            self.known_len = xlen(&mut self.link, &self.cfg.stream)?;
            if self.known_len < self.cfg.max_len as u64 {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        self.counters
            .add(&self.counters.waited_ns, started.elapsed().as_nanos() as u64);
        Ok(())
    }

    /// Trims the entries every group has acked (`XTRIM MINID`); returns how
    /// many went.
    pub fn trim(&mut self) -> Result<u64, RemoteError> {
        let Some(min_id) = trim_point(&mut self.link, &self.cfg.stream)? else {
            return Ok(0);
        };
        let stream = &self.cfg.stream;
        let n: i64 = self.link.call("XTRIM", |c| {
            redis::cmd("XTRIM").arg(stream).arg("MINID").arg(&min_id).query(c)
        })?;
        self.counters.add(&self.counters.trimmed, n as u64);
        Ok(n as u64)
    }

    /// This end's counters, for a [`Publisher`](super::Publisher).
    pub fn watch(&self) -> super::EdgeWatch {
        super::EdgeWatch {
            role: "sink",
            cfg: self.cfg.clone(),
            counters: self.counters.clone(),
        }
    }

    /// This end's counters now.
    pub fn stats(&self) -> EdgeStats {
        self.counters.snapshot(&self.cfg.stream)
    }

    /// Flushes, trims what is acked, and counts this producer as finished:
    /// its name joins the set `<stream>:end` (a set, so that a retry after
    /// a lost reply counts it once), and an end marker entry (field `end`,
    /// no data) wakes a consumer blocked on the stream. Consumers end their
    /// input once every producer has finished (see
    /// [`EdgeConfig::producers`]).
    pub fn finish(self) -> Result<EdgeStats, RemoteError> {
        self.finish_until(&|| false)
    }

    /// As [`finish`](Self::finish); a wait for room gives up once `stop`
    /// says so ([`RemoteError::Stopped`]).
    pub(super) fn finish_until(mut self, stop: &dyn Fn() -> bool) -> Result<EdgeStats, RemoteError> {
        self.flush_until(stop)?;
        self.trim()?;
        // The marker is an entry too: it waits for room like a batch.
        self.wait_for_room(stop)?;
        let (key, stream, name) = (self.cfg.end_key(), &self.cfg.stream, &self.name);
        self.link.call("SADD", |c| {
            redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg(&key)
                .arg(name)
                .ignore()
                .cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(END_FIELD)
                .arg(name)
                .ignore()
                .query::<()>(c)
        })?;
        Ok(self.stats())
    }
}

impl<T> StreamSink<T> {
    /// Registers the edge with the stage running on this thread (once):
    /// from then on the pipeline's snapshots show the stream.
    pub(super) fn register(&mut self) {
        if let Some(probe) = self.probe.take() {
            crate::stats::watch_edge(probe);
        }
    }

    /// Items queued for the next batch.
    /// Drops what is queued and not sent (after a failed send: so that it
    /// is never sent later, behind the caller's back); its entries upstream
    /// stay pending. Returns how many items went.
    pub(super) fn drop_queued(&mut self) -> usize {
        self.pipe.clear();
        self.tokens.clear();
        std::mem::take(&mut self.queued)
    }

    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Entries this sink has added (XADD confirmed).
    pub(super) fn added(&self) -> u64 {
        self.counters.added.load(Ordering::Relaxed)
    }
}

fn xlen(link: &mut Link, stream: &str) -> Result<u64, RemoteError> {
    let n: i64 = link.call("XLEN", |c| redis::cmd("XLEN").arg(stream).query(c))?;
    Ok(n as u64)
}
