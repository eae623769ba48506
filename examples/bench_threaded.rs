//! Threaded pipelines against their baselines, all measured in this one run
//! (median of 5 runs each).
//!
//! - `cargo run --release --example bench_threaded`: speed tables;
//!   `-- trivial [NAME]`, `-- cpu [NAME]` and `-- io` one table each
//!   (with NAME, only the rows whose name contains it).
//! - `cargo run --release --example bench_threaded -- rss N`: N items of
//!   1 KiB through 3 stages; prints the process's peak RSS.
//! - `... -- putall N`: N items put before the run against the same items
//!   as a lazy source and a plain loop (median of 5).
//! - `... -- backlog N`: a lot held back before the run (capacity 4), then
//!   N puts of 4 KiB from a handle while a stage takes 20 us an item;
//!   prints how long the puts took and the peak RSS.

#[path = "../benches/workloads/threaded.rs"]
mod workload;

use std::time::{Duration, Instant};

use paipa::threaded::{Pipeline, Stage};

fn median(runs: usize, mut f: impl FnMut() -> u64, expect: u64) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = f();
            let d = t.elapsed();
            assert_eq!(out, expect, "a variant computed a different result");
            d
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn trivial() {
    const N: u64 = 10_000_000;
    const HOPS: f64 = 4.0; // source -> a -> b -> c -> consumer
    println!("## 3 trivial stages (x + 1), 1 worker each, u64 items, median of 5");
    println!("| variant | items | total | ns/item | ns/item/hop |");
    println!("|---|---:|---:|---:|---:|");
    type Variant = Box<dyn Fn(u64) -> u64>;
    let rows: Vec<(&str, u64, Variant)> = vec![
        ("paipa, defaults", N, Box::new(|n| workload::paipa_trivial(n, None))),
        (
            "paipa, capacity 64",
            N,
            Box::new(|n| workload::paipa_trivial(n, Some(64))),
        ),
        (
            "paipa, capacity 8192",
            N,
            Box::new(|n| workload::paipa_trivial(n, Some(8192))),
        ),
        (
            "hand-rolled crossbeam, per item, capacity 64",
            N,
            Box::new(workload::crossbeam_per_item),
        ),
        ("pipelines crate", N, Box::new(workload::pipelines_trivial)),
        // pipeliner is about 20x slower here: a tenth of the items.
        ("pipeliner crate", N / 10, Box::new(workload::pipeliner_trivial)),
    ];
    let only: Option<String> = std::env::args().nth(2);
    for (name, n, f) in rows {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let t = median(5, || f(n), workload::trivial_expected(n));
        let per = t.as_secs_f64() * 1e9 / n as f64;
        println!(
            "| {name} | {n} | {:.3} s | {per:.2} | {:.2} |",
            t.as_secs_f64(),
            per / HOPS
        );
    }
}

fn cpu_bound() {
    const N: u64 = 2_000_000;
    let expect = workload::cpu_expected(N);
    let one = {
        let t = Instant::now();
        for x in 0..10_000 {
            std::hint::black_box(workload::cpu_work(x));
        }
        t.elapsed() / 10_000
    };
    println!();
    println!(
        "## one CPU-bound stage ({:.2} us per item), {N} items, median of 5",
        one.as_secs_f64() * 1e6
    );
    println!("| variant | total | speed-up over paipa 1 worker |");
    println!("|---|---:|---:|");
    let base = median(5, || workload::paipa_cpu(N, 1, false, None), expect);
    println!("| paipa, 1 worker, defaults | {:.3} s | 1.00 |", base.as_secs_f64());
    type Variant = Box<dyn FnMut() -> u64>;
    let rows: Vec<(&str, Variant)> = vec![
        (
            "paipa, 2 workers, defaults",
            Box::new(|| workload::paipa_cpu(N, 2, false, None)),
        ),
        (
            "paipa, 2 workers, ordered, defaults",
            Box::new(|| workload::paipa_cpu(N, 2, true, None)),
        ),
        (
            "paipa, 2 workers, capacity 64",
            Box::new(|| workload::paipa_cpu(N, 2, false, Some(64))),
        ),
        ("rayon par_bridge (2 threads)", Box::new(|| workload::rayon_cpu(N))),
        ("pipeliner, 2 threads", Box::new(|| workload::pipeliner_cpu(N, 2))),
        ("pipelines, Multiplex 2", Box::new(|| workload::pipelines_cpu(N, 2))),
    ];
    // `cpu NAME`: only the rows whose name contains NAME (the 1-worker
    // baseline always runs: every speed-up is over it).
    let only: Option<String> = std::env::args().nth(2);
    for (name, f) in rows {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let t = median(5, f, expect);
        println!(
            "| {name} | {:.3} s | {:.2} |",
            t.as_secs_f64(),
            base.as_secs_f64() / t.as_secs_f64()
        );
    }
}

