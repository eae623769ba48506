//! The recent past of a live run: live views judge the bottleneck, the
//! hint and the latency percentiles on the last few seconds (a
//! [`Snapshot::since`] an earlier one), so that a bottleneck that moves is
//! named where it is now, not where it was for most of the run.

use std::collections::VecDeque;
use std::time::Duration;

use crate::stats::Snapshot;

/// How far back a live view looks when it judges a run.
pub(crate) const RECENT: Duration = Duration::from_secs(10);

/// The least time between two snapshots the history keeps: the base a
/// run is judged on is then at most this much older than [`RECENT`].
const KEEP_EVERY: Duration = Duration::from_millis(250);

/// The snapshots of one run seen in the last [`RECENT`] or so.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    history: VecDeque<Snapshot>,
}

impl Recent {
    /// What to judge `snap` on: the change since the newest snapshot at
    /// least [`RECENT`] older, or the whole run when there is none yet (a
    /// run younger than that), or for the final report.
    pub(crate) fn judge(&mut self, snap: &Snapshot) -> Snapshot {
        if snap.is_final {
            self.history.clear();
            return snap.clone();
        }
        // A snapshot of another run (time went back, or other stages):
        // forget the old one.
        if self
            .history
            .back()
            .is_some_and(|b| b.elapsed > snap.elapsed || b.stages.len() != snap.stages.len())
        {
            self.history.clear();
        }
        let cut = snap.elapsed.checked_sub(RECENT);
        while self.history.len() >= 2 && cut.is_some_and(|cut| self.history[1].elapsed <= cut) {
            self.history.pop_front();
        }
        let base = self.history.front().filter(|b| cut.is_some_and(|cut| b.elapsed <= cut));
        let judged = base.map_or_else(|| snap.clone(), |b| snap.since(b));
        // At most one snapshot kept per [`KEEP_EVERY`]: however often a
        // view asks, the history holds a few dozen snapshots.
        if self
            .history
            .back()
            .is_none_or(|b| snap.elapsed >= b.elapsed + KEEP_EVERY)
        {
            self.history.push_back(snap.clone());
        }
        judged
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::stats::StageSnapshot;

    fn at(secs: u64, a_ms: u64, b_ms: u64) -> Snapshot {
        let row = |name: &str, ms| StageSnapshot {
            name: name.into(),
            workers: 1,
            busy: Duration::from_millis(ms),
            ..StageSnapshot::default()
        };
        Snapshot {
            elapsed: Duration::from_secs(secs),
            stages: vec![row("a", a_ms), row("b", b_ms)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_young_run_is_judged_whole_then_on_the_last_ten_seconds() {
        let mut recent = Recent::default();
        // "a" is busy for the first 20 s, then "b" takes over.
        assert_eq!(recent.judge(&at(5, 5_000, 0)).elapsed, Duration::from_secs(5));
        assert_eq!(recent.judge(&at(9, 9_000, 0)).elapsed, Duration::from_secs(9));
        assert_eq!(recent.judge(&at(20, 20_000, 0)).elapsed, Duration::from_secs(11));
        let now = at(30, 20_000, 10_000);
        let judged = recent.judge(&now);
        assert_eq!(judged.elapsed, Duration::from_secs(10));
        assert_eq!(now.bottleneck().unwrap().name, "a");
        assert_eq!(judged.bottleneck().unwrap().name, "b");
        let mut last = now.clone();
        last.is_final = true;
        assert_eq!(recent.judge(&last), last);
        // A new run starts over.
        assert_eq!(recent.judge(&at(1, 0, 900)).elapsed, Duration::from_secs(1));
    }

    #[test]
    fn however_often_a_view_asks_the_history_stays_a_few_dozen_snapshots() {
        let mut recent = Recent::default();
        // A view asked 100 times a second for 60 s.
        for ms in (0..60_000u64).step_by(10) {
            let mut snap = at(0, ms, 0);
            snap.elapsed = Duration::from_millis(ms);
            let judged = recent.judge(&snap);
            if ms >= 11_000 {
                // Judged on the last 10 s, give or take one kept interval.
                assert!(
                    judged.elapsed >= RECENT && judged.elapsed <= RECENT + KEEP_EVERY,
                    "{:?}",
                    judged.elapsed
                );
            }
        }
        let most = (RECENT.as_millis() / KEEP_EVERY.as_millis()) as usize + 2;
        assert!(recent.history.len() <= most, "{} snapshots kept", recent.history.len());
    }
}
