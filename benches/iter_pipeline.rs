//! Iterator pipelines against a hand-written chain: 4 trivial steps over
//! 10 M u64 items. Run: `cargo bench --bench iter_pipeline`.

#[path = "workloads/iter.rs"]
mod workload;

const N: u64 = 10_000_000;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 10)]
fn hand_written() -> u64 {
    workload::hand_written(N)
}

#[divan::bench(sample_count = 10)]
fn typed_pipeline() -> u64 {
    workload::typed(N)
}

#[divan::bench(sample_count = 10)]
fn debugger_exact() -> u64 {
    workload::exact(N)
}

#[divan::bench(sample_count = 10)]
fn debugger_sampled_1_in_64() -> u64 {
    workload::sampled(N)
}
