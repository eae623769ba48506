//! Threaded pipelines against their baselines, in one run:
//! `cargo bench --bench threaded`. The figures in docs/BENCHMARKS.md come
//! from `cargo run --release --example bench_threaded`, which runs the same
//! workloads at full size.

#[path = "workloads/threaded.rs"]
mod workload;

const TRIVIAL_N: u64 = 1_000_000;
const CPU_N: u64 = 200_000;

fn main() {
    divan::main();
}

mod trivial_3_stages {
    use super::{workload, TRIVIAL_N as N};

    #[divan::bench(sample_count = 5)]
    fn paipa_capacity_64() -> u64 {
        workload::paipa_trivial(N, None)
    }
    #[divan::bench(sample_count = 5)]
    fn paipa_capacity_1024() -> u64 {
        workload::paipa_trivial(N, Some(1024))
    }
    #[divan::bench(sample_count = 5)]
    fn crossbeam_per_item() -> u64 {
        workload::crossbeam_per_item(N)
    }
    #[divan::bench(sample_count = 5)]
    fn pipelines_crate() -> u64 {
        workload::pipelines_trivial(N)
    }
    #[divan::bench(sample_count = 5)]
    fn pipeliner_crate() -> u64 {
        workload::pipeliner_trivial(N)
    }
}

mod cpu_bound_stage {
    use super::{workload, CPU_N as N};

    #[divan::bench(sample_count = 5)]
    fn paipa_1_worker() -> u64 {
        workload::paipa_cpu(N, 1, false, None)
    }
    #[divan::bench(sample_count = 5)]
    fn paipa_2_workers() -> u64 {
        workload::paipa_cpu(N, 2, false, None)
    }
    #[divan::bench(sample_count = 5)]
    fn paipa_2_workers_ordered() -> u64 {
        workload::paipa_cpu(N, 2, true, None)
    }
    #[divan::bench(sample_count = 5)]
    fn rayon_par_bridge() -> u64 {
        workload::rayon_cpu(N)
    }
    #[divan::bench(sample_count = 5)]
    fn pipeliner_2_threads() -> u64 {
        workload::pipeliner_cpu(N, 2)
    }
    #[divan::bench(sample_count = 5)]
    fn pipelines_2_workers() -> u64 {
        workload::pipelines_cpu(N, 2)
    }
}
