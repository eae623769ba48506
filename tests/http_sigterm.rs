//! SIGTERM during a load of concurrent clients: the server stops accepting,
//! drains everything it acknowledged, and the pipeline ends cleanly. One
//! test in its own binary: it signals its own process.
#![cfg(all(feature = "http", unix))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, within};
use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

#[test]
fn sigterm_under_load_drains_everything_accepted() {
    within(Duration::from_secs(60), || {
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink = seen.clone();
        let p = Pipeline::new()
            .then(Stage::map("store", move |id: u64| {
                std::thread::sleep(Duration::from_micros(200));
                sink.lock().unwrap().push(id);
            }))
            .unwrap();
        let server = serve_pipeline(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            p,
            ServerConfig::default(),
        )
        .unwrap();
        server.stop_on_signals(); // returns with the handler installed
        let addr = server.addr();
        let acks = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..4u64)
            .map(|c| {
                let acks = acks.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for r in 0..10_000u64 {
                        let id = c * 1_000_000 + r;
                        match http(addr, "POST", "/ingest", "application/json", id.to_string().as_bytes()) {
                            Ok((200, _, _)) => {
                                acked.push(id);
                                acks.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) | Err(_) => break, // refused or cut off: the server is stopping
                        }
                    }
                    acked
                })
            })
            .collect();
        // Signal once the load is on: some requests acknowledged (however
        // slowly a loaded machine gets there), most still to come.
        while acks.load(Ordering::SeqCst) < 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: plain libc calls; the signal is handled by the server.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        let mut acked: Vec<u64> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        let summary = server.wait().unwrap();
        let mut got = seen.lock().unwrap().clone();
        acked.sort_unstable();
        got.sort_unstable();
        assert!(!acked.is_empty());
        assert!(acked.len() < 40_000, "the load was cut by the signal");
        // Everything acknowledged was processed; a request cut off by the
        // shutdown may have been put without its reply arriving.
        assert!(
            acked.iter().all(|id| got.binary_search(id).is_ok()),
            "an acknowledged entry was lost"
        );
        assert_eq!(summary.items, got.len() as u64);
    });
}
