//! An edge in the pipeline's own snapshots: the stream's length and, per
//! group, pending entries, lag and consumers (XLEN and XINFO GROUPS), read
//! for [`Snapshot::edges`](crate::Snapshot::edges).
//!
//! A source registers its probe on its first `next()`, a sink on its first
//! flush (a sink stage as it starts), with the stage running on that thread
//! (`stats::watch_edge`). The probe reads nothing by itself: the run asks
//! it for a reading before each periodic report and once at the end
//! (`stats/edge.rs`), and a thread of the probe's own, on a connection of
//! its own, makes it; the asker waits a bounded time. So the server is read
//! at most once per report, never on the pipeline's threads, and a server
//! that does not answer leaves the previous reading in place with the
//! error ([`EdgeSnapshot::error`]): the run goes on.
//!
//! At the end of a run, a source's probe first waits (at most
//! [`SETTLE_WAIT`]) until the acks the run made are confirmed, so that the
//! final snapshot shows the group after this process's last acks. Entries
//! still held then (in the caller's hands) are not waited for.
//!
//! The reading thread is joined when the run ends, after its last reading
//! ([`EdgeProbe::close`]), and when the probe is dropped: no thread of a
//! run outlives it. The last reading stays readable; a later request (the
//! probe watched again by a new run) starts a new thread. Joining waits at
//! most for a reading under way (a wake-up still queued makes none), which
//! its timeouts bound: a connect of 5 s and each command's reply (PING,
//! XLEN, XINFO GROUPS) 5 s; a settle wait in progress is cut short.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::info::read_info;
use super::link::Link;
use super::stats::StreamInfo;
use crate::stats::edge::EdgeProbe;
use crate::stats::{EdgeGroup, EdgeSnapshot};

/// How long a final reading waits for a source's last acks.
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// How long one reading waits for the server's reply.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a source's probe looks at before a final reading.
struct Settle {
    /// Acker messages not yet carried out.
    queued: Arc<AtomicU64>,
}

impl Settle {
    /// Every ack made so far is confirmed. Entries still held (not
    /// finished) are not waited for: when the run is over, what is still
    /// held is in the caller's hands (a sink used by hand with a partial
    /// batch, outputs collected and kept), and may be for ever. An entry
    /// queues its ack before it stops counting as held, so every ack the
    /// run made is in `queued` by now.
    fn settled(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0
    }

