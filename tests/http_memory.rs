//! Memory per request is bounded by a known factor of the body limit: the
//! bytes the whole process has allocated are counted exactly (a counting
//! global allocator, in this binary only) while the largest allowed bodies
//! are taken, and while bodies of a million tiny entries are refused.
#![cfg(feature = "http")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{http, within};
use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};

/// Bytes allocated now, and the most at any moment since the last reset.
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = NOW.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1024 * 1024;
const BODY_LIMIT: usize = 8 * MIB;

/// Peak bytes allocated above the level before `f`.
fn peak_growth(f: impl FnOnce()) -> usize {
    let before = NOW.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst).saturating_sub(before)
}

/// A server of `max_body_bytes` = [`BODY_LIMIT`] whose pipeline takes
/// entries of type `T` and drops them.
fn server_of<T: serde::de::DeserializeOwned + Send + 'static>() -> paipa::glue::Server {
    let pipeline = Pipeline::new()
        .then(Stage::map("store", |entry: T| drop(entry)).workers(2))
        .unwrap();
    let config = ServerConfig {
        max_body_bytes: BODY_LIMIT,
        ..ServerConfig::default()
    };
    serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), pipeline, config).unwrap()
}

/// Sends `body` three times to `addr`: each answer is `status`, with
/// `reply` as its body if given, and the peak bytes allocated while it is
/// handled are at most 4 × [`BODY_LIMIT`].
fn within_bound(addr: std::net::SocketAddr, what: &str, body: &str, status: u16, reply: Option<&str>) {
    assert!(body.len() <= BODY_LIMIT, "{what}: {} bytes", body.len());
    for _ in 0..3 {
        let growth = peak_growth(|| {
            let (got, _, text) = http(addr, "POST", "/ingest", "application/json", body.as_bytes()).unwrap();
            assert_eq!(got, status, "{what}: {text}");
            if let Some(reply) = reply {
                assert_eq!(text, reply, "{what}");
            }
            assert!(text.len() < 600, "{what}: an answer of {} bytes", text.len());
        });
        println!("{what}: peak {:.1} MiB", growth as f64 / MIB as f64);
        assert!(growth <= 4 * BODY_LIMIT, "{what}: {} MiB for one request", growth / MIB);
    }
}

/// `n` copies of `item`, comma-separated.
fn repeat(item: &str, n: usize) -> String {
    vec![item; n].join(",")
}

#[test]
fn memory_per_request_stays_within_four_times_the_body_limit_whatever_the_body() {
    within(Duration::from_secs(300), || {
        let too_large = format!(
            r#"{{"accepted":0,"error":"the entries would take more than {} bytes of memory once decoded (twice max_body_bytes): send fewer or smaller values per request"}}"#,
            2 * BODY_LIMIT
        );
        // The largest body taken: 2048 entries (the limit) of 4000 bytes.
        let strings = format!("[{}]", repeat(&format!("\"{}\"", "x".repeat(4000)), 2048));
        assert!(strings.len() > BODY_LIMIT - MIB);
        // A million tiny objects; 8 MiB of numbers in one entry; 2048
        // entries of 2000 numbers each; tiny objects nested in entries.
        let objects = format!("[{}]", repeat(r#"{"a":1}"#, (BODY_LIMIT - 2) / 8));
        let numbers = format!("[[{}]]", repeat("0", (BODY_LIMIT - 4) / 2));
        let rows = format!("[{}]", repeat(&format!("[{}]", repeat("0", 2000)), 2048));
        let nested = format!("[{}]", repeat(&format!("[{}]", repeat(r#"{"a":0}"#, 500)), 2048));
        let long_string = format!("\"{}\"", "y".repeat(BODY_LIMIT - 2));

        // Entries as JSON values: what fits in the decoding budget is
        // taken, the rest refused before it is built.
        let server = server_of::<serde_json::Value>();
        let addr = server.addr();
        within_bound(addr, "strings as values", &strings, 200, Some(r#"{"accepted":2048}"#));
        within_bound(
            addr,
            "objects as values",
            &objects,
            413,
            Some(r#"{"accepted":0,"error":"more than 2048 entries in one request (max_entries)"}"#),
        );
        within_bound(addr, "numbers as values", &numbers, 413, Some(&too_large));
        within_bound(addr, "rows as values", &rows, 413, Some(&too_large));
        within_bound(addr, "nested objects as values", &nested, 413, Some(&too_large));
        within_bound(
            addr,
            "a long string as a value",
            &long_string,
            200,
            Some(r#"{"accepted":1}"#),
        );
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 3 * 2048 + 3);

        // Typed entries: refused at the first value of the wrong type,
        // quoting at most a few hundred bytes of it.
        let server = server_of::<u64>();
        let addr = server.addr();
        for (what, body) in [
            ("numbers", &numbers),
            ("rows", &rows),
            ("objects", &objects),
            ("a long string", &long_string),
        ] {
            within_bound(addr, &format!("{what} as u64"), body, 400, None);
        }
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 0);

        let server = server_of::<String>();
        let addr = server.addr();
        within_bound(addr, "strings as strings", &strings, 200, Some(r#"{"accepted":2048}"#));
        within_bound(addr, "objects as strings", &objects, 400, None);
        server.shutdown();
        assert_eq!(server.wait().unwrap().items, 3 * 2048);
    });
}
