//! Ctrl-C and SIGTERM for runs that opt in (feature `signals`): the first
//! signal stops the input and drains, the second stops at once, the final
//! report says so. Every test sends real signals to this process; they run
//! one at a time (a signal reaches every run that listens).
#![cfg(feature = "signals")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{keep_last, within};
use paipa::iter::{chunk, flatten};
use paipa::threaded::{Pipeline, Stage};
use paipa::Outcome;

/// One test at a time: signals go to the whole process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Sends `signal` to this process and waits until paipa has acted on it
/// (a signal sent again before the first is handled would be merged).
fn raise(signal: i32) {
    let before = paipa::signals::delivered();
    // SAFETY: raise has no preconditions.
    assert_eq!(unsafe { libc::raise(signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while paipa::signals::delivered() == before {
        assert!(Instant::now() < deadline, "the signal was never handled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_threaded_run_drains_what_it_took_on_the_first_signal_and_says_it_was_interrupted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(60), || {
        let (debugger, last) = keep_last();
        let pulled = Arc::new(AtomicU64::new(0));
        let counted = pulled.clone();
        // An endless source: only the signal ends this run.
        let source = (0u64..).inspect(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let pipeline = Pipeline::new()
            .then(
                Stage::map("work", |x: u64| {
                    if x == 500 {
                        raise(libc::SIGINT);
                    }
                    x
                })
                .workers(2),
            )
            .unwrap()
            .then(Stage::map("double", |x: u64| x * 2))
            .unwrap()
            .source(source)
            .debug(debugger)
            .stop_on_signals();
        let (got, summary) = pipeline.run_with(|out| out.collect::<Vec<u64>>()).unwrap();
        assert_eq!(summary.interrupted(), Some("SIGINT"));
        assert_eq!(
            summary.outcome(),
            Some(&Outcome::Interrupted {
                signal: "SIGINT".into(),
                forced: false
            })
        );
        // Everything the source gave went through: nothing dropped.
        let n = pulled.load(Ordering::SeqCst);
        assert!(n > 500, "the run went past the signal's item: {n}");
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, (0..n).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(summary.items, n);
        for stage in &summary.snapshot.stages {
            assert_eq!(stage.discarded, 0, "{}", stage.name);
        }
        let report = last.lock().unwrap().clone().expect("a final report");
        assert!(report.is_final);
        assert_eq!(report.outcome, summary.snapshot.outcome);
        let line = paipa::report::outcome_line(report.outcome.as_ref().unwrap());
        assert_eq!(
            line,
            "outcome: interrupted by SIGINT (input stopped, everything taken drained through)"
        );
    });
}

#[test]
fn a_second_signal_aborts_a_spawned_run_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(60), || {
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let started = Arc::new(AtomicU64::new(0));
        let seen = started.clone();
        let running = Pipeline::new()
            .capacity(64)
            .unwrap()
            .then(Stage::map("held", move |x: u64| {
                seen.fetch_add(1, Ordering::SeqCst);
                // Every call waits until the gate opens (or is dropped).
                let _ = gate.lock().unwrap().recv();
                x
            }))
            .unwrap()
            .source(0u64..)
            .stop_on_signals()
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while started.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the step never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        raise(libc::SIGTERM);
        raise(libc::SIGTERM);
        // The second signal cancels the run: it is no longer alive, though
        // its step is still held.
        while running.alive() {
            assert!(Instant::now() < deadline, "the second signal did not stop the run");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(open);
        let summary = running.wait().unwrap();
        assert_eq!(
            summary.outcome(),
            Some(&Outcome::Interrupted {
                signal: "SIGTERM".into(),
                forced: true
            })
        );
        assert!(summary.stopped_early);
        let held = summary.snapshot.stage("held").unwrap();
        assert_eq!(held.count_in, held.count + held.discarded, "{held:?}");
    });
}

#[test]
fn an_iterator_pipeline_ends_its_source_on_the_first_signal_and_drains_its_steps() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(60), || {
        let (debugger, last) = keep_last();
        let pipeline = paipa::iter::Pipeline::new(0u64..)
            .stop_on_signals()
            .unwrap()
            .debug(debugger)
            .step_named("raise", |it| {
                it.inspect(|&x| {
                    if x == 1000 {
                        raise(libc::SIGINT);
                    }
                })
            })
            .step(chunk(7).unwrap())
            .step(flatten);
        let stats = pipeline.stats();
        let got: Vec<u64> = pipeline.into_iter().collect();
        // The source ended after the signal; the chunk step handed on its
        // last, partial chunk: every item taken came out.
        let n = got.len() as u64;
        assert!(n > 1000, "{n}");
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        let snap = stats.snapshot();
        assert_eq!(snap.stages[0].count, n);
        assert_eq!(
            snap.outcome,
            Some(Outcome::Interrupted {
                signal: "SIGINT".into(),
                forced: false
            })
        );
        let report = last.lock().unwrap().clone().expect("a final report");
        assert_eq!(report.outcome, snap.outcome);
    });
}

#[test]
fn a_second_signal_ends_a_measured_iterator_pipeline_at_the_next_pull() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(60), || {
        // A step that buffers everything until its input ends: only the
        // second signal can stop the run before then.
        let pipeline = paipa::iter::Pipeline::new(0u64..)
            .stop_on_signals()
            .unwrap()
            .debug(paipa::Debugger::silent())
            .step_named("raise", |it| {
                it.inspect(|&x| {
                    if x == 10 {
                        raise(libc::SIGINT);
                        raise(libc::SIGINT);
                    }
                })
            })
            .step_named("endless", |it| it.map(|x| x % 3).chain(std::iter::repeat(7)));
        let stats = pipeline.stats();
        let mut out = pipeline.into_iter();
        let mut n = 0u64;
        for _ in out.by_ref() {
            n += 1;
        }
        assert!(n > 10, "{n}");
        assert!(out.next().is_none(), "ended for good");
        assert_eq!(
            stats.snapshot().outcome,
            Some(Outcome::Interrupted {
                signal: "SIGINT".into(),
                forced: true
            })
        );
    });
}

