//! Serves Prometheus metrics for a running threaded pipeline.
//!
//! Run: `cargo run --release --features metrics --example metrics_server -- [port] [items]`
//! then `curl http://127.0.0.1:9000/metrics` while it runs (and for 30 s
//! after it ends).

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use paipa::report::MetricsReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(9000);
    let items: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    PrometheusBuilder::new().with_http_listener(addr).install()?;
    println!("serving http://{addr}/metrics");

    let debugger = Debugger::silent()
        .name("demo")
        .interval(Duration::from_millis(500))
        .reporter(MetricsReporter::new());
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..items)
        .then(Stage::map("parse", |x: u64| x.to_string()).workers(2))?
        .then(Stage::map("store", |s: String| {
            std::thread::sleep(Duration::from_micros(100));
            paipa::stats::count("bytes", s.len() as u64);
        }))?
        .run()?;
    println!("{} items stored; metrics stay up for 30 s", summary.items);
    std::thread::sleep(Duration::from_secs(30));
    Ok(())
}
