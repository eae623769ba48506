//! One view of a distributed pipeline: each process publishes its stages
//! and its edges (this end's counters and the server's view of the
//! stream) under a key with a TTL, and one command reads every process's
//! key and prints one table with the bottleneck named across machines.
//!
//! Keys: `paipa:view:<job>:<process>`, a JSON [`ProcessView`], refreshed
//! on every report of the process's debugger and expiring `ttl` after the
//! last one (so a process that died leaves the table by itself).
//!
//! The server's view of each stream comes from the snapshot being
//! reported ([`Snapshot::edges`], read off the pipeline's threads just
//! before each report): publishing adds one `SET` per report, and asks the
//! server about a stream only for an edge named with [`Publisher::edge`]
//! that the snapshot does not show.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::config::EdgeConfig;
use super::error::RemoteError;
use super::info::read_info;
use super::link::{text, Link};
use super::stats::{Counters, EdgeStats, GroupInfo, StreamInfo};
use crate::{ConfigError, Reporter, Snapshot};

/// The longest view TTL allowed (see [`Publisher::ttl`]).
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where one end of an edge reports from: a sink's or a source's counters,
/// with the edge's settings. From [`StreamSink::watch`](super::StreamSink::watch)
/// or [`SourceHandle::watch`](super::SourceHandle::watch).
#[derive(Debug, Clone)]
pub struct EdgeWatch {
    pub(crate) role: &'static str,
    pub(crate) cfg: EdgeConfig,
    pub(crate) counters: Arc<Counters>,
}

impl crate::Debugger {
    /// Shows `edge` in this debugger's snapshots (its stream's length and,
    /// per group, pending, lag and consumers: [`Snapshot::edges`]), in the
    /// source's row, from the start of the run. For a [`StreamSink`](super::StreamSink)
    /// or a [`StreamSource`](super::StreamSource) used by hand, outside any
    /// stage (in a loop over an iterator pipeline, or in a `run_with`
    /// closure), which the stages cannot see; one used inside a stage, and
    /// [`StreamSink::stage`](super::StreamSink::stage), show by themselves.
    ///
    /// ```no_run
    /// use paipa::iter::Pipeline;
    /// use paipa::remote::{EdgeConfig, StreamSink};
    /// use paipa::Debugger;
    ///
    /// let mut sink = StreamSink::<u64>::open(EdgeConfig::new("redis://127.0.0.1:6379/", "numbers", "g"))?;
    /// let pipeline = Pipeline::new(0..1000u64).debug(Debugger::new().edge(&sink.watch()));
    /// for n in pipeline {
    ///     sink.add(&n)?;
    /// }
    /// sink.finish()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn edge(mut self, edge: &EdgeWatch) -> Self {
        let probe = super::info_probe::InfoProbe::watched(edge.role, &edge.cfg);
        self.edges.push(std::sync::Arc::new(probe));
        self
    }
}

/// One stage of one process, as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    /// The stage's name.
    pub name: String,
    /// Its workers.
    pub workers: usize,
    /// Items out.
    pub count: u64,
    /// Share (0 to 1) of its wall time the stage was busy, per worker.
    pub load: f64,
    /// Items per second of busy time.
    pub throughput: f64,
}

/// One end of an edge in one process, as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    /// `"sink"` (this process adds to the stream) or `"source"` (reads it).
    pub role: String,
    /// This end's counters (those of an edge named with
    /// [`Publisher::edge`]; otherwise only `stream` is set).
    pub stats: EdgeStats,
    /// The server's view of the stream when published (`None` if the server
    /// could not be asked). Taken from the snapshot's
    /// [`edges`](Snapshot::edges), which do not carry a group's
    /// `last_delivered` id: it is empty here unless the publisher read the
    /// stream itself.
    pub info: Option<StreamInfo>,
}

impl EdgeRow {
    /// The server's view of the stream as the snapshot shows it: `None`
    /// if it was never read, or if the last reading failed or was late
    /// (the snapshot then shows an older one, marked stale: a published
    /// view carries no age, so it shows none rather than an old one).
    fn info_of(edge: &crate::EdgeSnapshot) -> Option<StreamInfo> {
        if edge.is_stale() {
            return None;
        }
        Some(StreamInfo {
            stream: edge.name.clone(),
            length: edge.length?,
            groups: edge
                .groups
                .iter()
                .map(|g| GroupInfo {
                    name: g.name.clone(),
                    consumers: g.consumers,
                    pending: g.pending,
                    lag: g.lag,
                    last_delivered: String::new(),
                })
                .collect(),
        })
    }
}

