//! The ingestion server under its largest allowed bodies: how fast
//! `GET /health` answers while 8 MiB JSON arrays are read and parsed (off
//! the async workers), and the process's peak RSS. Loopback only, bounded:
//! 4 senders x 40 bodies of 2048 entries of 4000 bytes each, after 4 x 10
//! bodies of the same size holding about 4 M small numbers each (refused).
//!
//! Run: `cargo run --release --features http --example bench_ingest`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

const SENDERS: usize = 4;
const BODIES_PER_SENDER: usize = 40;
const ENTRIES: usize = 2048;
const ENTRY_BYTES: usize = 4000;

/// One HTTP/1.1 request; returns the status.
fn request(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    Ok(text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = Pipeline::new().then(Stage::map("store", |v: serde_json::Value| v.to_string().len()).workers(2))?;
    let server = serve_pipeline(
        std::net::TcpListener::bind("127.0.0.1:0")?,
        pipeline,
        ServerConfig::default(),
    )?;
    let addr = server.addr();
    let entry = format!("\"{}\"", "x".repeat(ENTRY_BYTES));
    let body = Arc::new(format!("[{}]", vec![entry; ENTRIES].join(",")));
    println!(
        "body: {} entries, {:.2} MiB (limit {:.0} MiB)",
        ENTRIES,
        body.len() as f64 / (1024.0 * 1024.0),
        ServerConfig::default().max_body_bytes as f64 / (1024.0 * 1024.0)
    );
    let rss_before = paipa::stats::resident_bytes().unwrap_or(0);

    // First, bodies of the largest size holding far too many small entries
    // (about 4 M numbers each): refused (413) without building the array.
    let small = Arc::new(format!("[{}1]", "1,".repeat((body.len() - 3) / 2)));
    let refusers: Vec<_> = (0..SENDERS)
        .map(|_| {
            let small = small.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    small.len()
                );
                (0..10).map(|_| request(addr, &head, small.as_bytes()).unwrap_or(0)).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut refusals = std::collections::BTreeMap::new();
    for r in refusers {
        for status in r.join().expect("sender") {
            *refusals.entry(status).or_insert(0u32) += 1;
        }
    }
    println!(
        "{} bodies of {:.2} MiB with {} entries each: statuses {refusals:?}; peak RSS so far {:.1} MiB",
        SENDERS * 10,
        small.len() as f64 / (1024.0 * 1024.0),
        small.len() / 2,
        paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );

    let sending = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let mut statuses = std::collections::BTreeMap::new();
                for _ in 0..BODIES_PER_SENDER {
                    let status = request(addr, &head, body.as_bytes()).unwrap_or(0);
                    *statuses.entry(status).or_insert(0u32) += 1;
                }
                statuses
            })
        })
        .collect();
    let prober = {
        let sending = sending.clone();
        std::thread::spawn(move || {
            let head = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut times = Vec::new();
            while sending.load(Ordering::SeqCst) && times.len() < 100_000 {
                let t = Instant::now();
                let status = request(addr, &head, b"").unwrap_or(0);
                times.push((t.elapsed(), status));
                std::thread::sleep(Duration::from_millis(2));
            }
            times
        })
    };
    let mut statuses = std::collections::BTreeMap::new();
    for s in senders {
        for (k, v) in s.join().expect("sender") {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    sending.store(false, Ordering::SeqCst);
    let mut times = prober.join().expect("prober");
    server.shutdown();
    let summary = server.wait()?;
    let bad = times.iter().filter(|(_, s)| *s != 200).count();
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize].0.as_secs_f64() * 1e3;
    println!(
        "{} bodies in {secs:.1} s ({:.0} MiB/s), statuses {statuses:?}, {} entries stored",
        SENDERS * BODIES_PER_SENDER,
        (SENDERS * BODIES_PER_SENDER * body.len()) as f64 / (1024.0 * 1024.0) / secs,
        summary.items
    );
    println!(
        "/health while parsing: {} probes ({bad} not 200), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "RSS before {:.1} MiB, peak {:.1} MiB",
        rss_before as f64 / (1024.0 * 1024.0),
        paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