/// A child process that is killed if the test ends (or fails) before it.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The child half of the test below: a program writing a file from an
/// endless source, stopped by Ctrl-C from outside.
fn write_until_interrupted(path: &str) {
    use std::io::Write;
    // Never outlive the parent test: it holds this process's stdin, which
    // reaches its end when the parent goes, whatever happened to it.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let pipeline = Pipeline::new()
        .then(Stage::map("format", |x: u64| format!("line {x}\n")).workers(2))
        .unwrap()
        .source(0u64..)
        .debug(paipa::Debugger::new())
        .stop_on_signals();
    let (written, summary) = pipeline
        .run_with(|out| {
            let mut n = 0u64;
            for line in out {
                file.write_all(line.as_bytes()).unwrap();
                n += 1;
                if n == 1000 {
                    file.flush().unwrap();
                    println!("ready");
                }
            }
            n
        })
        .unwrap();
    file.flush().unwrap();
    println!("written {written} interrupted {:?}", summary.interrupted());
}

#[test]
fn a_program_interrupted_from_outside_writes_its_whole_output_and_its_final_report() {
    if let Ok(path) = std::env::var("PAIPA_SIGNALS_CHILD") {
        return write_until_interrupted(&path);
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(120), || {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("paipa-signals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        let mut child = Reap(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_program_interrupted_from_outside_writes_its_whole_output_and_its_final_report",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PAIPA_SIGNALS_CHILD", &path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Stderr is read on its own thread: the periodic reports could
        // fill its pipe while this thread reads stdout.
        let mut err = child.0.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut err, &mut text).unwrap();
            text
        });
        let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        // (The harness prints the test's name on the same line.)
        while !line.trim_end().ends_with("ready") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the child ended before it was ready"
            );
        }
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let stderr = stderr.join().unwrap();
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{status:?}\n{rest}\n{stderr}");
        let written: u64 = rest
            .lines()
            .find_map(|l| l.strip_prefix("written "))
            .and_then(|l| l.split(' ').next())
            .expect("the child's last line")
            .parse()
            .unwrap();
        assert!(rest.contains(r#"interrupted Some("SIGINT")"#), "{rest}");
        // The file holds every line the pipeline produced, whole.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        let mut numbers: Vec<u64> = text
            .lines()
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..written).collect::<Vec<_>>());
        // The final report went to stderr (no tracing subscriber installed).
        assert!(stderr.contains("outcome: interrupted by SIGINT"), "{stderr}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The child half of the test below: a run whose step never returns,
/// interrupted twice from outside. It says when the step is stuck and
/// when each signal has been acted on.
fn stuck_until_killed() {
    // Never outlive the parent test (see `write_until_interrupted`).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let (_never, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let running = Pipeline::new()
        .then(Stage::map("stuck", move |x: u64| {
            println!("stuck");
            let _ = gate.lock().unwrap().recv();
            x
        }))
        .unwrap()
        .source(0u64..)
        .stop_on_signals()
        .spawn()
        .unwrap();
    std::thread::spawn(|| {
        let mut told = 0;
        loop {
            let now = paipa::signals::delivered();
            if now > told {
                told = now;
                println!("delivered {now}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let result = running.wait();
    println!("returned {result:?}");
}

#[test]
fn a_run_stuck_in_a_step_after_the_second_signal_ends_the_process_naming_the_stage() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var_os("PAIPA_SIGNALS_STUCK_CHILD").is_some() {
        return stuck_until_killed();
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    within(Duration::from_secs(60), || {
        use std::io::BufRead;
        let mut child = Reap(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_run_stuck_in_a_step_after_the_second_signal_ends_the_process_naming_the_stage",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PAIPA_SIGNALS_STUCK_CHILD", "1")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = child.0.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut err, &mut text).unwrap();
            text
        });
        let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
        // (The harness prints the test's name on the same line as the
        // child's first line.)
        let mut wait_for = |what: &str| {
            let mut line = String::new();
            while !line.trim_end().ends_with(what) {
                line.clear();
                assert!(
                    stdout.read_line(&mut line).unwrap() > 0,
                    "the child ended before {what:?}"
                );
            }
        };
        wait_for("stuck");
        let pid = child.0.id() as i32;
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        wait_for("delivered 1");
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        wait_for("delivered 2");
        let second = Instant::now();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.0.wait().unwrap();
        let took = second.elapsed();
        let stderr = stderr.join().unwrap();
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}\n{rest}\n{stderr}");
        assert!(!rest.contains("returned"), "{rest}");
        assert!(
            stderr.contains(r#"stage "stuck" (worker 0) has been busy for"#),
            "{stderr}"
        );
    });
}
