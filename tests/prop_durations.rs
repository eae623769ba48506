//! Every duration a public call takes, from zero to `Duration::MAX`, either
//! works (a normal result) or is refused with an error naming it: never a
//! panic, in the caller's thread or in one of paipa's. A duration too long
//! to be a deadline on the clock means "for ever": `put_timeout` waits as
//! `put` does, `stop_within` as `stop`, and a debugger's `interval` makes
//! only the final report.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::Duration;

use common::within;
use paipa::threaded::{Input, Pipeline, PutError, Running, Stage};
use paipa::{Debugger, Reporter, Snapshot, Stall};
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Panics anywhere in this process (a reporter thread's included).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in [`PANICS`], then prints it as usual.
fn count_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, SeqCst);
            default(info);
        }));
    });
}

/// A run whose one stage, `held`, waits in its step until `release` is
/// dropped; it holds one item and its input edge is full.
struct Held {
    running: Running,
    input: Input<u64>,
    release: mpsc::Sender<()>,
    /// Items put so far (all of them come out once released).
    put: u64,
}

fn held() -> Held {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let mut p = Pipeline::new()
        .capacity(2)
        .unwrap()
        .then(Stage::map("held", move |x: u64| {
            let _ = gate.lock().unwrap().recv();
            x
        }))
        .unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    input.put(0).unwrap();
    let stats = running.stats();
    while stats.snapshot().stage("held").map_or(0, |s| s.count_in) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut put = 1;
    loop {
        match input.put_timeout(put, Duration::ZERO) {
            Ok(()) => put += 1,
            Err(PutError::Full(_)) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    Held {
        running,
        input,
        release,
        put,
    }
}

#[test]
fn put_timeout_for_duration_max_waits_for_room_as_put_does() {
    count_panics();
    within(LIMIT, || {
        let h = held();
        let input = h.input.clone();
        let putter = std::thread::spawn(move || input.put_timeout(100, Duration::MAX));
        drop(h.release);
        assert_eq!(putter.join().unwrap(), Ok(()));
        drop(h.input);
        assert_eq!(h.running.wait().unwrap().items, h.put + 1);
    });
}

#[test]
fn put_batch_timeout_for_duration_max_waits_for_room_as_put_does() {
    count_panics();
    within(LIMIT, || {
        let h = held();
        let input = h.input.clone();
        let putter = std::thread::spawn(move || input.put_batch_timeout(vec![100, 101], Duration::MAX));
        drop(h.release);
        assert_eq!(putter.join().unwrap(), Ok(()));
        drop(h.input);
        assert_eq!(h.running.wait().unwrap().items, h.put + 2);
    });
}

#[cfg(feature = "async")]
#[test]
fn put_batch_async_for_duration_max_waits_for_room_as_put_does() {
    count_panics();
    within(LIMIT, || {
        let h = held();
        let input = h.input.clone();
        let putter = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(input.put_batch_async(vec![100, 101], Duration::MAX))
        });
        drop(h.release);
        assert_eq!(putter.join().unwrap(), Ok(()));
        drop(h.input);
        assert_eq!(h.running.wait().unwrap().items, h.put + 2);
    });
}

#[test]
fn stop_within_duration_max_waits_as_stop_does() {
    count_panics();
    within(LIMIT, || {
        let h = held();
        let (running, put) = (h.running, h.put);
        let stopper = std::thread::spawn(move || running.stop_within(Duration::MAX));
        drop(h.release);
        let summary = stopper.join().unwrap().unwrap();
        assert_eq!(summary.items, put);
        assert!(!summary.stopped_early);
    });
}

#[test]
fn abort_within_duration_max_waits_as_abort_does() {
    count_panics();
    within(LIMIT, || {
        let h = held();
        let running = h.running;
        let aborter = std::thread::spawn(move || running.abort_within(Duration::MAX));
        drop(h.release);
        let summary = aborter.join().unwrap().unwrap();
        assert!(summary.stopped_early);
        let s = summary.snapshot.stage("held").unwrap();
        assert_eq!(s.count_in, s.count + s.discarded, "{s:?}");
    });
}

/// Counts reports and stalls; tells the step of each stall.
struct Counting {
    periodic: Arc<AtomicUsize>,
    finals: Arc<AtomicUsize>,
    stalled: mpsc::Sender<()>,
}

impl Reporter for Counting {
    fn report(&mut self, snapshot: &Snapshot) {
        if snapshot.is_final {
            self.finals.fetch_add(1, SeqCst);
        } else {
            self.periodic.fetch_add(1, SeqCst);
        }
    }

    fn stall(&mut self, _stall: &Stall) {
        let _ = self.stalled.send(());
    }
}

