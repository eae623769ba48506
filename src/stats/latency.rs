//! Per-item latency of async stages: a histogram with logarithmic buckets
//! (8 per power of two, so a quantile read from it is within 6.25% of the
//! true value), recorded by the one thread that drives a stage's futures and
//! read by the reporting thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Values below this many nanoseconds have a bucket each.
const EXACT: u64 = 16;
/// Buckets per power of two above `EXACT`.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64` of nanoseconds.
const BUCKETS: usize = EXACT as usize + (64 - 4) * SUB;

#[cfg_attr(not(feature = "async"), allow(dead_code))]
fn bucket(ns: u64) -> usize {
    if ns < EXACT {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= 4
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    EXACT as usize + (exp as usize - 4) * SUB + sub
}

/// The range `[low, high)` of nanoseconds that bucket `i` holds.
fn bounds(i: usize) -> (u64, u64) {
    if i < EXACT as usize {
        return (i as u64, i as u64 + 1);
    }
    let exp = ((i - EXACT as usize) / SUB + 4) as u32;
    let sub = ((i - EXACT as usize) % SUB) as u64;
    let step = 1u64 << (exp - SUB_BITS);
    let low = (SUB as u64 + sub) << (exp - SUB_BITS);
    (low, low.saturating_add(step))
}

/// The histogram a stage records into: one relaxed counter per bucket,
/// written by one thread.
#[derive(Debug)]
pub(crate) struct LatencyCells {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyCells {
    fn default() -> Self {
        LatencyCells {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyCells {
    /// Records one item that took `took`. Only the stage's own thread
    /// calls this, so a load and a store suffice.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let cell = &self.buckets[bucket(ns)];
        cell.store(cell.load(Relaxed) + 1, Relaxed);
    }

    /// A copy of the counts as they are now.
    pub(crate) fn read(&self) -> Latency {
        let mut counts: Vec<u64> = self.buckets.iter().map(|c| c.load(Relaxed)).collect();
        while counts.last() == Some(&0) {
            counts.pop();
        }
        Latency { counts }
    }
}

/// Per-item latency of a stage (async stages: from the start of an item's
/// future to its result, retries included): a histogram with 8 buckets per
/// power of two. Counts are cumulative since the run started;
/// [`Latency::since`] (or [`Snapshot::since`](crate::Snapshot::since)) gives
/// the latency over an interval. Empty for stages that do not measure it.
///
/// ```
/// use paipa::Latency;
/// let none = Latency::default();
/// assert_eq!(none.samples(), 0);
/// assert_eq!(none.p50(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// Items per bucket (trailing empty buckets left out).
    counts: Vec<u64>,
}

impl Latency {
    /// Items measured.
    pub fn samples(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency below which a share `q` (0.0 to 1.0) of the items fall:
    /// the middle of the bucket holding that rank, within 6.25% of the
    /// exact value. `None` when nothing was measured.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(i);
                return Some(Duration::from_nanos(low + (high - low) / 2));
            }
        }
        None
    }

    /// The median latency.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// The items measured after `earlier` (a copy of the same stage's
    /// latency taken before this one).
    pub fn since(&self, earlier: &Latency) -> Latency {
        let mut counts: Vec<u64> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        while counts.last() == Some(&0) {
            counts.pop();
        }
        Latency { counts }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = bucket(ns);
            assert!(i < BUCKETS);
            assert!(i >= last, "bucket of {ns} went back");
            last = i;
            let (low, high) = bounds(i);
            assert!(
                low <= ns && (ns < high || high == u64::MAX),
                "{ns} not in [{low}, {high})"
            );
        }
    }

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let cells = LatencyCells::default();
        for ms in 1..=1000u64 {
            cells.record(Duration::from_millis(ms));
        }
        let l = cells.read();
        assert_eq!(l.samples(), 1000);
        for (q, exact) in [(0.5, 500.0), (0.99, 990.0), (0.0, 1.0), (1.0, 1000.0)] {
            let got = l.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (got - exact).abs() <= exact * 0.0625,
                "q{q}: {got} ms against {exact} ms"
            );
        }
        let before = l.clone();
        for _ in 0..10 {
            cells.record(Duration::from_secs(5));
        }
        let recent = cells.read().since(&before);
        assert_eq!(recent.samples(), 10);
        let p50 = recent.p50().unwrap().as_secs_f64();
        assert!((p50 - 5.0).abs() <= 5.0 * 0.0625, "{p50}");
    }
}
