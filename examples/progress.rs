//! Live progress bars for a threaded pipeline (run it in a terminal).
//!
//! Run: `cargo run --release --features progress --example progress`

use std::time::Duration;

use paipa::report::ProgressReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let debugger = Debugger::silent()
        .name("progress demo")
        .interval(Duration::from_millis(100))
        .reporter(ProgressReporter::new());
    Pipeline::new()
        .debug(debugger)
        .source(0..items)
        .then(
            Stage::map("fetch", |x: u64| {
                std::thread::sleep(Duration::from_micros(800));
                x
            })
            .workers(4),
        )?
        .then(Stage::map("parse", |x: u64| x.to_string()))?
        .then(Stage::map("store", |s: String| s.len()))?
        .run()?;
    Ok(())
}
