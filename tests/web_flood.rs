//! A flood of idle connections against the live page, in a process held to
//! the common limit of 1024 open files (its own test binary: the limit is
//! the whole process's). The clients' 700 idle connections and the
//! server's would need 1400 files if the server took every connection;
//! the page must stay reachable.
#![cfg(feature = "web")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::within;
use paipa::report::{WebConfig, WebReporter};

/// Holds this process to at most `files` open files; returns the limit.
fn limit_files(files: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = files.min(limit.rlim_max as u64) as libc::rlim_t;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur as u64
    }
}

/// `GET /snapshot` on a new connection: the status and body, or `None` if
/// no answer came within 10 s.
fn snapshot(addr: std::net::SocketAddr) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body.to_string()))
}

#[test]
fn the_page_answers_with_700_idle_connections_open_under_1024_files() {
    within(Duration::from_secs(120), || {
        assert_eq!(
            limit_files(1024),
            1024,
            "this test needs a limit of at least 1024 files"
        );
        let web = WebReporter::bind_with(
            "127.0.0.1:0",
            WebConfig {
                header_timeout: Duration::from_secs(60),
                idle_timeout: Duration::from_secs(60),
                ..WebConfig::default()
            },
        )
        .unwrap();
        let addr = web.addr();
        let idle: Vec<TcpStream> = (0..700).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(500));
        for i in 0..20 {
            let asked = Instant::now();
            assert_eq!(
                snapshot(addr),
                Some((200, "null".to_string())),
                "probe {i}, after {:?}",
                asked.elapsed()
            );
        }
        drop(idle);
    });
}
