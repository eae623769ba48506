//! Edges on Redis Streams against a real server: exact counts through a
//! stream, acks only for finished items across filter / chunk / flatten /
//! fold, dead letters, backpressure, stop, bad settings, an unreachable
//! server.
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{keep_final, within};
use paipa::remote::{Codec, EdgeConfig, RemoteError, StreamSink, StreamSource, Tracked};
use paipa::threaded::{Pipeline, Stage};
use paipa::{EdgeGroup, Snapshot};
use redis_server::{server, unique};

const LIMIT: Duration = Duration::from_secs(120);

fn edge(url: &str, name: &str) -> EdgeConfig {
    EdgeConfig::new(url, unique(name), "g").consumer("c1")
}

fn produce(cfg: EdgeConfig, n: u64) -> std::thread::JoinHandle<paipa::remote::EdgeStats> {
    std::thread::spawn(move || {
        let mut sink = StreamSink::<u64>::open(cfg).unwrap();
        for i in 0..n {
            sink.add_with_id(i.to_string(), &i).unwrap();
        }
        sink.finish().unwrap()
    })
}

fn pending(url: &str, cfg: &EdgeConfig) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(cfg.stream())
        .arg(cfg.group())
        .query(&mut c)
        .unwrap();
    match v {
        redis::Value::Array(p) => redis::from_redis_value(p[0].clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_entry_goes_through_a_stream_once_and_is_acked() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 100_000;
        let cfg = edge(&url, "exact-").batch(500).unwrap().max_len(20_000).unwrap();
        let producer = produce(cfg.clone(), N);
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let p = Pipeline::new()
            .source(source)
            .then(Stage::map("double", |t: Tracked<u64>| t.map(|n| n * 2)).workers(2))
            .unwrap();
        let ((count, sum, ids), _) = p
            .run_with(|out| {
                let mut ids = HashSet::new();
                let (mut count, mut sum) = (0u64, 0u64);
                for t in out {
                    count += 1;
                    sum += *t.value();
                    assert!(ids.insert(t.id().to_string()), "twice: {}", t.id());
                    t.done();
                }
                (count, sum, ids)
            })
            .unwrap();
        let added = producer.join().unwrap();
        let stats = handle.finish().unwrap();
        assert_eq!(added.added, N);
        assert_eq!(count, N);
        assert_eq!(sum, N * (N - 1));
        assert_eq!(ids.len() as u64, N);
        assert_eq!(stats.read, N);
        assert_eq!(stats.acked, N);
        assert_eq!(pending(&url, &cfg), 0);
    });
}

#[test]
fn filter_chunk_flatten_and_fold_ack_each_entry_once_all_its_parts_are_done() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 10_000;
        let cfg = edge(&url, "shapes-").batch(100).unwrap().codec(Codec::Binary);
        let producer = produce(cfg.clone(), N);
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        // filter (odd ones finished here), flat_map into 3 parts, chunk of 7
        // (merge), then flatten back: the sink sees 3 parts per even entry.
        let p = Pipeline::new()
            .source(source)
            .then(Stage::iter(
                "filter+split",
                |it: paipa::threaded::InputIter<'_, Tracked<u64>>| {
                    it.filter_map(|t| t.filter(|n| n % 2 == 0))
                        .flat_map(|t| t.flat_map(|n| [n, n, n]))
                },
            ))
            .unwrap()
            .then(Stage::iter(
                "chunk",
                |it: paipa::threaded::InputIter<'_, Tracked<u64>>| {
                    let mut it = it.peekable();
                    std::iter::from_fn(move || {
                        let chunk: Vec<_> = it.by_ref().take(7).collect();
                        (!chunk.is_empty()).then(|| Tracked::merge(chunk))
                    })
                },
            ))
            .unwrap()
            .then(Stage::iter(
                "flatten",
                |it: paipa::threaded::InputIter<'_, Tracked<Vec<u64>>>| it.flat_map(|t| t.flat_map(|v| v)),
            ))
            .unwrap();
        let (parts, _) = p
            .run_with(|out| {
                let mut n = 0u64;
                for t in out {
                    n += 1;
                    t.done();
                }
                n
            })
            .unwrap();
        producer.join().unwrap();
        let stats = handle.finish().unwrap();
        assert_eq!(parts, 3 * N / 2);
        assert_eq!(stats.acked, N);
        assert_eq!(pending(&url, &cfg), 0);
    });
}

#[test]
fn a_failed_run_acks_only_what_the_sink_finished() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 5_000;
        let cfg = edge(&url, "abort-").batch(50).unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let p = Pipeline::new()
            .source(source)
            .then(Stage::map("fails at 3000", |t: Tracked<u64>| {
                if *t.value() == 3000 {
                    panic!("injected panic");
                }
                t
            }))
            .unwrap();
        common::quiet_injected_panics();
        let done = Arc::new(Mutex::new(0u64));
        let counted = done.clone();
        let result = p.run_with(move |out| {
            for t in out {
                t.done();
                *counted.lock().unwrap() += 1;
            }
        });
        assert!(result.is_err());
        let stats = handle.finish().unwrap();
        let done = *done.lock().unwrap();
        assert!(done < N);
        assert_eq!(stats.acked, done, "acked exactly what the sink finished");
        assert_eq!(pending(&url, &cfg) as u64, stats.read - done);
    });
}

