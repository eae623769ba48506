//! Property tests of the ingestion server over random request bodies
//! (feature `http`): random bytes, random JSON values and arrays of them,
//! valid bodies cut short or with a byte changed, deep nesting, and NDJSON
//! split into random lines (valid, blank and invalid ones), sent over
//! loopback to one server per test. Every request is answered with a JSON
//! body; the answer is what the documented rules say (`200` with
//! `{"accepted": n}`, or `400` with `accepted: 0`); a `200` means exactly
//! those `n` entries reached the pipeline, in order (the sink's record is
//! checked after every request), and a refusal means none did; no thread of
//! the server or the pipeline panics; and the server is healthy and drains
//! exactly what it acknowledged at the end.
//!
//! 300 cases per test unless `PAIPA_PROPTEST_CASES` says otherwise (a few
//! seconds in a debug build).
#![cfg(feature = "http")]

mod common;

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, within};
use paipa::glue::{serve_pipeline, Server, ServerConfig};
use paipa::threaded::{Pipeline, Stage};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// More entries than any generated body holds (a body of at most 1 KiB
/// has at most 512 entries), so no answer is a 413 here.
const MAX_ENTRIES: usize = 1024;

fn cases() -> u32 {
    std::env::var("PAIPA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A request body and the content type it is sent with.
#[derive(Debug, Clone)]
struct Request {
    content_type: &'static str,
    body: Vec<u8>,
}

/// Content types read as one JSON value or an array (JSON, matched
/// case-insensitively, parameters ignored).
fn json_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=UTF-8",
    ])
}

/// Content types read as NDJSON, matched case-insensitively.
fn ndjson_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/x-ndjson",
        "application/jsonl",
        "Application/X-NDJSON; charset=utf-8",
    ])
}

fn any_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![json_type(), ndjson_type()]
}

/// Any JSON value: numbers of every kind (beyond 64 bits too), strings of
/// any characters, nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "-?[1-9][0-9]{0,40}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
            .prop_filter_map("a JSON number", |s| serde_json::from_str(&s).ok()),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An entry: mostly an id (what the typed test's pipeline takes), else
/// any JSON value.
fn entry() -> impl Strategy<Value = Value> {
    prop_oneof![3 => any::<u64>().prop_map(Value::from), 1 => json_value()]
}

/// One NDJSON line: an entry, a blank line, anything on one line, or an
/// entry cut in half.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => entry().prop_map(|v| v.to_string()),
        1 => "[ \t]{0,3}",
        1 => "[^\n]{0,12}",
        1 => entry().prop_map(|v| {
            let text = v.to_string();
            text.chars().take(text.chars().count() / 2).collect()
        }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        // Random bytes, sometimes opening like an array.
        (any_type(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..1000)).prop_map(
            |(content_type, array, mut body)| {
                if array {
                    body.insert(0, b'[');
                }
                Request { content_type, body }
            }
        ),
        // One JSON value.
        (json_type(), entry()).prop_map(|(content_type, v)| Request {
            content_type,
            body: v.to_string().into_bytes(),
        }),
        // An array of entries, compact or pretty.
        (json_type(), prop::collection::vec(entry(), 0..20), any::<bool>()).prop_map(
            |(content_type, entries, pretty)| {
                let v = Value::Array(entries);
                let body = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    v.to_string()
                };
                Request {
                    content_type,
                    body: body.into_bytes(),
                }
            }
        ),
        // A valid array cut short, or with one byte changed.
        (
            json_type(),
            prop::collection::vec(entry(), 1..10),
            any::<prop::sample::Index>(),
            prop::option::of(any::<u8>())
        )
            .prop_map(|(content_type, entries, at, byte)| {
                let mut body = Value::Array(entries).to_string().into_bytes();
                let at = at.index(body.len());
                match byte {
                    Some(b) => body[at] = b,
                    None => body.truncate(at),
                }
                Request { content_type, body }
            }),
        // Nesting around serde_json's depth limit (128).
        (json_type(), 100usize..160).prop_map(|(content_type, depth)| Request {
            content_type,
            body: format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        }),
        // NDJSON in random lines, LF or CRLF, with or without a last newline.
        (
            ndjson_type(),
            prop::collection::vec(line(), 0..40),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(content_type, lines, crlf, last)| {
                let mut body = lines.join(if crlf { "\r\n" } else { "\n" });
                if last {
                    body.push('\n');
                }
                Request {
                    content_type,
                    body: body.into_bytes(),
                }
            }),
        // NDJSON sent as JSON: more than one value is a malformed body.
        (json_type(), prop::collection::vec(entry(), 2..6)).prop_map(|(content_type, entries)| Request {
            content_type,
            body: entries
                .iter()
                .map(|v| format!("{v}\n"))
                .collect::<String>()
                .into_bytes(),
        }),
    ]
}

