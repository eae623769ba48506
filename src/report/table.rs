//! The aligned text table shared by the log reporter and the examples.

use crate::stats::{Snapshot, StageSnapshot};

type Row = (String, Vec<(String, String)>);

/// Formats a snapshot as the reference's table: a separator line, then one
/// line per stage with every column padded so that the table lines up.
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
    lines
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