#[test]
fn a_poison_entry_goes_to_the_dead_letter_stream_after_max_deliveries() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 200;
        let cfg = edge(&url, "poison-")
            .batch(10)
            .unwrap()
            .max_deliveries(3)
            .unwrap()
            .claim_idle(Duration::from_millis(300))
            .unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        let mut good = HashSet::new();
        for t in source {
            if *t.value() == 13 {
                seen.lock().unwrap().push(t.deliveries());
                t.fail("13 is unlucky");
            } else {
                // At least once (an ack slower than the idle time lets an
                // entry come back): counted as a set.
                good.insert(*t.value());
                t.done();
            }
        }
        let stats = handle.finish().unwrap();
        assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
        assert_eq!(good.len() as u64, N - 1);
        assert_eq!((stats.dead, stats.failed), (1, 2));
        assert_eq!(pending(&url, &cfg), 0);
        let mut c = srv.conn();
        let dead: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(cfg.dead_letter_stream())
            .arg("-")
            .arg("+")
            .query(&mut c)
            .unwrap();
        assert_eq!(dead.len(), 1);
        let text = format!("{dead:?}");
        assert!(text.contains("13 is unlucky"), "{text}");
        let fields: Vec<(String, String)> = match &dead[0] {
            redis::Value::Array(parts) => redis::from_redis_value::<Vec<(String, String)>>(parts[1].clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("id"), "13");
        assert_eq!(get("deliveries"), "3");
        assert_eq!(get("data"), "13");
    });
}

#[test]
fn an_entry_that_does_not_decode_goes_to_the_dead_letter_stream_at_once() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "undecodable-");
        let mut sink = StreamSink::<String>::open(cfg.clone()).unwrap();
        sink.add_with_id("a", &"not a number".to_string()).unwrap();
        sink.finish().unwrap();
        let mut c = srv.conn();
        let _: String = redis::cmd("XADD")
            .arg(cfg.stream())
            .arg("*")
            .arg("id")
            .arg("b")
            .arg("data")
            .arg("7")
            .query(&mut c)
            .unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let values: Vec<u64> = source
            .map(|t| {
                let v = *t.value();
                t.done();
                v
            })
            .collect();
        let stats = handle.finish().unwrap();
        assert_eq!(values, [7]);
        assert_eq!((stats.dead, stats.acked), (1, 1));
        let n: i64 = redis::cmd("XLEN").arg(cfg.dead_letter_stream()).query(&mut c).unwrap();
        assert_eq!(n, 1);
        assert_eq!(pending(&url, &cfg), 0);
    });
}

#[test]
fn a_slow_consumer_keeps_the_stream_within_its_bound_while_the_producer_waits() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 3_000;
        const BOUND: usize = 200;
        const BATCH: usize = 20;
        let cfg = edge(&url, "bound-").batch(BATCH).unwrap().max_len(BOUND).unwrap();
        // Create the group first so that the sampler sees it.
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let producer = produce(cfg.clone(), N);
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let running = running.clone();
            let (url, stream) = (url.clone(), cfg.stream().to_string());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
                let (mut most, mut samples) = (0i64, 0u64);
                while running.load(Ordering::Relaxed) {
                    let n: i64 = redis::cmd("XLEN").arg(&stream).query(&mut c).unwrap();
                    most = most.max(n);
                    samples += 1;
                }
                (most, samples)
            })
        };
        let mut got = 0u64;
        for t in source {
            std::thread::sleep(Duration::from_micros(200)); // the slow consumer
            got += 1;
            t.done();
        }
        running.store(false, Ordering::Relaxed);
        let (most, samples) = sampler.join().unwrap();
        let added = producer.join().unwrap();
        handle.finish().unwrap();
        assert_eq!(got, N);
        assert!(samples > 0);
        assert!((most as usize) < BOUND + BATCH, "stream reached {most} entries");
        assert!(added.trimmed >= N - (BOUND + BATCH) as u64, "trimmed {}", added.trimmed);
        assert!(added.waited > Duration::ZERO);
    });
}

#[test]
fn a_stopped_consumer_leaves_the_rest_for_another() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 2_000;
        let cfg = edge(&url, "stop-").batch(10).unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let mut ids = HashSet::new();
        for t in source {
            ids.insert(*t.value());
            t.done();
            if ids.len() == 500 {
                handle.stop();
            }
        }
        let first = handle.finish().unwrap();
        // What it had read it finished: nothing left pending on it.
        assert_eq!(first.acked as usize, ids.len());
        assert_eq!(pending(&url, &cfg), 0);
        let (source, handle) = StreamSource::<u64>::open(cfg.clone().consumer("c2")).unwrap();
        for t in source {
            assert!(ids.insert(*t.value()));
            t.done();
        }
        handle.finish().unwrap();
        assert_eq!(ids.len() as u64, N);
    });
}

#[test]
fn bad_settings_are_refused_with_the_field_named() {
    let e = EdgeConfig::new("redis://x/", "s", "g");
    assert_eq!(
        e.clone().batch(0).unwrap_err().to_string(),
        "invalid batch: 0 (must be from 1 to 1000000)"
    );
    assert_eq!(e.clone().max_len(0).unwrap_err().field(), "max_len");
    assert_eq!(e.clone().max_deliveries(0).unwrap_err().field(), "max_deliveries");
    assert_eq!(e.clone().claim_idle(Duration::ZERO).unwrap_err().field(), "claim_idle");
    assert_eq!(e.clone().block(Duration::ZERO).unwrap_err().field(), "block");
    assert_eq!(e.clone().producers(0).unwrap_err().field(), "producers");
    assert_eq!(
        e.linger(Duration::from_secs(61)).unwrap_err().to_string(),
        "invalid linger: 61s (must be at most 60s)"
    );
    let err = StreamSink::<u64>::open(EdgeConfig::new("nonsense://", "s", "g")).unwrap_err();
    assert!(matches!(err, RemoteError::Url { .. }), "{err}");
}

#[test]
fn claim_idle_past_a_year_is_refused_and_a_year_works() {
    let year = Duration::from_secs(365 * 24 * 3600);
    let e = EdgeConfig::new("redis://x/", "s", "g");
    let err = e.clone().claim_idle(Duration::from_secs(u64::MAX / 8)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid claim_idle: 2305843009213693951s (must be from 1ms to 365 days)"
    );
    assert_eq!(err.field(), "claim_idle");
    assert_eq!(e.clone().claim_idle(Duration::MAX).unwrap_err().field(), "claim_idle");
    assert_eq!(
        e.claim_idle(year + Duration::from_nanos(1)).unwrap_err().field(),
        "claim_idle"
    );
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        // At the bound, the server takes the idle time (in milliseconds)
        // in every command: all 100 entries are read, processed and acked.
        let cfg = edge(&url, "claim-year-").claim_idle(year).unwrap();
        produce(cfg.clone(), 100).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let summary = Pipeline::new()
            .source(source)
            .then(Stage::map("done", |t: Tracked<u64>| t.done()))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 100);
        let stats = handle.finish().unwrap();
        assert_eq!((stats.read, stats.acked), (100, 100));
        assert_eq!(pending(&url, &cfg), 0);
    });
}

