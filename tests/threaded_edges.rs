//! Promises that must hold at the edges of a run: items put before the run,
//! puts after a held-back lot, waits that must see a cancel. Every test runs
//! under a time limit far above what it needs, so a hang fails it.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::within;
use paipa::threaded::{Pipeline, PutError, Stage};

const LIMIT: Duration = Duration::from_secs(60);

/// A stage stuck on each item until the gate's sender is dropped.
fn stuck(gate: crossbeam_channel::Receiver<()>) -> Stage<'static, u32, u32> {
    let gate = Mutex::new(gate);
    Stage::map("stuck", move |x: u32| {
        let _ = gate.lock().unwrap().recv();
        x
    })
}

/// Items put before the run are cut into batches in linear time: 10^6 of
/// them go through in a few seconds even in a debug build (cut with a copy
/// of the rest at each batch of one, 60,000 took 34 s).
#[test]
fn a_million_items_put_before_the_run_go_through_in_linear_time() {
    within(LIMIT, || {
        let mut p = Pipeline::new().then(Stage::map("double", |x: u64| x * 2)).unwrap();
        assert_eq!(p.put_all(0..1_000_000u64), Ok(1_000_000));
        p.close_input();
        let (sum, summary) = p.run_with(|out| out.sum::<u64>()).unwrap();
        assert_eq!(sum, 999_999 * 1_000_000);
        assert_eq!(summary.items, 1_000_000);
        assert_eq!(summary.snapshot.stages[0].count, 1_000_000);
    });
}

/// Once the run has started, a put never passes a held-back lot: it waits
/// for the lot to be sent, then for room, as any put does. A timed put
/// reports a full pipeline; nothing joins an unbounded backlog.
#[test]
fn puts_after_a_held_back_lot_wait_for_room() {
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let mut p = Pipeline::new().capacity(4).unwrap().then(stuck(gate)).unwrap();
        let input = p.input();
        // Before the run: 4 fit the edge, 6 more are held back.
        for i in 0..10 {
            input.put(i).unwrap();
        }
        let running = p.spawn().unwrap();
        // The held-back lot cannot be all out: the stage is stuck on one
        // item and the edge holds 4.
        for i in 10..13 {
            match input.put_timeout(i, Duration::from_millis(20)) {
                Err(PutError::Full(x)) => assert_eq!(x, i),
                other => panic!("the pipeline is full: {other:?}"),
            }
        }
        match input.put_batch_timeout(vec![20, 21], Duration::from_millis(20)) {
            Err(PutError::Full(v)) => assert_eq!(v, [20, 21]),
            other => panic!("the pipeline is full: {other:?}"),
        }
        // A blocking put waits until there is room, then lands after the lot.
        let late = input.clone();
        let putter = std::thread::spawn(move || late.put(99));
        drop(open);
        putter.join().unwrap().unwrap();
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!(s.items, 11);
        assert_eq!(s.snapshot.stages[0].count, 11);
    });
}

/// A timed put before the run, behind a held-back lot, reports a full
/// pipeline instead of joining the lot.
#[test]
fn a_timed_put_before_the_run_does_not_pass_or_join_a_held_back_lot() {
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .then(Stage::map("id", |x: u32| x))
            .unwrap();
        let input = p.input();
        for i in 0..5 {
            input.put(i).unwrap();
        }
        match input.put_timeout(5, Duration::from_millis(20)) {
            Err(PutError::Full(5)) => {}
            other => panic!("a lot is held back: {other:?}"),
        }
        drop(input);
        let (out, s) = p.run_with(|out| out.collect::<Vec<_>>()).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(s.items, 5);
    });
}

/// A current-thread runtime with IO and timers.
#[cfg(feature = "async")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until `f` holds, checking every millisecond.
fn until(f: impl Fn() -> bool) {
    while !f() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An async stage that starts each item's future, counts it, and sleeps an
/// hour before answering.
#[cfg(feature = "async")]
fn napping(
    name: &str,
    started: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> paipa::threaded::AsyncStage<'static, u32, u32> {
    let started = started.clone();
    Stage::map_async(name, move |x: u32| {
        let started = started.clone();
        async move {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            x
        }
    })
    .in_flight(16)
}

/// An async stage whose input has ended (its feeder gone) still sees an
/// abort: its futures are dropped and counted as discarded.
#[cfg(feature = "async")]
#[test]
fn an_abort_reaches_an_async_stage_whose_input_has_ended() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        let started = Arc::new(AtomicUsize::new(0));
        let running = Pipeline::new()
            .source(0..10u32)
            .then(napping("napab", &started))
            .unwrap()
            .spawn()
            .unwrap();
        until(|| started.load(SeqCst) == 10);
        // The feeder has passed the end of input on and ended.
        until(|| common::threads_named("paipa:napab:fe") == 0);
        let s = running.abort_within(Duration::from_secs(30)).unwrap();
        let nap = &s.snapshot.stages[1];
        assert_eq!((nap.name.as_str(), nap.count_in, nap.discarded), ("napab", 10, 10));
    });
}