/// What one process publishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessView {
    /// The process's name (unique within the job).
    pub process: String,
    /// Its pipeline's name.
    pub pipeline: String,
    /// Seconds since its run started.
    pub elapsed_s: f64,
    /// True once its run is over.
    pub is_final: bool,
    /// Its stages, in order.
    pub stages: Vec<StageRow>,
    /// Its edges on Redis.
    pub edges: Vec<EdgeRow>,
}

impl ProcessView {
    /// The count of the stage named `name`, if the process has one.
    pub fn stage_count(&self, name: &str) -> Option<u64> {
        self.stages.iter().find(|s| s.name == name).map(|s| s.count)
    }

    /// The view of `snapshot` with the edges' current state.
    pub fn new(process: &str, snapshot: &Snapshot, edges: Vec<EdgeRow>) -> Self {
        ProcessView {
            process: process.to_string(),
            pipeline: snapshot.pipeline.clone(),
            elapsed_s: snapshot.elapsed.as_secs_f64(),
            is_final: snapshot.is_final,
            stages: snapshot
                .stages
                .iter()
                .map(|s| StageRow {
                    name: s.name.clone(),
                    workers: s.workers,
                    count: s.count,
                    load: snapshot.utilization(s),
                    throughput: s.throughput(),
                })
                .collect(),
            edges,
        }
    }
}

/// A reporter that publishes its process's [`ProcessView`] to Redis on
/// every report: add it to the process's debugger.
///
/// ```no_run
/// use std::time::Duration;
/// use paipa::remote::{EdgeConfig, Publisher, StreamSource};
/// use paipa::Debugger;
///
/// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "products", "loaders");
/// let (source, handle) = StreamSource::<u64>::open(edge)?;
/// let publisher = Publisher::new("redis://127.0.0.1:6379/", "products", "load-1")?
///     .ttl(Duration::from_secs(30))?
///     .edge(handle.watch());
/// let debugger = Debugger::new().reporter(publisher);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Publisher {
    link: Link,
    key: String,
    process: String,
    ttl: Duration,
    edges: Vec<EdgeWatch>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The key prefix of a job's views.
fn prefix(job: &str) -> String {
    format!("paipa:view:{job}:")
}

impl Publisher {
    /// Publishes to the server at `url` as process `process` of job `job`
    /// (a TTL of 30 s unless set).
    pub fn new(url: &str, job: &str, process: &str) -> Result<Self, RemoteError> {
        Ok(Publisher {
            link: Link::open(url, Duration::from_secs(2), Duration::from_secs(5), Default::default())?,
            key: format!("{}{process}", prefix(job)),
            process: process.to_string(),
            ttl: Duration::from_secs(30),
            edges: Vec::new(),
        })
    }

