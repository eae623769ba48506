//! SIGTERM with slow clients connected: a half-sent request line cannot
//! keep the server running past its shutdown deadline, and a second signal
//! closes a request still in flight at once. One test in its own binary: it
//! signals its own process.
#![cfg(all(feature = "http", unix))]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, within};
use paipa::glue::{serve_pipeline, Server, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

fn start(config: ServerConfig) -> (Server, Arc<Mutex<Vec<u64>>>) {
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = seen.clone();
    let p = Pipeline::new()
        .then(Stage::map("store", move |id: u64| sink.lock().unwrap().push(id)))
        .unwrap();
    let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
    server.stop_on_signals(); // returns with the handler installed
    (server, seen)
}

fn stalled(addr: SocketAddr, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(sent).unwrap();
    s
}

fn sigterm() {
    // SAFETY: plain libc calls; the signal is handled by the server.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

fn ack_some(addr: SocketAddr, base: u64) -> Vec<u64> {
    let mut acked = Vec::new();
    for r in 0..10u64 {
        let ids: Vec<u64> = (base + r * 5..base + r * 5 + 5).collect();
        let (status, _, reply) = http(
            addr,
            "POST",
            "/ingest",
            "application/json",
            format!("{ids:?}").as_bytes(),
        )
        .unwrap();
        assert_eq!((status, reply.as_str()), (200, r#"{"accepted":5}"#));
        acked.extend(ids);
    }
    acked
}

#[test]
fn sigterm_with_a_slow_loris_exits_by_the_deadline_and_a_second_signal_forces() {
    within(Duration::from_secs(90), || {
        // 1. A half request line and a single SIGTERM: out within the grace.
        let (server, seen) = start(ServerConfig {
            header_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(3),
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let acked = ack_some(addr, 0);
        let mut loris = stalled(addr, b"POST /ingest HTT");
        std::thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        sigterm();
        let summary = server.wait().unwrap();
        let took = signalled.elapsed();
        assert!(took < Duration::from_secs(10), "exit took {took:?}");
        let mut rest = Vec::new();
        let _ = loris.read_to_end(&mut rest); // closed (EOF or reset), not hanging
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, acked, "every acknowledged entry processed, once");
        assert_eq!(summary.items, 50);

        // 2. A request whose body never completes, a grace of 5 minutes:
        // the first SIGTERM waits for it, the second closes it at once.
        let (server, seen) = start(ServerConfig {
            body_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(300),
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let acked = ack_some(addr, 1000);
        let mut slow = stalled(
            addr,
            b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,",
        );
        std::thread::sleep(Duration::from_millis(200));
        sigterm();
        // Shutdown has started once the server stops accepting: wait for
        // that (if it never comes, `within` fails the test) before the
        // second signal, which would otherwise merge with the first.
        while TcpStream::connect(addr).is_ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let signalled = Instant::now();
        sigterm();
        let summary = server.wait().unwrap();
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "the second signal did not force: {took:?}"
        );
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest);
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, acked);
        assert_eq!(summary.items, 50);
    });
}
