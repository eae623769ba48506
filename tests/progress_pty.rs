//! Live progress on a real terminal (a pty made by `script`), and the
//! periodic-table fallback when stderr is not a terminal.
#![cfg(feature = "progress")]

use std::process::Command;
use std::time::Duration;

use paipa::report::ProgressReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

/// Runs a small pipeline with the progress reporter; the parent tests call
/// this test's binary again with `PAIPA_PROGRESS_CHILD` set.
#[test]
fn progress_child() {
    if std::env::var_os("PAIPA_PROGRESS_CHILD").is_none() {
        return;
    }
    let debugger = Debugger::silent()
        .interval(Duration::from_millis(50))
        .reporter(ProgressReporter::new());
    Pipeline::new()
        .debug(debugger)
        .source(0..400u64)
        .then(Stage::map("fetch_stage", |x: u64| {
            std::thread::sleep(Duration::from_micros(1500));
            x
        }))
        .unwrap()
        .then(Stage::map("store_stage", |x: u64| x))
        .unwrap()
        .run()
        .unwrap();
}

fn child() -> Command {
    child_named("progress_child")
}

fn child_named(test: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("PAIPA_PROGRESS_CHILD", "1");
    cmd
}

/// Runs the child test `test` under a pty made by `script`; what the
/// terminal received, or None if `script` is not installed.
fn on_a_terminal(test: &str) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return None;
    }
    let c = child_named(test);
    let line = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("PAIPA_PROGRESS_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn draws_live_bars_on_a_terminal() {
    let Some(text) = on_a_terminal("progress_child") else {
        return;
    };
    // Live redraws move the cursor up (ANSI "ESC [ n A") to repaint the bars.
    assert!(text.contains("\u{1b}["), "no terminal control sequences: {text:?}");
    assert!(text.contains("fetch_stage") && text.contains("store_stage"), "{text}");
    assert!(
        text.contains("items") && text.contains("/s") && text.contains("queue"),
        "{text}"
    );
    // The source's length (0..400) is known: an overall bar with
    // percentage and ETA, and the two rates labelled.
    assert!(
        text.contains("/400 items") && text.contains('%') && text.contains("ETA"),
        "{text}"
    );
    assert!(
        text.contains("e2e") && text.contains("cap") && text.contains("per busy s"),
        "{text}"
    );
    assert!(text.contains("bottleneck: \"fetch_stage\""), "{text}");
    assert!(
        !text.contains("> fetch_stage:"),
        "table fallback used on a terminal: {text}"
    );
}

#[test]
fn without_a_known_length_shows_items_read_and_no_bar() {
    let Some(text) = on_a_terminal("progress_child_of_unknown_length") else {
        return;
    };
    assert!(text.contains("items read") && text.contains("fetch_stage"), "{text}");
    assert!(!text.contains("ETA"), "{text}");
}

/// Without a known length (a source with no exact `size_hint`) there is no
/// bar, but the items read and the stage lines are there.
#[test]
fn progress_child_of_unknown_length() {
    if std::env::var_os("PAIPA_PROGRESS_CHILD").is_none() {
        return;
    }
    let debugger = Debugger::silent()
        .interval(Duration::from_millis(50))
        .reporter(ProgressReporter::new());
    Pipeline::new()
        .debug(debugger)
        .source((0..400u64).filter(|x| x % 2 == 0))
        .then(Stage::map("fetch_stage", |x: u64| {
            std::thread::sleep(Duration::from_micros(1500));
            x
        }))
        .unwrap()
        .run()
        .unwrap();
}

#[test]
fn prints_tables_when_stderr_is_not_a_terminal() {
    let out = child().output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("> fetch_stage:") && err.contains("> store_stage:"),
        "{err}"
    );
    assert!(err.contains("bottleneck: \"fetch_stage\""), "{err}");
    assert!(!err.contains("\u{1b}["), "control sequences in a log: {err}");
}
