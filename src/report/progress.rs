//! Live progress: one bar per stage with its count, throughput, queue depth
//! and busy share, redrawn at every snapshot. Feature `progress`.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{format_summary, format_table, Reporter};
use crate::stats::Snapshot;

/// Draws one live line per stage on stderr (use a short debugger interval,
/// such as 200 ms). When stderr is not a terminal it prints the table every
/// snapshot instead, so logs stay readable.
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
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
}

impl Default for ProgressReporter {
    fn default() -> Self {
        ProgressReporter::new()
    }
}

impl ProgressReporter {
    /// Live bars if stderr is a terminal, periodic tables otherwise.
    pub fn new() -> Self {
        let live = std::io::stderr().is_terminal();
        ProgressReporter {
            live,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Vec::new(),
        }
    }

    fn bars_for(&mut self, snap: &Snapshot) {
        if self.bars.len() == snap.stages.len() {
            return;
        }
        let width = snap.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
        let style =
            ProgressStyle::with_template(&format!("{{prefix:<{width}}} {{spinner}} {{pos:>12}} items  {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        for s in &snap.stages[self.bars.len()..] {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(s.name.clone());
            self.bars.push(bar);
        }
    }
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
        self.bars_for(snap);
        for (s, bar) in snap.stages.iter().zip(&self.bars) {
            bar.set_position(s.count);
            bar.set_message(format!(
                "{:>12.1}/s  queue {:>6}  busy {:>5.1}%  workers {}",
                s.throughput(),
                s.queue_depth,
                100.0 * snap.share(s),
                s.workers
            ));
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
