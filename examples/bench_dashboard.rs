//! What the live page costs a run: the same CPU-bound pipeline (2 workers
//! hashing, then a sum), reported every 100 ms, once with no page and once
//! serving the page to 10 clients that hold its event stream open and read
//! every update, alternated `ROUNDS` times in one process. Prints each
//! run's time and the ratio of the medians.
//!
//! `cargo run --release --features web --example bench_dashboard [-- ITEMS ROUNDS]`
//! (defaults: 3,000,000 items, 5 rounds).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use paipa::report::WebReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..200 {
        h = std::hint::black_box(
            h.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    h
}

fn run(items: u64, debugger: Debugger) -> Duration {
    let started = Instant::now();
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..items)
        .then(Stage::map("hash", work).workers(2))
        .expect("a valid stage")
        .run_with(|out| out.fold(0u64, u64::wrapping_add))
        .expect("the run");
    assert_eq!(summary.1.items, items);
    started.elapsed()
}

/// A client that holds the event stream open and reads every update.
fn viewer(addr: std::net::SocketAddr) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("request");
        let mut updates = 0;
        for line in BufReader::new(s).lines() {
            match line {
                Ok(l) if l.starts_with("data:") => updates += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        updates
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let items: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let every = Duration::from_millis(100);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain = run(items, Debugger::silent().interval(every));
        let web = WebReporter::bind("127.0.0.1:0")?;
        let viewers: Vec<_> = (0..10).map(|_| viewer(web.addr())).collect();
        while web.viewers() < 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let served = run(items, Debugger::silent().interval(every).reporter(web.clone()));
        drop(web); // the last clone: the server stops, the streams end
        let updates: u64 = viewers.into_iter().map(|v| v.join().unwrap_or(0)).sum();
        println!("round {round}: no page {plain:.2?}, page with 10 viewers {served:.2?} ({updates} updates read)");
        without.push(plain);
        with.push(served);
    }
    let (a, b) = (median(without), median(with));
    println!(
        "median: no page {a:.2?}, 10 viewers {b:.2?}: {:.3}x",
        b.as_secs_f64() / a.as_secs_f64()
    );
    Ok(())
}
