//! Edges across processes: this test binary runs itself again as a child
//! (a producer or a consumer) with the edge in its environment. A million
//! entries between two processes with exact counts; a consumer killed with
//! SIGKILL mid-run, after which every entry reaches a SQLite sink once
//! (INSERT OR IGNORE keyed by the origin id) and the only entries seen
//! twice are ones the killed consumer held unacked.
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::within;
use paipa::remote::{EdgeConfig, StreamSink, StreamSource, Tracked};
use paipa::threaded::{Pipeline, Stage};
use redis_server::{server, unique};

const LIMIT: Duration = Duration::from_secs(300);

/// Kills the child on drop (a failed test leaves no process behind).
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(role: &str, env: &[(&str, String)]) -> Kid {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_process", "--nocapture", "--test-threads", "1"])
        .env("PAIPA_CHILD", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Kid(cmd.spawn().unwrap())
}

/// The child's stdout from `prefix` to the end of its line (the test
/// harness writes there too, on the same line).
fn said(kid: &mut Kid, prefix: &str) -> String {
    let out = BufReader::new(kid.0.stdout.take().unwrap());
    out.lines()
        .map(Result::unwrap)
        .find_map(|l| l.find(prefix).map(|at| l[at..].to_string()))
        .unwrap_or_default()
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

fn child_edge() -> EdgeConfig {
    EdgeConfig::new(var("PAIPA_URL"), var("PAIPA_STREAM"), "g")
        .consumer(var("PAIPA_CHILD"))
        .batch(var("PAIPA_BATCH").parse().unwrap())
        .unwrap()
        .claim_idle(Duration::from_millis(var("PAIPA_IDLE_MS").parse().unwrap()))
        .unwrap()
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_process() {
    let Ok(role) = std::env::var("PAIPA_CHILD") else { return };
    let n: u64 = var("PAIPA_N").parse().unwrap();
    match role.as_str() {
        "producer" => {
            let mut sink = StreamSink::<u64>::open(child_edge()).unwrap();
            for i in 0..n {
                sink.add_with_id(i.to_string(), &i).unwrap();
            }
            let stats = sink.finish().unwrap();
            println!("added {}", stats.added);
        }
        consumer => {
            let db = rusqlite::Connection::open(var("PAIPA_DB")).unwrap();
            db.busy_timeout(Duration::from_secs(30)).unwrap();
            let (source, handle) = StreamSource::<u64>::open(child_edge()).unwrap();
            let p = Pipeline::new()
                .capacity(64)
                .unwrap()
                .source(source)
                .then(Stage::map("work", |t: Tracked<u64>| t))
                .unwrap();
            #[cfg(feature = "signals")]
            let p = if std::env::var("PAIPA_SIGNALS").is_ok() {
                p.stop_on_signals()
            } else {
                p
            };
            let throttle = std::env::var("PAIPA_SLOW").is_ok();
            let (_, summary) = p
                .run_with(|out| {
                    let mut out = out.peekable();
                    while out.peek().is_some() {
                        let batch: Vec<Tracked<u64>> = out.by_ref().take(50).collect();
                        if throttle {
                            std::thread::sleep(Duration::from_millis(2)); // holding them
                        }
                        let tx = db.unchecked_transaction().unwrap();
                        for t in &batch {
                            tx.execute(
                                "insert into seen (id, consumer, deliveries) values (?1, ?2, ?3)",
                                rusqlite::params![t.id(), consumer, t.deliveries() as i64],
                            )
                            .unwrap();
                            tx.execute("insert or ignore into sink (id) values (?1)", [t.id()])
                                .unwrap();
                        }
                        tx.commit().unwrap();
                        batch.into_iter().for_each(Tracked::done); // after the commit
                    }
                })
                .unwrap();
            let stats = handle.finish().unwrap();
            println!(
                "claimed {} read {} acked {} outcome {:?}",
                stats.claimed,
                stats.read,
                stats.acked,
                summary.outcome()
            );
        }
    }
}

#[test]
fn two_processes_move_a_million_entries_with_exact_counts() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 1_000_000;
        let stream = unique("million-");
        let env = [
            ("PAIPA_URL", url.clone()),
            ("PAIPA_STREAM", stream.clone()),
            ("PAIPA_BATCH", "1000".into()),
            ("PAIPA_IDLE_MS", "30000".into()),
            ("PAIPA_N", N.to_string()),
        ];
        let mut producer = child("producer", &env);
        let cfg = EdgeConfig::new(&url, &stream, "g")
            .consumer("parent")
            .batch(1000)
            .unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg).unwrap();
        let mut seen = vec![false; N as usize];
        let (mut count, mut sum) = (0u64, 0u64);
        for t in source {
            let v = *t.value();
            assert_eq!(t.id(), v.to_string());
            assert!(!std::mem::replace(&mut seen[v as usize], true), "{v} twice");
            count += 1;
            sum += v;
            t.done();
        }
        let stats = handle.finish().unwrap();
        assert!(producer.0.wait().unwrap().success());
        assert_eq!(said(&mut producer, "added"), format!("added {N}"));
        assert_eq!((count, sum), (N, N * (N - 1) / 2));
        assert_eq!((stats.read, stats.acked, stats.claimed), (N, N, 0));
    });
}

