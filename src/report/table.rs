//! The aligned text table shared by the log reporter and the examples.

use crate::stats::{EdgeSnapshot, OpenInputs, Snapshot, StageSnapshot};

type Row = (String, Vec<(String, String)>);

/// Formats a snapshot as the reference's table: a separator line, then one
/// line per stage with every column padded so that the table lines up,
/// then one line per group of each edge to another process (feature
/// `redis`, see [`edge_lines`]).
///
/// ```
/// use paipa::{iter::Pipeline, Debugger};
/// let pipeline = Pipeline::new(0..3u8).debug(Debugger::silent());
/// let stats = pipeline.stats();
/// paipa::iter::consume(pipeline);
/// let lines = paipa::report::format_table(&stats.snapshot());
/// assert_eq!(lines[0], "--------------------");
/// assert!(lines[1].starts_with("> source: count: 3 runtime: "));
/// ```
pub fn format_table(snapshot: &Snapshot) -> Vec<String> {
    let threaded = snapshot.stages.iter().any(|s| s.workers > 1);
    let rows: Vec<Row> = snapshot
        .stages
        .iter()
        .map(|s| (format!("{}:", s.name), row(s, threaded)))
        .collect();
    // Every label any row has, in order of first appearance, so that rows
    // with extra columns (counters, workers) still line up.
    let mut labels: Vec<String> = Vec::new();
    for (_, pairs) in &rows {
        for (label, _) in pairs {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
    }
    let width = |f: &dyn Fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let name_w = width(&|r| r.0.chars().count());
    let value_w: Vec<usize> = labels
        .iter()
        .map(|l| width(&|r| r.1.iter().find(|(k, _)| k == l).map_or(0, |(_, v)| v.chars().count())))
        .collect();
    let mut lines = vec!["-".repeat(20)];
    for (name, pairs) in &rows {
        let mut line = format!("> {name:<name_w$}");
        for (label, w) in labels.iter().zip(&value_w) {
            match pairs.iter().find(|(k, _)| k == label) {
                Some((_, v)) if label.is_empty() => line.push_str(&format!(" {v:>w$}")),
                Some((_, v)) => line.push_str(&format!(" {label} {v:>w$}")),
                None if label.is_empty() => line.push_str(&" ".repeat(w + 1)),
                None => line.push_str(&" ".repeat(label.chars().count() + w + 2)),
            }
        }
        lines.push(line.trim_end().to_string());
    }
    lines.extend(snapshot.edges.iter().flat_map(edge_lines));
    lines.extend(snapshot.inputs.filter(|_| !snapshot.is_final).map(|i| input_line(&i)));
    lines
}

/// The line of a run's open input handles in the table, such as
/// `input: 1 open handle, nothing put for 55.0 s`.
///
/// ```
/// use std::time::Duration;
/// use paipa::OpenInputs;
///
/// let open = OpenInputs { open: 1, quiet_for: Duration::from_secs(55) };
/// assert_eq!(paipa::report::input_line(&open), "input: 1 open handle, nothing put for 55.0 s");
/// ```
pub fn input_line(inputs: &OpenInputs) -> String {
    format!(
        "input: {} open handle{}, nothing put for {:.1} s",
        inputs.open,
        if inputs.open == 1 { "" } else { "s" },
        inputs.quiet_for.as_secs_f64()
    )
}

/// The lines of one edge in the table: one per consumer group of its
/// stream, as last read, such as
/// `stream orders: length 1200, pending 35, lag 40 (group load), consumers 2`
/// (`lag ?` when the server cannot tell); `stream orders: length 0, no
/// group` for a stream without one. A reading that failed is marked
/// `(stale: read 3.0 s ago; <error>)` after the older values, or shows as
/// `stream orders: unknown (<error>)` when there are none.
///
/// ```
/// use std::time::Duration;
/// use paipa::{EdgeGroup, EdgeSnapshot};
///
/// let edge = EdgeSnapshot {
///     kind: "stream".into(),
///     name: "orders".into(),
///     role: "source".into(),
///     length: Some(1200),
///     groups: vec![EdgeGroup { name: "load".into(), pending: 35, lag: Some(40), consumers: 2 }],
///     age: Some(Duration::from_millis(3)),
///     error: None,
/// };
/// assert_eq!(
///     paipa::report::edge_lines(&edge),
///     ["stream orders: length 1200, pending 35, lag 40 (group load), consumers 2"]
/// );
/// ```
pub fn edge_lines(edge: &EdgeSnapshot) -> Vec<String> {
    let head = format!("{} {}:", edge.kind, edge.name);
    let Some(length) = edge.length else {
        let why = edge.error.as_deref().unwrap_or("not read yet");
        return vec![format!("{head} unknown ({why})")];
    };
    let stale = match (&edge.error, edge.age) {
        (Some(error), Some(age)) => format!(" (stale: read {:.1} s ago; {error})", age.as_secs_f64()),
        _ => String::new(),
    };
    if edge.groups.is_empty() {
        return vec![format!("{head} length {length}, no group{stale}")];
    }
    edge.groups
        .iter()
        .map(|g| {
            let lag = g.lag.map_or_else(|| "?".to_string(), |l| l.to_string());
            format!(
                "{head} length {length}, pending {}, lag {lag} (group {}), consumers {}{stale}",
                g.pending, g.name, g.consumers
            )
        })
        .collect()
}

/// One row: the name, then label/value pairs.
fn row(s: &StageSnapshot, show_workers: bool) -> Vec<(String, String)> {
    let mut r = Vec::new();
    let mut pair = |label: &str, value: String| r.push((label.to_string(), value));
    pair("count:", s.count.to_string());
    if s.count_in > s.count && s.skipped + s.failed + s.discarded == 0 {
        // An n-to-1 stage (a fold, a chunker): what it took in.
        pair("in:", s.count_in.to_string());
    }
    if show_workers {
        pair("workers:", s.workers.to_string());
    }
    if s.in_flight > 0 {
        // An async stage's futures in flight right now (see `workers:`,
        // its bound).
        pair("in flight:", s.in_flight.to_string());
    }
    if let (Some(p50), Some(p99)) = (s.latency.p50(), s.latency.p99()) {
        // An async stage's per-item latency (over the interval the
        // snapshot covers: see `LogReporter`).
        pair("p50:", format!("{:.1}ms", p50.as_secs_f64() * 1e3));
        pair("p99:", format!("{:.1}ms", p99.as_secs_f64() * 1e3));
    }
    pair("runtime:", format!("{:.2}", s.busy.as_secs_f64()));
    pair("", format!("{:.2}/s", s.throughput()));
    pair("utime:", format!("{:.2}", s.user_cpu.as_secs_f64()));
    pair("stime:", format!("{:.2}", s.sys_cpu.as_secs_f64()));
    for (name, value) in &s.counters {
        pair(&format!("{name}:"), value.to_string());
        let per = if s.items() > 0 {
            *value as f64 / s.items() as f64
        } else {
            0.0
        };
        pair(&format!("{name}/e:"), format!("{per:.2}"));
    }
    if !(s.starved.is_zero() && s.blocked.is_zero()) {
        pair("starved:", format!("{:.2}", s.starved.as_secs_f64()));
        pair("blocked:", format!("{:.2}", s.blocked.as_secs_f64()));
        pair("queue:", s.queue_depth.to_string());
    }
    pair("mem:", format!("{:+.2}MiB", s.mem_growth as f64 / (1024.0 * 1024.0)));
    if s.skipped + s.retried + s.failed + s.discarded > 0 {
        pair("skipped:", s.skipped.to_string());
        pair("retried:", s.retried.to_string());
        pair("failed:", s.failed.to_string());
        pair("discarded:", s.discarded.to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::edge_lines;
    use crate::stats::{EdgeGroup, EdgeSnapshot};

    fn edge(length: Option<u64>, groups: Vec<EdgeGroup>, error: Option<&str>) -> EdgeSnapshot {
        EdgeSnapshot {
            kind: "stream".into(),
            name: "orders".into(),
            role: "sink".into(),
            length,
            groups,
            age: length.map(|_| Duration::from_millis(2500)),
            error: error.map(Into::into),
        }
    }

    fn group(name: &str, lag: Option<u64>) -> EdgeGroup {
        EdgeGroup {
            name: name.into(),
            pending: 1,
            lag,
            consumers: 3,
        }
    }

    #[test]
    fn an_edge_has_a_line_per_group_and_says_when_it_is_stale_or_unknown() {
        let groups = vec![group("load", Some(7)), group("audit", None)];
        assert_eq!(
            edge_lines(&edge(Some(9), groups.clone(), None)),
            [
                "stream orders: length 9, pending 1, lag 7 (group load), consumers 3",
                "stream orders: length 9, pending 1, lag ? (group audit), consumers 3",
            ]
        );
        assert_eq!(
            edge_lines(&edge(Some(9), groups[..1].to_vec(), Some("timed out"))),
            ["stream orders: length 9, pending 1, lag 7 (group load), consumers 3 (stale: read 2.5 s ago; timed out)"]
        );
        assert_eq!(
            edge_lines(&edge(Some(0), vec![], None)),
            ["stream orders: length 0, no group"]
        );
        assert_eq!(
            edge_lines(&edge(None, vec![], Some("refused"))),
            ["stream orders: unknown (refused)"]
        );
        assert_eq!(
            edge_lines(&edge(None, vec![], None)),
            ["stream orders: unknown (not read yet)"]
        );
    }
}
