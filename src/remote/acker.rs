//! The acker: finished entries become XACKs, failed ones a recorded error
//! (or, on their last delivery, a dead-letter entry), in batches.
//!
//! While the source reads, it takes the acks waiting in the queue itself
//! and sends one XACK for them in the same round trip as its next
//! XREADGROUP; the acker thread only looks every 10 ms for what waits while
//! the source blocks or works. Once the input has ended, the thread sends
//! them alone: it gathers ids for 2 ms after the first (or until 4096) and
//! sends one XACK for them all.
//!
//! It ends when its queue closes: when the source and every entry it
//! delivered are gone. What is queued then is still sent, and the consumer
//! leaves `<stream>:draining` (see `source.rs`).
//!
//! On an error (the server unreachable past the deadline, a command
//! refused) or a panic, it reports the error to the source at once
//! ([`Fault`]): the source ends its input at its next call without handing
//! out what it has read, so no entry is processed whose ack might never be
//! sent, and [`SourceHandle::finish`](super::SourceHandle::finish) returns
//! the error. After a refused command the server is still there: the
//! acker goes on sending the acks of what is finished (those gathered
//! before the error included), and only those, until its queue closes or
//! a command fails, so nothing finished is redelivered for want of its
//! ack. Entries failed or dropped from then on, and everything once the
//! server is unreachable, stay pending for other consumers or the next
//! run (never lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use redis::Value;

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::held::Held;
use super::link::{text, Link};
use super::stats::Counters;
use crate::sync::deadline::deadline;

/// Ids acked in one XACK at most.
pub(crate) const ACK_BATCH: usize = 4096;
/// How often the acker looks for acks while the source is reading.
const POLL: Duration = Duration::from_millis(10);
/// How long the acker gathers ids after the first before it sends them.
const LINGER: Duration = Duration::from_millis(2);

/// What the acker is told.
pub(crate) enum AckMsg {
    /// Finished: XACK. An entry delivered before may have an error
    /// recorded from then: the record goes with the ack.
    Ack { stream_id: String, redelivered: bool },
    /// Failed here: record the error and leave it pending, or dead-letter
    /// it if this was its last delivery.
    Fail {
        stream_id: String,
        origin: Arc<str>,
        deliveries: u64,
        error: String,
    },
    /// To the dead-letter stream now (it does not decode, or it was
    /// delivered too often).
    Dead {
        stream_id: String,
        origin: Arc<str>,
        deliveries: u64,
        error: String,
        data: Option<Vec<u8>>,
    },
    /// Dropped unfinished: left pending as it is, to be claimed; only no
    /// longer held (nothing is sent).
    Abandoned(String),
}

/// What one ack round sends in one round trip, and what it releases once
/// the server has confirmed it.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// Finished entries: one XACK.
    acks: Vec<String>,
    /// Finished entries delivered before: one HDEL of their error records
    /// (an entry's record lives until the entry is acked or dead-lettered,
    /// so the hash holds only entries still pending).
    cleared: Vec<String>,
    /// Entries this consumer no longer holds once the round is confirmed.
    released: Vec<String>,
}

impl Round {
    pub(crate) fn len(&self) -> usize {
        self.acks.len()
    }

    /// Whether the round has anything for the server (a round of
    /// releases only is confirmed at once).
    pub(crate) fn sends(&self) -> bool {
        !self.acks.is_empty()
    }

    /// Adds the round's commands to `p` (nothing for an empty round).
    pub(crate) fn commands(&self, p: &mut redis::Pipeline, cfg: &EdgeConfig) {
        if !self.acks.is_empty() {
            p.cmd("XACK").arg(&cfg.stream).arg(&cfg.group).arg(&self.acks).ignore();
        }
        if !self.cleared.is_empty() {
            p.cmd("HDEL").arg(cfg.errors_key()).arg(&self.cleared).ignore();
        }
    }

    /// The server confirmed the round: its acks are counted, and what it
    /// carried is no longer held.
    pub(crate) fn confirmed(&mut self, counters: &Counters, held: &Held) {
        counters.add(&counters.acked, self.acks.len() as u64);
        held.release(&self.acks);
        held.release(&self.released);
        self.acks.clear();
        self.cleared.clear();
        self.released.clear();
    }
}

