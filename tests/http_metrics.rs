//! `GET /metrics` of the ingestion server with the `metrics` feature on.
//! Its own binary: the recorder is process-wide.
#![cfg(all(feature = "http", feature = "metrics"))]

mod common;

use std::time::{Duration, Instant};

use common::{http, within};
use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::report::MetricsReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

#[test]
fn metrics_endpoint_serves_prometheus_text_of_the_pipeline() {
    within(Duration::from_secs(60), || {
        let config = ServerConfig::default().with_prometheus().unwrap();
        let debugger = Debugger::silent()
            .name("ingest")
            .interval(Duration::from_millis(20))
            .reporter(MetricsReporter::new());
        let p = Pipeline::new()
            .debug(debugger)
            .then(Stage::map("store", |x: u64| x))
            .unwrap();
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
        let addr = server.addr();
        let (status, _, _) = http(addr, "POST", "/ingest", "application/json", b"[1,2,3,4,5]").unwrap();
        assert_eq!(status, 200);
        // Reported every 20 ms: poll until it shows (a deadline, not a
        // count of polls, which a loaded machine makes too short).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut text = String::new();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            text = http(addr, "GET", "/metrics", "text/plain", b"").unwrap().2;
            if text.contains(r#"paipa_stage_items_total{pipeline="ingest",stage="store"} 5"#) {
                break;
            }
        }
        assert!(
            text.contains(r#"paipa_stage_items_total{pipeline="ingest",stage="store"} 5"#),
            "{text}"
        );
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 5);
    });
}