#[test]
fn after_a_consumer_is_killed_every_entry_reaches_the_sink_once() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 20_000;
        // Far above how long the survivor holds an entry, however slow
        // this machine: it must claim only the victim's entries, never
        // its own (the recovery time is printed, not asserted).
        let idle = Duration::from_millis(10_000);
        let (stream, db_path, db) = job(&url, "killed-", N);
        let dir = db_path.parent().unwrap().to_path_buf();
        let env = [
            ("PAIPA_URL", url.clone()),
            ("PAIPA_STREAM", stream.clone()),
            ("PAIPA_BATCH", "10".into()),
            ("PAIPA_IDLE_MS", idle.as_millis().to_string()),
            ("PAIPA_N", N.to_string()),
            ("PAIPA_DB", db_path.display().to_string()),
            ("PAIPA_SLOW", "1".into()),
        ];
        let mut victim = child("victim", &env);
        let mut survivor = child("survivor", &env);
        // Kill the victim once it has finished some entries.
        loop {
            let n: i64 = db
                .query_row("select count(*) from seen where consumer = 'victim'", [], |r| r.get(0))
                .unwrap();
            if n >= 500 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        let killed = Instant::now();
        // Recovery: how long until nothing is pending on the victim.
        let mut c = srv.conn();
        let recovered = loop {
            let v: redis::Value = redis::cmd("XPENDING")
                .arg(&stream)
                .arg("g")
                .arg("-")
                .arg("+")
                .arg(1)
                .arg("victim")
                .query(&mut c)
                .unwrap();
            if matches!(&v, redis::Value::Array(rows) if rows.is_empty()) {
                break killed.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(survivor.0.wait().unwrap().success());
        let line = said(&mut survivor, "claimed");
        eprintln!(
            "survivor: {line}; the victim's entries were claimed {recovered:?} after the kill (claim_idle {idle:?})"
        );

        let stored: i64 = db.query_row("select count(*) from sink", [], |r| r.get(0)).unwrap();
        assert_eq!(stored as u64, N, "every entry in the sink once");
        let mut rows: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let mut q = db
            .prepare("select id, consumer, deliveries from seen order by rowid")
            .unwrap();
        for r in q
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })
            .unwrap()
        {
            let (id, consumer, deliveries) = r.unwrap();
            rows.entry(id).or_default().push((consumer, deliveries));
        }
        assert_eq!(rows.len() as u64, N);
        let twice: Vec<_> = rows.iter().filter(|(_, seen)| seen.len() > 1).collect();
        for (id, seen) in &twice {
            // Seen by the victim (which died before acking it), then
            // redelivered to the survivor.
            assert_eq!(seen.len(), 2, "{id}: {seen:?}");
            assert_eq!(seen[0].0, "victim", "{id}: {seen:?}");
            assert_eq!(seen[1], ("survivor".to_string(), 2), "{id}: {seen:?}");
        }
        // Only entries the survivor claimed (from the victim's pending
        // list) can have come twice.
        let claimed: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(twice.len() <= claimed, "{} duplicates, {claimed} claimed", twice.len());
        eprintln!(
            "{} entries were seen twice (in flight on the killed consumer)",
            twice.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A stream of `n` entries (ids 0..n) and a SQLite sink for the children.
fn job(url: &str, name: &str, n: u64) -> (String, std::path::PathBuf, rusqlite::Connection) {
    let stream = unique(name);
    let dir = std::env::temp_dir().join(unique("paipa-sink-"));
    std::fs::create_dir_all(&dir).unwrap();
    let db_path = dir.join("sink.db");
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.execute_batch(
        "pragma journal_mode = wal;
         create table seen (id text not null, consumer text not null, deliveries integer not null);
         create table sink (id text primary key);",
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    let mut sink = StreamSink::<u64>::open(EdgeConfig::new(url, &stream, "g")).unwrap();
    for i in 0..n {
        sink.add_with_id(i.to_string(), &i).unwrap();
    }
    sink.finish().unwrap();
    (stream, db_path, db)
}

#[cfg(feature = "signals")]
#[test]
fn sigterm_finishes_and_acks_what_the_consumer_holds_and_leaves_the_rest_pending() {
    let Some(srv) = server() else { return };
    let url = srv.url.clone();
    within(LIMIT, move || {
        const N: u64 = 20_000;
        let (stream, db_path, db) = job(&url, "sigterm-", N);
        let env = [
            ("PAIPA_URL", url.clone()),
            ("PAIPA_STREAM", stream.clone()),
            ("PAIPA_BATCH", "10".into()),
            // It never needs to claim: its own entries must not come back
            // to it however slow this machine is.
            ("PAIPA_IDLE_MS", "600000".into()),
            ("PAIPA_N", N.to_string()),
            ("PAIPA_DB", db_path.display().to_string()),
            ("PAIPA_SLOW", "1".into()),
            ("PAIPA_SIGNALS", "1".into()),
        ];
        let mut stopped = child("stopped", &env);
        loop {
            let n: i64 = db.query_row("select count(*) from seen", [], |r| r.get(0)).unwrap();
            if n >= 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(stopped.0.id() as i32, libc::SIGTERM) }, 0);
        assert!(
            stopped.0.wait().unwrap().success(),
            "a SIGTERM ends the consumer cleanly"
        );
        let line = said(&mut stopped, "claimed");
        assert!(line.contains("Interrupted"), "{line}");
        let processed: i64 = db.query_row("select count(*) from seen", [], |r| r.get(0)).unwrap();
        let acked: i64 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
        assert_eq!(acked, processed, "everything it processed was acked: {line}");
        assert!((processed as u64) < N);

        // Another consumer finishes the job: what the stopped one had read
        // but not processed was left pending and is claimed; nothing twice.
        let cfg = EdgeConfig::new(&url, &stream, "g")
            .consumer("second")
            .batch(100)
            .unwrap()
            // Long enough that it never claims back entries of its own
            // while it processes a batch of 100.
            .claim_idle(Duration::from_millis(5000))
            .unwrap();
        let (source, handle) = StreamSource::<u64>::open(cfg).unwrap();
        let tx = db.unchecked_transaction().unwrap();
        for t in source {
            tx.execute(
                "insert into seen (id, consumer, deliveries) values (?1, 'second', ?2)",
                rusqlite::params![t.id(), t.deliveries() as i64],
            )
            .unwrap();
            tx.execute("insert or ignore into sink (id) values (?1)", [t.id()])
                .unwrap();
            t.done();
        }
        tx.commit().unwrap();
        handle.finish().unwrap();
        let stored: i64 = db.query_row("select count(*) from sink", [], |r| r.get(0)).unwrap();
        let rows: i64 = db.query_row("select count(*) from seen", [], |r| r.get(0)).unwrap();
        assert_eq!((stored as u64, rows as u64), (N, N), "every entry once, none twice");
        let _ = std::fs::remove_dir_all(db_path.parent().unwrap());
    });
}