#[test]
fn a_debugger_interval_of_duration_max_makes_only_the_final_report_and_its_watchdog_still_runs() {
    count_panics();
    within(LIMIT, || {
        let (periodic, finals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stalled, stall) = mpsc::channel();
        let debugger = Debugger::silent()
            .interval(Duration::MAX)
            .watchdog(Duration::from_millis(20))
            .unwrap()
            .reporter(Counting {
                periodic: periodic.clone(),
                finals: finals.clone(),
                stalled,
            });
        let stall = Mutex::new(stall);
        // The step stays busy until the watchdog reports it stuck: a
        // reporting thread that died would leave it waiting out its 20 s.
        let (seen, _) = Pipeline::new()
            .debug(debugger)
            .source(0..1u64)
            .then(Stage::map("waits", move |_: u64| {
                stall.lock().unwrap().recv_timeout(Duration::from_secs(20)).is_ok()
            }))
            .unwrap()
            .run_with(|out| out.collect::<Vec<bool>>())
            .unwrap();
        assert_eq!(seen, vec![true], "the watchdog saw the stall");
        assert_eq!(periodic.load(SeqCst), 0);
        assert_eq!(finals.load(SeqCst), 1);
        assert_eq!(PANICS.load(SeqCst), 0);
    });
}

/// Durations of every magnitude, the extremes among them.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::from_secs(u64::MAX / 8)),
        Just(Duration::from_secs(i64::MAX as u64)),
        Just(Duration::from_secs(i64::MAX as u64 / 1000 + 1)),
        Just(Duration::from_secs(365 * 24 * 3600)),
        Just(Duration::from_secs(365 * 24 * 3600) + Duration::from_nanos(1)),
        (0u64..10_000_000).prop_map(Duration::from_nanos),
        (0u32..64, any::<u64>(), 0u32..1_000_000_000).prop_map(|(shift, s, n)| Duration::new(s >> shift, n)),
    ]
}

/// Every call of the file with `d`.
fn with_duration(d: Duration, stop: bool) -> Result<(), TestCaseError> {
    // A put with room returns at once, whatever its timeout.
    let mut p = Pipeline::new()
        .capacity(4)
        .unwrap()
        .then(Stage::map("id", |x: u64| x))
        .unwrap();
    let input = p.input();
    let running = p.spawn().unwrap();
    prop_assert_eq!(input.put_timeout(1, d), Ok(()));
    prop_assert_eq!(input.put_batch_timeout(vec![2, 3], d), Ok(()));
    match input.put_batch_timeout((0..100).collect(), d) {
        Err(PutError::TooLarge(back)) => prop_assert_eq!(back.len(), 100),
        other => prop_assert!(false, "{:?}", other),
    }
    #[cfg(feature = "async")]
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        prop_assert_eq!(rt.block_on(input.put_batch_async(vec![4], d)), Ok(()));
    }
    drop(input);
    // The run has ended by itself: stopping it returns its summary at
    // once, whatever the deadline.
    while running.alive() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let expected = if cfg!(feature = "async") { 4 } else { 3 };
    let summary = if stop {
        running.stop_within(d)
    } else {
        running.abort_within(d)
    };
    prop_assert_eq!(summary.map(|s| s.items).map_err(|e| e.to_string()), Ok(expected));

    // Reports: the final one, whatever the interval.
    let finals = Arc::new(AtomicUsize::new(0));
    let counted = finals.clone();
    let debugger = Debugger::silent().interval(d).reporter(move |s: &Snapshot| {
        if s.is_final {
            counted.fetch_add(1, SeqCst);
        }
    });
    prop_assert_eq!(
        paipa::iter::consume(paipa::iter::Pipeline::new(0..3u64).debug(debugger)),
        3
    );
    prop_assert_eq!(finals.load(SeqCst), 1);

    // An async stage's timeout, from 1 ns to a day: a future that is
    // ready at once is never timed out.
    #[cfg(feature = "async")]
    {
        let taken = d >= Duration::from_nanos(1) && d <= Duration::from_secs(86_400);
        let built = Pipeline::new()
            .source(0..3u64)
            .then(Stage::map_async("ready", |x: u64| async move { x }).timeout(d));
        match built {
            Ok(p) => {
                prop_assert!(taken, "{:?} taken", d);
                prop_assert_eq!(p.run().map(|s| s.items).map_err(|e| e.to_string()), Ok(3));
            }
            Err(err) => {
                prop_assert!(!taken, "{:?} refused: {}", d, err);
                prop_assert_eq!(err.field(), "timeout");
            }
        }
    }

    // A Redis edge's durations: in their range, or refused naming them.
    #[cfg(feature = "redis")]
    {
        use paipa::remote::EdgeConfig;
        let e = EdgeConfig::new("redis://127.0.0.1:1/", "s", "g");
        let ms = Duration::from_millis(1);
        let year = Duration::from_secs(365 * 24 * 3600);
        for (field, result, ok) in [
            ("claim_idle", e.clone().claim_idle(d), d >= ms && d <= year),
            ("block", e.clone().block(d), d >= ms && d <= Duration::from_secs(10)),
            ("linger", e.clone().linger(d), d <= Duration::from_secs(60)),
        ] {
            match result {
                Ok(_) => prop_assert!(ok, "{} {:?} taken", field, d),
                Err(err) => {
                    prop_assert!(!ok, "{} {:?} refused: {}", field, d, err);
                    prop_assert_eq!(err.field(), field);
                }
            }
        }
        // The reconnect deadline takes any duration (past the clock's
        // range: for ever).
        let _ = e.reconnect_deadline(d);
    }
    prop_assert_eq!(PANICS.load(SeqCst), 0, "a thread panicked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn every_duration_works_or_is_refused_naming_it_and_nothing_panics(d in any_duration(), stop in any::<bool>()) {
        count_panics();
        within(LIMIT, move || with_duration(d, stop))?;
    }
}
