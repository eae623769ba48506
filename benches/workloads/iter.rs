//! The iterator-pipeline workload shared by `benches/iter_pipeline.rs` and
//! `examples/bench_iter.rs`: 4 trivial steps over u64 items, written by hand,
//! with the typed pipeline, and with the debugger in exact and sampled mode.
#![allow(dead_code)]

use paipa::iter::Pipeline;
use paipa::Debugger;
use std::hint::black_box;

pub fn triple(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.map(|x| x.wrapping_mul(3))
}
pub fn mix(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.map(|x| x ^ 0x55)
}
pub fn drop_sevens(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.filter(|x| x % 7 != 0)
}
pub fn inc(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.map(|x| x + 1)
}

fn sum(it: impl Iterator<Item = u64>) -> u64 {
    it.fold(0u64, |a, x| a.wrapping_add(x))
}

pub fn hand_written(n: u64) -> u64 {
    sum((0..black_box(n))
        .map(|x| x.wrapping_mul(3))
        .map(|x| x ^ 0x55)
        .filter(|x| x % 7 != 0)
        .map(|x| x + 1))
}

pub fn typed(n: u64) -> u64 {
    sum(Pipeline::new(0..black_box(n))
        .step(triple)
        .step(mix)
        .step(drop_sevens)
        .step(inc)
        .into_iter())
}

pub fn debugged(n: u64, debugger: Debugger) -> u64 {
    sum(Pipeline::new(0..black_box(n))
        .debug(debugger)
        .step(triple)
        .step(mix)
        .step(drop_sevens)
        .step(inc)
        .into_iter())
}

pub fn exact(n: u64) -> u64 {
    debugged(n, Debugger::silent())
}

pub fn sampled(n: u64) -> u64 {
    debugged(n, Debugger::silent().sampled(64).expect("valid"))
}

/// Measured stages in the debugged variants: the source and 4 steps.
pub const STAGES: u64 = 5;
