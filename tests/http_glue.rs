//! The HTTP ingestion server over real loopback HTTP (feature `http`).
#![cfg(feature = "http")]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http, start, within};
use paipa::glue::{serve, serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

#[test]
fn every_accepted_entry_is_processed_exactly_once() {
    within(Duration::from_secs(60), || {
        let (server, seen) = start(ServerConfig::default());
        let addr = server.addr();
        let clients: Vec<_> = (0..4u64)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for r in 0..30u64 {
                        let base = c * 100_000 + r * 100;
                        let (ids, ctype, body): (Vec<u64>, &str, String) = match r % 3 {
                            0 => (vec![base], "application/json", base.to_string()),
                            1 => {
                                let ids: Vec<u64> = (base..base + 10).collect();
                                let body = format!("{ids:?}");
                                (ids, "application/json", body)
                            }
                            _ => {
                                let ids: Vec<u64> = (base..base + 5).collect();
                                let body = ids.iter().map(|i| format!("{i}\n")).collect();
                                (ids, "application/x-ndjson", body)
                            }
                        };
                        let (status, _, reply) = http(addr, "POST", "/ingest", ctype, body.as_bytes()).unwrap();
                        assert_eq!(status, 200, "{reply}");
                        assert_eq!(reply, format!("{{\"accepted\":{}}}", ids.len()));
                        acked.extend(ids);
                    }
                    acked
                })
            })
            .collect();
        let mut acked: Vec<u64> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        server.shutdown();
        let summary = server.wait().unwrap();
        let mut got = seen.lock().unwrap().clone();
        acked.sort_unstable();
        got.sort_unstable();
        assert_eq!(acked.len(), 4 * (10 + 10 * 10 + 10 * 5)); // singles, arrays of 10, NDJSON of 5
        assert_eq!(got, acked, "each acknowledged entry exactly once");
        assert_eq!(summary.items, acked.len() as u64);
    });
}

#[test]
fn malformed_and_oversized_bodies_are_refused_and_change_nothing() {
    within(Duration::from_secs(30), || {
        let config = ServerConfig {
            max_body_bytes: 1024,
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        let cases: [(&str, &str, &str); 4] = [
            ("application/json", "{not json", "invalid JSON"),
            ("application/json", "[1, \"x\", 3]", "entry 1"),
            ("application/json", "-5", "entry"),
            ("application/x-ndjson", "1\nzzz\n3\n", "line 2"),
        ];
        for (ctype, body, why) in cases {
            let (status, _, reply) = http(addr, "POST", "/ingest", ctype, body.as_bytes()).unwrap();
            assert_eq!(status, 400, "{body}: {reply}");
            assert!(reply.contains(why), "{body}: {reply}");
        }
        let big = format!("[{}]", vec!["1"; 2000].join(","));
        let (status, _, _) = http(addr, "POST", "/ingest", "application/json", big.as_bytes()).unwrap();
        assert_eq!(status, 413);
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (200, "ok\n"));
        let (status, _, reply) = http(addr, "GET", "/stats", "text/plain", b"").unwrap();
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(stats["stages"][1]["name"], "store");
        let (status, _, _) = http(addr, "GET", "/metrics", "text/plain", b"").unwrap();
        assert_eq!(status, 404, "no metrics hook set");
        server.shutdown();
        let summary = server.wait().unwrap();
        assert_eq!(summary.items, 0);
        assert!(seen.lock().unwrap().is_empty());
    });
}

#[test]
fn a_full_pipeline_answers_503_with_retry_after() {
    within(Duration::from_secs(30), || {
        let release = Arc::new(AtomicBool::new(false));
        let gate = release.clone();
        let p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .then(Stage::map("stuck", move |id: u64| {
                while !gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                id
            }))
            .unwrap();
        let config = ServerConfig {
            full_wait: Duration::from_millis(50),
            retry_after_secs: 3,
            metrics_text: Some(Arc::new(|| "paipa_test 1\n".to_string())),
            ..ServerConfig::default()
        };
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
        let addr = server.addr();
        let mut statuses = BTreeMap::new();
        let mut accepted = 0u64;
        let mut head_503 = String::new();
        for id in 0..50u64 {
            let (status, head, reply) =
                http(addr, "POST", "/ingest", "application/json", id.to_string().as_bytes()).unwrap();
            *statuses.entry(status).or_insert(0) += 1;
            if status == 200 {
                accepted += 1;
            } else {
                assert!(reply.contains("the pipeline is full"), "{reply}");
                head_503 = head;
            }
        }
        assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "{statuses:?}");
        assert!(accepted <= 10, "a full pipeline kept accepting: {accepted} accepted");
        assert!(head_503.to_ascii_lowercase().contains("retry-after: 3"), "{head_503}");
        let (status, _, reply) = http(addr, "GET", "/metrics", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (200, "paipa_test 1\n"));
        release.store(true, Ordering::SeqCst);
        server.shutdown();
        let summary = server.wait().unwrap();
        assert_eq!(summary.items, accepted, "everything acknowledged went through");
    });
}

#[test]
fn a_zero_body_limit_is_refused_before_serving() {
    within(Duration::from_secs(10), || {
        let zero = || ServerConfig {
            max_body_bytes: 0,
            ..ServerConfig::default()
        };
        let p = Pipeline::new().then(Stage::map("id", |x: u64| x)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = serve_pipeline(listener, p, zero()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid max_body_bytes: 0 (must be between 1 and 1073741824)"
        );

        // Through `serve`, with a pipeline already running: refused, and the
        // pipeline is closed and joined rather than left behind.
        let mut p = Pipeline::new().then(Stage::map("id", |x: u64| x)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = serve(listener, input, running, zero()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "invalid max_body_bytes: 0 (must be between 1 and 1073741824)"
        );
    });
}