#[test]
fn a_view_ttl_past_a_year_is_refused() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let publisher = || paipa::remote::Publisher::new(&url, &unique("ttl-"), "p").unwrap();
        let err = publisher()
            .ttl(Duration::from_secs(u64::MAX / 8))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid ttl: 2305843009213693951s (must be from 1s to 365 days)"
        );
        assert_eq!(
            publisher()
                .ttl(Duration::from_millis(999))
                .map(|_| ())
                .unwrap_err()
                .field(),
            "ttl"
        );
        assert!(publisher().ttl(Duration::from_secs(365 * 24 * 3600)).is_ok());
    });
}

#[test]
fn an_unreachable_server_fails_after_the_deadline_naming_the_address() {
    within(LIMIT, || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = EdgeConfig::new(format!("redis://127.0.0.1:{port}/"), "s", "g")
            .reconnect_deadline(Duration::from_millis(300));
        let err = StreamSink::<u64>::open(cfg).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    });
}

#[test]
fn two_consumers_holding_partial_chunks_both_end_without_claiming_from_each_other() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 2_500;
        // Idle time far beyond the test's limit: ending must not wait for a
        // claim (that would also process the other's entries twice).
        let cfg = edge(&url, "chunks-")
            .batch(50)
            .unwrap()
            .claim_idle(Duration::from_secs(3600))
            .unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let consumer = |name: &str| {
            let cfg = cfg.clone().consumer(name);
            std::thread::spawn(move || {
                let (source, handle) = StreamSource::<u64>::open(cfg).unwrap();
                let mut source = source.peekable();
                let mut got = Vec::new();
                // Chunks of 1000: the last one of each consumer is partial
                // and only flushed by its own end of input.
                while source.peek().is_some() {
                    let chunk = Tracked::merge(source.by_ref().take(1000));
                    got.extend(chunk.value().iter().copied());
                    chunk.done();
                }
                (got, handle.finish().unwrap())
            })
        };
        let (a, b) = (consumer("a"), consumer("b"));
        let (mut got, sa) = a.join().unwrap();
        let (got_b, sb) = b.join().unwrap();
        got.extend(got_b);
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        assert_eq!((sa.claimed, sb.claimed), (0, 0));
        assert_eq!(pending(&url, &cfg), 0);
    });
}

/// Runs `0..n` as tracked items through a sink stage on `cfg`, under
/// `debugger`.
fn produce_with(debugger: paipa::Debugger, cfg: &EdgeConfig, n: u64) -> paipa::threaded::Summary {
    Pipeline::new()
        .debug(debugger)
        .source(0..n)
        .then(Stage::map("track", |n: u64| Tracked::new(n.to_string(), n)))
        .unwrap()
        .then(StreamSink::stage("send", cfg.clone()))
        .unwrap()
        .run()
        .unwrap()
}

/// Job `job`'s views once one of them is final: the final report is
/// published as the run ends, or just after on a slow machine (bounded by
/// the caller's `within`).
fn final_views(url: &str, job: &str) -> Vec<paipa::remote::ProcessView> {
    loop {
        let views = paipa::remote::read_views(url, job).unwrap();
        if views.iter().any(|v| v.is_final) {
            break views;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_published_view_shows_the_stages_the_stream_and_the_bottleneck() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 2_000;
        let cfg = edge(&url, "view-");
        produce(cfg.clone(), N).join().unwrap();
        let job = unique("job-");
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let publisher = paipa::remote::Publisher::new(&url, &job, "worker-1")
            .unwrap()
            .edge(handle.watch());
        let p = Pipeline::new()
            .debug(paipa::Debugger::silent().reporter(publisher))
            .source(source)
            .then(Stage::map("heavy", |t: Tracked<u64>| {
                common::burn_cpu(Duration::from_micros(200), *t.value());
                t
            }))
            .unwrap();
        p.run_with(|out| out.for_each(Tracked::done)).unwrap();
        handle.finish().unwrap();
        let views = final_views(&url, &job);
        assert_eq!(views.len(), 1);
        let view = &views[0];
        assert_eq!(view.process, "worker-1");
        assert!(view.is_final);
        assert_eq!(view.stage_count("heavy"), Some(N));
        // The source shows in the snapshot and is named on the publisher:
        // one row, with its counters and the snapshot's reading (taken
        // after its last acks).
        let [edge] = &view.edges[..] else {
            panic!("one edge: {:?}", view.edges)
        };
        assert_eq!((edge.role.as_str(), edge.stats.read), ("source", N));
        let info = edge.info.as_ref().unwrap();
        assert_eq!(info.stream, cfg.stream());
        assert_eq!(info.length, N + 1, "the entries and the producer's end marker");
        let g = &info.groups[0];
        assert_eq!((g.name.as_str(), g.pending, g.lag, g.consumers), ("g", 0, Some(0), 1));
        let text = paipa::remote::table(&views);
        assert!(text.contains(cfg.stream()), "{text}");
        assert!(text.contains("bottleneck: heavy on worker-1"), "{text}");
    });
}

