//! An IO fan-out on an async stage: 10,000 requests of 20 ms
//! with 200 in flight, then a CPU stage, then a file sink. Prints the wall
//! time (the floor is 10,000 x 20 ms / 200 = 1.0 s), the most threads seen
//! during the run and the peak RSS.
//!
//! `cargo run --release --features async --example async_fanout [tokio]
//! [--items N] [--ms M] [--in-flight K]` (10,000 items of 20 ms, 200 in
//! flight unless given; `--items 1000000 --ms 1 --in-flight 100000` is the
//! 100,000-in-flight run): with `tokio`, the same job written by hand as a
//! tokio user would (a `buffer_unordered(K)` stream of requests, an mpsc
//! channel to a thread
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

/// The job: `items` requests of `ms` each, `in_flight` at once.
#[derive(Clone, Copy)]
struct Job {
    items: u64,
    ms: u64,
    in_flight: usize,
}

impl Job {
    fn floor(&self) -> Duration {
        Duration::from_millis(self.ms) * (self.items as u32).div_ceil(self.in_flight as u32)
    }
}

fn parse_args() -> Result<(bool, Job), String> {
    let (mut tokio, mut job) = (
        false,
        Job {
            items: 10_000,
            ms: 20,
            in_flight: 200,
        },
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match a.as_str() {
            "tokio" => tokio = true,
            "--items" => job.items = value("--items")?,
            "--ms" => job.ms = value("--ms")?,
            "--in-flight" => job.in_flight = value("--in-flight")? as usize,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if job.in_flight == 0 || job.items == 0 {
        return Err("--items and --in-flight take at least 1".into());
    }
    Ok((tokio, job))
}

/// The baseline: tokio by hand.
fn by_hand(file: &mut (impl Write + Send), job: Job) -> std::io::Result<u64> {
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
            let mut done = futures::stream::iter(0..job.items)
                .map(|id| async move {
                    tokio::time::sleep(Duration::from_millis(job.ms)).await;
                    id
                })
                .buffer_unordered(job.in_flight);
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
    let (tokio_by_hand, job) = parse_args()?;
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
        let written = by_hand(&mut file, job)?;
        let elapsed = started.elapsed();
        done.store(true, Relaxed);
        sampler.join().unwrap();
        file.flush()?;
        println!(
            "tokio by hand: {written} items written in {elapsed:.2?} (floor {:.2?}); threads: {before} before, {} at most; peak RSS {:.1} MiB",
            job.floor(),
            peak.load(Relaxed),
            paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        );
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    let (written, summary) = Pipeline::new()
        .source(0..job.items)
        .then(
            Stage::map_async("request", move |id: u64| async move {
                tokio::time::sleep(Duration::from_millis(job.ms)).await;
                id
            })
            .in_flight(job.in_flight),
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
        "paipa: {} items written in {elapsed:.2?} (floor {:.2?}); threads: {} before, {} at most during the run; \
         peak RSS {:.1} MiB; cores {}",
        written?,
        job.floor(),
        before,
        peak.load(Relaxed),
        paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!("{:?}", summary.snapshot.verdict());
    let request = summary.snapshot.stage("request").expect("the async stage");
    if let (Some(p50), Some(p99)) = (request.latency.p50(), request.latency.p99()) {
        println!(
            "request latency: p50 {p50:.2?}, p99 {p99:.2?} ({} items)",
            request.latency.samples()
        );
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