    /// How long a view outlives its process's last report, in whole
    /// seconds (Redis `EX`): from 1 s to 365 days (a longer one the server
    /// refuses, and no view would be published).
    pub fn ttl(mut self, ttl: Duration) -> Result<Self, ConfigError> {
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            return Err(ConfigError::new(
                "ttl",
                format!("{ttl:?}"),
                "must be from 1s to 365 days",
            ));
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Publishes this edge end's counters with the stages. Every edge the
    /// snapshot shows ([`Snapshot::edges`]: sink stages, sources read by a
    /// pipeline, edges named on the debugger) is published without this,
    /// with the server's view of its stream; this adds the end's own
    /// counters (entries added, read, acked, connection errors), and the
    /// server's view of an edge the snapshot does not show (read by the
    /// publisher itself).
    pub fn edge(mut self, edge: EdgeWatch) -> Self {
        self.edges.push(edge);
        self
    }

    /// Publishes `snapshot` now.
    pub fn publish(&mut self, snapshot: &Snapshot) -> Result<(), RemoteError> {
        let mut rows = Vec::new();
        for e in snapshot.edges.iter().filter(|e| e.kind == "stream") {
            let watched = self.edges.iter().find(|w| w.role == e.role && w.cfg.stream == e.name);
            let info = match (EdgeRow::info_of(e), watched) {
                // Named on this publisher and not read by the run yet:
                // read it here.
                (None, Some(_)) if e.length.is_none() && !e.is_stale() => read_info(&mut self.link, &e.name).ok(),
                (info, _) => info,
            };
            let stats = match watched {
                Some(w) => w.counters.snapshot(&e.name),
                None => EdgeStats {
                    stream: e.name.clone(),
                    ..EdgeStats::default()
                },
            };
            rows.push(EdgeRow {
                role: e.role.clone(),
                stats,
                info,
            });
        }
        // Named here, and not in the snapshot at all: read here.
        for w in &self.edges {
            if !snapshot
                .edges
                .iter()
                .any(|e| e.role == w.role && e.name == w.cfg.stream)
            {
                rows.push(EdgeRow {
                    role: w.role.to_string(),
                    stats: w.counters.snapshot(&w.cfg.stream),
                    info: read_info(&mut self.link, &w.cfg.stream).ok(),
                });
            }
        }
        let view = ProcessView::new(&self.process, snapshot, rows);
        let json = serde_json::to_string(&view).map_err(|e| RemoteError::Encode {
            stream: self.key.clone(),
            message: e.to_string(),
        })?;
        let (key, ttl) = (&self.key, self.ttl.as_secs());
        self.link.call("SET", |c| {
            redis::cmd("SET")
                .arg(key)
                .arg(&json)
                .arg("EX")
                .arg(ttl)
                .query::<Value>(c)
        })?;
        Ok(())
    }
}

impl Reporter for Publisher {
    fn report(&mut self, snapshot: &Snapshot) {
        if let Err(e) = self.publish(snapshot) {
            tracing::warn!(key = %self.key, error = %e, "could not publish the pipeline's view");
        }
    }
}

/// Every live process's view of job `job`, sorted by process name.
pub fn read_views(url: &str, job: &str) -> Result<Vec<ProcessView>, RemoteError> {
    let mut link = Link::open(url, Duration::from_secs(5), Duration::from_secs(5), Default::default())?;
    let pattern = format!("{}*", prefix(job));
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let reply: Value = link.call("SCAN", |c| {
            redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)
        })?;
        let Value::Array(parts) = &reply else {
            return Err(link.bad_reply("SCAN", &reply));
        };
        cursor = parts.first().and_then(text).unwrap_or_else(|| "0".into());
        if let Some(Value::Array(found)) = parts.get(1) {
            keys.extend(found.iter().filter_map(text));
        }
        if cursor == "0" {
            break;
        }
    }
    let mut views = Vec::new();
    for key in keys {
        let json: Option<String> = link.call("GET", |c| redis::cmd("GET").arg(&key).query(c))?;
        if let Some(view) = json.and_then(|j| serde_json::from_str::<ProcessView>(&j).ok()) {
            views.push(view);
        }
    }
    views.sort_by(|a, b| a.process.cmp(&b.process));
    Ok(views)
}