#[test]
fn a_publisher_shows_a_sink_stage_s_stream_without_being_told_of_it() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 500;
        let cfg = edge(&url, "pubsink-").batch(100).unwrap();
        let job = unique("job-");
        let publisher = paipa::remote::Publisher::new(&url, &job, "extract").unwrap();
        let summary = produce_with(paipa::Debugger::silent().reporter(publisher), &cfg, N);
        assert_eq!(summary.items, N);
        let views = final_views(&url, &job);
        let [edge] = &views[0].edges[..] else {
            panic!("one edge: {:?}", views[0].edges)
        };
        assert_eq!(edge.role, "sink");
        assert_eq!(edge.stats.stream, cfg.stream());
        let info = edge.info.as_ref().expect("the snapshot's reading");
        assert_eq!((info.stream.as_str(), info.length), (cfg.stream(), N + 1));
        let g = &info.groups[0];
        assert_eq!(
            (g.name.as_str(), g.pending, g.lag, g.consumers),
            ("g", 0, Some(N + 1), 0)
        );
        // The same figures as the run's own final snapshot.
        let [shown] = &summary.snapshot.edges[..] else {
            panic!("one edge: {:?}", summary.snapshot.edges)
        };
        assert_eq!((shown.length, shown.groups[0].lag), (Some(N + 1), Some(N + 1)));
        let text = paipa::remote::table(&views);
        let row = format!(
            "{:<24} {:>10} {:<16} {:>10} {:>10} {:>9}",
            cfg.stream(),
            N + 1,
            "g",
            0,
            N + 1,
            0
        );
        assert!(text.contains(&row), "{text}");
    });
}

#[test]
fn a_second_hop_keeps_the_origin_ids_and_acks_only_what_the_next_stream_has() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 10;
        let first = edge(&url, "hop1-");
        let second = edge(&url, "hop2-").batch(1000).unwrap();
        produce(first.clone(), N).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(first.clone()).unwrap();
        let mut sink = StreamSink::<u64>::open(second.clone()).unwrap();
        let mut source = source.peekable();
        for _ in 0..N {
            // Each entry becomes two items on the next stream.
            for part in source.next().unwrap().flat_map(|n| [n * 10, n * 10 + 1]) {
                sink.send(part).unwrap();
            }
        }
        // The sink holds them in its batch (1000): nothing acked upstream.
        assert_eq!(pending(&url, &first), N as i64);
        sink.flush().unwrap();
        while pending(&url, &first) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(source.next().is_none());
        drop(source);
        sink.finish().unwrap();
        assert_eq!(handle.finish().unwrap().acked, N);

        let (source, handle) = StreamSource::<u64>::open(second.clone()).unwrap();
        let mut got: Vec<(String, u64)> = source
            .map(|t| {
                let pair = (t.id().to_string(), *t.value());
                t.done();
                pair
            })
            .collect();
        handle.finish().unwrap();
        got.sort();
        let mut want: Vec<(String, u64)> = (0..N)
            .flat_map(|n| [(format!("{n}.0"), n * 10), (format!("{n}.1"), n * 10 + 1)])
            .collect();
        want.sort();
        assert_eq!(got, want);
    });
}

#[test]
fn a_consumer_waits_for_every_producer_it_was_told_of() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "two-producers-").batch(100).unwrap().producers(2).unwrap();
        // The first producer adds 0..1000 and finishes before the second
        // one starts; the second starts only once the consumer has read
        // all of the first's entries (the input must not end there).
        produce(cfg.clone(), 1000).join().unwrap();
        let (seen_first, first_read) = std::sync::mpsc::channel();
        let second = {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                first_read.recv().unwrap();
                let mut sink = StreamSink::<u64>::open(cfg).unwrap();
                for i in 1000..2000u64 {
                    sink.add_with_id(i.to_string(), &i).unwrap();
                }
                sink.finish().unwrap();
            })
        };
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let mut got = Vec::new();
        for t in source {
            got.push(*t.value());
            t.done();
            if got.len() == 1000 {
                seen_first.send(()).unwrap();
            }
        }
        second.join().unwrap();
        handle.finish().unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..2000).collect::<Vec<u64>>());
    });
}

/// A snapshot's edges without their ages (the same reading is older in
/// a later snapshot).
fn ageless(snapshot: &Snapshot) -> Vec<paipa::EdgeSnapshot> {
    let mut edges = snapshot.edges.clone();
    edges.iter_mut().for_each(|e| e.age = None);
    edges
}

fn xlen(c: &mut redis::Connection, stream: &str) -> u64 {
    redis::cmd("XLEN").arg(stream).query(c).unwrap()
}

#[test]
fn each_process_s_final_snapshot_shows_its_stream_s_length_pending_lag_and_consumers() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 1200;
        let cfg = edge(&url, "snapshot-").batch(100).unwrap();
        let stream = cfg.stream().to_string();

        // The producer: N entries, nobody reading yet. The stream then holds
        // them and the producer's end marker, all of them lag for the group.
        let (debugger, kept) = keep_final();
        let summary = produce_with(debugger, &cfg, N);
        assert_eq!(summary.items, N);
        // The edge's reading thread ("paipa-edge-" and the stream's name,
        // cut to 15 bytes) is joined before the run returns.
        assert_eq!(
            common::threads_named_settle("paipa-edge-snap"),
            0,
            "a probe thread outlived the run"
        );
        let reported = kept.lock().unwrap().take().expect("a final report");
        assert_eq!(ageless(&reported), ageless(&summary.snapshot));
        let [edge] = &reported.edges[..] else {
            panic!("one edge: {:?}", reported.edges)
        };
        assert_eq!(
            (edge.kind.as_str(), edge.name.as_str(), edge.role.as_str()),
            ("stream", stream.as_str(), "sink")
        );
        assert_eq!(edge.error, None);
        assert_eq!(edge.length, Some(N + 1));
        let group = |pending, lag, consumers| EdgeGroup {
            name: "g".into(),
            pending,
            lag: Some(lag),
            consumers,
        };
        assert_eq!(edge.groups, [group(0, N + 1, 0)]);
        let table = paipa::report::format_table(&reported);
        let line = format!("stream {stream}: length 1201, pending 0, lag 1201 (group g), consumers 0");
        assert!(table.contains(&line), "{table:#?}");
        #[cfg(feature = "json")]
        {
            let v = paipa::report::snapshot_json(&reported);
            assert_eq!(v["edges"][0]["length"], N + 1);
            assert_eq!(v["edges"][0]["groups"][0]["lag"], N + 1);
            assert_eq!(v["edges"][0]["stale"], false);
        }

        // The consumer reads everything and finishes every item: its final
        // snapshot comes after its last acks.
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let (debugger, kept) = keep_final();
        let (sum, summary) = Pipeline::new()
            .debug(debugger)
            .source(source)
            .then(Stage::map("double", |t: Tracked<u64>| t.map(|n| n * 2)))
            .unwrap()
            .run_with(|out| {
                out.map(|t| {
                    let v = *t.value();
                    t.done();
                    v
                })
                .sum::<u64>()
            })
            .unwrap();
        assert_eq!(
            common::threads_named_settle("paipa-edge-snap"),
            0,
            "a probe thread outlived the run"
        );
        assert_eq!(handle.finish().unwrap().acked, N);
        assert_eq!(sum, N * (N - 1));
        let reported = kept.lock().unwrap().take().expect("a final report");
        assert_eq!(ageless(&reported), ageless(&summary.snapshot));
        let [edge] = &reported.edges[..] else {
            panic!("one edge: {:?}", reported.edges)
        };
        assert_eq!((edge.name.as_str(), edge.role.as_str()), (stream.as_str(), "source"));
        assert_eq!(edge.error, None);
        assert_eq!(edge.length, Some(N + 1));
        assert_eq!(edge.groups, [group(0, 0, 1)]);
        let table = paipa::report::format_table(&reported);
        let line = format!("stream {stream}: length 1201, pending 0, lag 0 (group g), consumers 1");
        assert!(table.contains(&line), "{table:#?}");
    });
}

