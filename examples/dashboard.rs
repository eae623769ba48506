//! A live web page of a threaded pipeline whose bottleneck moves: `parse`
//! is the slow stage for the first third of the items, `store` for the
//! rest. Open the printed URL in a browser and watch the highlighted box
//! move from one to the other.
//!
//! Run: `cargo run --release --features web --example dashboard [-- ADDR [ITEMS [HOLD_SECS]]]`
//! (defaults: `127.0.0.1:8090`, 6000 items, and the final state served for
//! 30 s after the run).

use std::time::Duration;

use paipa::report::WebReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let items: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(6_000);
    let hold: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);

    let web = WebReporter::bind(addr.as_str())?;
    println!("dashboard: {}", web.url());
    let debugger = Debugger::silent()
        .name("moving bottleneck")
        .interval(Duration::from_millis(250))
        .reporter(web.clone());
    let third = items / 3;
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..items)
        .then(Stage::map("parse", move |x: u64| {
            std::thread::sleep(Duration::from_micros(if x < third { 2_000 } else { 200 }));
            x
        }))?
        .then(Stage::map("enrich", |x: u64| x * 2).workers(2))?
        .then(Stage::map("store", move |x: u64| {
            std::thread::sleep(Duration::from_micros(if x / 2 < third { 200 } else { 2_000 }));
            x
        }))?
        .run()?;
    println!("{} items; serving the final state for {hold} s", summary.items);
    std::thread::sleep(Duration::from_secs(hold));
    drop(web);
    Ok(())
}
