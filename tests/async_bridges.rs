//! Bridges for tokio programs (feature `async`): a run's outputs as a
//! `Stream`, and async puts on a live input. Every test runs in the
//! `within` hang guard, and none asserts on wall-clock time: the cases
//! that deadlock when a bridge blocks a runtime thread fail the guard.
#![cfg(feature = "async")]

mod common;

use std::time::Duration;

use common::{keep_last, within};
use futures::StreamExt;
use paipa::threaded::{Pipeline, Stage, Summary};
use paipa::StageSnapshot;

const LIMIT: Duration = Duration::from_secs(60);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every item that went in is out, skipped, failed or discarded.
fn balanced(s: &StageSnapshot) -> bool {
    s.count_in == s.count + s.skipped + s.failed + s.discarded
}

/// Every stage's books balance (the source's row, the first, counts what
/// it sent).
fn assert_balanced(s: &Summary) {
    for st in &s.snapshot.stages[1..] {
        assert!(balanced(st), "books of {}: {st:?}", st.name);
    }
}

/// Reads a stream to its end, sorted (outputs of several workers come in
/// any order).
async fn drain_sorted<T: Ord>(stream: &mut (impl futures::Stream<Item = T> + Unpin)) -> Vec<T> {
    let mut got = Vec::new();
    while let Some(x) = stream.next().await {
        got.push(x);
    }
    got.sort_unstable();
    got
}

/// The last stage's row (the consumer's is after it).
fn last_stage(s: &Summary) -> &StageSnapshot {
    let stages = &s.snapshot.stages;
    &stages[stages.len() - 2]
}

#[test]
fn a_tokio_program_consumes_a_pipeline_as_a_stream() {
    within(LIMIT, || {
        current_thread().block_on(async {
            let mut stream = Pipeline::new()
                .capacity(8)
                .unwrap()
                .source(0..5_000u64)
                .then(Stage::map("triple", |x: u64| x * 3).workers(3))
                .unwrap()
                .stream()
                .unwrap();
            let got = drain_sorted(&mut stream).await;
            assert_eq!(got, (0..5_000u64).map(|x| x * 3).collect::<Vec<_>>());
            let s = stream.finish().await.unwrap();
            assert_eq!(s.items, 5_000);
            assert!(!s.stopped_early);
            let last = last_stage(&s);
            assert_eq!((last.count_in, last.count, last.discarded), (5_000, 5_000, 0));
            assert_balanced(&s);
        })
    });
}

#[test]
fn a_stream_on_a_multi_thread_runtime_sees_every_output() {
    within(LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let stream = Pipeline::new()
                .source(0..2_000u32)
                .then(Stage::map("inc", |x: u32| x + 1))
                .unwrap()
                .outputs()
                .unwrap()
                .into_stream()
                .unwrap();
            let task = tokio::spawn(async move {
                let mut stream = stream;
                let mut got = Vec::new();
                while let Some(x) = stream.next().await {
                    got.push(x);
                }
                (got, stream.finish().await.unwrap())
            });
            let (mut got, s) = task.await.unwrap();
            got.sort_unstable();
            assert_eq!(got, (1..=2_000u32).collect::<Vec<_>>());
            assert_eq!(s.items, 2_000);
        })
    });
}

#[test]
fn finishing_a_stream_early_stops_the_run_and_the_books_balance() {
    within(LIMIT, || {
        current_thread().block_on(async {
            // An endless source: only the stream stopping ends the run.
            let mut stream = Pipeline::new()
                .capacity(4)
                .unwrap()
                .source(0u64..)
                .then(Stage::map("same", |x: u64| x))
                .unwrap()
                .stream()
                .unwrap();
            for _ in 0..25 {
                stream.next().await.expect("endless");
            }
            let s = stream.finish().await.unwrap();
            assert!(s.stopped_early);
            assert_eq!(s.items, 25, "the consumer got what it read");
            let last = last_stage(&s);
            assert_eq!(last.count, 25);
            assert_eq!(last.count_in, last.count + last.discarded);
            assert_balanced(&s);
        })
    });
}

