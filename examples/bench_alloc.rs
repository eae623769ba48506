//! The cost of the counting allocator (feature `alloc`), measured in one
//! run: 10 M allocate+free pairs of 64 bytes (median of 5)
//! - straight through the system allocator (no counting at all),
//! - through `CountingAlloc` outside any pipeline (a thread-local read),
//! - through `CountingAlloc` inside a threaded stage (counted per stage).
//!
//! Run: `cargo run --release --features alloc --example bench_alloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use paipa::threaded::{Pipeline, Stage};

#[global_allocator]
static ALLOC: paipa::stats::CountingAlloc = paipa::stats::CountingAlloc::system();

const PAIRS: u64 = 10_000_000;
const PER_ITEM: u64 = 1_000;

fn system_direct() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    for _ in 0..PAIRS {
        // SAFETY: a valid, non-zero layout; the block is freed at once.
        unsafe {
            let p = System.alloc(layout);
            black_box(p);
            System.dealloc(p, layout);
        }
    }
}

fn boxes(n: u64) {
    for i in 0..n {
        black_box(Box::new([i; 8]));
    }
}

fn in_stage() {
    let s = Pipeline::new()
        .source(0..PAIRS / PER_ITEM)
        .then(Stage::map("alloc", |_: u64| boxes(PER_ITEM)))
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(s.items, PAIRS / PER_ITEM);
}

fn median(f: impl Fn()) -> Duration {
    let mut t: Vec<Duration> = (0..5)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[2]
}

fn main() {
    let base = median(system_direct);
    let outside = median(|| boxes(PAIRS));
    let inside = median(in_stage);
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / PAIRS as f64;
    println!("| variant | ns per alloc+free | added |");
    println!("|---|---:|---:|");
    println!("| system allocator, direct | {:.2} | |", ns(base));
    println!(
        "| CountingAlloc, outside a pipeline | {:.2} | {:+.2} |",
        ns(outside),
        ns(outside) - ns(base)
    );
    println!(
        "| CountingAlloc, inside a stage | {:.2} | {:+.2} |",
        ns(inside),
        ns(inside) - ns(base)
    );
}
