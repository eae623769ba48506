//! Prints the cost of iterator pipelines and of the debugger against a
//! hand-written chain, all measured in this one run (median of 7 runs each):
//! 4 trivial steps over 10 M u64 items.
//!
//! Run: `cargo run --release --example bench_iter`

#[path = "../benches/workloads/iter.rs"]
mod workload;

use std::time::{Duration, Instant};

const N: u64 = 10_000_000;

type Variant = (&'static str, fn(u64) -> u64);

fn median(f: fn(u64) -> u64) -> (Duration, u64) {
    let mut times = Vec::new();
    let mut out = 0;
    for _ in 0..7 {
        let t = Instant::now();
        out = std::hint::black_box(f(N));
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], out)
}

fn main() {
    let (hand, expect) = median(workload::hand_written);
    let rows: [Variant; 3] = [
        ("typed pipeline", workload::typed),
        ("debugger, exact", workload::exact),
        ("debugger, sampled 1/64", workload::sampled),
    ];
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / N as f64;
    println!("{N} items, 4 steps; median of 7 runs");
    println!(
        "{:<24} {:>9} {:>8} {:>22}",
        "variant", "ns/item", "ratio", "added ns/item/stage"
    );
    println!("{:<24} {:>9.2} {:>8.2}", "hand-written chain", ns(hand), 1.0);
    for (name, f) in rows {
        let (t, out) = median(f);
        assert_eq!(out, expect, "{name} computed a different result");
        let added = (ns(t) - ns(hand)) / workload::STAGES as f64;
        let ratio = t.as_secs_f64() / hand.as_secs_f64();
        if name == "typed pipeline" {
            println!("{name:<24} {:>9.2} {ratio:>8.2}", ns(t));
        } else {
            println!("{name:<24} {:>9.2} {ratio:>8.2} {added:>22.2}", ns(t));
        }
    }
}
