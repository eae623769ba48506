//! Threaded workloads shared by `benches/threaded.rs` and
//! `examples/bench_threaded.rs`, with their baselines: a hand-rolled
//! per-item crossbeam-channel pipeline, rayon `par_bridge`, and the crates
//! `pipelines` and `pipeliner`.
#![allow(dead_code)]

use std::hint::black_box;
use std::thread;

use paipa::threaded::{Pipeline, Stage};
use rayon::prelude::*;

fn inc(x: u64) -> u64 {
    x + 1
}

/// Sum of `inc(inc(inc(x)))` over `0..n`: what every trivial variant must give.
pub fn trivial_expected(n: u64) -> u64 {
    (0..n).map(|x| x + 3).fold(0, u64::wrapping_add)
}

/// A pipeline with the given capacity (`None`: the default).
fn with_capacity<'a, T: Send + 'a>(capacity: Option<usize>) -> Pipeline<'a, T, T> {
    match capacity {
        Some(c) => Pipeline::new().capacity(c).unwrap(),
        None => Pipeline::new(),
    }
}

/// 3 trivial stages, 1 worker each, through paipa.
pub fn paipa_trivial(n: u64, capacity: Option<usize>) -> u64 {
    let p = with_capacity(capacity)
        .source(0..black_box(n))
        .then(Stage::map("a", inc))
        .unwrap()
        .then(Stage::map("b", inc))
        .unwrap()
        .then(Stage::map("c", inc))
        .unwrap();
    p.run_with(|out| out.fold(0u64, u64::wrapping_add)).unwrap().0
}

/// The same by hand: one thread per stage, a bounded crossbeam channel of
/// single items (capacity 64) per hop.
pub fn crossbeam_per_item(n: u64) -> u64 {
    let (tx0, rx0) = crossbeam_channel::bounded::<u64>(64);
    let (tx1, rx1) = crossbeam_channel::bounded::<u64>(64);
    let (tx2, rx2) = crossbeam_channel::bounded::<u64>(64);
    let (tx3, rx3) = crossbeam_channel::bounded::<u64>(64);
    thread::scope(|s| {
        s.spawn(move || {
            for x in 0..black_box(n) {
                tx0.send(x).unwrap();
            }
        });
        s.spawn(move || rx0.iter().for_each(|x| tx1.send(inc(x)).unwrap()));
        s.spawn(move || rx1.iter().for_each(|x| tx2.send(inc(x)).unwrap()));
        s.spawn(move || rx2.iter().for_each(|x| tx3.send(inc(x)).unwrap()));
        rx3.iter().fold(0u64, u64::wrapping_add)
    })
}

/// The same with the `pipelines` crate.
pub fn pipelines_trivial(n: u64) -> u64 {
    pipelines::Pipeline::from(0..black_box(n))
        .map(inc)
        .map(inc)
        .map(inc)
        .into_iter()
        .fold(0u64, u64::wrapping_add)
}

/// The same with the `pipeliner` crate (1 thread per stage).
pub fn pipeliner_trivial(n: u64) -> u64 {
    use pipeliner::Pipeline as _;
    (0..black_box(n))
        .with_threads(1)
        .map(inc)
        .with_threads(1)
        .map(inc)
        .with_threads(1)
        .map(inc)
        .fold(0u64, u64::wrapping_add)
}

/// About 0.5 us of arithmetic on this machine.
pub fn cpu_work(x: u64) -> u64 {
    let mut acc = x;
    for _ in 0..black_box(CPU_ROUNDS) {
        acc = black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
    acc
}

/// Rounds of `cpu_work`; tuned so one call takes about 0.5 us here.
pub const CPU_ROUNDS: u64 = 400;

pub fn cpu_expected(n: u64) -> u64 {
    (0..n).map(cpu_work).fold(0, u64::wrapping_add)
}

/// One CPU-bound stage with `workers` workers.
pub fn paipa_cpu(n: u64, workers: usize, ordered: bool, capacity: Option<usize>) -> u64 {
    let mut stage = Stage::map("work", cpu_work).workers(workers);
    if ordered {
        stage = stage.ordered();
    }
    let p = with_capacity(capacity).source(0..black_box(n)).then(stage).unwrap();
    p.run_with(|out| out.fold(0u64, u64::wrapping_add)).unwrap().0
}

pub fn rayon_cpu(n: u64) -> u64 {
    (0..black_box(n))
        .par_bridge()
        .map(cpu_work)
        .reduce(|| 0, u64::wrapping_add)
}

pub fn pipeliner_cpu(n: u64, workers: usize) -> u64 {
    use pipeliner::Pipeline as _;
    (0..black_box(n))
        .with_threads(workers)
        .map(cpu_work)
        .fold(0u64, u64::wrapping_add)
}

pub fn pipelines_cpu(n: u64, workers: usize) -> u64 {
    use pipelines::{Mapper, Multiplex};
    pipelines::Pipeline::from(0..black_box(n))
        .then(Multiplex::from(Mapper::new(cpu_work), workers))
        .into_iter()
        .fold(0u64, u64::wrapping_add)
}

/// IO fan-out: `n` items that each wait `wait` (a sleep, as on a remote
/// call) on a stage of `workers` workers, default settings. Returns the
/// items out.
pub fn paipa_io(n: u64, workers: usize, wait: std::time::Duration) -> u64 {
    let p = Pipeline::new()
        .source(0..n)
        .then(
            Stage::map("call", move |x: u64| {
                thread::sleep(wait);
                x
            })
            .workers(workers),
        )
        .unwrap();
    p.run_with(|out| out.count() as u64).unwrap().0
}
