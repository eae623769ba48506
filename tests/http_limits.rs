//! The ingestion server against slow, idle, numerous and stalled clients
//! (feature `http`): every wait a client can impose is bounded, and the
//! books balance on both sides.
#![cfg(feature = "http")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, start, within, Seen};
use paipa::glue::{serve_pipeline, Server, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

/// A connection that sent `sent` and then nothing.
fn stalled(addr: SocketAddr, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(sent).unwrap();
    s
}

/// Whether the server has answered (or closed) `s` already, without
/// waiting.
fn answered(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = !matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    answered
}

/// Reads until the server closes the connection (or 20 s pass: an error).
fn read_until_closed(s: &mut TcpStream) -> std::io::Result<String> {
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(String::from_utf8_lossy(&raw).into_owned()),
        // A reset also means the server closed it.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(String::from_utf8_lossy(&raw).into_owned()),
        Err(e) => Err(e),
    }
}

/// Posts `ids` as one JSON array; returns the status.
fn post_ids(addr: SocketAddr, ids: &[u64]) -> (u16, String, String) {
    http(
        addr,
        "POST",
        "/ingest",
        "application/json",
        format!("{ids:?}").as_bytes(),
    )
    .unwrap()
}

#[test]
fn slow_clients_cannot_hold_shutdown_past_the_grace_deadline() {
    within(Duration::from_secs(60), || {
        let config = ServerConfig {
            header_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        let mut acked = Vec::new();
        for r in 0..20u64 {
            let ids: Vec<u64> = (r * 10..r * 10 + 10).collect();
            let (status, _, reply) = post_ids(addr, &ids);
            assert_eq!((status, reply.as_str()), (200, r#"{"accepted":10}"#));
            acked.extend(ids);
        }
        // Half a request line; a full head with half its body; an idle
        // keep-alive connection that was served once.
        let mut loris = stalled(addr, b"POST /inge");
        let mut slow_body = stalled(
            addr,
            b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,",
        );
        let mut idle = stalled(addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        std::thread::sleep(Duration::from_millis(200)); // every connection is accepted

        let asked = Instant::now();
        server.shutdown();
        let summary = server.wait().unwrap();
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "shutdown took {took:?} with slow clients"
        );
        for s in [&mut loris, &mut slow_body, &mut idle] {
            read_until_closed(s).expect("the server closed every slow connection");
        }
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(acked.len(), 200);
        assert_eq!(got, acked, "every acknowledged entry, once");
        assert_eq!(summary.items, 200);
    });
}

#[test]
fn a_half_sent_head_or_body_is_cut_off_by_its_timeout() {
    within(Duration::from_secs(60), || {
        let config = ServerConfig {
            header_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        let mut loris = stalled(addr, b"GET /hea");
        read_until_closed(&mut loris).expect("closed by header_timeout");
        let mut idle = stalled(addr, b"");
        read_until_closed(&mut idle).expect("an idle connection is closed by header_timeout");

        let mut slow_body = stalled(
            addr,
            b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,",
        );
        let reply = read_until_closed(&mut slow_body).expect("answered by body_timeout");
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(
            reply.ends_with(r#"{"accepted":0,"error":"the body did not arrive within 500ms"}"#),
            "{reply}"
        );

        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (200, "ok\n"));
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 0);
        assert!(seen.lock().unwrap().is_empty());
    });
}

/// Whether the server has closed `s` (or sent anything), without waiting.
fn closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let got = !matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    got
}

#[test]
fn idle_connections_make_room_and_connections_past_the_busy_limit_are_refused_cleanly() {
    within(Duration::from_secs(60), || {
        let config = ServerConfig {
            max_connections: 16,
            // Long enough that no idle one times out during the test.
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            retry_after_secs: 2,
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        // 16 idle connections take every place; a newcomer is served, and
        // one idle connection is closed to make room for it.
        let idle: Vec<TcpStream> = (0..16).map(|_| stalled(addr, b"")).collect();
        std::thread::sleep(Duration::from_millis(200)); // every one is accepted
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (200, "ok\n"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while idle.iter().filter(|s| closed(s)).count() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            idle.iter().filter(|s| closed(s)).count(),
            1,
            "one idle connection made room"
        );
        drop(idle);

        // 16 requests being handled (bodies half sent) take every place: 4
        // more connections and a request are each answered 503, then closed.
        const HALF: &[u8] = b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n[7";
        let mut busy: Vec<TcpStream> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while busy.len() < 16 && Instant::now() < deadline {
            // A connection still closing from above may refuse one: retry.
            let s = stalled(addr, HALF);
            std::thread::sleep(Duration::from_millis(20));
            if !closed(&s) {
                busy.push(s);
            }
        }
        assert_eq!(busy.len(), 16);
        let mut excess: Vec<TcpStream> = (0..4).map(|_| stalled(addr, b"")).collect();
        let refused = r#"{"accepted":0,"error":"too many connections"}"#;
        for s in &mut excess {
            let reply = read_until_closed(s).unwrap();
            assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
            assert!(reply.contains("retry-after: 2"), "{reply}");
            assert!(reply.ends_with(refused), "{reply}");
        }
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (503, refused));
        // The busy ones finish their requests and are answered.
        for s in &mut busy {
            s.write_all(b"]\n").unwrap();
            let reply = read_until_closed(s).unwrap();
            assert!(reply.ends_with(r#"{"accepted":1}"#), "{reply}");
        }
        let (status, _, _) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!(status, 200);
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.result.unwrap().items, 16);
        assert_eq!(*seen.lock().unwrap(), [7; 16]);
    });
}

#[path = "../products/src/send.rs"]
mod send;

/// The server's count of requests answered 503 because the pipeline was
/// full (`/stats`).
fn refused_full(addr: std::net::SocketAddr) -> u64 {
    let (status, _, reply) = http(addr, "GET", "/stats", "text/plain", b"").unwrap();
    assert_eq!(status, 200, "{reply}");
    let stats: serde_json::Value = serde_json::from_str(&reply).unwrap();
    stats["server"]["refused_full"].as_u64().expect("server.refused_full")
}

#[test]
fn a_stalled_pipeline_refuses_whole_requests_so_resending_never_duplicates() {
    within(Duration::from_secs(60), || {
        let release = Arc::new(AtomicBool::new(false));
        let gate = release.clone();
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let p = Pipeline::new()
            .capacity(16)
            .unwrap()
            .then(Stage::map("stalls", move |id: u64| {
                while !gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                sink.lock().unwrap().push(id);
            }))
            .unwrap();
        let config = ServerConfig {
            full_wait: Duration::from_millis(100),
            retry_after_secs: 1,
            ..ServerConfig::default()
        };
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
        let addr = server.addr();
        // Larger than the capacity: refused whole, and it says so.
        let (status, _, reply) = post_ids(addr, &(0..17).collect::<Vec<_>>());
        assert_eq!(status, 413, "{reply}");
        assert_eq!(
            reply,
            r#"{"accepted":0,"error":"17 entries are more than the pipeline's capacity: send fewer per request"}"#
        );
        // The stage stalls until the server has answered a request 503
        // (the pipeline full for `full_wait`): the client (the products
        // example's own sender) meets it and resends whole.
        let opener = std::thread::spawn(move || {
            while refused_full(addr) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            release.store(true, Ordering::SeqCst);
        });
        let url: hyper::Uri = format!("http://{addr}/ingest").parse().unwrap();
        let client = send::client(4);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut sent = Vec::new();
        let mut refused = 0;
        for b in 0..10u64 {
            let ids: Vec<u64> = (b * 7..b * 7 + 7).collect();
            let body = format!("{ids:?}").into_bytes().into();
            refused += rt.block_on(send::post_until_accepted(&client, &url, body)).unwrap();
            sent.extend(ids);
        }
        opener.join().unwrap();
        assert!(refused > 0, "the stall made the server answer 503");
        assert_eq!(server.acknowledged(), 70);
        server.shutdown();
        let summary = server.wait().unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, sent, "each sent entry processed exactly once, none twice");
        assert_eq!(summary.items, 70);
    });
}

#[test]
fn bodies_are_refused_in_json_whatever_the_reason() {
    within(Duration::from_secs(30), || {
        let config = ServerConfig {
            max_entries: 4,
            max_body_bytes: 64,
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        let cases: [(&str, &str, u16, &str); 6] = [
            (
                "application/json",
                "[1,2,3,4,5]",
                413,
                r#"{"accepted":0,"error":"more than 4 entries in one request (max_entries)"}"#,
            ),
            (
                "application/x-ndjson",
                "1\n2\n3\n4\n5\n",
                413,
                r#"{"accepted":0,"error":"more than 4 entries in one request (max_entries)"}"#,
            ),
            (
                "application/json",
                &"1 ".repeat(40),
                413,
                r#"{"accepted":0,"error":"the body is larger than 64 bytes"}"#,
            ),
            (
                "application/x-ndjson",
                "{",
                400,
                r#"{"accepted":0,"error":"line 1: invalid JSON: EOF while parsing an object at line 1 column 1"}"#,
            ),
            // Content types match case-insensitively, parameters ignored.
            (
                "Application/X-NDJSON; charset=utf-8",
                "1\n2\n",
                200,
                r#"{"accepted":2}"#,
            ),
            ("APPLICATION/JSON", "[3,4]", 200, r#"{"accepted":2}"#),
        ];
        for (ctype, body, status, reply) in cases {
            let got = http(addr, "POST", "/ingest", ctype, body.as_bytes()).unwrap();
            assert_eq!((got.0, got.2.as_str()), (status, reply), "{ctype} {body:?}");
            assert!(got.1.contains("content-type: application/json"), "{}", got.1);
        }
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 4);
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 4]);
    });
}

#[test]
fn zero_waits_and_limits_are_refused_with_field_and_value() {
    let cases: [(ServerConfig, &str); 4] = [
        (
            ServerConfig {
                full_wait: Duration::ZERO,
                ..ServerConfig::default()
            },
            "invalid full_wait: 0ns (must be between 1ms and 31536000s (365 days))",
        ),
        (
            ServerConfig {
                header_timeout: Duration::from_micros(10),
                ..ServerConfig::default()
            },
            "invalid header_timeout: 10µs (must be between 1ms and 31536000s (365 days))",
        ),
        (
            ServerConfig {
                max_connections: 0,
                ..ServerConfig::default()
            },
            "invalid max_connections: 0 (must be between 1 and 65536)",
        ),
        (
            ServerConfig {
                max_entries: 0,
                ..ServerConfig::default()
            },
            "invalid max_entries: 0 (must be between 1 and 16777216)",
        ),
    ];
    for (config, message) in cases {
        let p = Pipeline::new().then(Stage::map("id", |x: u64| x)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = serve_pipeline(listener, p, config).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

/// How the `check` stage (whose step fails on anything but a `u64`) meets
/// an error.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The stage sets no policy; the server's default (skip) applies.
    ServerDefault,
    /// The stage skips errors itself, under a server whose default fails.
    SkipsItself,
    /// The stage sets no policy; the server opts back into `Fail`.
    ServerFails,
    /// The stage fails explicitly, under the server's default (skip).
    FailsItself,
}

/// A pipeline whose `check` stage fails on anything but a `u64`, then a
/// `store` stage recording every id.
fn start_checked(check: Check) -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let stage = Stage::try_map("check", |v: serde_json::Value| v.as_u64().ok_or("not a number"));
    let (stage, skip_errors) = match check {
        Check::ServerDefault => (stage, true),
        Check::SkipsItself => (stage.skip_errors(), false),
        Check::ServerFails => (stage, false),
        Check::FailsItself => (stage.on_error(paipa::threaded::OnError::Fail), true),
    };
    let p = Pipeline::new()
        .then(stage)
        .unwrap()
        .then(Stage::map("store", move |id: u64| sink.lock().unwrap().push(id)))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ServerConfig {
        skip_errors,
        recent_errors: 2,
        ..ServerConfig::default()
    };
    (serve_pipeline(listener, p, config).unwrap(), seen)
}

/// `/stats` once the server's `skipped` count reaches `skipped` (the
/// pipeline gets there on its own; the test's time limit bounds the wait).
fn stats_once_skipped(addr: SocketAddr, skipped: u64) -> serde_json::Value {
    loop {
        let (status, _, reply) = http(addr, "GET", "/stats", "text/plain", b"").unwrap();
        assert_eq!(status, 200, "{reply}");
        let stats: serde_json::Value = serde_json::from_str(&reply).unwrap();
        if stats["server"]["skipped"].as_u64().unwrap() >= skipped {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Posts 20 requests of 10 ids each, with one poison entry (`null`) as a
/// request of its own after the 11th; returns the ids acknowledged.
fn post_with_a_poison(addr: SocketAddr) -> Vec<u64> {
    let mut acked = Vec::new();
    for r in 0..20u64 {
        let ids: Vec<u64> = (r * 10..r * 10 + 10).collect();
        assert_eq!(post_ids(addr, &ids).0, 200);
        acked.extend(ids);
        if r == 10 {
            let (status, _, reply) = http(addr, "POST", "/ingest", "application/json", b"null").unwrap();
            assert_eq!((status, reply.as_str()), (200, r#"{"accepted":1}"#));
        }
    }
    acked
}

#[test]
fn by_default_a_server_skips_poison_entries_lists_their_errors_and_processes_every_other_entry() {
    within(Duration::from_secs(60), || {
        let (server, seen) = start_checked(Check::ServerDefault);
        let addr = server.addr();
        let mut acked = post_with_a_poison(addr);
        // Poison among good entries of the same request: those are taken
        // and processed.
        let (status, _, reply) = http(addr, "POST", "/ingest", "application/json", b"[1000, \"x\", 1001, -1]").unwrap();
        assert_eq!((status, reply.as_str()), (200, r#"{"accepted":4}"#));
        acked.extend([1000, 1001]);
        // Still serving: more requests are taken after the poison.
        assert_eq!(post_ids(addr, &[2000, 2001]).0, 200);
        acked.extend([2000, 2001]);
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!(
            (status, reply.as_str()),
            (200, "ok\n"),
            "the poison did not stop the server"
        );

        let stats = stats_once_skipped(addr, 3);
        assert_eq!(stats["server"]["skipped"], 3);
        assert_eq!(stats["server"]["acknowledged"], 207);
        assert_eq!(stats["stages"][1]["name"], "check");
        assert_eq!(stats["stages"][1]["skipped"], 3, "the skips are the stage's too");
        // The latest two (`recent_errors: 2`), oldest first.
        let errors = stats["server"]["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for e in errors {
            assert_eq!(e["stage"], "check");
            assert_eq!(e["worker"], 0);
            assert_eq!(e["error"], "not a number");
            assert!(e["unix_time_s"].as_f64().unwrap() > 1.0e9, "{e}");
        }

        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.unfinished(), 0);
        let summary = drained.result.unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        acked.sort_unstable();
        assert_eq!(got, acked, "every acknowledged entry but the poison, once");
        assert_eq!(summary.items, 204);
        assert_eq!(drained.acknowledged, 207);
        assert_eq!(drained.snapshot.stage("check").unwrap().skipped, 3);
    });
}

#[test]
fn a_stage_that_skips_errors_itself_skips_them_under_a_server_that_fails() {
    within(Duration::from_secs(30), || {
        let (server, seen) = start_checked(Check::SkipsItself);
        let addr = server.addr();
        let acked = post_with_a_poison(addr);
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!(
            (status, reply.as_str()),
            (200, "ok\n"),
            "the poison did not stop the server"
        );
        let stats = stats_once_skipped(addr, 1);
        assert_eq!(stats["stages"][1]["name"], "check");
        assert_eq!(stats["stages"][1]["skipped"], 1, "the poison is visible in /stats");
        assert_eq!(stats["server"]["errors"][0]["error"], "not a number");
        assert_eq!(stats["server"]["acknowledged"], 201);
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.unfinished(), 0);
        let summary = drained.result.unwrap();
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, acked, "every acknowledged entry but the poison, once");
        assert_eq!(summary.items, 200);
        assert_eq!(drained.acknowledged, 201);
    });
}

#[test]
fn a_poison_entry_that_fails_the_run_reports_exactly_what_was_not_processed() {
    // Fail by the server's setting, or by the stage's own.
    for check in [Check::ServerFails, Check::FailsItself] {
        within(Duration::from_secs(30), move || {
            let (server, seen) = start_checked(check);
            let addr = server.addr();
            for r in 0..20u64 {
                let ids: Vec<u64> = (r * 10..r * 10 + 10).collect();
                assert_eq!(post_ids(addr, &ids).0, 200);
            }
            let (status, _, _) = http(addr, "POST", "/ingest", "application/json", b"null").unwrap();
            assert_eq!(status, 200, "the entry is well-formed JSON: acknowledged");
            // The run fails: later requests are refused with Retry-After,
            // and /health says so.
            let mut acked_late = 0;
            let (status, head, reply) = loop {
                let r = post_ids(addr, &[999_999]);
                if r.0 != 200 {
                    break r;
                }
                acked_late += 1; // taken before the failure stopped the input
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(status, 503, "{check:?}: {reply}");
            assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
            assert_eq!(
                reply,
                r#"{"accepted":0,"error":"the pipeline no longer takes input","of":1}"#
            );
            let (status, _, _) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
            assert_eq!(status, 503);
            server.shutdown();
            let drained = server.finish();
            let err = drained.result.as_ref().unwrap_err();
            assert_eq!(err.stage(), Some("check"), "{check:?}");
            let processed = seen.lock().unwrap().len() as u64;
            assert!(drained.unfinished() >= 1, "the poison itself");
            // The books: every acknowledged entry came out of the last
            // stage, was skipped, or is reported unfinished, exactly once.
            let stages = &drained.snapshot.stages;
            let delivered = stages.last().unwrap().count;
            let skipped: u64 = stages.iter().map(|s| s.skipped).sum();
            assert_eq!(
                delivered + skipped + drained.unfinished(),
                drained.acknowledged,
                "{check:?}: {stages:?}"
            );
            // None is lost: what the store did not process is reported
            // unfinished. An entry the store processed just before the
            // failure, whose output had not reached the server's drain
            // yet, is reported unfinished too (at least once, never lost).
            assert!(processed >= delivered, "{check:?}");
            assert!(
                processed + drained.unfinished() >= drained.acknowledged,
                "{check:?}: every acknowledged entry is processed or reported unfinished"
            );
            assert!(
                processed < drained.acknowledged,
                "{check:?}: the poison is not processed"
            );
            assert_eq!(drained.acknowledged, 201 + acked_late);
        });
    }
}

#[test]
fn numbers_are_decoded_as_serde_json_decodes_them_and_typed_entries_refuse_what_they_cannot_hold() {
    within(Duration::from_secs(30), || {
        // Typed entries: a number that does not fit is refused.
        let (server, seen) = start(ServerConfig::default());
        let addr = server.addr();
        let (status, _, reply) = http(
            addr,
            "POST",
            "/ingest",
            "application/json",
            b"[1, 18446744073709551616]",
        )
        .unwrap();
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains("entry 1"), "{reply}");
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 0);
        assert!(seen.lock().unwrap().is_empty());

        // JSON values: decoded as serde_json decodes them by default
        // (integers within 64 bits exact, other numbers as f64), never as
        // text.
        let texts: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = texts.clone();
        let p = Pipeline::new()
            .then(Stage::map("store", move |v: serde_json::Value| {
                sink.lock().unwrap().push(v.to_string())
            }))
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = serve_pipeline(listener, p, ServerConfig::default()).unwrap();
        let body = "[18446744073709551615, -9223372036854775808, 123456789012345678901234567890, 0.1]";
        let (status, _, reply) = http(server.addr(), "POST", "/ingest", "application/json", body.as_bytes()).unwrap();
        assert_eq!((status, reply.as_str()), (200, r#"{"accepted":4}"#));
        server.shutdown();
        server.wait().unwrap();
        assert_eq!(
            *texts.lock().unwrap(),
            [
                "18446744073709551615",
                "-9223372036854775808",
                "1.2345678901234568e+29",
                "0.1"
            ]
        );
    });
}

/// A pipeline of capacity 2 whose stage waits until `release` is set.
fn start_stalled(config: ServerConfig, release: Arc<AtomicBool>) -> Server {
    let p = Pipeline::new()
        .capacity(2)
        .unwrap()
        .then(Stage::map("stalls", move |id: u64| {
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            id
        }))
        .unwrap();
    serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap()
}

#[test]
fn idle_connections_are_closed_but_a_slow_request_is_not() {
    within(Duration::from_secs(60), || {
        let release = Arc::new(AtomicBool::new(false));
        let config = ServerConfig {
            header_timeout: Duration::from_secs(120),
            // Long enough that no load lets it fire between a client's
            // connect and its first write (the kept connection below).
            idle_timeout: Duration::from_secs(1),
            full_wait: Duration::from_secs(3),
            ..ServerConfig::default()
        };
        let server = start_stalled(config, release.clone());
        let addr = server.addr();
        // Opened and never used.
        let mut unused = stalled(addr, b"");
        assert_eq!(read_until_closed(&mut unused).unwrap(), "");
        // Kept alive after one request.
        let mut kept = stalled(addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let reply = read_until_closed(&mut kept).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok\n"), "{reply}");
        // Fill the pipeline (the stage holds one, the edge two), then a
        // request that waits 3 s for room, three idle timeouts: answered.
        for id in 0..3u64 {
            let (status, _, reply) = post_ids(addr, &[id]);
            assert_eq!(status, 200, "{reply}");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (status, _, reply) = loop {
            let r = post_ids(addr, &[99]);
            if r.0 != 200 || Instant::now() > deadline {
                break r;
            }
        };
        assert_eq!(status, 503, "{reply}");
        assert_eq!(reply, r#"{"accepted":0,"error":"the pipeline is full","of":1}"#);
        release.store(true, Ordering::SeqCst);
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.result.unwrap().items, drained.acknowledged);
    });
}

#[test]
fn slow_senders_hold_only_the_bytes_they_sent_and_bodies_past_the_byte_bound_are_refused_at_once() {
    within(Duration::from_secs(90), || {
        // 16 clients (max_ingests) send a head and part of a body, then
        // trickle nothing more for the whole test: each holds its
        // connection and the bytes it sent, never a turn of another client.
        let (server, seen) = start(ServerConfig::default());
        let addr = server.addr();
        const SLOW: &[u8] = b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,";
        let slow: Vec<TcpStream> = (0..16).map(|_| stalled(addr, SLOW)).collect();
        std::thread::sleep(Duration::from_millis(200)); // every one is accepted
        for id in 0..100u64 {
            let (status, _, reply) = post_ids(addr, &[id]);
            assert_eq!((status, reply.as_str()), (200, r#"{"accepted":1}"#), "request {id}");
        }
        drop(slow);
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.result.unwrap().items, 100);
        assert_eq!(seen.lock().unwrap().len(), 100);

        // Bodies being received hold at most max_ingests × max_body_bytes
        // (here 1 × 1024 bytes): past it, 503 at once, nothing taken.
        let config = ServerConfig {
            max_ingests: 1,
            max_body_bytes: 1024,
            retry_after_secs: 4,
            ..ServerConfig::default()
        };
        let (server, seen) = start(config);
        let addr = server.addr();
        // 70 entries padded to 1020 bytes: 4 left, fewer than a probe's 5.
        let body = format!("[{}", vec!["1000000000000"; 70].join(","));
        let body = format!("{body:<1020}");
        let head = format!(
            "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1021\r\nConnection: close\r\n\r\n{body}"
        );
        let mut holder = stalled(addr, head.as_bytes());
        // The holder's bytes reach the server at some point: until then
        // probes are taken (their entries are left out below). A probe
        // whose 5 bytes are held when the holder's arrive gets the holder
        // refused instead (503, nothing taken): the holder is sent again.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (status, head, reply) = loop {
            let r = post_ids(addr, &[100]);
            if r.0 != 200 || Instant::now() > deadline {
                break r;
            }
            if answered(&holder) {
                holder = stalled(addr, head.as_bytes());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status, 503, "{reply}");
        assert!(head.contains("retry-after: 4"), "{head}");
        assert_eq!(
            reply,
            r#"{"accepted":0,"error":"the server holds as many bodies as it may (max_ingests × max_body_bytes bytes): try again later"}"#
        );
        holder.write_all(b"]").unwrap();
        let reply = read_until_closed(&mut holder).unwrap();
        assert!(reply.ends_with(r#"{"accepted":70}"#), "{reply}");
        server.shutdown();
        let drained = server.finish();
        let mut got = seen.lock().unwrap().clone();
        got.retain(|&id| id != 100);
        assert_eq!(got, [1_000_000_000_000; 70]);
        assert_eq!(
            drained.result.unwrap().items,
            drained.acknowledged,
            "the refused requests took nothing"
        );
    });
}

#[test]
fn a_drain_deadline_bounds_the_wait_for_a_step_that_never_returns() {
    within(Duration::from_secs(30), || {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let p = Pipeline::new()
            .then(Stage::map("blocked", move |id: u64| {
                let _ = gate.lock().unwrap().recv();
                id
            }))
            .unwrap();
        let config = ServerConfig {
            drain_deadline: Some(Duration::from_millis(300)),
            ..ServerConfig::default()
        };
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), p, config).unwrap();
        assert_eq!(post_ids(server.addr(), &[1, 2]).0, 200);
        server.shutdown();
        let drained = server.finish();
        match drained.result {
            Err(paipa::RunError::Stuck { stage, worker, .. }) => assert_eq!((stage.as_str(), worker), ("blocked", 0)),
            other => panic!("expected Stuck, got {other:?}"),
        }
        assert_eq!(drained.acknowledged, 2);
        drop(release); // the detached step returns, its threads end
    });
}