/// Puts 3 items into a sink stage with room for 1000 in a batch and keeps
/// the input open: the stream must get them by the linger alone.
fn a_quiet_input_s_partial_batch_is_sent(cfg: EdgeConfig, srv: &redis_server::Server) {
    let stream = cfg.stream().to_string();
    let mut p = Pipeline::new().then(StreamSink::<u64>::stage("send", cfg)).unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    input
        .put_all((0..3u64).map(|n| Tracked::new(format!("n{n}"), n)))
        .unwrap();
    let mut c = srv.conn();
    // Bounded by the test's time limit: a batch that waits for more items
    // or for the end fails it. The items may arrive one by one (the first
    // batches hold one item until the stage has measured one), so the
    // stream may hold 1 or 2 on the way.
    loop {
        match xlen(&mut c, &stream) {
            3 => break,
            0..=2 => std::thread::sleep(Duration::from_millis(2)),
            n => panic!("{n} entries"),
        }
    }
    assert!(input.is_open());
    drop(input);
    let summary = running.wait().unwrap();
    assert_eq!(summary.items, 3);
    assert_eq!(summary.snapshot.stage("send").unwrap().count_in, 3);
    // The 3 entries and the producer's end marker.
    assert_eq!(xlen(&mut c, &stream), 4);
    let entries: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let ids: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(parts) => {
                let fields: Vec<(String, String)> = redis::from_redis_value(parts[1].clone()).unwrap();
                fields.into_iter().find(|(k, _)| k == "id").map(|(_, v)| v)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["n0", "n1", "n2"]);
}

#[test]
fn a_sink_stage_sends_a_partial_batch_once_its_input_is_quiet_for_the_linger() {
    let Some(srv) = server() else { return };
    within(LIMIT, move || {
        // The default linger (20 ms).
        let cfg = edge(&srv.url, "linger-").batch(1000).unwrap();
        a_quiet_input_s_partial_batch_is_sent(cfg, &srv);
        // Zero: sent as soon as the input is empty.
        let cfg = edge(&srv.url, "linger0-")
            .batch(1000)
            .unwrap()
            .linger(Duration::ZERO)
            .unwrap();
        a_quiet_input_s_partial_batch_is_sent(cfg, &srv);
    });
}

/// A sink used by hand, in a loop over an iterator pipeline: no stage sees
/// it, so the program names it on the debugger, and the snapshots show it.
#[test]
fn a_sink_used_by_hand_shows_in_the_snapshot_when_named_on_the_debugger() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 1000;
        // Batches of 100: every entry is sent (and confirmed) by the time
        // the loop ends; only `finish` adds the end marker after it.
        let cfg = edge(&url, "by-hand-").batch(100).unwrap();
        let stream = cfg.stream().to_string();
        let mut sink = StreamSink::<u64>::open(cfg).unwrap();
        let (debugger, kept) = keep_final();
        let pipeline = paipa::iter::Pipeline::new(0..N).debug(debugger.edge(&sink.watch()));
        for n in pipeline {
            sink.add_with_id(n.to_string(), &n).unwrap();
        }
        let reported = kept.lock().unwrap().take().expect("a final report");
        let [edge] = &reported.edges[..] else {
            panic!("one edge: {:?}", reported.edges)
        };
        assert_eq!(
            (edge.name.as_str(), edge.role.as_str(), edge.error.as_deref()),
            (stream.as_str(), "sink", None)
        );
        assert_eq!(edge.length, Some(N));
        assert_eq!(
            edge.groups,
            [EdgeGroup {
                name: "g".into(),
                pending: 0,
                lag: Some(N),
                consumers: 0,
            }]
        );
        let table = paipa::report::format_table(&reported);
        let line = format!("stream {stream}: length 1000, pending 0, lag 1000 (group g), consumers 0");
        assert!(table.contains(&line), "{table:#?}");
        assert_eq!(sink.finish().unwrap().added, N);
    });
}

/// Puts `n` items into a sink stage on `cfg` through a live input, and
/// waits (bounded by the caller's `within`) until the stage has taken them.
fn sink_stage_holding(cfg: EdgeConfig, n: u64) -> (paipa::threaded::Running, paipa::threaded::Input<Tracked<u64>>) {
    let mut p = Pipeline::new().then(StreamSink::<u64>::stage("send", cfg)).unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    input.put_all((0..n).map(|i| Tracked::new(format!("n{i}"), i))).unwrap();
    let stats = running.stats();
    while stats.snapshot().stage("send").unwrap().count_in < n {
        std::thread::sleep(Duration::from_millis(2));
    }
    (running, input)
}

