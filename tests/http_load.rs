//! A bounded load test of the ingestion server over loopback (feature
//! `http`): several keep-alive clients send a fixed amount of work, JSON
//! arrays and NDJSON, against a small pipeline that is held full until a
//! client has been refused with a `503`, so refusals are certain, not a
//! matter of timing. Clients resend a refused request whole. Only counts
//! are checked: every entry acknowledged is processed exactly once, and
//! nothing else is.
#![cfg(feature = "http")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::within;
use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

const CLIENTS: u64 = 8;
const REQUESTS: u64 = 500;

#[test]
fn keep_alive_clients_under_load_get_every_acknowledged_entry_processed_exactly_once() {
    within(Duration::from_secs(180), || {
        // The stage waits until a client has met a full pipeline.
        let released = Arc::new(AtomicBool::new(false));
        let gate = released.clone();
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink = seen.clone();
        let p = Pipeline::new()
            .capacity(64)
            .unwrap()
            .then(
                Stage::map("store", move |id: u64| {
                    while !gate.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    sink.lock().unwrap().push(id);
                })
                .workers(2),
            )
            .unwrap();
        let config = ServerConfig {
            max_entries: 32,
            full_wait: Duration::from_millis(5),
            retry_after_secs: 0,
            // No connection is closed for being slow or idle, however
            // loaded the machine: a cut keep-alive connection would leave
            // a request's fate unknown.
            header_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(300),
            body_timeout: Duration::from_secs(300),
            ..ServerConfig::default()
        };
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
        let url = format!("http://{}/ingest", server.addr());
        let full_refusals = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, released, full_refusals) = (url.clone(), released.clone(), full_refusals.clone());
                std::thread::spawn(move || {
                    // One agent per client: one connection, kept alive.
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
                    let mut acked = Vec::new();
                    let mut refused = 0u64;
                    for r in 0..REQUESTS {
                        let n = 1 + (c * 7 + r * 13) % 32;
                        let ids: Vec<u64> = (0..n).map(|i| c * 1_000_000 + r * 100 + i).collect();
                        let (content_type, body) = if r % 2 == 0 {
                            ("application/json", format!("{ids:?}"))
                        } else {
                            ("application/x-ndjson", ids.iter().map(|i| format!("{i}\n")).collect())
                        };
                        loop {
                            match agent.post(&url).set("Content-Type", content_type).send_string(&body) {
                                Ok(reply) => {
                                    let reply = reply.into_string().unwrap();
                                    assert_eq!(reply, format!(r#"{{"accepted":{n}}}"#));
                                    break;
                                }
                                Err(ureq::Error::Status(503, reply)) => {
                                    // Nothing of it was taken: resend it whole.
                                    let reply = reply.into_string().unwrap();
                                    assert!(reply.contains(r#""accepted":0"#), "{reply}");
                                    if reply.contains("the pipeline is full") {
                                        full_refusals.fetch_add(1, Ordering::SeqCst);
                                        released.store(true, Ordering::SeqCst);
                                    }
                                    refused += 1;
                                }
                                Err(e) => panic!("client {c}, request {r}: {e}"),
                            }
                        }
                        acked.extend(ids);
                    }
                    (acked, refused)
                })
            })
            .collect();
        let mut acked = Vec::new();
        let mut refused = 0;
        for client in clients {
            let (ids, r) = client.join().unwrap();
            acked.extend(ids);
            refused += r;
        }
        assert!(
            full_refusals.load(Ordering::SeqCst) > 0,
            "the stage waited for a refusal, so there was one"
        );
        assert!(refused >= full_refusals.load(Ordering::SeqCst));
        eprintln!(
            "{} entries acknowledged, {refused} requests refused and resent",
            acked.len()
        );
        assert_eq!(server.acknowledged(), acked.len() as u64);
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.unfinished(), 0);
        assert_eq!(drained.acknowledged, acked.len() as u64);
        let summary = drained.result.unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        acked.sort_unstable();
        assert_eq!(got.len(), acked.len(), "processed = acknowledged");
        assert_eq!(got, acked, "every acknowledged entry exactly once, nothing else");
        assert_eq!(summary.items, acked.len() as u64);
    });
}
