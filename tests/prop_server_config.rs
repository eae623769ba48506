//! Every `ServerConfig`, whatever its values, is either refused by
//! `validate()` with an error naming a field out of its bounds, or serves:
//! the server starts, answers `/health`, and shuts down cleanly.
#![cfg(feature = "http")]

mod common;

use std::time::Duration;

use common::http;
use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::threaded::{Pipeline, Stage};
use proptest::prelude::*;

/// Counts, mostly within every bound, with the edges of each and beyond.
fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        40 => 1usize..2000,
        1 => Just(0usize),
        1 => Just(1),
        1 => Just(2),
        1 => Just(4096),
        1 => Just(4097),
        1 => Just(65_536),
        1 => Just(65_537),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(1 << 30),
        1 => Just((1 << 30) + 1),
        1 => Just(usize::MAX / 8),
        1 => Just(usize::MAX),
    ]
}

/// Waits, mostly usable, with every edge from zero to `Duration::MAX`.
fn wait() -> impl Strategy<Value = Duration> {
    prop_oneof![
        40 => (100u64..5_000).prop_map(Duration::from_millis),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_micros(999)),
        1 => Just(Duration::from_millis(1)),
        1 => Just(Duration::from_secs(365 * 24 * 3600)),
        1 => Just(Duration::from_secs(365 * 24 * 3600) + Duration::from_nanos(1)),
        1 => Just(Duration::from_secs(u64::MAX / 8)),
        1 => Just(Duration::MAX),
    ]
}

fn config() -> impl Strategy<Value = ServerConfig> {
    (
        (count(), count(), count(), count(), count(), count()),
        (wait(), wait(), wait(), wait(), wait(), prop::option::of(wait())),
        prop_oneof![20 => 0u64..100, 1 => Just(86_400), 1 => Just(86_401), 1 => Just(u64::MAX)],
        prop_oneof![
            Just(vec![]),
            Just(vec!["ok.example".to_string()]),
            Just(vec!["bad host/x".to_string()]),
            Just(vec![String::new()])
        ],
    )
        .prop_map(|(counts, waits, retry_after_secs, allowed_hosts)| ServerConfig {
            max_body_bytes: counts.0,
            max_entries: counts.1,
            max_connections: counts.2,
            max_ingests: counts.3,
            max_viewers: counts.4,
            recent_errors: counts.5,
            full_wait: waits.0,
            header_timeout: waits.1,
            idle_timeout: waits.2,
            body_timeout: waits.3,
            shutdown_grace: waits.4,
            drain_deadline: waits.5,
            retry_after_secs,
            allowed_hosts,
            ..ServerConfig::default()
        })
}

const FIELDS: [&str; 14] = [
    "max_body_bytes",
    "max_entries",
    "max_connections",
    "max_ingests",
    "max_viewers",
    "recent_errors",
    "full_wait",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "shutdown_grace",
    "drain_deadline",
    "retry_after_secs",
    "allowed_hosts",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_server_config_is_refused_naming_a_field_or_serves(config in config()) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pipeline = Pipeline::new().then(Stage::map("id", |x: u64| x)).unwrap();
        match config.validate() {
            Err(e) => {
                prop_assert!(FIELDS.contains(&e.field()), "{e}");
                prop_assert!(e.to_string().starts_with(&format!("invalid {}: ", e.field())), "{e}");
                let refused = serve_pipeline(listener, pipeline, config.clone()).unwrap_err();
                prop_assert_eq!(refused.to_string(), e.to_string());
            }
            Ok(()) => {
                let server = serve_pipeline(listener, pipeline, config.clone()).unwrap();
                // A head sent in one write arrives well within 100 ms.
                if config.header_timeout >= Duration::from_millis(100) && config.idle_timeout >= Duration::from_millis(100) {
                    let (status, _, reply) = http(server.addr(), "GET", "/health", "text/plain", b"").unwrap();
                    prop_assert_eq!((status, reply.as_str()), (200, "ok\n"));
                }
                server.shutdown();
                match server.wait() {
                    Ok(summary) => prop_assert_eq!(summary.items, 0),
                    // A drain deadline shorter than the pipeline's own
                    // ending: refused as documented.
                    Err(paipa::RunError::Stuck { .. }) if config.drain_deadline.is_some_and(|d| d < Duration::from_secs(1)) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
    }
}

#[cfg(feature = "web")]
fn web_config() -> impl Strategy<Value = paipa::report::WebConfig> {
    (
        count(),
        count(),
        wait(),
        wait(),
        prop_oneof![4 => Just(vec![]), 1 => Just(vec!["bad host/x".to_string()])],
    )
        .prop_map(
            |(max_connections, max_viewers, header_timeout, idle_timeout, allowed_hosts)| paipa::report::WebConfig {
                max_connections,
                max_viewers,
                header_timeout,
                idle_timeout,
                allowed_hosts,
            },
        )
}

#[cfg(feature = "web")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_web_config_is_refused_naming_a_field_or_serves(config in web_config()) {
        use paipa::report::WebReporter;
        let fields = ["max_connections", "max_viewers", "header_timeout", "idle_timeout", "allowed_hosts"];
        match config.validate() {
            Err(e) => {
                prop_assert!(fields.contains(&e.field()), "{e}");
                let refused = WebReporter::bind_with("127.0.0.1:0", config.clone()).unwrap_err();
                prop_assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
                prop_assert_eq!(refused.to_string(), e.to_string());
            }
            Ok(()) => {
                let web = WebReporter::bind_with("127.0.0.1:0", config.clone()).unwrap();
                if config.header_timeout >= Duration::from_millis(100) && config.idle_timeout >= Duration::from_millis(100) {
                    let (status, _, reply) = http(web.addr(), "GET", "/snapshot", "text/plain", b"").unwrap();
                    prop_assert_eq!((status, reply.as_str()), (200, "null"));
                }
            }
        }
    }
}
