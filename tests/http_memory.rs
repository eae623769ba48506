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

#[test]
fn memory_per_request_stays_within_four_times_the_body_limit() {
    within(Duration::from_secs(120), || {
        let pipeline = Pipeline::new()
            .then(Stage::map("store", |s: String| s.len()).workers(2))
            .unwrap();
        let config = ServerConfig {
            max_body_bytes: BODY_LIMIT,
            ..ServerConfig::default()
        };
        let server = serve_pipeline(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), pipeline, config).unwrap();
        let addr = server.addr();

        // The largest body taken: 2048 entries (the limit) of 4000 bytes.
        let entry = format!("\"{}\"", "x".repeat(4000));
        let big = format!("[{}]", vec![entry; 2048].join(","));
        assert!(big.len() < BODY_LIMIT && big.len() > BODY_LIMIT - MIB);
        // A body of a million tiny entries: refused at the entry limit.
        let tiny = format!("[{}]", vec!["{\"a\":1}"; (BODY_LIMIT - 2) / 8].join(","));
        assert!(tiny.len() <= BODY_LIMIT);
        // Warm up the connection machinery once (its buffers are reused).
        assert_eq!(
            http(addr, "POST", "/ingest", "application/json", b"[\"w\"]").unwrap().0,
            200
        );

        let mut taken = 0;
        for _ in 0..3 {
            let growth = peak_growth(|| {
                let (status, _, reply) = http(addr, "POST", "/ingest", "application/json", big.as_bytes()).unwrap();
                assert_eq!((status, reply.as_str()), (200, r#"{"accepted":2048}"#));
            });
            taken += 2048;
            // The body as read, its entries, and what the pipeline holds.
            assert!(growth <= 4 * BODY_LIMIT, "{} MiB for one request", growth / MIB);
        }
        for _ in 0..3 {
            let growth = peak_growth(|| {
                let (status, _, reply) = http(addr, "POST", "/ingest", "application/json", tiny.as_bytes()).unwrap();
                assert_eq!(status, 413, "{reply}");
            });
            assert!(growth <= 4 * BODY_LIMIT, "{} MiB for one refused request", growth / MIB);
        }
        server.shutdown();
        let drained = server.finish();
        assert_eq!(drained.result.unwrap().items, taken + 1);
    });
}
