//! Every way a run can end, from every kind of source: lazy iterators
//! (finite, endless, one that blocks inside `next()`), items put before the
//! run (up to 10^5), live input handles (sync and async puts), a `Stream`
//! that goes quiet; ended by the end of input, `stop`, `abort`, a stage that
//! fails, a consumer that stops early, a dropped `Running` or
//! `OutputStream`. Every case returns within a bound, its final report
//! balances its books (per stage `count_in = count + skipped + failed +
//! discarded`), a finished run delivers every item exactly, and no thread
//! is left behind.
//!
//! A user's own iterator that blocks inside `next()` cannot see a stop:
//! `stop_within` / `abort_within` return [`RunError::Stuck`] naming the
//! source by their deadline, and the run's threads end once the iterator
//! returns.
//!
//! One test in its own binary, so that counting the process's threads is
//! exact. The Redis stream that goes quiet is covered in
//! `tests/redis_waits.rs` (it needs a server).
#![cfg(feature = "async")]

mod common;

use std::time::Duration;

use common::{keep_final, thread_count, within};
use paipa::threaded::{Pipeline, Stage};
use paipa::RunError;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Source {
    /// `0..n`, pulled lazily.
    Finite(u32),
    /// `0..`, never ending.
    Endless,
    /// Gives `k` items, then blocks inside `next()` until released.
    Blocking(u32),
    /// `n` items put before the run.
    PutBefore(u32),
    /// `n` items put from another thread through a live handle, with sync
    /// (`false`) or async (`true`) puts; the handle stays open unless the
    /// ending is the end of input.
    Live(u32, bool),
    /// A `Stream` that gives `k` items and then goes quiet for ever.
    Quiet(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    EndOfInput,
    Stop,
    Abort,
    /// The last stage fails on the first item it sees.
    Fail,
    /// The consumer reads `k` outputs, then drops the rest.
    ConsumerStops(usize),
    DropRunning,
    /// An `OutputStream` read for `k` items, then dropped.
    DropStream(usize),
}

#[derive(Debug, Clone)]
struct Case {
    source: Source,
    ending: Ending,
    /// The first stage is async (else a plain map).
    asynk: bool,
    workers: usize,
}

fn source() -> impl Strategy<Value = Source> {
    let n = prop_oneof![Just(0u32), 1u32..50, Just(1000), Just(100_000)];
    prop_oneof![
        n.clone().prop_map(Source::Finite),
        Just(Source::Endless),
        (1u32..20).prop_map(Source::Blocking),
        // No item and no source is its own error (`RunError::NoInput`).
        n.clone().prop_map(|n| Source::PutBefore(n.max(1))),
        (n, any::<bool>()).prop_map(|(n, a)| Source::Live(n.min(5000), a)),
        (1u32..20).prop_map(Source::Quiet),
    ]
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::EndOfInput),
        Just(Ending::Stop),
        Just(Ending::Abort),
        Just(Ending::Fail),
        (0usize..5).prop_map(Ending::ConsumerStops),
        Just(Ending::DropRunning),
        (0usize..5).prop_map(Ending::DropStream),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (source(), ending(), any::<bool>(), 1usize..4).prop_map(|(source, ending, asynk, workers)| Case {
        source,
        ending,
        asynk,
        workers,
    })
}

/// Items the source gives before it ends or waits (`None`: it never runs
/// dry).
fn available(source: Source) -> Option<u32> {
    match source {
        Source::Finite(n) | Source::PutBefore(n) | Source::Live(n, _) => Some(n),
        Source::Blocking(k) | Source::Quiet(k) => Some(k),
        Source::Endless => None,
    }
}

/// Whether the source ends by itself (and the run with it).
fn ends(source: Source, ending: Ending) -> bool {
    match source {
        Source::Finite(_) | Source::PutBefore(_) => true,
        Source::Live(..) => ending == Ending::EndOfInput,
        _ => false,
    }
}

/// A lazy iterator that gives `k` items, then blocks until `gate`'s
/// sender is dropped, then ends.
struct BlockingIter {
    next: u32,
    k: u32,
    gate: crossbeam_channel::Receiver<()>,
    /// Raised once it blocks.
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Iterator for BlockingIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.next < self.k {
            self.next += 1;
            return Some(self.next - 1);
        }
        self.blocked.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.gate.recv();
        None
    }
}

