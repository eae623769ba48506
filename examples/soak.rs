//! Soak: pushes many items (100 M unless given) through a 5-stage threaded
//! pipeline whose slowest stage changes every tenth of the run, printing
//! resident memory every 2 s, and checks at the end that nothing was lost.
//!
//! Run: `cargo run --release --example soak -- [items] [capacity]`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paipa::stats::{peak_resident_bytes, resident_bytes};
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

/// About `rounds` * 1.3 ns of work.
fn spin(x: u64, rounds: u64) -> u64 {
    let mut acc = x;
    for _ in 0..rounds {
        acc = black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    acc
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000_000);
    let capacity: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let tenth = (n / 10).max(1);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let started = Instant::now();
    let last_seen = Arc::new(AtomicU64::new(0));

    // Stage i is slow (about 40 ns per item) while the run is in a tenth
    // whose number is i modulo 5: the bottleneck moves five times, twice.
    let stage = |i: u64| {
        move |x: u64| {
            let phase = (x / tenth) % 5;
            if phase == i {
                spin(x, 30);
            }
            x
        }
    };
    let seen = last_seen.clone();
    let debugger = Debugger::silent()
        .name("soak")
        .interval(Duration::from_secs(2))
        .reporter(move |s: &paipa::Snapshot| {
            let out = s.stages.last().map_or(0, |st| st.count);
            seen.store(out, Ordering::Relaxed);
            println!(
                "{:6.1} s  {:>11} out  rss {:6.1} MiB  peak {:6.1} MiB  bottleneck {}",
                s.elapsed.as_secs_f64(),
                out,
                mib(resident_bytes().unwrap_or(0)),
                mib(peak_resident_bytes().unwrap_or(0)),
                s.bottleneck().map_or("-", |b| b.name.as_str()),
            );
        });
    let summary = Pipeline::new()
        .capacity(capacity)?
        .debug(debugger)
        .source(0..n)
        .then(Stage::map("s0", stage(0)))?
        .then(Stage::map("s1", stage(1)).workers(2))?
        .then(Stage::map("s2", stage(2)))?
        .then(Stage::map("s3", stage(3)).workers(2))?
        .then(Stage::map("s4", stage(4)))?
        .run()?;
    for s in &summary.snapshot.stages[1..] {
        assert_eq!(s.count_in, s.count, "stage {} lost items", s.name);
        assert_eq!(s.count, n, "stage {} count", s.name);
    }
    assert_eq!(summary.items, n);
    println!(
        "{n} items in {:.1} s, nothing lost; peak RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(peak_resident_bytes().unwrap_or(0))
    );
    Ok(())
}
