//! An SVG chart of a run, written at the end: each stage's throughput over
//! time, and the depth of each stage's input queue.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::Reporter;
use crate::stats::Snapshot;

/// Records every snapshot and, with the final one, writes an SVG chart to a
/// path: one line per stage for throughput (items/s between two reports) and
/// one per stage for queue depth. Set the debugger's interval to how fine
/// the time axis should be.
///
/// ```
/// use std::time::Duration;
/// use paipa::{iter::Pipeline, report::ChartReporter, Debugger};
///
/// let path = std::env::temp_dir().join("paipa-doc-chart.svg");
/// let debugger = Debugger::silent()
///     .interval(Duration::from_millis(5))
///     .reporter(ChartReporter::new(&path));
/// fn slow(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
///     it.inspect(|_| std::thread::sleep(Duration::from_micros(200)))
/// }
/// paipa::iter::consume(Pipeline::new(0..200u32).debug(debugger).step(slow));
/// let svg = std::fs::read_to_string(&path).unwrap();
/// assert!(svg.starts_with("<svg") && svg.contains(">slow<"));
/// ```
#[derive(Debug)]
pub struct ChartReporter {
    path: PathBuf,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    counts: Vec<u64>,
    depths: Vec<usize>,
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 760.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 60.0;

impl ChartReporter {
    /// A reporter that writes its chart to `path` at the end of the run.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ChartReporter {
            path: path.into(),
            samples: vec![Sample {
                t: 0.0,
                counts: Vec::new(),
                depths: Vec::new(),
            }],
        }
    }

    fn svg(&self, names: &[String], title: &str) -> String {
        let n = names.len();
        let rates: Vec<(f64, Vec<f64>)> = self
            .samples
            .windows(2)
            .map(|w| {
                let dt = (w[1].t - w[0].t).max(1e-9);
                let r = (0..n)
                    .map(|i| {
                        let a = w[0].counts.get(i).copied().unwrap_or(0);
                        let b = w[1].counts.get(i).copied().unwrap_or(0);
                        b.saturating_sub(a) as f64 / dt
                    })
                    .collect();
                (w[1].t, r)
            })
            .collect();
        let depths: Vec<(f64, Vec<f64>)> = self
            .samples
            .iter()
            .skip(1)
            .map(|s| {
                (
                    s.t,
                    (0..n).map(|i| s.depths.get(i).copied().unwrap_or(0) as f64).collect(),
                )
            })
            .collect();
        let t_max = self.samples.last().map_or(1.0, |s| s.t).max(1e-9);
        let legend_h = 20.0 * n as f64;
        let height = TOP + 2.0 * (PANEL_H + 50.0) + legend_h + 20.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"#,
            w = W + 40.0
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
            escape(title)
        );
        panel(&mut svg, TOP, "throughput (items/s)", &rates, t_max);
        panel(
            &mut svg,
            TOP + PANEL_H + 50.0,
            "input queue depth (items)",
            &depths,
            t_max,
        );
        let ly = TOP + 2.0 * (PANEL_H + 50.0);
        for (i, name) in names.iter().enumerate() {
            let y = ly + 20.0 * i as f64;
            let c = PALETTE[i % PALETTE.len()];
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                LEFT + 30.0,
                LEFT + 38.0,
                y + 4.0,
                escape(name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// One panel: axes, labels, and a polyline per stage.
fn panel(svg: &mut String, top: f64, label: &str, series: &[(f64, Vec<f64>)], t_max: f64) {
    let y_max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let bottom = top + PANEL_H;
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}">{}</text><line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#444"/><line x1="{LEFT}" y1="{bottom}" x2="{W}" y2="{bottom}" stroke="#444"/>"##,
        top - 8.0,
        escape(label)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{bottom}" text-anchor="end">0</text><text x="{W}" y="{}" text-anchor="end">{t_max:.1} s</text>"#,
        LEFT - 6.0,
        top + 10.0,
        human(y_max),
        LEFT - 6.0,
        bottom + 16.0
    );
    let stages = series.first().map_or(0, |(_, v)| v.len());
    for i in 0..stages {
        let points: Vec<String> = series
            .iter()
            .map(|(t, v)| {
                let x = LEFT + (W - LEFT) * t / t_max;
                let y = bottom - PANEL_H * v[i] / y_max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            PALETTE[i % PALETTE.len()],
            points.join(" ")
        );
    }
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Reporter for ChartReporter {
    fn report(&mut self, snapshot: &Snapshot) {
        self.samples.push(Sample {
            t: snapshot.elapsed.as_secs_f64(),
            counts: snapshot.stages.iter().map(|s| s.count).collect(),
            depths: snapshot.stages.iter().map(|s| s.queue_depth).collect(),
        });
        if snapshot.is_final {
            let names: Vec<String> = snapshot.stages.iter().map(|s| s.name.clone()).collect();
            let svg = self.svg(&names, &format!("paipa: {}", snapshot.pipeline));
            if let Err(e) = std::fs::write(&self.path, svg) {
                tracing::warn!(target: "paipa::debugger", "could not write the chart to {}: {e}", self.path.display());
            }
        }
    }
}
