//! The ingestion server under slow senders: 16 clients (the default
//! `max_ingests`) each send a request head and then one body byte a
//! second, reconnecting whenever the server cuts them off (at
//! `body_timeout`), while one well-formed client posts an entry every
//! 500 ms. Prints how the well-formed posts were answered. Loopback only.
//!
//! Run: `cargo run --release --features http --example bench_slow_senders -- [seconds]`
//! (40 s unless given).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

/// One slow client: a head, then a byte a second until cut off; again.
fn trickle(addr: SocketAddr, stop: &AtomicBool, cut_off: &AtomicU64) {
    const HEAD: &[u8] =
        b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else { continue };
        if s.write_all(HEAD).is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            if s.write_all(b" ").is_err() {
                cut_off.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// One well-formed post; returns the status.
fn post(addr: SocketAddr, id: u64) -> u16 {
    let body = format!("[{id}]");
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = || -> std::io::Result<u16> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        Ok(text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
    };
    answer().unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(40), |s| s.parse())?;
    let pipeline = Pipeline::new().then(Stage::map("store", |id: u64| id))?;
    let server = serve_pipeline(
        std::net::TcpListener::bind("127.0.0.1:0")?,
        pipeline,
        ServerConfig::default(),
    )?;
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let cut_off = Arc::new(AtomicU64::new(0));
    let slow: Vec<_> = (0..16)
        .map(|_| {
            let (stop, cut_off) = (stop.clone(), cut_off.clone());
            std::thread::spawn(move || trickle(addr, &stop, &cut_off))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
    let mut id = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        *answers.entry(post(addr, id)).or_default() += 1;
        id += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        let _ = t.join();
    }
    server.shutdown();
    let summary = server.wait()?;
    println!(
        "{seconds} s, 16 slow senders (cut off {} times): well-formed posts answered {answers:?}; {} entries processed",
        cut_off.load(Ordering::Relaxed),
        summary.items
    );
    Ok(())
}