/// An abort while a sink stage holds a partial batch: nothing is sent, no
/// end marker is written (the run did not end), and the items it held are
/// counted as discarded, so the stage's books balance.
#[test]
fn an_aborted_sink_stage_sends_nothing_and_counts_what_it_held_as_discarded() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "held-")
            .batch(1000)
            .unwrap()
            .linger(Duration::from_secs(60))
            .unwrap();
        let stream = cfg.stream().to_string();
        let (running, _input) = sink_stage_holding(cfg, 3);
        let summary = running.abort().unwrap();
        let send = summary.snapshot.stage("send").unwrap();
        assert_eq!(
            (send.count_in, send.count, send.discarded, send.failed, send.skipped),
            (3, 0, 3, 0, 0),
            "{send:?}"
        );
        assert!(summary.stopped_early);
        assert_eq!(xlen(&mut srv.conn(), &stream), 0, "neither entries nor an end marker");
    });
}

/// A sink stage waiting for room in a full stream (nobody reads it) gives
/// up when the run is aborted, instead of holding the abort for ever.
#[test]
fn an_abort_ends_a_sink_stage_waiting_for_room_in_a_full_stream() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "full-").batch(1).unwrap().max_len(5).unwrap();
        let stream = cfg.stream().to_string();
        // 5 entries fill the stream; the 6th waits for room.
        let (running, _input) = sink_stage_holding(cfg, 6);
        let mut c = srv.conn();
        while xlen(&mut c, &stream) < 5 {
            std::thread::sleep(Duration::from_millis(2));
        }
        // The stop is not a failure: the abort returns the run's summary,
        // and the item that waited is counted as discarded.
        let summary = running.abort().unwrap();
        let send = summary.snapshot.stage("send").unwrap();
        assert_eq!(
            (send.count_in, send.count, send.discarded, send.failed, send.skipped),
            (6, 5, 1, 0, 0),
            "{send:?}"
        );
        assert_eq!(xlen(&mut c, &stream), 5);
    });
}

/// The fields of every entry of the edge's dead-letter stream.
fn dead_letters(c: &mut redis::Connection, cfg: &EdgeConfig) -> Vec<Vec<(String, String)>> {
    let dead: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(cfg.dead_letter_stream())
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap();
    dead.iter()
        .map(|e| match e {
            redis::Value::Array(parts) => redis::from_redis_value::<Vec<(String, String)>>(parts[1].clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> &'f str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

/// Entries with an error record in `<stream>:errors`.
fn error_records(c: &mut redis::Connection, cfg: &EdgeConfig) -> u64 {
    redis::cmd("HLEN").arg(cfg.errors_key()).query(c).unwrap()
}

#[test]
fn an_entry_that_fails_once_and_then_succeeds_leaves_no_error_record() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 10;
        let cfg = edge(&url, "errors-")
            .max_deliveries(3)
            .unwrap()
            .claim_idle(Duration::from_millis(200))
            .unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        let mut deliveries = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        for t in source {
            let v = *t.value();
            deliveries.entry(v).or_default().push(t.deliveries());
            // 0..5 fail on their first delivery and succeed on the second.
            if v < 5 && t.deliveries() == 1 {
                t.fail(format!("{v} not yet"));
            } else {
                t.done();
            }
        }
        let stats = handle.finish().unwrap();
        let want: std::collections::BTreeMap<u64, Vec<u64>> =
            (0..N).map(|v| (v, if v < 5 { vec![1, 2] } else { vec![1] })).collect();
        assert_eq!(deliveries, want);
        assert_eq!((stats.acked, stats.failed, stats.dead), (N, 5, 0));
        assert_eq!(pending(&url, &cfg), 0);
        assert_eq!(error_records(&mut srv.conn(), &cfg), 0, "error records left behind");
    });
}

#[test]
fn a_consumer_never_claims_back_the_entries_it_still_holds() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 6;
        let claim_idle = Duration::from_millis(200);
        let cfg = edge(&url, "self-claim-")
            .max_deliveries(2)
            .unwrap()
            .claim_idle(claim_idle)
            .unwrap();
        produce(cfg.clone(), N).join().unwrap();
        let (mut source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        // The consumer holds every entry (as a pipeline's queues would)...
        let held: Vec<Tracked<u64>> = (0..N).map(|_| source.next().unwrap()).collect();
        // ...for four times the claim time: the source's claim rounds (a
        // quarter of it apart) pass over them again and again. (Their idle
        // time on the server is kept short by the consumer's refresh.)
        let mut c = srv.conn();
        std::thread::sleep(4 * claim_idle);
        // Reading on must not bring them back: the input ends.
        let again: Vec<Tracked<u64>> = source.by_ref().collect();
        let again_ids: Vec<String> = again.iter().map(|t| t.id().to_string()).collect();
        let mut ids: Vec<String> = held.iter().map(|t| t.id().to_string()).collect();
        ids.sort();
        held.into_iter().chain(again).for_each(Tracked::done);
        drop(source);
        let stats = handle.finish().unwrap();
        assert_eq!(again_ids, Vec::<String>::new(), "claimed back what it held");
        assert_eq!(ids, (0..N).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(
            (stats.read, stats.claimed, stats.acked, stats.dead),
            (N, 0, N, 0),
            "{stats:?}"
        );
        assert_eq!(pending(&url, &cfg), 0);
        assert_eq!(dead_letters(&mut c, &cfg).len(), 0);
    });
}

/// How a step of the consumer's pipeline turns down the poison entry.
#[derive(Clone, Copy, Debug)]
enum TurnDown {
    /// `Stage::try_map` returns `Err` (the stage skips it).
    TryMapErr,
    /// The step fails the item's token.
    TokenFail,
}

