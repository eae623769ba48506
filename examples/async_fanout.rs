//! The IO fan-out of issue 13 on an async stage: 10,000 requests of 20 ms
//! with 200 in flight, then a CPU stage, then a file sink. Prints the wall
//! time (the floor is 10,000 x 20 ms / 200 = 1.0 s), the most threads seen
//! during the run and the peak RSS.
//!
//! `cargo run --release --features async --example async_fanout [tokio]`:
//! with `tokio`, the same job written by hand as a tokio user would (a
//! `buffer_unordered(200)` stream of requests, an mpsc channel to a thread
//! that does the CPU work and writes the file), so that both can be run
//! one after the other and compared; each in its own process, since peak
//! RSS is the process's.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paipa::threaded::{Pipeline, Stage};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// The baseline: tokio by hand.
fn by_hand(file: &mut (impl Write + Send)) -> std::io::Result<u64> {
    use futures::StreamExt;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_time().build()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1024);
    std::thread::scope(|scope| {
        let cpu = scope.spawn(move || {
            let mut n = 0;
            for id in rx {
                file.write_all(format!("{id}:{}\n", id.wrapping_mul(2_654_435_761) % 1000).as_bytes())?;
                n += 1;
            }
            Ok::<u64, std::io::Error>(n)
        });
        runtime.block_on(async move {
            let mut done = futures::stream::iter(0..10_000u64)
                .map(|id| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    id
                })
                .buffer_unordered(200);
            while let Some(id) = done.next().await {
                // The channel is bounded; a full one blocks this runtime
                // thread briefly, as a hand-written pipeline would.
                tx.send(id).expect("the writer runs until the end");
            }
        });
        cpu.join().expect("writer thread")
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokio_by_hand = std::env::args().nth(1).as_deref() == Some("tokio");
    let (peak, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Relaxed) {
                peak.fetch_max(threads(), Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let before = threads(); // this thread and the sampler
    let path = std::env::temp_dir().join("paipa_async_fanout.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let started = Instant::now();
    if tokio_by_hand {
        let written = by_hand(&mut file)?;
        let elapsed = started.elapsed();
        done.store(true, Relaxed);
        sampler.join().unwrap();
        file.flush()?;
        println!(
            "tokio by hand: {written} items written in {elapsed:.2?}; threads: {before} before, {} at most; peak RSS {:.1} MiB",
            peak.load(Relaxed),
            paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        );
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    let (written, summary) = Pipeline::new()
        .source(0..10_000u64)
        .then(
            Stage::map_async("request", |id: u64| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                id
            })
            .in_flight(200),
        )?
        .then(Stage::map("cpu", |id: u64| {
            format!("{id}:{}\n", id.wrapping_mul(2_654_435_761) % 1000)
        }))?
        .run_with(|out| {
            out.map(|line| file.write_all(line.as_bytes()).map(|_| 1))
                .sum::<std::io::Result<u64>>()
        })?;
    let elapsed = started.elapsed();
    done.store(true, Relaxed);
    sampler.join().unwrap();
    file.flush()?;
    println!(
        "paipa: {} items written in {elapsed:.2?} (floor 1.00 s); threads: {} before, {} at most during the run; \
         peak RSS {:.1} MiB; cores {}",
        written?,
        before,
        peak.load(Relaxed),
        paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!("{:?}", summary.snapshot.verdict());
    let _ = std::fs::remove_file(path);
    Ok(())
}
