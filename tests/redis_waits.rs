//! A pipeline reading a Redis stream that goes quiet: what it was given is
//! processed while it waits, and every way of ending the run ends it (the
//! source's blocking read looks at the run between reads).
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use paipa::remote::{EdgeConfig, StreamSink, StreamSource, Tracked};
use paipa::threaded::{Pipeline, Stage};
use redis_server::{server, unique};

const LIMIT: Duration = Duration::from_secs(120);
const N: u64 = 1000;

/// Adds `N` entries and stays alive and quiet (no end marker) until the
/// returned sender is dropped.
fn quiet_producer(cfg: EdgeConfig) -> (crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>) {
    quiet_producer_of(cfg, N)
}

/// [`quiet_producer`] of `n` entries.
fn quiet_producer_of(cfg: EdgeConfig, n: u64) -> (crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>) {
    let (hold, held) = crossbeam_channel::bounded::<()>(0);
    let (added_tx, added_rx) = crossbeam_channel::bounded::<()>(0);
    let t = std::thread::spawn(move || {
        let mut sink = StreamSink::<u64>::open(cfg).unwrap();
        for i in 0..n {
            sink.add_with_id(i.to_string(), &i).unwrap();
        }
        sink.flush().unwrap();
        drop(added_tx);
        let _ = held.recv();
        drop(sink);
    });
    let _ = added_rx.recv();
    (hold, t)
}

/// The README's shape: a stream source, then a map that marks each entry
/// done. Returns the run and how many entries the map has finished.
fn consumer(cfg: EdgeConfig) -> (paipa::threaded::Running, Arc<AtomicU64>) {
    let (source, _handle) = StreamSource::<u64>::open(cfg).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let seen = done.clone();
    let running = Pipeline::new()
        .source(source)
        .then(Stage::map("work", move |t: Tracked<u64>| {
            seen.fetch_add(1, SeqCst);
            t.done();
        }))
        .unwrap()
        .spawn()
        .unwrap();
    (running, done)
}

#[test]
fn a_quiet_stream_s_entries_are_processed_and_every_ending_ends_the_run() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        for ending in ["stop", "abort", "drop"] {
            let cfg = EdgeConfig::new(&url, unique("quiet-"), "g").consumer("c1");
            let (hold, producer) = quiet_producer(cfg.clone());
            let (running, done) = consumer(cfg.clone());
            // All of them, while the producer stays quiet: none is held
            // back until more arrive.
            while done.load(SeqCst) < N {
                std::thread::sleep(Duration::from_millis(1));
            }
            match ending {
                "stop" => assert_eq!(running.stop().unwrap().snapshot.stages[1].count_in, N),
                "abort" => assert_eq!(running.abort().unwrap().snapshot.stages[1].count_in, N),
                _ => drop(running),
            }
            assert_eq!(done.load(SeqCst), N, "{ending}");
            drop(hold);
            producer.join().unwrap();
        }
    });
}

/// A stage that fails ends a run whose source waits on a quiet stream,
/// within a slice of the source's wait: 20 s is far above that (a source
/// that did not look at the run took 30 s here, until a reconnect).
#[test]
fn a_failing_stage_ends_a_run_reading_a_quiet_stream() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(Duration::from_secs(20), move || {
        let cfg = EdgeConfig::new(&url, unique("quiet-fail-"), "g").consumer("c1");
        let (hold, producer) = quiet_producer(cfg.clone());
        let (source, _handle) = StreamSource::<u64>::open(cfg).unwrap();
        let err = Pipeline::new()
            .source(source)
            // Two workers: when one fails, the other waits on the stream.
            .then(
                Stage::try_map("picky", |t: Tracked<u64>| {
                    if *t.value() == N - 1 {
                        Err(format!("no to {}", t.value()))
                    } else {
                        t.done();
                        Ok(())
                    }
                })
                .workers(2),
            )
            .unwrap()
            .run()
            .unwrap_err();
        match err {
            paipa::RunError::Step { stage, source, .. } => {
                assert_eq!(stage, "picky");
                assert_eq!(source.to_string(), format!("no to {}", N - 1));
            }
            other => panic!("the picky stage failed: {other}"),
        }
        drop(hold);
        producer.join().unwrap();
    });
}

/// A live consumer whose pipeline holds its entries far longer than
/// `claim_idle` keeps them: another consumer of the group claims none of
/// them (the holder refreshes their idle time), and each is processed
/// once.
#[test]
fn a_live_consumer_keeps_the_entries_it_holds_past_claim_idle() {
    use std::sync::Mutex;
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const IDLE: Duration = Duration::from_secs(1);
        const HELD: u64 = 20;
        let stream = unique("held-");
        let cfg = |me: &str| {
            EdgeConfig::new(&url, &stream, "g")
                .consumer(me)
                .claim_idle(IDLE)
                .unwrap()
        };
        let (hold, producer) = quiet_producer_of(cfg("p"), HELD);
        // c1: a pipeline whose stage waits at a gate with the entries.
        let (source, _h1) = StreamSource::<u64>::open(cfg("c1")).unwrap();
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let gate = Mutex::new(gate);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let running = Pipeline::new()
            .source(source)
            .then(Stage::map("hold", move |t: Tracked<u64>| {
                let _ = gate.lock().unwrap().recv();
                record.lock().unwrap().push(*t.value());
                t.done();
            }))
            .unwrap()
            .spawn()
            .unwrap();
        // Every entry is delivered to c1 before c2 starts.
        let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
        loop {
            let v: redis::Value = redis::cmd("XPENDING").arg(&stream).arg("g").query(&mut c).unwrap();
            let redis::Value::Array(p) = v else { panic!() };
            if redis::from_redis_value::<i64>(p[0].clone()).unwrap() == HELD as i64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // c2 reads and claims for five times claim_idle.
        let (mut c2, h2) = StreamSource::<u64>::open(cfg("c2")).unwrap();
        let stopper = h2.stop_flag();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for t in c2.by_ref() {
                got.push(*t.value());
                t.done();
            }
            got
        });
        std::thread::sleep(5 * IDLE);
        stopper.store(true, SeqCst);
        let claimed_by_c2 = reader.join().unwrap();
        assert_eq!(claimed_by_c2, Vec::<u64>::new(), "c2 claimed entries c1 holds");
        drop(open);
        while seen.lock().unwrap().len() < HELD as usize {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(hold);
        producer.join().unwrap();
        let s = running.stop().unwrap();
        assert_eq!(s.snapshot.stages[1].count_in, HELD);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..HELD).collect::<Vec<_>>());
        drop(h2);
    });
}