/// The documented rules: NDJSON (by content type, case-insensitive,
/// parameters ignored) is one entry per non-blank line; JSON is one JSON
/// value, or an array of entries. The entries the server must
/// take, or `None` if it must refuse the body (400).
fn model<T: DeserializeOwned>(req: &Request) -> Option<Vec<T>> {
    let kind = req.content_type.split(';').next().unwrap().trim().to_ascii_lowercase();
    let values: Vec<Value> = if kind == "application/x-ndjson" || kind == "application/jsonl" {
        let text = std::str::from_utf8(&req.body).ok()?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).ok())
            .collect::<Option<_>>()?
    } else {
        match serde_json::from_slice(&req.body).ok()? {
            Value::Array(items) => items,
            one => vec![one],
        }
    };
    values.into_iter().map(|v| serde_json::from_value(v).ok()).collect()
}

/// Names of threads of the server or the pipeline that panicked.
fn paipa_panics() -> Arc<Mutex<Vec<String>>> {
    static PANICS: std::sync::OnceLock<Arc<Mutex<Vec<String>>>> = std::sync::OnceLock::new();
    PANICS
        .get_or_init(|| {
            let panics: Arc<Mutex<Vec<String>>> = Arc::default();
            let record = panics.clone();
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let thread = std::thread::current();
                let name = thread.name().unwrap_or("");
                if name.starts_with("paipa") {
                    record.lock().unwrap().push(format!("{name}: {info}"));
                }
                default(info);
            }));
            panics
        })
        .clone()
}

/// A server whose one-worker `store` stage records every entry in order.
fn start<T: DeserializeOwned + Send + 'static>() -> (Server, Arc<Mutex<Vec<T>>>) {
    let seen: Arc<Mutex<Vec<T>>> = Arc::default();
    let sink = seen.clone();
    let p = Pipeline::new()
        .then(Stage::map("store", move |e: T| sink.lock().unwrap().push(e)))
        .unwrap();
    let config = ServerConfig {
        max_entries: MAX_ENTRIES,
        ..ServerConfig::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (serve_pipeline(listener, p, config).unwrap(), seen)
}

/// Sends every generated request to one server and checks each answer
/// against the model and the sink's record.
fn answers_match_what_was_enqueued<T>()
where
    T: DeserializeOwned + PartialEq + Debug + Send + 'static,
{
    let panics = paipa_panics();
    let cases = cases();
    let limit = Duration::from_secs(60) + Duration::from_millis(100) * cases;
    within(limit, move || {
        let (server, seen) = start::<T>();
        let addr = server.addr();
        let acked = AtomicUsize::new(0);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&request(), |req| {
            let expected = model::<T>(&req);
            let (status, head, reply) = http(addr, "POST", "/ingest", req.content_type, &req.body)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            prop_assert!(head.contains("content-type: application/json"), "{}", head);
            let answer: Value = serde_json::from_str(&reply)
                .map_err(|e| TestCaseError::fail(format!("the answer is not JSON ({e}): {reply}")))?;
            match expected {
                Some(entries) => {
                    prop_assert_eq!(status, 200, "{}", reply);
                    prop_assert_eq!(reply, format!(r#"{{"accepted":{}}}"#, entries.len()));
                    // Exactly these entries reach the pipeline, after
                    // those of earlier requests.
                    let before = acked.fetch_add(entries.len(), Ordering::SeqCst);
                    let after = before + entries.len();
                    while seen.lock().unwrap().len() < after {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let seen = seen.lock().unwrap();
                    prop_assert_eq!(seen.len(), after, "more entries than acknowledged");
                    prop_assert_eq!(&seen[before..], &entries[..]);
                }
                None => {
                    prop_assert_eq!(status, 400, "{}", reply);
                    prop_assert_eq!(&answer["accepted"], &Value::from(0u64), "{}", reply);
                    prop_assert!(answer["error"].is_string(), "{}", reply);
                    prop_assert_eq!(seen.lock().unwrap().len(), acked.load(Ordering::SeqCst));
                }
            }
            Ok(())
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
        let (status, _, reply) = http(addr, "GET", "/health", "text/plain", b"").unwrap();
        assert_eq!((status, reply.as_str()), (200, "ok\n"), "healthy after every case");
        server.shutdown();
        let drained = server.finish();
        let acked = acked.load(Ordering::SeqCst) as u64;
        assert_eq!(drained.acknowledged, acked);
        assert_eq!(
            drained.result.unwrap().items,
            acked,
            "every acknowledged entry processed"
        );
        assert_eq!(seen.lock().unwrap().len() as u64, acked);
    });
    assert_eq!(
        *panics.lock().unwrap(),
        Vec::<String>::new(),
        "no thread of paipa panicked"
    );
}

#[test]
fn random_bodies_of_json_values_are_taken_whole_or_refused_whole() {
    answers_match_what_was_enqueued::<Value>();
}

#[test]
fn random_bodies_of_typed_ids_are_taken_whole_or_refused_whole() {
    answers_match_what_was_enqueued::<u64>();
}