/// Runs one case; returns what the checks need: the run's result (when
/// the ending returns one), and whether it delivered everything.
fn run_case(case: Case) -> Result<(), TestCaseError> {
    let (debugger, kept) = keep_final();
    let first = if case.asynk {
        Stage::map_async("first", |x: u32| async move {
            tokio::task::yield_now().await;
            x
        })
        .in_flight(4)
        .into()
    } else {
        Stage::map("first", |x: u32| x).workers(case.workers)
    };
    let fail = case.ending == Ending::Fail;
    let judge = Stage::try_map(
        "judge",
        move |x: u32| {
            if fail {
                Err(format!("no to {x}"))
            } else {
                Ok(x)
            }
        },
    );
    let mut p = Pipeline::new()
        .debug(debugger)
        .then(first)
        .unwrap()
        .then(judge)
        .unwrap();

    // The source; `release` ends a blocking source, or lets a live feeder
    // drop its handle.
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let mut release = Some(release);
    let mut feeder = None;
    let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    match case.source {
        Source::Finite(n) => p = p.source(0..n),
        Source::Endless => p = p.source(0u32..),
        Source::Blocking(k) => {
            p = p.source(BlockingIter {
                next: 0,
                k,
                gate: released.clone(),
                blocked: blocked.clone(),
            })
        }
        Source::PutBefore(n) => {
            prop_assert_eq!(p.put_all(0..n), Ok(n as usize));
            p.close_input();
        }
        Source::Live(n, asynk) => {
            let input = p.input();
            let keep_open = case.ending != Ending::EndOfInput;
            let released = released.clone();
            feeder = Some(std::thread::spawn(move || {
                if asynk {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for i in 0..n {
                            if input.put_async(i).await.is_err() {
                                break;
                            }
                        }
                    });
                } else {
                    let _ = input.put_all(0..n);
                }
                if keep_open {
                    let _ = released.recv();
                }
                drop(input);
            }));
        }
        Source::Quiet(k) => {
            use futures::StreamExt;
            p = p.source_stream(futures::stream::iter(0..k).chain(futures::stream::pending()));
        }
    }

    let blocking = matches!(case.source, Source::Blocking(_));
    let can_fail = available(case.source) != Some(0);
    let mut delivered_all = None;
    let result: Option<Result<paipa::threaded::Summary, RunError>> = if blocking {
        // A stop cannot reach a user's iterator blocked inside `next()`:
        // the deadline variants name the source and detach the threads.
        let running = p.spawn().unwrap();
        // Stopped once the source blocks (or the judge failed first).
        while !blocked.load(std::sync::atomic::Ordering::SeqCst) && running.alive() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = if case.ending == Ending::Abort {
            running.abort_within(Duration::from_millis(200))
        } else {
            running.stop_within(Duration::from_millis(200))
        };
        match &r {
            Err(RunError::Stuck { stage, .. }) => prop_assert_eq!(stage, "source"),
            // A failing judge may end the run before the deadline.
            Err(RunError::Step { stage, .. }) if fail => prop_assert_eq!(stage, "judge"),
            other => prop_assert!(false, "expected a stuck source: {:?}", other),
        }
        release.take();
        None
    } else {
        match case.ending {
            Ending::EndOfInput | Ending::Fail if ends(case.source, case.ending) => {
                let r = p.run_with(|out| out.count());
                delivered_all = Some(r.as_ref().map(|(n, _)| *n as u32).unwrap_or(0));
                Some(r.map(|(_, s)| s))
            }
            Ending::ConsumerStops(k) => {
                // No more than a source that does not end has given (the
                // consumer would wait for ever, rightly).
                let k = available(case.source).map_or(k, |n| k.min(n as usize));
                let mut out = p.outputs().unwrap();
                let got = out.by_ref().take(k).count();
                let r = out.finish();
                if let Ok(s) = &r {
                    prop_assert_eq!(s.items, got as u64);
                }
                Some(r)
            }
            Ending::DropStream(k) => {
                use futures::StreamExt;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let want = available(case.source).map_or(k, |n| k.min(n as usize));
                rt.block_on(async {
                    let mut s = p.stream().unwrap();
                    for _ in 0..want {
                        if s.next().await.is_none() {
                            break;
                        }
                    }
                    drop(s);
                });
                None
            }
            Ending::DropRunning => {
                drop(p.spawn().unwrap());
                None
            }
            Ending::Abort => Some(p.spawn().unwrap().abort()),
            // Stop, and the end of input or a failure of a source that
            // does not end by itself: stopped once it has given something.
            _ => {
                let running = p.spawn().unwrap();
                let stats = running.stats();
                let want = u64::from(available(case.source).unwrap_or(10).min(10));
                while stats.snapshot().stages[0].count < want && running.alive() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Some(running.stop())
            }
        }
    };
    drop(release);
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    match (&result, fail && can_fail) {
        (Some(Err(RunError::Step { stage, source, .. })), true) => {
            prop_assert_eq!(stage, "judge");
            prop_assert!(source.to_string().starts_with("no to "), "{}", source);
        }
        // A failure needs an item to reach the judge before the run was
        // stopped some other way.
        (Some(Ok(_)) | None, true) => {}
        (Some(Ok(_)) | None, false) => {}
        (Some(Err(e)), _) => prop_assert!(false, "unexpected error: {}", e),
    }
    if let (Some(n), Some(Ok(s)), false) = (delivered_all, &result, fail) {
        let all = available(case.source).unwrap();
        prop_assert_eq!(n, all);
        prop_assert_eq!(s.items, u64::from(all));
    }
    let last = kept.lock().unwrap().clone();
    prop_assert!(last.as_ref().is_some_and(|s| s.is_final), "no final report");
    if let Some(row) = common::unbalanced(&last.unwrap()) {
        return Err(TestCaseError::fail(row));
    }
    Ok(())
}

/// The names of this process's threads (Linux).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim_end().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The process's threads when no case runs (taken before the first).
static BASELINE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn every_ending_from_every_source_ends_in_time_with_the_books_balanced_and_no_thread_left(case in case()) {
        let before = *BASELINE.get_or_init(thread_count);
        within(Duration::from_secs(60), move || run_case(case))?;
        let now = common::threads_settle_to(before);
        prop_assert_eq!(now, before, "a thread outlived the run: {:?}", thread_names());
    }
}