/// Messages taken from the ack queue and not yet carried out: taken off
/// the queue's count (`queued`) when dropped, whether the round that took
/// them succeeded or failed (a failed one is never carried out: nothing
/// must wait for it).
pub(crate) struct Taken<'a>(&'a AtomicU64, u64);

impl<'a> Taken<'a> {
    pub(crate) fn new(queued: &'a AtomicU64) -> Self {
        Taken(queued, 0)
    }

    pub(crate) fn one(&mut self) {
        self.1 += 1;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Where the acker's failure goes: the source's `broken` flag (it ends its
/// input at its next call) and its error slot (what `finish` returns; the
/// first error wins).
pub(crate) struct Fault {
    pub(crate) stream: String,
    pub(crate) broken: Arc<AtomicBool>,
    pub(crate) error: Arc<Mutex<Option<RemoteError>>>,
}

impl Fault {
    /// Broken first, then the error: whoever sees the error (through the
    /// slot's lock) also sees the source broken.
    pub(crate) fn report(&self, e: RemoteError) {
        tracing::error!(stream = %self.stream, error = %e, "stream source's acker failed");
        self.broken.store(true, Ordering::Release);
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }
}

impl Drop for Fault {
    /// A panic of the acker thread ends the source's input as an error
    /// does (held by the thread, so it runs while unwinding).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.report(RemoteError::Acker {
                stream: self.stream.clone(),
                what: "panicked".into(),
            });
        }
    }
}

/// The acker thread's body: every failure goes to `fault`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    link: Link,
    cfg: EdgeConfig,
    rx: Receiver<AckMsg>,
    counters: Arc<Counters>,
    source_reading: Arc<AtomicBool>,
    queued: Arc<AtomicU64>,
    held: Arc<Held>,
    fault: Fault,
) {
    let mut link = link;
    let mut round = Round::default();
    let result = run_rounds(
        &mut link,
        &cfg,
        &rx,
        &counters,
        source_reading,
        &queued,
        &held,
        &mut round,
    );
    if result.is_ok() {
        // The source and every entry it delivered are gone: this consumer
        // no longer drains. What it left pending (failed or dropped after
        // its input ended) is for the others to claim, and their input
        // does not end before they have. A mark left behind only makes the
        // others leave those entries to a later run: not worth failing a
        // run that did its work.
        let key = cfg.draining_key();
        let me = &cfg.consumer;
        if let Err(e) = link.call("SREM", |c| redis::cmd("SREM").arg(&key).arg(me).query::<Value>(c)) {
            tracing::warn!(stream = %cfg.stream, consumer = %me, error = %e, "could not clear the draining mark");
        }
    }
    if let Err(e) = result {
        // Unreachable past the deadline: another command would only wait
        // as long again. Refused: the acks may still go through.
        let reachable = !matches!(e, RemoteError::Unreachable { .. });
        fault.report(e);
        if reachable {
            acks_only(&mut link, &cfg, &rx, &counters, &queued, &held, &mut round);
        }
    }
    // Whatever is still queued will never be carried out once this thread
    // ends (on an error): not counted as on its way any more.
    let left = rx.try_iter().count() as u64;
    queued.fetch_sub(left, Ordering::SeqCst);
}

