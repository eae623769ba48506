//! Hostile clients and hostile hosts against both servers (the ingestion
//! server and the live page), over real loopback sockets: rebinding host
//! names, other origins, content types a page can post without asking,
//! requests hyper refuses itself, and a half-sent head at shutdown (a
//! flood of idle connections is `tests/web_flood.rs`).
#![cfg(all(feature = "http", feature = "web"))]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{start, within};
use paipa::glue::ServerConfig;
use paipa::report::WebReporter;

/// Sends `raw` on a new connection and reads the answer until the server
/// closes it: (status, head, body).
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no answer: {e}"),
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    raw.into_bytes()
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert_eq!(v["accepted"], 0, "{body}");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {body}"))
        .to_string()
}

#[test]
fn rebinding_hosts_other_origins_and_page_posts_are_refused_on_every_route() {
    within(Duration::from_secs(60), || {
        let (server, seen) = start(ServerConfig {
            allowed_hosts: vec!["ingest.internal".into()],
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let host = addr.to_string();
        let web = WebReporter::bind("127.0.0.1:0").unwrap();
        let page = web.addr();
        let rebound = format!("rebind.evil.example:{}", addr.port());
        let rebound_origin = format!("http://{rebound}");
        for (target, path) in [
            (page, "/"),
            (page, "/snapshot"),
            (page, "/events"),
            (addr, "/dashboard"),
            (addr, "/dashboard/snapshot"),
            (addr, "/dashboard/events"),
            (addr, "/stats"),
            (addr, "/health"),
        ] {
            let raw = request("GET", path, &[("Host", &rebound), ("Origin", &rebound_origin)], "");
            let (status, _, body) = exchange(target, &raw);
            assert_eq!(status, 421, "{path}: {body}");
            assert!(
                error_of(&body).contains("is not a name this server answers to"),
                "{body}"
            );
            let raw = request("GET", path, &[("Host", &host), ("Origin", "http://evil.example")], "");
            let (status, _, body) = exchange(target, &raw);
            assert_eq!(
                (status, error_of(&body).as_str()),
                (403, "requests from other origins are refused"),
                "{path}"
            );
        }
        // Posts a page could send: a rebinding host, another origin, and
        // content types that need no preflight.
        let entry = "[1]";
        let posts = [
            (
                vec![("Host", rebound.as_str()), ("Content-Type", "application/json")],
                421,
            ),
            (
                vec![
                    ("Host", host.as_str()),
                    ("Origin", "http://evil.example"),
                    ("Content-Type", "application/json"),
                ],
                403,
            ),
            (
                vec![("Host", host.as_str()), ("Content-Type", "text/plain;charset=UTF-8")],
                415,
            ),
            (
                vec![
                    ("Host", host.as_str()),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                415,
            ),
            (
                vec![
                    ("Host", host.as_str()),
                    ("Content-Type", "multipart/form-data; boundary=x"),
                ],
                415,
            ),
        ];
        for (headers, want) in posts {
            let (status, _, body) = exchange(addr, &request("POST", "/ingest", &headers, entry));
            assert_eq!(status, want, "{headers:?}: {body}");
            error_of(&body);
        }
        let (_, _, body) = exchange(
            addr,
            &request(
                "POST",
                "/ingest",
                &[("Host", &host), ("Content-Type", "text/plain")],
                entry,
            ),
        );
        assert_eq!(
            error_of(&body),
            "Content-Type \"text/plain\" is not taken: send application/json (one entry or an array) or application/x-ndjson (one entry per line)"
        );
        // What is allowed: an address, localhost, an allowed name, its own
        // origin, JSON with or without a content type.
        let own = format!("http://{host}");
        let taken = [
            vec![("Host", host.as_str()), ("Content-Type", "application/json")],
            vec![
                ("Host", "localhost"),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            vec![("Host", "Ingest.Internal:80")],
            vec![
                ("Host", host.as_str()),
                ("Origin", own.as_str()),
                ("Content-Type", "application/merge-patch+json"),
            ],
        ];
        for headers in &taken {
            let (status, _, body) = exchange(addr, &request("POST", "/ingest", headers, entry));
            assert_eq!((status, body.as_str()), (200, r#"{"accepted":1}"#), "{headers:?}");
        }
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 4);
        assert_eq!(*seen.lock().unwrap(), [1; 4]);
    });
}

#[test]
fn requests_hyper_refuses_itself_are_answered_in_json() {
    within(Duration::from_secs(60), || {
        let (server, seen) = start(ServerConfig {
            header_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "a".repeat(70_000));
        let big_header = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
            "b".repeat(500_000)
        );
        let cases: [(&str, Vec<u8>, u16); 8] = [
            (
                "conflicting lengths",
                b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n[1]"
                    .to_vec(),
                400,
            ),
            (
                "chunked, identity",
                b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n".to_vec(),
                400,
            ),
            (
                "HTTP/9.9",
                b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
                400,
            ),
            (
                "an obs-fold header",
                b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n  folded\r\n\r\n".to_vec(),
                400,
            ),
            (
                "NUL in the path",
                b"GET /he\0alth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
                400,
            ),
            ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 400),
            ("a long URI", long_uri.into_bytes(), 414),
            ("a huge header", big_header.into_bytes(), 431),
        ];
        for (what, raw, want) in cases {
            let (status, head, body) = exchange(addr, &raw);
            assert!(
                status == want || (want == 414 && status == 431),
                "{what}: {status} {head}"
            );
            assert!(
                head.to_ascii_lowercase().contains("content-type: application/json"),
                "{what}: {head}"
            );
            error_of(&body);
        }
        // A head that stopped arriving, past header_timeout: 408.
        let (status, _, body) = exchange(addr, b"GET /hea");
        assert_eq!(status, 408, "{body}");
        assert!(error_of(&body).starts_with("the request's head"), "{body}");
        // Routes that do not exist, methods a route does not take.
        for (raw, want) in [
            (
                request("GET", "/nowhere", &[("Host", "127.0.0.1")], ""),
                (404, "no such route"),
            ),
            (
                request("DELETE", "/ingest", &[("Host", "127.0.0.1")], ""),
                (405, "method not allowed on this route"),
            ),
        ] {
            let (status, _, body) = exchange(addr, &raw);
            assert_eq!((status, error_of(&body).as_str()), want);
        }
        let (status, _, body) = exchange(addr, &request("GET", "/health", &[("Host", "127.0.0.1")], ""));
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 0);
        assert!(seen.lock().unwrap().is_empty());
    });
}

#[test]
fn a_half_sent_head_is_closed_at_once_on_shutdown() {
    within(Duration::from_secs(60), || {
        let (server, _seen) = start(ServerConfig {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"G").unwrap();
        std::thread::sleep(Duration::from_millis(200)); // the byte is read
        let asked = Instant::now();
        server.shutdown();
        server.wait().unwrap();
        // Far below header_timeout (30 s) and the grace (10 s).
        assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
        half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let closed = match half.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "the connection is closed");
    });
}

#[test]
fn viewers_of_the_page_never_take_the_connections_ingest_and_health_need() {
    within(Duration::from_secs(60), || {
        // 8 connections: at most 4 (half) follow the page's events.
        let (server, seen) = start(ServerConfig {
            max_connections: 8,
            max_viewers: 100,
            ..ServerConfig::default()
        });
        let addr = server.addr();
        let events = request("GET", "/dashboard/events", &[("Host", "127.0.0.1")], "");
        let mut open = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..8 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&events).unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            match &head {
                b"HTTP/1.1 200" => open.push(s),
                b"HTTP/1.1 503" => refused.push(s),
                other => panic!("{}", String::from_utf8_lossy(other)),
            }
        }
        assert_eq!((open.len(), refused.len()), (4, 4));
        let mut rest = Vec::new();
        let _ = refused[0].read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.ends_with(r#"{"accepted":0,"error":"4 pages are open already (max_viewers)"}"#),
            "{rest}"
        );
        drop(refused);
        for id in 0..20u64 {
            let body = format!("[{id}]");
            let raw = request(
                "POST",
                "/ingest",
                &[("Host", "127.0.0.1"), ("Content-Type", "application/json")],
                &body,
            );
            let (status, _, reply) = exchange(addr, &raw);
            assert_eq!((status, reply.as_str()), (200, r#"{"accepted":1}"#));
            let (status, _, _) = exchange(addr, &request("GET", "/health", &[("Host", "127.0.0.1")], ""));
            assert_eq!(status, 200);
        }
        drop(open);
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 20);
        assert_eq!(seen.lock().unwrap().len(), 20);
    });
}
