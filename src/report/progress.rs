//! Live progress on a terminal: an overall line (a bar with percentage and
//! ETA when the input's length is known), one line per stage, and the
//! verdict, redrawn at every snapshot. Feature `progress`.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{format_summary, format_table, Recent, Reporter};
use crate::stats::Snapshot;

/// Draws live progress on stderr (use a short debugger interval, such as
/// 200 ms):
///
/// - an overall line: when the number of input items is known (the lazy
///   source's exact `size_hint` plus the items put before the run, or
///   [`ProgressReporter::total`]), a bar with percentage, items per second
///   and ETA; otherwise the items read so far;
/// - one line per stage, with two rates that are easy to tell apart:
///   `e2e` is the stage's items per second of run time (what it has
///   actually done), `cap` its items per second of busy time (how fast its
///   workers could go, were they never waiting);
/// - the verdict (the bottleneck and the advice), updated at every report
///   and judged on the run's last 10 s once it is longer than that, so a
///   bottleneck that moves is named where it is now.
///
/// When stderr is not a terminal it prints the table every snapshot
/// instead, so logs stay readable.
///
/// ```no_run
/// use std::time::Duration;
/// use paipa::{report::ProgressReporter, Debugger};
/// let debugger = Debugger::silent()
///     .interval(Duration::from_millis(200))
///     .reporter(ProgressReporter::new());
/// ```
#[derive(Debug)]
pub struct ProgressReporter {
    live: bool,
    total: Option<u64>,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    bars: Vec<ProgressBar>,
    verdict: Option<ProgressBar>,
    /// The run's last seconds: the live verdict is judged on them.
    recent: Recent,
}

impl Default for ProgressReporter {
    fn default() -> Self {
        ProgressReporter::new()
    }
}

impl ProgressReporter {
    /// Live lines if stderr is a terminal, periodic tables otherwise.
    pub fn new() -> Self {
        ProgressReporter {
            live: std::io::stderr().is_terminal(),
            total: None,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            overall: None,
            bars: Vec::new(),
            verdict: None,
            recent: Recent::default(),
        }
    }

    /// Says how many items the input holds, for a bar and an ETA when the
    /// pipeline cannot know it (a source without an exact `size_hint`, or
    /// an iterator pipeline).
    pub fn total(mut self, items: u64) -> Self {
        self.total = Some(items);
        self
    }

    fn lines_for(&mut self, snap: &Snapshot) {
        if self.overall.is_none() {
            let bar = match self.total.or(snap.expected) {
                Some(len) => {
                    let bar = self.multi.add(ProgressBar::new(len));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {percent:>3}%  {human_pos}/{human_len} items  {msg}  ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar
                }
                None => {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} {spinner} {human_pos} items read  {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar
                }
            };
            bar.set_prefix(snap.pipeline.clone());
            self.overall = Some(bar);
        }
        if self.bars.len() < snap.stages.len() {
            let width = snap.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
            let style = ProgressStyle::with_template(&format!("  {{prefix:<{width}}} {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            for s in &snap.stages[self.bars.len()..] {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(s.name.clone());
                self.bars.push(bar);
            }
        }
        if self.verdict.is_none() {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
            self.verdict = Some(bar);
        }
    }
}

/// The verdict line: the summary's last line (its advice), judged on the
/// run's last 10 s while it runs (see `Recent`).
fn verdict(snap: &Snapshot) -> String {
    format_summary(snap).pop().unwrap_or_default()
}

impl Reporter for ProgressReporter {
    fn report(&mut self, snap: &Snapshot) {
        if !self.live {
            for line in format_table(snap) {
                eprintln!("{line}");
            }
            if snap.is_final {
                format_summary(snap).iter().for_each(|l| eprintln!("{l}"));
            }
            return;
        }
        self.lines_for(snap);
        let secs = snap.elapsed.as_secs_f64();
        if let (Some(bar), Some(source)) = (&self.overall, snap.stages.first()) {
            bar.set_position(source.count);
            let rate = if secs > 0.0 { source.count as f64 / secs } else { 0.0 };
            bar.set_message(format!("{rate:.0} items/s"));
        }
        for (s, bar) in snap.stages.iter().zip(&self.bars) {
            let done = s.count_in.max(s.count);
            let e2e = if secs > 0.0 { done as f64 / secs } else { 0.0 };
            let busy = s.busy.as_secs_f64();
            let cap = if busy > 0.0 { done as f64 / busy } else { 0.0 };
            bar.set_message(format!(
                "{:>12} items  e2e {:>10.1}/s  cap {:>12.1}/s per busy s  queue {:>6}  busy {:>5.1}%  workers {}",
                s.count,
                e2e,
                cap,
                s.queue_depth,
                100.0 * snap.share(s),
                s.workers
            ));
        }
        if let Some(v) = &self.verdict {
            v.set_message(verdict(&self.recent.judge(snap)));
        }
        let all = self.overall.iter().chain(&self.bars).chain(&self.verdict);
        for bar in all {
            if snap.is_final {
                bar.finish();
            } else {
                bar.tick();
            }
        }
        if snap.is_final {
            for line in format_summary(snap) {
                let _ = self.multi.println(line);
            }
        }
    }
}
