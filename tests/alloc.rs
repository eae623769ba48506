//! Memory per stage with the counting allocator (feature `alloc`).
#![cfg(feature = "alloc")]

use paipa::iter::Pipeline;
use paipa::threaded::{Pipeline as Threaded, Stage};
use paipa::Debugger;

#[global_allocator]
static ALLOC: paipa::stats::CountingAlloc = paipa::stats::CountingAlloc::system();

const KIB: i64 = 1024;

fn grow(it: impl Iterator<Item = u32>) -> impl Iterator<Item = Vec<u8>> {
    it.map(|_| vec![1u8; 1024])
}

fn shrink(it: impl Iterator<Item = Vec<u8>>) -> impl Iterator<Item = usize> {
    it.map(|v| v.len())
}

#[test]
fn iterator_stages_are_charged_for_what_they_allocate_and_free() {
    let pipeline = Pipeline::new(0..1000u32)
        .debug(Debugger::silent())
        .step(grow)
        .step(shrink);
    let stats = pipeline.stats();
    assert_eq!(paipa::iter::consume(pipeline), 1000);
    let snap = stats.snapshot();
    let g = snap.stage("grow").unwrap();
    let s = snap.stage("shrink").unwrap();
    // Each KiB is allocated in `grow` and freed in `shrink`.
    assert!(
        (1000 * KIB..1000 * KIB + 64 * KIB).contains(&g.mem_growth),
        "grow {}",
        g.mem_growth
    );
    assert!(
        (-1000 * KIB - 64 * KIB..=-1000 * KIB).contains(&s.mem_growth),
        "shrink {}",
        s.mem_growth
    );
    assert!(g.mem_peak >= 1000 * KIB, "peak {}", g.mem_peak);
    assert!(s.mem_peak < 64 * KIB, "shrink peak {}", s.mem_peak);
}

#[test]
fn threaded_stages_are_charged_too() {
    // A small capacity keeps every batch at 4 items or fewer, so the batch
    // containers (allocated by one stage, freed by the next) stay far
    // below the slack whatever sizes the batches take.
    let s = Threaded::new()
        .capacity(8)
        .unwrap()
        .source(0..500u32)
        .then(Stage::map("make", |_: u32| vec![0u8; 4096]).workers(2))
        .unwrap()
        .then(Stage::map("drop", |v: Vec<u8>| v.len()))
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(s.items, 500);
    let make = s.snapshot.stage("make").unwrap();
    let drop = s.snapshot.stage("drop").unwrap();
    // Each 4 KiB vector is allocated in `make` and freed in `drop`.
    assert!(make.mem_growth >= 500 * 4 * KIB - 64 * KIB, "make {}", make.mem_growth);
    assert!(drop.mem_growth <= -500 * 4 * KIB + 64 * KIB, "drop {}", drop.mem_growth);
}

/// A step that holds 1 MiB of state from `on_start` until it is dropped
/// when its worker ends.
struct Holder(Vec<u8>);

impl paipa::threaded::Step for Holder {
    type In = u32;
    type Out = u32;
    fn on_start(&mut self, _: &paipa::threaded::WorkerInfo) -> Result<(), paipa::BoxError> {
        self.0 = vec![1u8; 1024 * 1024];
        Ok(())
    }
    fn process(&mut self, item: u32, out: &mut paipa::threaded::Output<'_, u32>) -> Result<(), paipa::BoxError> {
        out.emit(item);
        Ok(())
    }
}

#[test]
fn a_workers_own_state_is_freed_inside_its_stage() {
    // Found in review: a worker's step (and outbox) were dropped after its
    // stage's memory scope ended, so their frees were charged to nobody and
    // the stage's net growth read high by the step's whole state.
    let s = Threaded::new()
        .source(0..1000u32)
        .then(Stage::step("hold", |_: &paipa::threaded::WorkerInfo| Holder(Vec::new())).workers(2))
        .unwrap()
        .run()
        .unwrap();
    let hold = s.snapshot.stage("hold").unwrap();
    // At least one worker's state was held at once (both, unless one
    // worker ended before the other started).
    assert!(hold.mem_peak >= 1024 * KIB, "peak {}", hold.mem_peak);
    // Only the batches handed downstream (1000 u32 and their buffers) stay.
    assert!(hold.mem_growth < 256 * KIB, "hold grew {}", hold.mem_growth);
}