/// A stage that fails after the input of an async stage before it ended
/// ends the run with its error.
#[cfg(feature = "async")]
#[test]
fn a_failure_after_an_async_stage_s_input_ended_ends_the_run() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        let started = Arc::new(AtomicUsize::new(0));
        let seen = started.clone();
        let (fail_tx, fail_rx) = crossbeam_channel::bounded::<()>(0);
        let fail_rx = Mutex::new(fail_rx);
        let err = Pipeline::new()
            .source(std::iter::once(0u32).chain(1..10))
            .then(
                Stage::map_async("napfl", move |x: u32| {
                    let started = seen.clone();
                    async move {
                        started.fetch_add(1, SeqCst);
                        if x != 0 {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        x
                    }
                })
                .in_flight(16),
            )
            .unwrap()
            .then(Stage::try_map("judge", move |x: u32| {
                // Fails once the async stage's feeder has ended.
                let _ = fail_rx.lock().unwrap().recv();
                Err::<u32, _>(format!("no to {x}"))
            }))
            .unwrap()
            .spawn()
            .unwrap();
        until(|| started.load(SeqCst) == 10);
        until(|| common::threads_named("paipa:napfl:fe") == 0);
        drop(fail_tx);
        match err.wait() {
            Err(paipa::RunError::Step { stage, source, .. }) => {
                assert_eq!(stage, "judge");
                assert_eq!(source.to_string(), "no to 0");
            }
            other => panic!("the judge failed: {other:?}"),
        }
    });
}

/// A stream that yields `n` items, then stays quiet for ever.
#[cfg(feature = "async")]
fn quiet_after(n: u32) -> impl futures::Stream<Item = u32> + Send {
    use futures::StreamExt;
    futures::stream::iter(0..n).chain(futures::stream::pending())
}

/// A counting stage: how many items it has seen.
fn counting(seen: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Stage<'static, u32, u32> {
    let seen = seen.clone();
    Stage::map("count", move |x: u32| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        x
    })
}

/// A source that goes quiet does not hold back what it gave: the items are
/// processed while it waits, and a stop, an abort, or dropping the outputs
/// ends the run (the wait inside `next()` looks at the run).
#[cfg(feature = "async")]
#[test]
fn a_quiet_stream_source_hands_on_what_it_gave_and_every_ending_ends_it() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        for ending in ["stop", "abort", "drop outputs"] {
            let seen = Arc::new(AtomicUsize::new(0));
            let p = Pipeline::new()
                .source_stream(quiet_after(5))
                .then(counting(&seen))
                .unwrap();
            if ending == "drop outputs" {
                let mut out = p.outputs().unwrap();
                let first: Vec<u32> = out.by_ref().take(5).collect();
                assert_eq!(first, [0, 1, 2, 3, 4]);
                drop(out);
                continue;
            }
            let running = p.spawn().unwrap();
            // Handed on by the stage while the source waits.
            until(|| running.stats().snapshot().stages[1].count == 5);
            assert_eq!(seen.load(SeqCst), 5);
            let s = match ending {
                "stop" => running.stop().unwrap(),
                _ => running.abort().unwrap(),
            };
            assert_eq!(s.snapshot.stages[0].count, 5, "{ending}");
            assert_eq!(s.snapshot.stages[1].count, 5, "{ending}");
        }
    });
}

/// A stream that never yields anything ends with a stop, once the source
/// is waiting on it.
#[cfg(feature = "async")]
#[test]
fn a_stream_source_that_never_yields_ends_with_a_stop() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        let polled = Arc::new(AtomicBool::new(false));
        let seen = polled.clone();
        let never = futures::stream::poll_fn(move |_| {
            seen.store(true, SeqCst);
            std::task::Poll::<Option<u32>>::Pending
        });
        let running = Pipeline::new()
            .source_stream(never)
            .then(Stage::map("id", |x: u32| x))
            .unwrap()
            .spawn()
            .unwrap();
        until(|| polled.load(SeqCst));
        let s = running.stop().unwrap();
        assert_eq!(s.items, 0);
    });
}