fn io_fanout() {
    const N: u64 = 10_000;
    const WORKERS: usize = 200;
    let wait = Duration::from_millis(20);
    let floor = wait * (N as u32) / WORKERS as u32;
    println!();
    println!("## IO fan-out: {N} items of 20 ms (sleep), {WORKERS} workers, defaults, median of 3");
    println!("| variant | total | ratio to the {:.1} s floor |", floor.as_secs_f64());
    println!("|---|---:|---:|");
    let t = median(3, || workload::paipa_io(N, WORKERS, wait), N);
    println!(
        "| paipa, defaults | {:.3} s | {:.3} |",
        t.as_secs_f64(),
        t.as_secs_f64() / floor.as_secs_f64()
    );
}

fn rss(n: u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let t = Instant::now();
    // Resident memory sampled every 20 ms during the run; the largest
    // sample in each tenth of the items shows whether memory grows with
    // the input or stays at what the edges' bounds allow.
    let done = AtomicU64::new(0);
    let over = AtomicBool::new(false);
    let deciles = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut max = [0u64; 10];
            while !over.load(Relaxed) {
                let tenth = (done.load(Relaxed) * 10 / n.max(1)).min(9) as usize;
                let rss = paipa::stats::resident_bytes().unwrap_or(0);
                max[tenth] = max[tenth].max(rss);
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        let p = Pipeline::new()
            .source((0..n).map(|i| vec![(i % 251) as u8; 1024]))
            .then(Stage::map("touch", |mut v: Vec<u8>| {
                v[0] = v[0].wrapping_add(1);
                v
            }))
            .unwrap()
            .then(Stage::map("sum", |v: Vec<u8>| v.iter().map(|&b| b as u64).sum::<u64>()).workers(2))
            .unwrap()
            .then(Stage::map("fold", |x: u64| {
                done.fetch_add(1, Relaxed);
                x % 7
            }))
            .unwrap();
        let s = p.run().unwrap();
        assert_eq!(s.items, n);
        over.store(true, Relaxed);
        sampler.join().unwrap()
    });
    let peak = paipa::stats::peak_resident_bytes().unwrap_or(0);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let tenths: Vec<String> = deciles.iter().map(|&b| format!("{:.1}", mib(b))).collect();
    println!(
        "{n} items of 1 KiB: {n} out in {:.1} s, peak RSS {:.1} MiB; largest sample per tenth of the items (MiB): {}",
        t.elapsed().as_secs_f64(),
        mib(peak),
        tenths.join(" ")
    );
}

fn put_all_before(n: u64) {
    println!("## {n} u64 items through one stage (x * 2), summed, median of 5");
    println!("| variant | total | ns/item |");
    println!("|---|---:|---:|");
    let expect = (0..n).map(|x| x * 2).sum::<u64>();
    let stage = || Stage::map("double", |x: u64| x * 2);
    type Variant = Box<dyn Fn() -> u64>;
    let rows: Vec<(&str, Variant)> = vec![
        (
            "plain loop",
            Box::new(move || (0..n).map(|x| std::hint::black_box(x) * 2).sum()),
        ),
        (
            "paipa, lazy source",
            Box::new(move || {
                let p = Pipeline::new().source(0..n).then(stage()).unwrap();
                p.run_with(|out| out.sum::<u64>()).unwrap().0
            }),
        ),
        (
            "paipa, put_all before the run",
            Box::new(move || {
                let mut p = Pipeline::new().then(stage()).unwrap();
                p.put_all(0..n).unwrap();
                p.close_input();
                p.run_with(|out| out.sum::<u64>()).unwrap().0
            }),
        ),
    ];
    for (name, f) in rows {
        let d = median(5, &*f, expect);
        println!(
            "| {name} | {:.1} ms | {:.2} |",
            d.as_secs_f64() * 1e3,
            d.as_nanos() as f64 / n as f64
        );
    }
}

fn backlog(n: u64) {
    let t = Instant::now();
    let mut p = Pipeline::new()
        .capacity(4)
        .unwrap()
        .then(Stage::map("slow", |v: Vec<u8>| {
            let until = Instant::now() + Duration::from_micros(20);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            v.len() as u64
        }))
        .unwrap();
    let input = p.input();
    // Before the run: 4 fit the edge, 16 are held back.
    for _ in 0..20 {
        input.put(vec![1u8; 4096]).unwrap();
    }
    let running = p.spawn().unwrap();
    let puts = Instant::now();
    for _ in 0..n {
        input.put(vec![1u8; 4096]).unwrap();
    }
    let put_time = puts.elapsed();
    drop(input);
    let s = running.wait().unwrap();
    assert_eq!(s.items, n + 20);
    let peak = paipa::stats::peak_resident_bytes().unwrap_or(0);
    println!(
        "{n} puts of 4 KiB after a held-back lot (capacity 4, 20 us an item): puts took {:.0} ms, run {:.0} ms, peak RSS {:.1} MiB",
        put_time.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3,
        peak as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("putall") => put_all_before(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000)),
        Some("backlog") => backlog(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50_000)),
        Some("rss") => rss(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000)),
        Some("trivial") => trivial(),
        Some("cpu") => cpu_bound(),
        Some("io") => io_fanout(),
        _ => {
            trivial();
            cpu_bound();
            io_fanout();
        }
    }
}
