//! Log analytics against its baselines, all in this one run: a plain loop,
//! rayon `par_bridge`, and paipa written as the README shows it (default
//! settings). Prints wall time, CPU time (user + system of the whole
//! process) and involuntary context switches, median of 3 runs each.
//!
//! `cargo run --release --example bench_logs -- [LINES]` (5 M unless given;
//! the file goes to the temp dir and is removed at the end).

#[path = "../benches/workloads/logs.rs"]
mod workload;

use std::time::{Duration, Instant};

/// CPU time (user + system) and involuntary context switches of the process.
fn usage() -> (Duration, i64) {
    // SAFETY: getrusage fills a plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid rusage to write into.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime) + tv(u.ru_stime), u.ru_nivcsw)
}

fn main() {
    let n: u64 = std::env::args().nth(1).map_or(5_000_000, |s| s.parse().expect("LINES"));
    let path = std::env::temp_dir().join(format!("paipa-bench-logs-{}.log", std::process::id()));
    workload::generate(&path, n).expect("writing the log file");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{n} lines, {:.0} MB, {} cores",
        size as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let expect = workload::plain_loop(&path); // also warms the page cache
    let t = Instant::now();
    let read = workload::read_only(&path);
    println!(
        "reading the lines alone (the serial part): {:.2} s for {read} lines",
        t.elapsed().as_secs_f64()
    );
    type Variant = fn(&std::path::Path) -> workload::Totals;
    let variants: [(&str, Variant); 5] = [
        ("plain loop", workload::plain_loop),
        ("rayon par_bridge", workload::rayon),
        ("hand-rolled crossbeam, batches of 1024", workload::crossbeam_batched),
        ("paipa, fold in run_with, defaults", workload::paipa),
        ("paipa, README style (Stage::fold), defaults", workload::paipa_fold),
    ];
    let only = std::env::args().nth(2);
    println!("| variant | wall (median of 3) | CPU | involuntary switches | wall vs loop | CPU vs loop |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut base = None;
    for (name, f) in variants {
        if only.as_deref().is_some_and(|o| !name.contains(o)) && !name.starts_with("plain") {
            continue;
        }
        let mut runs: Vec<(Duration, Duration, i64)> = (0..3)
            .map(|_| {
                let (cpu0, sw0) = usage();
                let t = Instant::now();
                let got = f(&path);
                let wall = t.elapsed();
                let (cpu1, sw1) = usage();
                assert_eq!(got, expect, "{name} computed a different result");
                (wall, cpu1 - cpu0, sw1 - sw0)
            })
            .collect();
        runs.sort();
        let (wall, cpu, sw) = runs[1];
        let (bw, bc) = *base.get_or_insert((wall, cpu));
        println!(
            "| {name} | {:.2} s | {:.2} s | {sw} | {:.2}x faster | {:.2}x |",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            bw.as_secs_f64() / wall.as_secs_f64(),
            cpu.as_secs_f64() / bc.as_secs_f64(),
        );
    }
    let _ = std::fs::remove_file(&path);
}
