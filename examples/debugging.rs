//! The reference's debugging example: four steps over 10000..19999, one of
//! which (`flap`) sleeps 1 ms per item. The debugger's table, logged every
//! 5 s and at the end, shows where the time goes.
//!
//! Run: `cargo run --release --example debugging`

use std::time::Duration;

use paipa::iter::{consume, Pipeline};
use paipa::threaded::{self, Stage};
use paipa::Debugger;

fn caster(it: impl Iterator<Item = u32>) -> impl Iterator<Item = String> {
    it.map(|x| x.to_string())
}

fn flip(it: impl Iterator<Item = String>) -> impl Iterator<Item = String> {
    it.map(|s| s.chars().rev().collect())
}

fn flap(it: impl Iterator<Item = String>) -> impl Iterator<Item = Vec<String>> {
    it.map(|s| {
        std::thread::sleep(Duration::from_millis(1));
        vec![s]
    })
}

fn flatten(it: impl Iterator<Item = Vec<String>>) -> impl Iterator<Item = String> {
    it.map(|mut v| v.remove(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(true)
        .with_writer(std::io::stderr)
        .init();

    let pipeline = Pipeline::new(10_000..19_999u32)
        .debug(Debugger::new().source_name("list"))
        .step(caster)
        .step(flip)
        .step(flap)
        .step(flatten);
    let stats = pipeline.stats();
    let n = consume(pipeline);

    let snap = stats.snapshot();
    let slow = snap.stage("flap").expect("flap stage");
    println!("{n} items in {:.2} s", snap.elapsed.as_secs_f64());
    println!(
        "flap: {:.1}% of stage time, CPU {:.1}% of its wall time; bottleneck: {}",
        100.0 * snap.share(slow),
        100.0 * (slow.user_cpu + slow.sys_cpu).as_secs_f64() / slow.busy.as_secs_f64(),
        snap.bottleneck().map_or("none", |s| s.name.as_str()),
    );

    // The fix the report points to: the same steps as threaded stages, with
    // 8 workers for the one that waits.
    let summary = threaded::Pipeline::new()
        .debug(Debugger::new().name("threaded").source_name("list"))
        .source(10_000..19_999u32)
        .then(Stage::iter("caster", caster))?
        .then(Stage::iter("flip", flip))?
        .then(Stage::iter("flap", flap).workers(8))?
        .then(Stage::iter("flatten", flatten))?
        .run()?;
    println!(
        "threaded, flap on 8 workers: {} items in {:.2} s ({:.1}x faster)",
        summary.items,
        summary.snapshot.elapsed.as_secs_f64(),
        snap.elapsed.as_secs_f64() / summary.snapshot.elapsed.as_secs_f64()
    );
    Ok(())
}