#[test]
fn dropping_a_stream_early_stops_the_run_and_the_books_balance() {
    within(LIMIT, || {
        let (debugger, last) = keep_last();
        current_thread().block_on(async {
            // An endless source: only the stream's drop ends the run.
            let mut stream = Pipeline::new()
                .debug(debugger)
                .capacity(4)
                .unwrap()
                .source(0u64..)
                .then(Stage::map("same", |x: u64| x))
                .unwrap()
                .stream()
                .unwrap();
            for _ in 0..25 {
                stream.next().await.expect("endless");
            }
            drop(stream);
        });
        // The run stops by itself: its final report comes.
        let snap = loop {
            if let Some(s) = last.lock().unwrap().as_ref().filter(|s| s.is_final) {
                break s.clone();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let (stage, consumer) = (&snap.stages[1], &snap.stages[2]);
        assert_eq!(consumer.count, 25, "the consumer got what it read");
        assert_eq!(stage.count, 25);
        assert_eq!(stage.count_in, stage.count + stage.discarded, "{stage:?}");
        for st in &snap.stages[1..] {
            assert!(balanced(st), "books of {}: {st:?}", st.name);
        }
    });
}

#[test]
fn dropping_a_stream_stops_the_run_and_closes_the_input() {
    within(LIMIT, || {
        current_thread().block_on(async {
            let mut pipeline = Pipeline::new().capacity(2).unwrap();
            let input = pipeline.input();
            let mut stream = pipeline.then(Stage::map("same", |x: u64| x)).unwrap().stream().unwrap();
            input.put_async(1).await.unwrap();
            assert_eq!(stream.next().await, Some(1));
            // The forwarder now waits on an empty edge and the input is
            // live: only the stream's drop can stop the run, which closes
            // the input when it stops reading.
            drop(stream);
            while input.is_open() {
                tokio::task::yield_now().await;
            }
            assert_eq!(input.put_async(2).await.unwrap_err().into_inner(), 2);
        })
    });
}

#[test]
fn async_puts_and_the_stream_share_one_runtime_thread() {
    within(LIMIT, || {
        current_thread().block_on(async {
            // Capacity 2: the puts wait for room that only the stream,
            // polled on the same thread, makes. A put that blocked the
            // thread would deadlock here.
            let mut pipeline = Pipeline::new().capacity(2).unwrap();
            let input = pipeline.input();
            let mut stream = pipeline
                .then(Stage::map("double", |x: u64| x * 2).capacity(2))
                .unwrap()
                .stream()
                .unwrap();
            let feed = async move {
                for x in 0..2_000u64 {
                    input.put_async(x).await.expect("open");
                }
                // Dropping the input ends the run.
            };
            let read = async {
                let mut got = Vec::new();
                while let Some(x) = stream.next().await {
                    got.push(x);
                }
                got
            };
            let ((), mut got) = tokio::join!(feed, read);
            got.sort_unstable();
            assert_eq!(got, (0..2_000u64).map(|x| x * 2).collect::<Vec<_>>());
            let s = stream.finish().await.unwrap();
            assert_eq!(s.items, 2_000);
            assert!(!s.stopped_early);
            assert_balanced(&s);
        })
    });
}

#[test]
fn dropping_the_async_input_ends_the_run() {
    within(LIMIT, || {
        current_thread().block_on(async {
            let mut pipeline = Pipeline::new().capacity(2).unwrap();
            let input = pipeline.input();
            let stream = pipeline.then(Stage::map("same", |x: u32| x)).unwrap().stream().unwrap();
            let reader = tokio::spawn(stream.collect::<Vec<u32>>());
            // More than the capacity: some puts wait on the relay thread.
            // The feeding task owns the input (its puts are `Send`), and
            // drops it when done.
            let feeder = tokio::spawn(async move {
                for x in 0..50u32 {
                    input.put_async(x).await.unwrap();
                }
            });
            feeder.await.unwrap();
            let mut got = reader.await.unwrap();
            got.sort_unstable();
            assert_eq!(got, (0..50u32).collect::<Vec<_>>());
        })
    });
}

#[test]
fn async_puts_after_the_stream_is_gone_are_refused_with_the_item() {
    within(LIMIT, || {
        current_thread().block_on(async {
            let mut pipeline = Pipeline::new().capacity(2).unwrap();
            let input = pipeline.input();
            let stream = pipeline.then(Stage::map("same", |x: u32| x)).unwrap().stream().unwrap();
            let s = stream.finish().await.unwrap();
            assert_eq!(s.items, 0);
            assert_eq!(input.put_async(7).await.unwrap_err().into_inner(), 7);
        })
    });
}

#[test]
fn a_stream_stopped_early_counts_weighted_outputs_by_their_weight() {
    within(LIMIT, || {
        current_thread().block_on(async {
            // Each output is a bundle of 1 to 3 items, counted as its length.
            let mut stream = Pipeline::new()
                .capacity(6)
                .unwrap()
                .source(0u64..)
                .then(
                    Stage::map("bundle", |x: u64| vec![x; (x % 3 + 1) as usize])
                        .count_by(|v: &Vec<u64>| v.len() as u64),
                )
                .unwrap()
                .stream()
                .unwrap();
            let mut read = 0;
            for _ in 0..20 {
                read += stream.next().await.expect("endless").len() as u64;
            }
            let s = stream.finish().await.unwrap();
            assert!(s.stopped_early);
            assert_eq!(s.items, read, "the consumer got the weight it read");
            // What the stream held unread is discarded by its weight: the
            // last stage's count is what was read, as for the iterator.
            // (Its `count_in` counts inputs, not weights.)
            assert_eq!(last_stage(&s).count, read);
        })
    });
}

/// Sets its flag when dropped: tells that a source stream was let go.
struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_stream_fed_by_a_task_on_a_multi_thread_runtime_is_a_source() {
    within(LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A producer task that waits on tokio's timer, and the stream
            // of its channel.
            let (tx, rx) = tokio::sync::mpsc::channel::<u64>(4);
            tokio::spawn(async move {
                for x in 0..500u64 {
                    if x % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    tx.send(x).await.unwrap();
                }
            });
            let received = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
            let mut out = Pipeline::new()
                .source_stream(received)
                .then(Stage::map("triple", |x: u64| x * 3).workers(2))
                .unwrap()
                .stream()
                .unwrap();
            let seen = drain_sorted(&mut out).await;
            assert_eq!(seen, (0..500u64).map(|x| x * 3).collect::<Vec<_>>());
            let s = out.finish().await.unwrap();
            assert_eq!(s.snapshot.stages[0].count, 500);
            assert_balanced(&s);
        });
    });
}

