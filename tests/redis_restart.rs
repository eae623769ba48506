//! A restart of redis-server (AOF on) in the middle of a run: both ends
//! reconnect with backoff and go on; nothing acked is lost, nothing is
//! skipped, and the connection errors show in the stats.
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use paipa::remote::{EdgeConfig, StreamSink, StreamSource, Tracked};
use paipa::threaded::{Pipeline, Stage};
use redis_server::{own_server, unique};

#[test]
fn a_server_restart_mid_run_loses_nothing() {
    let Some(mut srv) = own_server() else { return };
    let url = srv.url.clone();
    const N: u64 = 60_000;
    let cfg = EdgeConfig::new(&url, unique("restart-"), "g")
        .consumer("c1")
        .batch(100)
        .unwrap()
        .max_len(5_000)
        .unwrap()
        // Entries delivered in a reply the restart cut off wait this long
        // on this consumer before it claims them back.
        .claim_idle(Duration::from_secs(2))
        .unwrap()
        .reconnect_deadline(Duration::from_secs(60));
    let (source, handle) = StreamSource::<u64>::open(cfg.clone()).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let producer = {
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let mut sink = StreamSink::<u64>::open(cfg).unwrap();
            for i in 0..N {
                sink.add_with_id(i.to_string(), &i).unwrap();
            }
            sink.finish().unwrap()
        })
    };
    let consumer = {
        let got = got.clone();
        std::thread::spawn(move || {
            let p = Pipeline::new()
                .source(source)
                .then(Stage::map("pass", |t: Tracked<u64>| t))
                .unwrap();
            let (seen, _) = p
                .run_with(|out| {
                    let mut seen = vec![0u32; N as usize];
                    for t in out {
                        seen[*t.value() as usize] += 1;
                        got.fetch_add(1, Ordering::Relaxed);
                        t.done();
                    }
                    seen
                })
                .unwrap();
            (seen, handle.finish().unwrap())
        })
    };
    within(Duration::from_secs(60), {
        let got = got.clone();
        move || {
            while got.load(Ordering::Relaxed) < N / 3 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    srv.restart();
    let (seen, sent, source_stats) = within(Duration::from_secs(240), move || {
        let sent = producer.join().unwrap();
        let (seen, stats) = consumer.join().unwrap();
        (seen, sent, stats)
    });
    let missing: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(sent.added >= N);
    // Duplicates are allowed (a batch resent after a lost reply, an entry
    // claimed back): at least once, with its origin id to deduplicate on.
    let dup: u64 = seen.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    assert!(
        sent.connection_errors + source_stats.connection_errors >= 1,
        "the restart was not seen: {sent:?} {source_stats:?}"
    );
    let mut c = srv.conn();
    let pending: redis::Value = redis::cmd("XPENDING").arg(cfg.stream()).arg("g").query(&mut c).unwrap();
    assert!(
        matches!(&pending, redis::Value::Array(p) if p[0] == redis::Value::Int(0)),
        "{pending:?}"
    );
    eprintln!(
        "restart: producer {} errors / {} reconnects, consumer {} errors / {} reconnects, {dup} duplicates",
        sent.connection_errors, sent.reconnects, source_stats.connection_errors, source_stats.reconnects
    );
}

#[test]
fn a_server_gone_for_good_fails_the_run_after_the_reconnect_deadline() {
    let Some(srv) = own_server() else { return };
    let url = srv.url.clone();
    let cfg = EdgeConfig::new(&url, unique("gone-"), "g")
        .consumer("c1")
        .batch(10)
        .unwrap()
        .reconnect_deadline(Duration::from_millis(500));
    let mut sink = StreamSink::<u64>::open(cfg.clone()).unwrap();
    for i in 0..1000u64 {
        sink.add_with_id(i.to_string(), &i).unwrap();
    }
    sink.flush().unwrap();
    let (mut source, handle) = StreamSource::<u64>::open(cfg).unwrap();
    for _ in 0..5 {
        source.next().unwrap().done();
    }
    drop(srv); // killed, its directory removed: it does not come back
    let (rest, err) = within(Duration::from_secs(60), move || {
        let rest = source.by_ref().map(Tracked::done).count();
        drop(source);
        (rest, handle.finish().unwrap_err())
    });
    let text = err.to_string();
    assert!(matches!(err, paipa::remote::RemoteError::Unreachable { .. }), "{text}");
    assert!(
        text.contains(url.trim_start_matches("redis://").trim_end_matches('/')),
        "{text}"
    );
    assert_eq!(rest, 5, "the rest of the batch it had read, then the end");
    let err = within(Duration::from_secs(60), move || {
        sink.add(&1).and_then(|_| sink.flush()).unwrap_err()
    });
    assert!(matches!(err, paipa::remote::RemoteError::Unreachable { .. }), "{err}");
}