/// After a refused command: sends the acks of `round` and then of what is
/// queued until the queue closes, nothing else (a failed or dropped entry
/// stays pending as it is); stops at the first command that fails.
fn acks_only(
    link: &mut Link,
    cfg: &EdgeConfig,
    rx: &Receiver<AckMsg>,
    counters: &Counters,
    queued: &AtomicU64,
    held: &Held,
    round: &mut Round,
) {
    loop {
        if round.sends() {
            let sent = link.call("XACK", |c| {
                let mut p = redis::pipe();
                round.commands(&mut p, cfg);
                p.query::<()>(c)
            });
            if let Err(e) = sent {
                tracing::warn!(stream = %cfg.stream, error = %e, "acks left pending after the acker failed");
                return;
            }
        }
        round.confirmed(counters, held);
        let Ok(first) = rx.recv() else { return };
        let mut taken = Taken::new(queued);
        let until = Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            taken.one();
            match msg {
                AckMsg::Ack { stream_id, redelivered } => {
                    if redelivered {
                        round.cleared.push(stream_id.clone());
                    }
                    round.acks.push(stream_id);
                }
                AckMsg::Abandoned(stream_id) | AckMsg::Fail { stream_id, .. } | AckMsg::Dead { stream_id, .. } => {
                    round.released.push(stream_id)
                }
            }
            if round.len() < ACK_BATCH {
                next = rx.recv_deadline(until).ok();
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_rounds(
    link: &mut Link,
    cfg: &EdgeConfig,
    rx: &Receiver<AckMsg>,
    counters: &Counters,
    source_reading: Arc<AtomicBool>,
    queued: &AtomicU64,
    held: &Held,
    round: &mut Round,
) -> Result<(), RemoteError> {
    let every = (cfg.claim_idle / 4).max(Duration::from_millis(1));
    // `None`: never (`claim_idle` is at most a year, so it always lands
    // on the clock).
    let mut next_refresh = deadline(every);
    loop {
        if next_refresh.is_some_and(|at| Instant::now() >= at) {
            refresh(link, cfg, held)?;
            next_refresh = deadline(every);
        }
        // Messages taken from the queue this round: no longer queued once
        // their XACK (or their failure's command) is confirmed, or failed.
        let mut taken = Taken::new(queued);
        if source_reading.load(Ordering::Acquire) {
            // The source sends most acks itself, with its reads; this
            // thread takes what waits while the source blocks or works.
            std::thread::sleep(POLL);
            while round.len() < ACK_BATCH {
                match rx.try_recv() {
                    Ok(msg) => {
                        taken.one();
                        handle(link, cfg, counters, held, msg, round)?;
                    }
                    Err(TryRecvError::Empty) => break,
                    // Everything is gone (the reading flag is cleared on
                    // the way): the blocking branch sends the rest.
                    Err(TryRecvError::Disconnected) => {
                        source_reading.store(false, Ordering::Release);
                        break;
                    }
                }
            }
        } else {
            let first = match next_refresh.map_or_else(
                || rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                |at| rx.recv_deadline(at),
            ) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Gather for up to LINGER after the first: one XACK for many
            // ids costs the server far less than many XACKs of a few.
            let until = Instant::now() + LINGER;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                taken.one();
                handle(link, cfg, counters, held, msg, round)?;
                if round.len() < ACK_BATCH {
                    next = rx.recv_deadline(until).ok();
                }
            }
        }
        if round.sends() {
            link.call("XACK", |c| {
                let mut p = redis::pipe();
                round.commands(&mut p, cfg);
                p.query::<()>(c)
            })?;
        }
        round.confirmed(counters, held);
        drop(taken);
    }
    Ok(())
}

/// Most entries one refresh touches.
const REFRESH_MAX: usize = 10_000;

/// Keeps the entries this consumer holds from looking idle to the other
/// consumers' claims, however long its pipeline keeps them: every quarter
/// of `claim_idle`, its own pending entries idle for half of it that it
/// still holds are claimed again by itself with `JUSTID`, which resets
/// their idle time and counts no delivery. The claim's own min-idle (half
/// of `claim_idle`) skips an entry another consumer has just claimed (its
/// idle time starts again), so a refresh never takes an entry back. So a
/// live consumer's entries are claimed by another only if this thread
/// cannot run for half of `claim_idle`.
fn refresh(link: &mut Link, cfg: &EdgeConfig, held: &Held) -> Result<(), RemoteError> {
    let (n, _) = held.state();
    if n == 0 {
        return Ok(());
    }
    let half = (cfg.claim_idle / 2).as_millis() as u64;
    let reply: Value = link.call("XPENDING", |c| {
        redis::cmd("XPENDING")
            .arg(&cfg.stream)
            .arg(&cfg.group)
            .arg("IDLE")
            .arg(half)
            .arg("-")
            .arg("+")
            .arg(n.min(REFRESH_MAX))
            .arg(&cfg.consumer)
            .query(c)
    })?;
    let Value::Array(rows) = &reply else {
        return Err(link.bad_reply("XPENDING", &reply));
    };
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|row| match row {
            Value::Array(f) => f.first().and_then(text),
            _ => None,
        })
        .collect();
    let ids = held.only_held(ids);
    if ids.is_empty() {
        return Ok(());
    }
    link.call("XCLAIM", |c| {
        redis::cmd("XCLAIM")
            .arg(&cfg.stream)
            .arg(&cfg.group)
            .arg(&cfg.consumer)
            .arg(half)
            .arg(&ids)
            .arg("JUSTID")
            .query::<Value>(c)
    })?;
    Ok(())
}

/// Collects an ack (or a release) into `round`, or carries out a failure
/// now.
pub(crate) fn handle(
    link: &mut Link,
    cfg: &EdgeConfig,
    counters: &Counters,
    held: &Held,
    msg: AckMsg,
    round: &mut Round,
) -> Result<(), RemoteError> {
    match msg {
        AckMsg::Ack { stream_id, redelivered } => {
            if redelivered {
                round.cleared.push(stream_id.clone());
            }
            round.acks.push(stream_id);
        }
        AckMsg::Abandoned(stream_id) => round.released.push(stream_id),
        AckMsg::Fail {
            stream_id,
            origin,
            deliveries,
            error,
        } => {
            if deliveries >= u64::from(cfg.max_deliveries) {
                dead_letter(link, cfg, counters, &stream_id, &origin, deliveries, &error, None)?;
                held.release(std::slice::from_ref(&stream_id));
            } else {
                counters.add(&counters.failed, 1);
                link.call("HSET", |c| {
                    redis::cmd("HSET")
                        .arg(cfg.errors_key())
                        .arg(&stream_id)
                        .arg(&error)
                        .query::<Value>(c)
                })?;
                // Failed and recorded: it may be claimed again.
                held.release(std::slice::from_ref(&stream_id));
            }
        }
        AckMsg::Dead {
            stream_id,
            origin,
            deliveries,
            error,
            data,
        } => {
            dead_letter(link, cfg, counters, &stream_id, &origin, deliveries, &error, data)?;
            held.release(std::slice::from_ref(&stream_id));
        }
    }
    Ok(())
}

/// Adds the entry to `<stream>:dead` with its error and acks it in the
/// stream, in one MULTI (a retry after a lost reply may add it twice).
#[allow(clippy::too_many_arguments)]
fn dead_letter(
    link: &mut Link,
    cfg: &EdgeConfig,
    counters: &Counters,
    stream_id: &str,
    origin: &str,
    deliveries: u64,
    error: &str,
    data: Option<Vec<u8>>,
) -> Result<(), RemoteError> {
    let data = match data {
        Some(d) => Some(d),
        None => fetch_data(link, cfg, stream_id)?,
    };
    let errors_key = cfg.errors_key();
    let dead = cfg.dead_letter_stream();
    link.call("XADD (dead letter)", |c| {
        let mut p = redis::pipe();
        p.atomic();
        let add = p
            .cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg("id")
            .arg(origin)
            .arg("entry")
            .arg(stream_id)
            .arg("stream")
            .arg(&cfg.stream)
            .arg("group")
            .arg(&cfg.group)
            .arg("deliveries")
            .arg(deliveries)
            .arg("error")
            .arg(error);
        if let Some(d) = &data {
            add.arg("data").arg(&d[..]);
        }
        p.cmd("XACK").arg(&cfg.stream).arg(&cfg.group).arg(stream_id);
        p.cmd("HDEL").arg(&errors_key).arg(stream_id);
        p.query::<Value>(c)
    })?;
    counters.add(&counters.dead, 1);
    tracing::warn!(stream = %cfg.stream, entry = stream_id, id = origin, deliveries, error, "entry moved to the dead-letter stream {dead}");
    Ok(())
}

fn fetch_data(link: &mut Link, cfg: &EdgeConfig, stream_id: &str) -> Result<Option<Vec<u8>>, RemoteError> {
    let reply: Value = link.call("XRANGE", |c| {
        redis::cmd("XRANGE")
            .arg(&cfg.stream)
            .arg(stream_id)
            .arg(stream_id)
            .query(c)
    })?;
    let Value::Array(entries) = reply else {
        return Ok(None);
    };
    Ok(entries.first().and_then(|e| match e {
        Value::Array(parts) => parts.get(1).and_then(|fields| {
            super::link::pairs(fields)
                .into_iter()
                .find(|(k, _)| k == "data")
                .and_then(|(_, v)| match v {
                    Value::BulkString(b) => Some(b.clone()),
                    _ => None,
                })
        }),
        _ => None,
    }))
}
