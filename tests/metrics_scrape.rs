//! The metrics reporter, scraped over loopback from the Prometheus exporter.
//! One test in its own binary: the metrics recorder is process-wide.
#![cfg(feature = "metrics")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};
use paipa::report::MetricsReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the exporter");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the first sample whose line starts with `name{` and has
/// every label.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn stage_counters_are_scraped_with_the_right_values() {
    common::within(Duration::from_secs(60), || {
        // The exporter binds the address it is given (before `install`
        // returns) and cannot say which port it got for port 0: take a free
        // port, and should another process bind it first, take another.
        let mut tries = 0;
        let addr = loop {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match PrometheusBuilder::new().with_http_listener(addr).install() {
                Ok(()) => break addr,
                Err(BuildError::FailedToCreateHTTPListener(e)) if tries < 5 => {
                    tries += 1;
                    eprintln!("exporter could not bind {addr} ({e}): another port");
                }
                Err(e) => panic!("installing the exporter on {addr}: {e}"),
            }
        };

        let debugger = Debugger::silent()
            .name("scrape")
            .interval(Duration::from_millis(20))
            .reporter(MetricsReporter::new());
        let summary = Pipeline::new()
            .debug(debugger)
            .source(0..1_000u64)
            .then(Stage::map("double", |x: u64| x * 2).workers(2))
            .unwrap()
            .then(Stage::try_map("odd_fails", |x: u64| if x % 4 == 2 { Err("odd half") } else { Ok(x) }).skip_errors())
            .unwrap()
            .then(Stage::map("count", |x: u64| {
                paipa::stats::count("seen", 1);
                x
            }))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 500);

        // The listener serves from a thread of its own: retry (until a
        // deadline, not a count: a loaded machine may be slow to start it).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::panic::catch_unwind(|| scrape(addr)).unwrap_or_default();
            if text.contains("paipa_stage_items_total") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let p = r#"pipeline="scrape""#;
        assert_eq!(
            value(&text, "paipa_stage_items_total", &[p, r#"stage="double""#]),
            Some(1000.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "paipa_stage_items_total", &[p, r#"stage="odd_fails""#]),
            Some(500.0)
        );
        assert_eq!(
            value(&text, "paipa_stage_skipped_total", &[p, r#"stage="odd_fails""#]),
            Some(500.0)
        );
        assert_eq!(
            value(&text, "paipa_stage_items_in_total", &[p, r#"stage="count""#]),
            Some(500.0)
        );
        assert_eq!(
            value(
                &text,
                "paipa_stage_counter_total",
                &[p, r#"stage="count""#, r#"counter="seen""#]
            ),
            Some(500.0)
        );
        assert_eq!(
            value(&text, "paipa_stage_workers", &[p, r#"stage="double""#]),
            Some(2.0)
        );
    });
}