/// A timed async put queued behind one that waits for ever is answered by
/// its deadline, its items given back.
#[cfg(feature = "async")]
#[test]
fn a_timed_async_put_is_answered_by_its_deadline_behind_a_put_that_waits() {
    use futures::FutureExt;
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let mut p = Pipeline::new().capacity(2).unwrap().then(stuck(gate)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let rt = runtime();
        rt.block_on(async {
            // The stuck stage holds one item, the edge two.
            for i in 0..3 {
                input.put_async(i).await.unwrap();
            }
            let mut waiting = Box::pin(input.put_async(3));
            assert!((&mut waiting).now_or_never().is_none(), "handed to the relay");
            match input.put_batch_async(vec![4, 5], Duration::from_millis(200)).await {
                Err(PutError::Full(v)) => assert_eq!(v, [4, 5]),
                other => panic!("the pipeline stays full: {other:?}"),
            }
            drop(open);
            waiting.await.unwrap();
        });
        drop(input);
        assert_eq!(running.wait().unwrap().items, 4);
    });
}

/// An item whose `Clone` panics for the value 2.
#[derive(Debug)]
struct Brittle(u32);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        if self.0 == 2 {
            panic!("injected panic: cannot copy 2");
        }
        Brittle(self.0)
    }
}

/// A panicking `Clone` (the copy a retrying stage keeps) fails the run as a
/// panic in the step does: named, and with the books balanced.
#[test]
fn a_panicking_clone_in_a_retrying_stage_fails_the_run_with_the_books_balanced() {
    common::quiet_injected_panics();
    within(LIMIT, || {
        let (debugger, kept) = common::keep_final();
        let mut p = Pipeline::new()
            .debug(debugger)
            .then(
                Stage::try_map("fragile", |b: Brittle| Ok::<_, String>(b.0))
                    .retry(2, Duration::from_millis(1))
                    .then_skip(),
            )
            .unwrap();
        p.put_all((0..4).map(Brittle)).unwrap();
        p.close_input();
        match p.run() {
            Err(paipa::RunError::Panic { stage, message, .. }) => {
                assert_eq!(stage, "fragile");
                assert!(
                    message.contains("in its item's Clone: injected panic: cannot copy 2"),
                    "{message}"
                );
            }
            other => panic!("the Clone panicked: {other:?}"),
        }
        let s = kept.lock().unwrap().clone().expect("a final report");
        let st = &s.stages[1];
        assert_eq!(st.failed, 1);
        let books = (st.count_in, st.count, st.skipped, st.failed, st.discarded);
        assert_eq!(
            st.count_in,
            st.count + st.skipped + st.failed + st.discarded,
            "{books:?}"
        );
    });
}

/// An input handle kept open (a clone left in some state) keeps the run
/// going with nothing in it: the table and the hint say what it waits on.
#[test]
fn open_input_handles_show_in_the_table_and_the_hint() {
    within(LIMIT, || {
        let mut p = Pipeline::new().then(Stage::map("id", |x: u32| x)).unwrap();
        let input = p.input();
        let kept = input.clone();
        let running = p.spawn().unwrap();
        for i in 0..3 {
            input.put(i).unwrap();
        }
        drop(input);
        let stats = running.stats();
        until(|| stats.snapshot().stages[1].count == 3);
        // Quiet long enough that the few microseconds of work are no
        // stage's limit: the run is waiting.
        until(|| {
            stats
                .snapshot()
                .inputs
                .is_some_and(|i| i.quiet_for >= Duration::from_millis(200))
        });
        let snap = stats.snapshot();
        let inputs = snap.inputs.expect("one handle is open");
        assert_eq!(inputs.open, 1);
        let table = paipa::report::format_table(&snap);
        let line = table.last().unwrap();
        assert!(line.starts_with("input: 1 open handle, nothing put for "), "{table:?}");
        let hint = paipa::report::hint(&snap).unwrap();
        assert!(
            hint.starts_with("the run waits for its input: 1 open input handle, nothing put for "),
            "{hint}"
        );
        drop(kept);
        let s = running.wait().unwrap();
        assert_eq!(s.items, 3);
        assert_eq!(s.snapshot.inputs, None);
    });
}