#[test]
fn a_stream_with_timers_is_a_source_on_a_current_thread_runtime() {
    within(LIMIT, || {
        // The stream's timers run on the caller's current-thread runtime,
        // driven while it awaits the outputs: no deadlock.
        current_thread().block_on(async {
            let ticks = futures::stream::iter(0..100u32).then(|x| async move {
                tokio::time::sleep(Duration::from_micros(200)).await;
                x
            });
            let out = Pipeline::new()
                .source_stream(ticks)
                .then(Stage::map("inc", |x: u32| x + 1))
                .unwrap()
                .stream()
                .unwrap();
            let mut got: Vec<u32> = out.collect().await;
            got.sort_unstable();
            assert_eq!(got, (1..=100).collect::<Vec<_>>());
        });
    });
}

#[test]
fn a_stream_source_outside_a_runtime_runs_on_its_own_and_gives_its_length() {
    within(LIMIT, || {
        // No runtime here: the source thread runs the stream, tokio timer
        // included, on one of its own. An exact size_hint is the total.
        let ticks = futures::stream::iter(0..300u64).then(|x| async move {
            if x % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            x
        });
        let exact = futures::stream::iter(0..1_000u64);
        assert_eq!(futures::Stream::size_hint(&exact), (1_000, Some(1_000)));
        let (sum, s) = Pipeline::new()
            .source_stream(ticks.chain(exact))
            .then(Stage::map("id", |x: u64| x))
            .unwrap()
            .run_with(|out| out.sum::<u64>())
            .unwrap();
        assert_eq!(sum, (0..300u64).sum::<u64>() + (0..1_000u64).sum::<u64>());
        assert_eq!(s.snapshot.stages[0].count, 1_300);

        let (_, s) = Pipeline::new()
            .source_stream(futures::stream::iter(0..1_000u64))
            .then(Stage::map("id", |x: u64| x))
            .unwrap()
            .run_with(|out| out.count())
            .unwrap();
        assert_eq!(s.snapshot.expected, Some(1_000));
    });
}

#[test]
fn a_run_that_stops_early_drops_its_source_stream() {
    within(LIMIT, || {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        // An endless stream that owns the flag.
        let endless = futures::stream::unfold((0u64, flag), |(x, flag)| async move { Some((x, (x + 1, flag))) });
        let (first, s) = Pipeline::new()
            .source_stream(endless)
            .then(Stage::map("id", |x: u64| x))
            .unwrap()
            .run_with(|out| out.take(1_000).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(first.len(), 1_000);
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the stream outlived the run"
        );
        assert_balanced(&s);
    });
}

#[test]
fn async_batch_puts_wait_their_turn_and_a_full_pipeline_gives_the_batch_back() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        let open = Arc::new(AtomicBool::new(false));
        let gate = open.clone();
        let mut pipeline = Pipeline::new().capacity(8).unwrap();
        let input = std::sync::Arc::new(pipeline.input());
        let running = pipeline
            .then(Stage::map("gated", move |x: u32| {
                while !gate.load(SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                x
            }))
            .unwrap()
            .spawn()
            .unwrap();
        let rt = current_thread();
        // Fill the pipeline until a batch cannot get in within 50 ms: it
        // comes back whole.
        let refused = rt.block_on(async {
            let mut next = 0u32;
            loop {
                let batch: Vec<u32> = (next..next + 4).collect();
                match input.put_batch_async(batch, Duration::from_millis(50)).await {
                    Ok(()) => next += 4,
                    Err(paipa::threaded::PutError::Full(back)) => return (next, back),
                    Err(other) => panic!("{other:?}"),
                }
            }
        });
        let (accepted, back) = refused;
        assert_eq!(back, (accepted..accepted + 4).collect::<Vec<_>>());
        // 20 tasks wait for room at once on one runtime thread; the gate
        // opens; every batch gets in, once.
        let total = rt.block_on(async {
            let puts = (0..20u32).map(|t| {
                let input = input.clone();
                async move {
                    let batch: Vec<u32> = (1_000 + t * 4..1_000 + t * 4 + 4).collect();
                    input.put_batch_async(batch, Duration::from_secs(30)).await.map(|_| 4)
                }
            });
            let opener = async {
                tokio::task::yield_now().await;
                open.store(true, SeqCst);
            };
            let (results, ()) = tokio::join!(futures::future::join_all(puts), opener);
            results.into_iter().map(|r| r.unwrap()).sum::<u32>()
        });
        assert_eq!(total, 80);
        drop(input);
        let summary = running.wait().unwrap();
        assert_eq!(summary.items, u64::from(accepted) + 80);
    });
}