/// The consumer pipeline of the poison tests: its step turns down entry 13
/// (recording each delivery in `attempts`), and counts how often every
/// other value reaches the end into `counts`. Returns the run's result.
fn poison_pipeline(
    cfg: &EdgeConfig,
    how: TurnDown,
    skip: bool,
    attempts: &Arc<Mutex<Vec<u64>>>,
    counts: &mut std::collections::HashMap<u64, u32>,
) -> (Result<(), paipa::RunError>, paipa::remote::EdgeStats) {
    let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
    let seen = attempts.clone();
    let p = Pipeline::new().source(source);
    let p = match how {
        TurnDown::TryMapErr => {
            let check = Stage::try_map("check", move |t: Tracked<u64>| {
                if *t.value() == 13 {
                    seen.lock().unwrap().push(t.deliveries());
                    return Err("13 is unlucky");
                }
                Ok(t)
            });
            // A tracked item is not `Clone`: skip or fail, never retry.
            let check = if skip { check.skip_errors() } else { check };
            p.then(check).unwrap()
        }
        TurnDown::TokenFail => p
            .then(Stage::iter(
                "check",
                move |it: paipa::threaded::InputIter<'_, Tracked<u64>>| {
                    let seen = seen.clone();
                    it.filter_map(move |t| {
                        if *t.value() == 13 {
                            seen.lock().unwrap().push(t.deliveries());
                            t.fail("13 is unlucky");
                            return None;
                        }
                        Some(t)
                    })
                },
            ))
            .unwrap(),
    };
    let result = p.run_with(|out| {
        for t in out {
            *counts.entry(*t.value()).or_default() += 1;
            t.done();
        }
    });
    (result.map(|_| ()), handle.finish().unwrap())
}

/// The one dead letter of the edge, as (id, deliveries, error, data).
fn the_dead_letter(c: &mut redis::Connection, cfg: &EdgeConfig) -> (String, String, String, String) {
    let dead = dead_letters(c, cfg);
    let [fields] = &dead[..] else {
        panic!("one dead letter: {dead:?}")
    };
    let get = |k| field(fields, k).to_string();
    (get("id"), get("deliveries"), get("error"), get("data"))
}

/// A consumer pipeline whose step turns down entry 13 every time: within
/// one run of one consumer, the entry is delivered exactly `max_deliveries`
/// times, then dead-lettered with the step's error; every other entry is
/// processed exactly once. (The source does not end its input while an
/// entry it delivered may still fail: it redelivers its own failed entries
/// at once; see `source.rs`.)
fn a_pipeline_dead_letters_the_poison(srv: &redis_server::Server, how: TurnDown) {
    // Entry 13, the poison, comes last: its first delivery is still in the
    // pipeline when the input could end.
    const N: u64 = 14;
    let url = srv.url.clone();
    let cfg = edge(&url, "pipe-poison-")
        .batch(10)
        .unwrap()
        .max_deliveries(3)
        .unwrap()
        .claim_idle(Duration::from_millis(300))
        .unwrap();
    produce(cfg.clone(), N).join().unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut counts = std::collections::HashMap::<u64, u32>::new();
    let mut c = srv.conn();
    let (result, stats) = poison_pipeline(&cfg, how, true, &attempts, &mut counts);
    result.unwrap();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(twice.len(), 0, "{how:?}: processed more than once: {twice:?}");
    assert_eq!(counts.len() as u64, N - 1, "{how:?}");
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3], "{how:?}");
    assert_eq!(
        (stats.read, stats.claimed, stats.acked, stats.failed, stats.dead),
        (N + 2, 2, N - 1, 2, 1),
        "{how:?}: {stats:?}"
    );
    assert_eq!(pending(&url, &cfg), 0, "{how:?}");
    assert_eq!(
        the_dead_letter(&mut c, &cfg),
        ("13".into(), "3".into(), "13 is unlucky".into(), "13".into()),
        "{how:?}"
    );
    assert_eq!(error_records(&mut c, &cfg), 0, "{how:?}");
}

#[test]
fn a_pipeline_consumer_dead_letters_a_poison_entry_after_exactly_max_deliveries() {
    let Some(srv) = server() else { return };
    within(LIMIT, move || {
        a_pipeline_dead_letters_the_poison(&srv, TurnDown::TokenFail);
        a_pipeline_dead_letters_the_poison(&srv, TurnDown::TryMapErr);
    });
}

/// A `try_map` step's own error reaches the dead letter of the entry whose
/// item it turned down, under a skip policy (the run goes on) and under
/// the default one (the run fails with that error): on its last allowed
/// delivery the entry goes to the dead-letter stream at once.
#[test]
fn a_try_map_error_reaches_the_dead_letter_under_each_policy() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 100;
        for skip in [true, false] {
            let cfg = edge(&url, "try-map-dead-")
                .batch(10)
                .unwrap()
                .max_deliveries(1)
                .unwrap()
                .claim_idle(Duration::from_millis(300))
                .unwrap();
            produce(cfg.clone(), N).join().unwrap();
            let attempts = Arc::new(Mutex::new(Vec::new()));
            let mut counts = std::collections::HashMap::new();
            let (result, stats) = poison_pipeline(&cfg, TurnDown::TryMapErr, skip, &attempts, &mut counts);
            if skip {
                result.unwrap();
                assert_eq!(counts.len() as u64, N - 1);
                assert_eq!(pending(&url, &cfg), 0);
            } else {
                let err = result.unwrap_err();
                assert!(err.to_string().contains("13 is unlucky"), "{err}");
            }
            assert_eq!(*attempts.lock().unwrap(), [1], "skip {skip}");
            assert_eq!((stats.dead, stats.failed), (1, 0), "skip {skip}: {stats:?}");
            assert_eq!(
                the_dead_letter(&mut srv.conn(), &cfg),
                ("13".into(), "1".into(), "13 is unlucky".into(), "13".into()),
                "skip {skip}"
            );
        }
    });
}

