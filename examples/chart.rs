//! Writes an SVG chart of a threaded run whose bottleneck moves: `parse`
//! is slow for the first half of the items, `store` for the second half.
//!
//! Run: `cargo run --release --example chart -- [path]` (default
//! `paipa-chart.svg` in the current directory).

use std::time::Duration;

use paipa::report::{ChartReporter, LogReporter};
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

const N: u64 = 4_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let path = std::env::args().nth(1).unwrap_or_else(|| "paipa-chart.svg".into());
    let debugger = Debugger::silent()
        .name("moving bottleneck")
        .interval(Duration::from_millis(100))
        .reporter(ChartReporter::new(&path))
        .reporter(LogReporter::new());
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..N)
        .then(Stage::map("parse", |x: u64| {
            if x < N / 2 {
                std::thread::sleep(Duration::from_micros(400));
            }
            x
        }))?
        .then(Stage::map("enrich", |x: u64| x * 2).workers(2))?
        .then(Stage::map("store", |x: u64| {
            if x >= N {
                std::thread::sleep(Duration::from_micros(400));
            }
            x
        }))?
        .run()?;
    println!("{} items; chart written to {path}", summary.items);
    Ok(())
}
