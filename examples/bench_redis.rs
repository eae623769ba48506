//! One hop through Redis Streams on loopback: paipa's `StreamSink` ->
//! `StreamSource` (acks by the source's acker) against a loop written by
//! hand on the same `redis` crate in the same run (XADD in a pipeline of
//! `batch`, XREADGROUP COUNT `batch`, one XACK per read), at batch sizes 1,
//! 100 and 1000; small entries (a u64 as JSON). Producer and consumer run
//! at the same time on two threads; the time is from the first XADD to the
//! last ack. Best of 5 runs each.
//!
//! Run: `cargo run --release --features redis --example bench_redis`
//! (uses `PAIPA_REDIS_URL`, else starts a redis-server of its own on a free
//! port in a temp dir, stopped at the end).
//!
//! `bench_redis scale`: the heavy stage CPU-bound (1 ms of CPU time per
//! entry, 8,000 entries), read by 1 and then 2 consumer processes (this
//! program again), alternately, 2 rounds each; the time from the first
//! consumer's start to the last one's exit.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paipa::remote::{self, EdgeConfig, StreamSink, StreamSource};
use redis::Value;

/// Our own server, killed on drop.
struct Server(Option<Child>, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn server() -> Result<(String, Server), Box<dyn std::error::Error>> {
    if let Ok(url) = std::env::var("PAIPA_REDIS_URL") {
        return Ok((url, Server(None, std::env::temp_dir().join("paipa-bench-none"))));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("paipa-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()?;
    let guard = Server(Some(child), dir);
    let url = format!("redis://127.0.0.1:{port}/");
    for _ in 0..500 {
        if let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                return Ok((url, guard));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("redis-server did not start".into())
}

fn paipa_hop(url: &str, stream: &str, batch: usize, n: u64) -> Result<Duration, Box<dyn std::error::Error>> {
    let edge = EdgeConfig::new(url, stream, "g")
        .consumer("c")
        .batch(batch)?
        .max_len(n as usize + batch)?;
    let (source, handle) = StreamSource::<u64>::open(edge.clone())?;
    let mut sink = StreamSink::<u64>::open(edge.clone())?;
    let started = Instant::now();
    let producer = std::thread::spawn(move || -> Result<(), remote::RemoteError> {
        for i in 0..n {
            sink.add(&i)?;
        }
        sink.finish().map(|_| ())
    });
    let mut sum = 0u64;
    for t in source {
        sum += *t.value();
        t.done();
    }
    let stats = handle.finish()?;
    let took = started.elapsed();
    producer.join().expect("producer")?;
    assert_eq!((sum, stats.acked), (n * (n - 1) / 2, n));
    remote::reset(&edge)?;
    Ok(took)
}

fn raw_hop(url: &str, stream: &str, batch: usize, n: u64) -> Result<Duration, Box<dyn std::error::Error>> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_connection()?;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut c)?;
    let mut p = client.get_connection()?;
    let started = Instant::now();
    let key = stream.to_string();
    let producer = std::thread::spawn(move || -> redis::RedisResult<()> {
        let mut sent = 0;
        while sent < n {
            let end = (sent + batch as u64).min(n);
            let mut pipe = redis::pipe();
            for i in sent..end {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("data")
                    .arg(serde_json::to_vec(&i).expect("json"))
                    .ignore();
            }
            pipe.query::<()>(&mut p)?;
            sent = end;
        }
        Ok(())
    });
    let (mut got, mut sum) = (0u64, 0u64);
    while got < n {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(batch)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query(&mut c)?;
        let Value::Array(streams) = reply else { continue };
        let Some(Value::Array(s)) = streams.into_iter().next() else {
            continue;
        };
        let Some(Value::Array(entries)) = s.into_iter().nth(1) else {
            continue;
        };
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            let Value::Array(mut parts) = e else { continue };
            let Value::Array(fields) = parts.pop().unwrap_or(Value::Nil) else {
                continue;
            };
            if let Some(Value::BulkString(data)) = fields.get(1) {
                sum += serde_json::from_slice::<u64>(data)?;
            }
            if let Some(Value::BulkString(id)) = parts.pop() {
                ids.push(id);
            }
        }
        got += ids.len() as u64;
        let _: Value = redis::cmd("XACK").arg(stream).arg("g").arg(&ids).query(&mut c)?;
    }
    let took = started.elapsed();
    producer.join().expect("producer")?;
    assert_eq!(sum, n * (n - 1) / 2);
    let _: Value = redis::cmd("DEL").arg(stream).query(&mut c)?;
    Ok(took)
}

/// This thread's CPU time (Linux).
fn thread_cpu() -> Duration {
    // SAFETY: a timespec is plain data; all zeros is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid for writes for the whole call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The heavy stage: `cpu` of this thread's CPU time.
fn burn(cpu: Duration, seed: u64) -> u64 {
    let until = thread_cpu() + cpu;
    let mut x = seed;
    while thread_cpu() < until {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

/// A consumer process of the scale run.
fn consume(url: &str, stream: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let edge = EdgeConfig::new(url, stream, "g").consumer(name).batch(10)?;
    let (source, handle) = StreamSource::<u64>::open(edge)?;
    let p = paipa::threaded::Pipeline::new()
        .source(source)
        .then(paipa::threaded::Stage::map(
            "heavy",
            |t: paipa::remote::Tracked<u64>| {
                let v = *t.value();
                t.map(|_| burn(Duration::from_millis(1), v))
            },
        ))?;
    let (n, _) = p.run_with(|out| out.map(paipa::remote::Tracked::done).count())?;
    handle.finish()?;
    println!("{name} {n}");
    Ok(())
}

fn scale(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    const N: u64 = 8_000;
    println!("scale: {N} entries, 1 ms of CPU each, read by 1 or 2 consumer processes");
    let mut best = [Duration::MAX; 2];
    for round in 0..4 {
        let consumers = 1 + round % 2;
        let stream = format!("bench-scale-{}-{round}", std::process::id());
        let edge = EdgeConfig::new(url, &stream, "g");
        let mut sink = StreamSink::<u64>::open(edge.clone())?;
        for i in 0..N {
            sink.add(&i)?;
        }
        sink.finish()?;
        let started = Instant::now();
        let kids: Vec<Child> = (0..consumers)
            .map(|i| {
                Command::new(std::env::current_exe()?)
                    .args(["consume", url, &stream, &format!("c{i}")])
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let mut total = 0u64;
        for kid in kids {
            let out = kid.wait_with_output()?;
            assert!(out.status.success(), "a consumer failed");
            let text = String::from_utf8_lossy(&out.stdout);
            total += text
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        let took = started.elapsed();
        assert_eq!(total, N, "every entry once");
        println!("  {consumers} consumer(s): {:.2} s", took.as_secs_f64());
        best[consumers - 1] = best[consumers - 1].min(took);
        remote::reset(&edge)?;
    }
    println!(
        "best: 1 consumer {:.2} s, 2 consumers {:.2} s: {:.2}x",
        best[0].as_secs_f64(),
        best[1].as_secs_f64(),
        best[1].as_secs_f64() / best[0].as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("consume") {
        return consume(&args[1], &args[2], &args[3]);
    }
    let (url, _server) = server()?;
    if args.first().map(String::as_str) == Some("scale") {
        return scale(&url);
    }
    if let [hop, which, batch, n] = &args[..] {
        // One hop alone (for a profiler): `hop paipa|raw BATCH ENTRIES`.
        if hop == "hop" {
            let (batch, n): (usize, u64) = (batch.parse()?, n.parse()?);
            let stream = format!("bench-hop-{}", std::process::id());
            let took = match which.as_str() {
                "raw" => raw_hop(&url, &stream, batch, n)?,
                _ => paipa_hop(&url, &stream, batch, n)?,
            };
            println!("{which} batch {batch}: {:.0} entries/s", n as f64 / took.as_secs_f64());
            return Ok(());
        }
    }
    println!("one hop through Redis Streams at {url}, best of 5 (entries/s)");
    println!(
        "{:>6} {:>9} {:>14} {:>14} {:>7}",
        "batch", "entries", "paipa", "by hand", "ratio"
    );
    for (batch, n) in [(1usize, 20_000u64), (100, 300_000), (1000, 1_000_000)] {
        let (mut best_paipa, mut best_raw) = (Duration::MAX, Duration::MAX);
        for round in 0..5 {
            let stream = format!("bench-{}-{batch}-{round}", std::process::id());
            best_raw = best_raw.min(raw_hop(&url, &format!("{stream}-raw"), batch, n)?);
            best_paipa = best_paipa.min(paipa_hop(&url, &format!("{stream}-paipa"), batch, n)?);
        }
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "{batch:>6} {n:>9} {:>14.0} {:>14.0} {:>6.2}x",
            rate(best_paipa),
            rate(best_raw),
            rate(best_paipa) / rate(best_raw)
        );
    }
    Ok(())
}