    /// Waits until settled, for at most `limit`, or until `closed`.
    fn wait(&self, limit: Duration, closed: &AtomicBool) {
        let until = Instant::now() + limit;
        while !self.settled() && !closed.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[derive(Default)]
struct State {
    /// Readings asked for so far.
    asked: u64,
    /// The last ticket a finished reading answers.
    done: u64,
    /// A final reading was asked for.
    is_final: bool,
    /// The last reading that worked, and when it was made.
    reading: Option<(StreamInfo, Instant)>,
    /// The error of the last attempt, if it failed.
    error: Option<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The probe is closing: a wake-up still queued makes no reading, and
    /// a settle wait in progress ends.
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One end of an edge, read for the snapshots.
pub(crate) struct InfoProbe {
    role: &'static str,
    cfg: EdgeConfig,
    settle: Option<Arc<Settle>>,
    shared: Arc<Shared>,
    /// The reading thread, started on the first request.
    reader: Mutex<Option<Reader>>,
}

/// A probe's reading thread, and what wakes it.
struct Reader {
    wake: Sender<()>,
    thread: JoinHandle<()>,
}

impl Reader {
    /// Ends the thread (after the reading it is making, if any) and joins it.
    fn join(self) {
        drop(self.wake);
        // A panic in the thread was a failed reading, shown as such.
        let _ = self.thread.join();
    }
}

impl InfoProbe {
    /// The probe of a sink.
    pub(crate) fn sink(cfg: &EdgeConfig) -> Self {
        InfoProbe::new("sink", cfg, None)
    }

    /// The probe of a source whose acks are counted in `queued` until
    /// confirmed.
    pub(crate) fn source(cfg: &EdgeConfig, queued: Arc<AtomicU64>) -> Self {
        InfoProbe::new("source", cfg, Some(Arc::new(Settle { queued })))
    }

    /// The probe of an edge end named on a debugger (`Debugger::edge`):
    /// read as it is, with no settling of acks first.
    pub(crate) fn watched(role: &'static str, cfg: &EdgeConfig) -> Self {
        InfoProbe::new(role, cfg, None)
    }

    fn new(role: &'static str, cfg: &EdgeConfig, settle: Option<Arc<Settle>>) -> Self {
        InfoProbe {
            role,
            cfg: cfg.clone(),
            settle,
            shared: Arc::default(),
            reader: Mutex::new(None),
        }
    }

    /// Starts the reading thread.
    fn start(&self) -> std::io::Result<Reader> {
        // One wake-up waiting is enough: a reading takes every request
        // made before it starts.
        let (tx, rx) = bounded(1);
        let (cfg, shared, settle) = (self.cfg.clone(), self.shared.clone(), self.settle.clone());
        self.shared.closed.store(false, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("paipa-edge-{}", self.cfg.stream))
            .spawn(move || reader(cfg, shared, settle, rx))?;
        Ok(Reader { wake: tx, thread })
    }

    fn lock_reader(&self) -> MutexGuard<'_, Option<Reader>> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for InfoProbe {
    fn drop(&mut self) {
        self.close();
    }
}

/// The reading thread: one reading per wake-up, until the probe is gone.
fn reader(cfg: EdgeConfig, shared: Arc<Shared>, settle: Option<Arc<Settle>>, wake: Receiver<()>) {
    let mut link: Option<Link> = None;
    while wake.recv().is_ok() {
        let (ticket, is_final) = {
            if shared.closed.load(Ordering::SeqCst) {
                break;
            }
            let mut state = shared.lock();
            (state.asked, std::mem::take(&mut state.is_final))
        };
        if let (true, Some(settle)) = (is_final, &settle) {
            settle.wait(SETTLE_WAIT, &shared.closed);
        }
        let result = read(&mut link, &cfg);
        let mut state = shared.lock();
        match result {
            Ok(info) => {
                state.reading = Some((info, Instant::now()));
                state.error = None;
            }
            Err(e) => {
                tracing::debug!(stream = %cfg.stream, error = %e, "could not read the stream for the snapshot");
                state.error = Some(e.to_string());
            }
        }
        state.done = state.done.max(ticket);
        shared.changed.notify_all();
    }
}

/// One reading, on a connection that is made again after a failure. No
/// retries: a reading that fails is reported as such, and the next report
/// asks again.
fn read(link: &mut Option<Link>, cfg: &EdgeConfig) -> Result<StreamInfo, RemoteError> {
    let conn = match link {
        Some(conn) => conn,
        None => link.insert(Link::open(&cfg.url, Duration::ZERO, READ_TIMEOUT, Default::default())?),
    };
    let result = read_info(conn, &cfg.stream);
    if result.is_err() {
        *link = None;
    }
    result
}

impl EdgeProbe for InfoProbe {
    fn key(&self) -> String {
        format!("stream {} {} {}", self.cfg.url, self.cfg.stream, self.role)
    }

    fn read(&self) -> EdgeSnapshot {
        let state = self.shared.lock();
        let reading = state.reading.as_ref();
        EdgeSnapshot {
            kind: "stream".into(),
            name: self.cfg.stream.clone(),
            role: self.role.into(),
            length: reading.map(|(info, _)| info.length),
            groups: reading.map_or_else(Vec::new, |(info, _)| {
                info.groups
                    .iter()
                    .map(|g| EdgeGroup {
                        name: g.name.clone(),
                        pending: g.pending,
                        lag: g.lag,
                        consumers: g.consumers,
                    })
                    .collect()
            }),
            age: reading.map(|(_, at)| at.elapsed()),
            error: state.error.clone(),
        }
    }

    fn request(&self, is_final: bool) -> u64 {
        let ticket = {
            let mut state = self.shared.lock();
            state.asked += 1;
            state.is_final |= is_final;
            state.asked
        };
        let mut reader = self.lock_reader();
        for _ in 0..2 {
            let tx = match reader.as_ref() {
                Some(r) => &r.wake,
                None => match self.start() {
                    Ok(r) => &reader.insert(r).wake,
                    Err(e) => {
                        let mut state = self.shared.lock();
                        state.error = Some(format!("cannot start the thread that reads the stream: {e}"));
                        state.done = ticket;
                        return ticket;
                    }
                },
            };
            match tx.try_send(()) {
                // Full: a wake-up waits already, and its reading will
                // answer this request too.
                Ok(()) | Err(TrySendError::Full(())) => return ticket,
                // The thread is gone (it panicked): start another.
                Err(TrySendError::Disconnected(())) => {
                    if let Some(dead) = reader.take() {
                        dead.join();
                    }
                }
            }
        }
        ticket
    }

    fn wait(&self, ticket: u64, deadline: Instant) {
        let mut state = self.shared.lock();
        while state.done < ticket {
            let now = Instant::now();
            if now >= deadline {
                // What is shown is an older reading (or none): say so, as
                // for a reading that failed, until a new one is back.
                if state.error.is_none() {
                    state.error = Some("no reply in time: an older reading is shown".into());
                }
                return;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Taken out of the lock first: a request made while this joins
        // starts a thread of its own, rather than waiting for the join.
        let reader = self.lock_reader().take();
        if let Some(reader) = reader {
            reader.join();
        }
    }
}

/// The integration tests' Redis server (its own, killed when dropped).
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../tests/common/redis_server.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(30);

    /// Asks for a reading and waits for it (bounded: a hang fails the
    /// assertions after it instead of the test hanging).
    fn refreshed(probe: &InfoProbe) -> EdgeSnapshot {
        let ticket = probe.request(false);
        probe.wait(ticket, Instant::now() + BOUND);
        probe.read()
    }

    #[test]
    fn a_server_that_does_not_answer_shows_as_unknown_with_its_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let probe = InfoProbe::sink(&EdgeConfig::new(format!("redis://127.0.0.1:{port}/"), "s", "g"));
        let never = probe.read();
        assert_eq!((never.length, never.age, never.error), (None, None, None));
        let edge = refreshed(&probe);
        assert_eq!((edge.length, edge.age), (None, None));
        let error = edge.error.clone().expect("the reading failed");
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert_eq!(
            crate::report::edge_lines(&edge),
            [format!("stream s: unknown ({error})")]
        );
    }

    #[test]
    fn the_reading_thread_is_joined_on_close_and_on_drop_and_starts_again_on_request() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = EdgeConfig::new(format!("redis://127.0.0.1:{port}/"), "s", "g");
        let probe = InfoProbe::source(&cfg, Arc::default());
        let shared = probe.shared.clone();
        let first = refreshed(&probe);
        // This test, the probe and its reading thread hold `shared`.
        assert_eq!(Arc::strong_count(&shared), 3);
        probe.close();
        assert_eq!(Arc::strong_count(&shared), 2, "the thread is joined");
        assert_eq!(probe.read(), first, "the last reading stays");
        // A request after the close starts the thread again.
        let again = refreshed(&probe);
        let error = again.error.expect("a new reading, failed again");
        assert!(error.contains(&format!("127.0.0.1:{port} unreachable")), "{error}");
        assert_eq!(Arc::strong_count(&shared), 3);
        drop(probe);
        assert_eq!(Arc::strong_count(&shared), 1, "dropping the probe joins the thread");
    }

    #[test]
    fn a_reading_that_fails_leaves_the_last_one_in_place_marked_stale() {
        let Some(server) = test_server::own_server() else {
            return;
        };
        let mut c = server.conn();
        for n in 0..2 {
            let _: String = redis::cmd("XADD")
                .arg("s")
                .arg("*")
                .arg("data")
                .arg(n)
                .query(&mut c)
                .unwrap();
        }
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("0")
            .query(&mut c)
            .unwrap();
        let probe = InfoProbe::sink(&EdgeConfig::new(server.url.as_str(), "s", "g"));
        let fresh = refreshed(&probe);
        assert_eq!((fresh.length, fresh.error.as_deref()), (Some(2), None));
        let group = EdgeGroup {
            name: "g".into(),
            pending: 0,
            lag: Some(2),
            consumers: 0,
        };
        assert_eq!(fresh.groups, std::slice::from_ref(&group));
        drop(server); // killed
        let stale = refreshed(&probe);
        assert!(stale.is_stale());
        assert_eq!((stale.length, stale.groups), (Some(2), vec![group]));
        assert!(stale.age.is_some());
        let line = &crate::report::edge_lines(&probe.read())[0];
        assert!(
            line.starts_with("stream s: length 2, pending 0, lag 2 (group g), consumers 0 (stale: read "),
            "{line}"
        );
    }
}