/// The table of a distributed pipeline: one row per stage of every
/// process, one per stream and group, and the bottleneck across machines:
/// the stage busy for the largest share of its time, wherever it runs (a
/// stream source's row excepted: its busy time includes waiting for
/// entries).
///
/// ```
/// use paipa::remote::{table, ProcessView, StageRow};
///
/// let row = |name: &str, load: f64| StageRow { name: name.into(), workers: 1, count: 10, load, throughput: 100.0 };
/// let views = vec![
///     ProcessView { process: "extract".into(), stages: vec![row("select", 0.2)], ..Default::default() },
///     ProcessView { process: "load-1".into(), stages: vec![row("send", 0.95)], ..Default::default() },
/// ];
/// let text = table(&views);
/// assert!(text.contains("bottleneck: send on load-1 (busy 95%"), "{text}");
/// ```
pub fn table(views: &[ProcessView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<22} {:>7} {:>12} {:>6} {:>12}",
        "process", "stage", "workers", "items", "busy", "items/s"
    );
    for v in views {
        for s in &v.stages {
            let _ = writeln!(
                out,
                "{:<16} {:<22} {:>7} {:>12} {:>5.0}% {:>12.0}",
                v.process,
                s.name,
                s.workers,
                s.count,
                s.load * 100.0,
                s.throughput
            );
        }
    }
    // Each stream once (the first process's view that has it), with every
    // group.
    let mut streams: Vec<&StreamInfo> = Vec::new();
    for info in views
        .iter()
        .flat_map(|v| v.edges.iter().filter_map(|e| e.info.as_ref()))
    {
        if !streams.iter().any(|s| s.stream == info.stream) {
            streams.push(info);
        }
    }
    if !streams.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>10} {:<16} {:>10} {:>10} {:>9}",
            "stream", "length", "group", "pending", "lag", "consumers"
        );
        for s in streams {
            for g in &s.groups {
                let lag = g.lag.map_or("?".to_string(), |l| l.to_string());
                let _ = writeln!(
                    out,
                    "{:<24} {:>10} {:<16} {:>10} {:>10} {:>9}",
                    s.stream, s.length, g.name, g.pending, lag, g.consumers
                );
            }
        }
    }
    let errors: u64 = views
        .iter()
        .flat_map(|v| &v.edges)
        .map(|e| e.stats.connection_errors)
        .sum();
    if errors > 0 {
        let _ = writeln!(out, "\nredis connection errors: {errors}");
    }
    // A stream source's busy time includes its waits for new entries (its
    // XREADGROUP blocks): it is not a candidate.
    let busiest = views
        .iter()
        .flat_map(|v| {
            let reads_a_stream = v.edges.iter().any(|e| e.role == "source");
            v.stages
                .iter()
                .enumerate()
                .filter(move |(i, _)| !(reads_a_stream && *i == 0))
                .map(move |(_, s)| (v, s))
        })
        .filter(|(_, s)| s.load > 0.0)
        .max_by(|a, b| a.1.load.total_cmp(&b.1.load));
    match busiest {
        Some((v, s)) => {
            let _ = writeln!(
                out,
                "\nbottleneck: {} on {} (busy {:.0}% of its time, {} worker{})",
                s.name,
                v.process,
                s.load * 100.0,
                s.workers,
                if s.workers == 1 { "" } else { "s" }
            );
        }
        None => {
            let _ = writeln!(out, "\nbottleneck: none yet (nothing has run)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, load: f64) -> StageRow {
        StageRow {
            name: name.into(),
            workers: 1,
            count: 1,
            load,
            throughput: 1.0,
        }
    }

    #[test]
    fn a_published_edge_shows_the_server_s_view_only_when_it_is_fresh() {
        let fresh = crate::EdgeSnapshot {
            kind: "stream".into(),
            name: "s".into(),
            role: "sink".into(),
            length: Some(7),
            groups: vec![crate::EdgeGroup {
                name: "g".into(),
                pending: 2,
                lag: Some(3),
                consumers: 1,
            }],
            age: Some(Duration::from_millis(5)),
            error: None,
        };
        let info = EdgeRow::info_of(&fresh).expect("a fresh reading");
        assert_eq!((info.stream.as_str(), info.length), ("s", 7));
        let g = &info.groups[0];
        assert_eq!((g.name.as_str(), g.pending, g.lag, g.consumers), ("g", 2, Some(3), 1));
        let stale = crate::EdgeSnapshot {
            error: Some("no reply in time: an older reading is shown".into()),
            ..fresh.clone()
        };
        assert_eq!(
            EdgeRow::info_of(&stale),
            None,
            "an older reading is not published as the view"
        );
        let unread = crate::EdgeSnapshot {
            length: None,
            age: None,
            ..fresh
        };
        assert_eq!(EdgeRow::info_of(&unread), None);
    }

    #[test]
    fn a_stream_source_waiting_for_entries_is_not_named_the_bottleneck() {
        let consumer = ProcessView {
            process: "load-1".into(),
            stages: vec![row("xreadgroup", 0.99), row("send", 0.40)],
            edges: vec![EdgeRow {
                role: "source".into(),
                ..EdgeRow::default()
            }],
            ..ProcessView::default()
        };
        let producer = ProcessView {
            process: "extract".into(),
            stages: vec![row("select", 0.30)],
            ..ProcessView::default()
        };
        let text = table(&[producer, consumer]);
        assert!(text.contains("bottleneck: send on load-1 (busy 40%"), "{text}");
    }
}
