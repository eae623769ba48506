//! `Debugger::new()` shows its table without a `tracing` subscriber: the
//! lines go to stderr. Checked in a child process (this test binary run
//! again), whose stderr the parent reads; a subscriber takes them instead.

use std::process::Command;

use paipa::iter::{consume, Pipeline};
use paipa::Debugger;

const CHILD: &str = "PAIPA_LOG_FALLBACK_CHILD";

fn run_pipeline() {
    let pipeline = Pipeline::new(0..7u32).debug(Debugger::new().source_name("list"));
    assert_eq!(consume(pipeline), 7);
}

/// Runs `test` of this binary in a child process; returns its stderr.
fn child_stderr(test: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn without_a_subscriber_the_table_goes_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        run_pipeline();
        return;
    }
    let err = child_stderr("without_a_subscriber_the_table_goes_to_stderr");
    let lines: Vec<&str> = err.lines().collect();
    let table = lines.iter().position(|l| *l == "--------------------").expect(&err);
    assert!(lines[table + 1].starts_with("> list: count: 7 runtime: "), "{err}");
    assert_eq!(lines[table + 2], "outcome: finished (every item went through)", "{err}");
    assert!(lines[table + 3].starts_with("run: 7 items in "), "{err}");
}

#[test]
fn with_a_subscriber_nothing_goes_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        // A subscriber that takes everything and writes nowhere.
        let subscriber = tracing_subscriber::fmt().with_writer(std::io::sink).finish();
        tracing::subscriber::with_default(subscriber, run_pipeline);
        return;
    }
    let err = child_stderr("with_a_subscriber_nothing_goes_to_stderr");
    assert!(!err.contains("--------------------"), "{err}");
    assert!(!err.contains("count: 7"), "{err}");
}