/// A weigher that answers differently each time it is asked (1, then 1000,
/// then 1...) cannot unbalance an edge's bound by weight: each message is
/// weighed once, and gives back what it took.
#[test]
fn a_weigher_that_changes_its_mind_cannot_unbalance_the_bound_by_weight() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    within(LIMIT, || {
        let calls = AtomicUsize::new(0);
        let mut p = Pipeline::new()
            .then(Stage::map("make", |x: u32| x).max_bytes(1000, move |_: &u32| {
                if calls.fetch_add(1, SeqCst).is_multiple_of(2) {
                    1
                } else {
                    1000
                }
            }))
            .unwrap()
            .then(Stage::map("take", |x: u32| x))
            .unwrap();
        p.put_all(0..2000u32).unwrap();
        p.close_input();
        let (sum, s) = p.run_with(|out| out.map(u64::from).sum::<u64>()).unwrap();
        assert_eq!(sum, 1999 * 2000 / 2);
        assert_eq!(s.items, 2000);
    });
}

/// A batch as large as the capacity gets in under steady single puts that
/// keep the edge from emptying: it claims its room, and the single puts
/// wait for it.
#[test]
fn a_batch_as_large_as_the_capacity_gets_in_under_steady_single_puts() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        let mut p = Pipeline::new()
            .capacity(8)
            .unwrap()
            .then(Stage::map("slow", |x: u32| {
                std::thread::sleep(Duration::from_millis(1));
                x
            }))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let putters: Vec<_> = (0..4)
            .map(|_| {
                let (input, done) = (input.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !done.load(SeqCst) {
                        input.put(1).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // The edge is kept full by the single puts from here on.
        until(|| running.stats().snapshot().stages[1].count >= 20);
        let batch = vec![1000u32; 8];
        input.put_batch_timeout(batch, Duration::from_secs(10)).unwrap();
        done.store(true, SeqCst);
        let singles: u64 = putters.into_iter().map(|t| t.join().unwrap()).sum();
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!(s.items, singles + 8);
    });
}

/// An async put cancelled while it waits for room (an HTTP request cut off
/// by shutdown) never lands unseen: either it is dropped unput, or, if it
/// landed in the very moment it was cancelled, the source's row counts it.
#[cfg(feature = "async")]
#[test]
fn a_cancelled_async_put_never_lands_uncounted() {
    use futures::FutureExt;
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let mut p = Pipeline::new()
            .capacity(2)
            .unwrap()
            .then(stuck(gate))
            .unwrap()
            .then(Stage::map("record", move |x: u32| record.lock().unwrap().push(x)))
            .unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        let rt = runtime();
        rt.block_on(async {
            for i in 0..3 {
                input.put_async(i).await.unwrap();
            }
            let mut waiting = Box::pin(input.put_async(99));
            assert!((&mut waiting).now_or_never().is_none(), "handed to the relay");
            // Lets the relay start trying the put (the case this guards);
            // the assertions below hold whenever the cancel comes.
            std::thread::sleep(Duration::from_millis(50));
            drop(waiting);
        });
        drop(open);
        drop(input);
        let s = running.wait().unwrap();
        let landed_after_cancel = s.snapshot.stages[0].counter("puts_landed_after_cancel");
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        if landed_after_cancel == 0 {
            assert_eq!(seen, [0, 1, 2]);
        } else {
            assert_eq!((landed_after_cancel, seen), (1, vec![0, 1, 2, 99]));
        }
    });
}

/// Two workers pull a stream that goes quiet: the one that holds results
/// does not wait behind the one waiting on the stream; it sends them first,
/// so the consumer gets every item the stream gave. (Repeated: which
/// worker holds what varies from run to run.)
#[cfg(feature = "async")]
#[test]
fn a_worker_holding_results_sends_them_instead_of_waiting_behind_another_puller() {
    within(LIMIT, || {
        for _ in 0..50 {
            let p = Pipeline::new()
                .then(Stage::map("first", |x: u32| x).workers(2))
                .unwrap()
                .then(Stage::map("second", |x: u32| x))
                .unwrap()
                .source_stream(quiet_after(7));
            let mut out = p.outputs().unwrap();
            let mut got: Vec<u32> = out.by_ref().take(7).collect();
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
            assert_eq!(out.finish().unwrap().items, 7);
        }
    });
}

/// An iterator stage that pulls a source gone quiet sends the results it
/// keeps instead of waiting with the source: the first five reach the
/// output while the stream still waits for ever.
#[cfg(feature = "async")]
#[test]
fn an_iterator_stage_hands_on_its_results_while_the_source_waits() {
    within(LIMIT, || {
        let p = Pipeline::new()
            .source_stream(quiet_after(5))
            .then(Stage::iter("pass", |it: paipa::threaded::InputIter<'_, u32>| {
                it.map(|x| x + 1)
            }))
            .unwrap();
        let mut out = p.outputs().unwrap();
        let mut first: Vec<u32> = out.by_ref().take(5).collect();
        first.sort_unstable();
        assert_eq!(first, [1, 2, 3, 4, 5]);
    });
}
