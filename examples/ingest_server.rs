//! A standalone ingestion server: POST JSON entries (one, an array, or
//! NDJSON) to `/ingest`; SIGTERM or SIGINT stops accepting connections,
//! closes slow ones by the grace deadline (a second signal closes them at
//! once), drains the pipeline and exits 0 (or 1 if the pipeline failed). A
//! `null` entry fails its step: under the server's default policy
//! (`ServerConfig::skip_errors`) the stage skips it, counted as `skipped`
//! and listed with its error in `/stats` (`server.errors`), so one bad entry
//! does not stop the server for every client.
//! Point the products example at it with `--url http://127.0.0.1:8080/ingest`.
//!
//! Run: `cargo run --release --features http --example ingest_server -- [port]`
//! then `curl --json '[1,2,3]' http://127.0.0.1:8080/ingest` (or `-H 'Content-Type: application/json' -d ...`: a form's content type is refused).

use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn main() {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(8080);
    let run = || -> Result<u64, Box<dyn std::error::Error>> {
        let pipeline = Pipeline::new()
            .debug(Debugger::new().name("ingest").source_name("http"))
            .then(Stage::try_map("check", |v: serde_json::Value| {
                if v.is_null() {
                    Err("null entry")
                } else {
                    Ok(v)
                }
            }))?
            .then(Stage::map("store", |v: serde_json::Value| v.to_string().len()).workers(2))?;
        let server = serve_pipeline(
            std::net::TcpListener::bind(("127.0.0.1", port))?,
            pipeline,
            ServerConfig::default(),
        )?;
        server.stop_on_signals();
        println!(
            "listening on http://{}/ingest (SIGTERM or Ctrl-C to stop)",
            server.addr()
        );
        Ok(server.wait()?.items)
    };
    match run() {
        Ok(items) => println!("stopped cleanly after {items} entries"),
        Err(e) => {
            eprintln!("pipeline failed: {e}");
            std::process::exit(1);
        }
    }
}