/// An entry its consumer fails after the consumer's input ended cannot be
/// delivered to it again: it stays pending with its error, and the next
/// consumer to read the stream delivers it (here for the last time, so it
/// goes to the dead-letter stream).
#[test]
fn an_entry_failed_after_its_consumer_s_input_ended_goes_to_the_next_consumer() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "late-fail-")
            .max_deliveries(2)
            .unwrap()
            .claim_idle(Duration::from_millis(200))
            .unwrap();
        produce(cfg.clone(), 3).join().unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        // Held in the caller's hands until the input has ended.
        let items: Vec<Tracked<u64>> = source.collect();
        assert_eq!(items.len(), 3);
        for t in items {
            if *t.value() == 1 {
                t.fail("1 failed late");
            } else {
                t.done();
            }
        }
        let first = handle.finish().unwrap();
        assert_eq!((first.acked, first.failed, first.dead), (2, 1, 0));
        assert_eq!(pending(&url, &cfg), 1);
        let mut c = srv.conn();
        let recorded: Option<String> = redis::cmd("HGET")
            .arg(cfg.errors_key())
            .arg({
                let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                    .arg(cfg.stream())
                    .arg(cfg.group())
                    .arg("-")
                    .arg("+")
                    .arg(10)
                    .query(&mut c)
                    .unwrap();
                rows[0].0.clone()
            })
            .query(&mut c)
            .unwrap();
        assert_eq!(recorded.as_deref(), Some("1 failed late"));

        let (source, handle) = StreamSource::<u64>::open(cfg.clone().consumer("c2")).unwrap();
        let mut seen = Vec::new();
        for t in source {
            seen.push((*t.value(), t.deliveries()));
            t.fail("1 failed again");
        }
        let second = handle.finish().unwrap();
        assert_eq!(seen, [(1, 2)]);
        assert_eq!((second.claimed, second.dead, second.failed), (1, 1, 0));
        assert_eq!(pending(&url, &cfg), 0);
        let dead = dead_letters(&mut c, &cfg);
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                field(&dead[0], "id"),
                field(&dead[0], "deliveries"),
                field(&dead[0], "error")
            ),
            ("1", "2", "1 failed again")
        );
        assert_eq!(error_records(&mut c, &cfg), 0);
    });
}

/// The origin ids of the entries pending in the group, sorted.
fn pending_origins(c: &mut redis::Connection, cfg: &EdgeConfig) -> Vec<String> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(cfg.stream())
        .arg(cfg.group())
        .arg("-")
        .arg("+")
        .arg(1000)
        .query(c)
        .unwrap();
    let mut ids: Vec<String> = rows
        .iter()
        .map(|(stream_id, ..)| {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(cfg.stream())
                .arg(stream_id)
                .arg(stream_id)
                .query(c)
                .unwrap();
            field(&entries[0].1, "id").to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// Waits until the source's handle shows a failure (the acker's: the test
/// keeps the source from reading meanwhile), and returns it.
fn failure_of(handle: &paipa::remote::SourceHandle) -> String {
    loop {
        if let Some(f) = handle.failure() {
            return f;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An acker whose command is refused (here `<stream>:errors` is no hash,
/// so recording a failure fails) ends its source's input with its error,
/// while the source lives: the source hands out nothing more (what it has
/// read stays pending), `finish` returns the error, and the acks of what
/// is finished, before the failure or after it, are still sent.
#[test]
fn an_acker_whose_command_is_refused_ends_the_input_and_still_sends_the_acks() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        let cfg = edge(&url, "acker-refused-")
            .batch(4)
            .unwrap()
            .claim_idle(Duration::from_secs(3600))
            .unwrap();
        produce(cfg.clone(), 8).join().unwrap();
        let mut c = srv.conn();
        let _: () = redis::cmd("SET")
            .arg(cfg.errors_key())
            .arg("not a hash")
            .query(&mut c)
            .unwrap();
        let (mut source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
        // One read of 4 entries; the source reads again (taking acks with
        // its read) only once it has handed out all 4: until then, only
        // the acker thread carries out what is queued.
        let [t0, t1, t2] = [(); 3].map(|_| source.next().unwrap());
        assert_eq!([*t0.value(), *t1.value(), *t2.value()], [0, 1, 2]);
        t0.done();
        t1.fail("1 failed");
        let failure = failure_of(&handle);
        assert!(failure.contains("HSET") && failure.contains("WRONGTYPE"), "{failure}");
        t2.done();
        let after: Vec<u64> = source.by_ref().map(|t| *t.value()).collect();
        assert_eq!(after, Vec::<u64>::new(), "handed out after the acker failed");
        drop(source);
        let err = handle.finish().unwrap_err();
        assert!(matches!(err, RemoteError::Command { command: "HSET", .. }), "{err}");
        // 0 and 2 acked; 1 (its failure not recorded) and 3 (read, never
        // handed out) pending; 4..8 never read.
        assert_eq!(pending_origins(&mut c, &cfg), ["1", "3"]);
    });
}

/// An acker that cannot reach the server past the reconnect deadline ends
/// its source's input with `Unreachable`, while the source lives: the
/// source hands out nothing more, `finish` returns the error, and the
/// entry whose ack could not be sent stays pending (redelivered, never
/// lost).
#[test]
fn an_unreachable_acker_ends_the_input_and_leaves_its_entries_pending() {
    let Some(mut srv) = redis_server::own_server() else {
        return;
    };
    let url = srv.url.clone();
    let cfg = edge(&url, "acker-gone-")
        .batch(4)
        .unwrap()
        .claim_idle(Duration::from_secs(3600))
        .unwrap()
        .reconnect_deadline(Duration::from_millis(300));
    produce(cfg.clone(), 8).join().unwrap();
    let (mut source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
    let [t0, t1] = [(); 2].map(|_| source.next().unwrap());
    srv.stop();
    let (source, handle, failure) = within(LIMIT, move || {
        t0.done();
        let failure = failure_of(&handle);
        let after: Vec<u64> = source.by_ref().map(|t| *t.value()).collect();
        assert_eq!(after, Vec::<u64>::new(), "handed out after the acker failed");
        t1.done();
        (source, handle, failure)
    });
    assert!(failure.contains("unreachable"), "{failure}");
    drop(source);
    let err = handle.finish().unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
    srv.start_again();
    // Nothing acked: the 4 entries read stay pending.
    assert_eq!(pending_origins(&mut srv.conn(), &cfg), ["0", "1", "2", "3"]);
}
